"""The enums of the pccl API. Every value equals the value of the C enum in ``pccl.h``."""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import Any

__all__ = [
    "Result",
    "ReduceOp",
    "Attribute",
    "SharedStateSyncStrategy",
    "DataType",
    "DeviceType",
    "DistributionHint",
    "QuantizationAlgorithm",
]


class Result(IntEnum):
    """``pcclResult_t``: the outcome of a library call (``PCCLError.result``)."""

    SUCCESS = 0
    NOT_INITIALIZED = 1
    INTERNAL_ERROR = 2
    INVALID_ARGUMENT = 3
    INVALID_USAGE = 4
    TOO_FEW_PEERS = 5
    MASTER_CONNECTION_FAILED = 6
    RANK_CONNECTION_FAILED = 7
    RANK_CONNECTION_LOST = 8
    NO_SHARED_STATE_AVAILABLE = 9
    PENDING_ASYNC_OPS = 10
    UPDATE_TOPOLOGY_FAILED = 11
    TOPOLOGY_OPTIMIZATION_FAILED = 12
    # extensions
    TIMEOUT = 13
    KICKED = 14
    AUTHENTICATION_FAILED = 15
    MISMATCH = 16
    MASTER_CONNECTION_LOST = 17
    ABORTED = 18


class ReduceOp(IntEnum):
    """``pcclRedOp_t``. Integer sums wrap around; AVG divides by the number of peers
    (integers: truncating division); float16/bfloat16 are reduced in float32 and rounded once."""

    SUM = 0
    AVG = 1
    PROD = 2
    MAX = 3
    MIN = 4


class Attribute(IntEnum):
    """``pcclAttribute_t``: world-size attributes read with ``Communicator.get_attribute``."""

    GLOBAL_WORLD_SIZE = 1
    """Peers in the run (all peer groups)."""
    LOCAL_WORLD_SIZE = 2
    """Peers in this peer's group (``PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE``)."""
    NUM_DISTINCT_PEER_GROUPS = 3
    LARGEST_PEER_GROUP_WORLD_SIZE = 4
    RANK = 5
    """This peer's position in its group's ring, 0 .. LOCAL_WORLD_SIZE - 1 (an extension)."""
    PEER_GROUP_WORLD_SIZE = 2
    """Alias of ``LOCAL_WORLD_SIZE`` under the C name."""


class SharedStateSyncStrategy(IntEnum):
    """``pcclSharedStateSyncStrategy_t``."""

    ENFORCE_POPULAR = 0
    """Send or receive as needed so that this peer ends with the popular content."""
    RECEIVE_ONLY = 1
    """This peer's content never wins; it only receives."""
    SEND_ONLY = 2
    """This peer must already hold the popular content; it never receives."""


class DeviceType(IntEnum):
    """``pcclDeviceType_t``."""

    CPU = 0
    CUDA = 1

    @staticmethod
    def from_torch_device_type(device_type: Any) -> "DeviceType":
        """The DeviceType of a torch device (PCCL 1.0): a device type string as in
        ``tensor.device.type`` (``"cpu"``, ``"cuda"``; ``"cuda:1"`` is accepted too) or a
        ``torch.device``. Does not import torch. Raises ValueError for other device types
        (``"mps"``, ``"meta"`` ...) and TypeError for anything else."""
        kind = getattr(device_type, "type", device_type)  # torch.device -> its type string
        if not isinstance(kind, str):
            raise TypeError(f"expected a torch device type such as 'cpu' or 'cuda', got {type(device_type).__name__}")
        found = {"cpu": DeviceType.CPU, "cuda": DeviceType.CUDA}.get(kind.split(":", 1)[0])
        if found is None:
            raise ValueError(f"unsupported torch device type '{kind}' (pccl supports cpu and cuda)")
        return found


class DistributionHint(IntEnum):
    """``pcclDistributionHint_t``: a hint about the values' distribution (for quantization)."""

    NONE = 0
    NORMAL = 1
    UNIFORM = 2


class QuantizationAlgorithm(IntEnum):
    """``pcclQuantizationAlgorithm_t``."""

    NONE = 0
    MIN_MAX = 1
    ZERO_POINT_SCALE = 2


# DataType <-> (torch attribute name, numpy dtype name, element size in bytes)
_DTYPE_TABLE = {
    0: ("uint8", "uint8", 1),
    1: ("int8", "int8", 1),
    2: ("int16", "int16", 2),
    3: ("uint16", "uint16", 2),
    4: ("uint32", "uint32", 4),
    5: ("int32", "int32", 4),
    6: ("uint64", "uint64", 8),
    7: ("int64", "int64", 8),
    8: ("float16", "float16", 2),
    9: ("bfloat16", "bfloat16", 2),
    10: ("float32", "float32", 4),
    11: ("float64", "float64", 8),
}

# Element size in bytes, indexed by DataType value.
ITEMSIZES = tuple(size for _, _, size in _DTYPE_TABLE.values())

# torch.dtype -> DataType and numpy.dtype -> DataType, filled by from_torch_dtype (whole table at
# the first call) and from_numpy_dtype (each supported dtype at its first lookup); read directly
# by the all-reduce fast path (_buffers.py). Only supported dtypes are ever entered, so a miss
# means "not seen yet or unsupported": take the full lookup, which raises.
_BY_TORCH_DTYPE: dict = {}
_BY_NUMPY_DTYPE: dict = {}


class DataType(IntEnum):
    """``pcclDataType_t``, with conversions from and to torch and numpy dtypes.

    torch and numpy are imported only when a conversion needs them. numpy has no built-in
    bfloat16: ``BFLOAT16`` maps to ``ml_dtypes.bfloat16`` when that package is installed.
    """

    UINT8 = 0
    INT8 = 1
    INT16 = 2
    UINT16 = 3
    UINT32 = 4
    INT32 = 5
    UINT64 = 6
    INT64 = 7
    FLOAT16 = 8
    BFLOAT16 = 9
    FLOAT = 10
    DOUBLE = 11

    @property
    def itemsize(self) -> int:
        """Size of one element in bytes."""
        return ITEMSIZES[self]

    def to_torch_dtype(self) -> Any:
        """The ``torch.dtype`` of this data type (imports torch).

        Raises TypeError if this torch build has no such dtype (unsigned 16/32/64-bit need
        torch >= 2.3)."""
        import torch

        name = _DTYPE_TABLE[int(self)][0]
        dt = getattr(torch, name, None)
        if dt is None:
            raise TypeError(f"this torch ({torch.__version__}) has no torch.{name} for {self!r}")
        return dt

    @staticmethod
    def from_torch_dtype(dtype: Any) -> "DataType":
        """The DataType of a ``torch.dtype``; TypeError for dtypes pccl does not support
        (bool, complex, float8, quantized ...)."""
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(dtype, torch.dtype):
            raise TypeError(f"expected a torch.dtype, got {dtype!r}")
        if not _BY_TORCH_DTYPE:
            for value, (name, _, _) in _DTYPE_TABLE.items():
                dt = getattr(torch, name, None)
                if dt is not None:
                    _BY_TORCH_DTYPE[dt] = DataType(value)
        found = _BY_TORCH_DTYPE.get(dtype)
        if found is not None:
            return found
        raise TypeError(f"torch dtype {dtype} is not supported by pccl "
                        f"(supported: {', '.join('torch.' + n for n, _, _ in _DTYPE_TABLE.values())})")

    def to_numpy_dtype(self) -> Any:
        """The ``numpy.dtype`` of this data type (imports numpy; BFLOAT16 needs ml_dtypes)."""
        import numpy as np

        if self is DataType.BFLOAT16:
            try:
                import ml_dtypes  # type: ignore[import-not-found]
            except ImportError:
                raise TypeError("numpy has no bfloat16; install ml_dtypes or use torch.bfloat16") from None
            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_DTYPE_TABLE[int(self)][1])

    @staticmethod
    def from_numpy_dtype(dtype: Any) -> "DataType":
        """The DataType of a numpy dtype (a ``numpy.dtype``, a scalar type such as
        ``numpy.float32``, or a dtype string). TypeError for unsupported dtypes (bool,
        complex, object, strings ...) and for non-native byte order."""
        import numpy as np

        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"not a numpy dtype: {dtype!r}") from None
        found = _BY_NUMPY_DTYPE.get(dt)
        if found is not None:
            return found
        found = _from_numpy_dtype(np, dt)
        _BY_NUMPY_DTYPE[dt] = found
        return found


def _from_numpy_dtype(np: Any, dt: Any) -> DataType:
    """The DataType of the numpy.dtype ``dt``, found from its kind, size and byte order."""
    if dt.byteorder not in ("=", "|") and dt.byteorder != _native_byteorder():
        raise TypeError(f"numpy dtype {dt.str} has non-native byte order; use .astype(dt.newbyteorder('='))")
    if dt.name == "bfloat16":
        return DataType.BFLOAT16
    if dt.kind in ("i", "u", "f"):
        for value, (_, name, size) in _DTYPE_TABLE.items():
            if value != DataType.BFLOAT16 and np.dtype(name).kind == dt.kind and size == dt.itemsize:
                return DataType(value)
    raise TypeError(f"numpy dtype {dt} is not supported by pccl "
                    f"(supported: {', '.join(n for _, n, _ in _DTYPE_TABLE.values())})")


def _native_byteorder() -> str:
    return "<" if sys.byteorder == "little" else ">"
