"""Descriptors and small result types of the pccl API (the C structs, in Python)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, TypeVar

from ._buffers import Buffer, check_pair, describe_numpy, describe_torch, _check_device
from ._enums import DataType, DeviceType, DistributionHint, QuantizationAlgorithm, ReduceOp

__all__ = [
    "ReduceOperandDescriptor",
    "QuantizationOptions",
    "ReduceDescriptor",
    "ReduceOpDescriptor",
    "TensorInfo",
    "SharedState",
    "SharedStateSyncInfo",
    "ReduceInfo",
]

_U64_MAX = (1 << 64) - 1
_SIZE_MAX = (1 << 64) - 1


def _enum(cls, value: Any, what: str):
    """Coerce value to the IntEnum cls; TypeError for non-integers, ValueError for unknown values."""
    if isinstance(value, cls):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a {cls.__name__}, got {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{what}: {value} is not a valid {cls.__name__} "
                         f"({', '.join(f'{m.name}={int(m)}' for m in cls)})") from None


_F = TypeVar("_F", bound=Callable[..., Any])


def _keyword_aliases(**alias_of: str) -> Callable[[_F], _F]:
    """Decorator: accept each keyword ``alias=...`` as the parameter ``alias_of[alias]`` (the
    parameters carry PCCL 1.0's names; this library's earlier names stay accepted). The
    signature seen by ``inspect`` is the function's own. TypeError if both names are given."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            for alias, name in alias_of.items():
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both '{name}' and its alias '{alias}'")
                    kwargs[name] = kwargs.pop(alias)
            return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


def _uint(value: Any, what: str, *, bits: int = 64, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import operator

            value = operator.index(value)  # numpy integers, 0-d tensors of integer type
        except TypeError:
            raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if value < minimum or value > (1 << bits) - 1:
        raise ValueError(f"{what} must be in [{minimum}, 2**{bits} - 1], got {value}")
    return int(value)


def _secret(value: Any, what: str) -> Optional[bytes]:
    """A run secret (str: UTF-8, or bytes) as bytes, None kept; NUL bytes are refused (the C API
    takes a NUL-terminated string). Its length is checked by the library (at least 16 bytes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        value = bytes(value)
    else:
        raise TypeError(f"{what} must be None, a str or bytes, got {type(value).__name__}")
    if b"\0" in value:
        raise ValueError(f"{what} must not contain NUL bytes")
    return value


# --------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class ReduceInfo:
    """``pcclReduceInfoEx_t``: what an all-reduce did, and how fast. PCCL 1.0's constructor
    ``ReduceInfo(local_world_size, tx_bytes, rx_bytes)`` still works (duration and rate 0.0)."""

    local_world_size: int
    """Peers that took part (the size of the peer group for this operation)."""
    tx_bytes: int
    """Bytes this peer sent (the quantized bytes when quantized)."""
    rx_bytes: int
    """Bytes this peer received."""
    duration_s: float = 0.0
    """Seconds from the start of the operation (the ``all_reduce`` or ``all_reduce_async`` call)
    to its end, on a monotonic clock (waiting for the other peers to start it counts); for
    ``all_reduce_multiple_with_retry`` the whole call, retries included."""
    bytes_per_second: float = 0.0
    """This peer's throughput on the wire: ``(tx_bytes + rx_bytes) / duration_s`` (0.0 when the
    duration is 0). Not the algorithm bandwidth (elements * itemsize / duration_s)."""


@dataclass(frozen=True)
class CommStats:
    """``pcclCommStats_t`` (:meth:`Communicator.stats`): what a communicator has done since it
    was created, and its place in the run. Operations count when they end; a call refused at
    once (e.g. a tag already in flight) counts nowhere. The counters survive a failure."""

    all_reduces_completed: int
    all_reduces_failed: int
    """All-reduces that started and failed (lost peer, mismatch, timeout, abort)."""
    syncs_completed: int
    syncs_failed: int
    tx_bytes: int
    """Data-plane bytes sent by all-reduces and shared-state syncs (bandwidth probes excluded)."""
    rx_bytes: int
    last_all_reduce_micros: int
    """Duration of the latest successful all-reduce, in microseconds (0 before one)."""
    last_all_reduce_bytes: int
    """Its buffer size in bytes (count * element size)."""
    world_size: int
    """As ``Attribute.GLOBAL_WORLD_SIZE``; 0 when not connected (or after a failure)."""
    group_world_size: int
    """As ``Attribute.PEER_GROUP_WORLD_SIZE``; 0 when not connected."""
    rank: Optional[int]
    """As ``Attribute.RANK``; None when not connected or not in a ring."""
    peer_group: int
    epoch: int
    """The latest topology (admission round) this peer saw; 0 before."""
    votes_completed: int
    votes_failed: int
    last_send_bytes_per_second: int
    """Send rate to the ring successor achieved by the latest all-reduce that measured one."""
    collectives_completed: int = 0
    """Collectives of every kind (all-reduce, broadcast, all-gather, reduce-scatter, barrier)
    that succeeded; ``all_reduces_completed`` counts the all-reduces among them."""
    collectives_failed: int = 0
    """... and that started and failed."""

    @property
    def last_all_reduce_bytes_per_second(self) -> float:
        """``last_all_reduce_bytes / duration`` of the latest successful all-reduce (the
        algorithm bandwidth); 0.0 before one."""
        if not self.last_all_reduce_micros:
            return 0.0
        return self.last_all_reduce_bytes * 1e6 / self.last_all_reduce_micros


@dataclass(frozen=True)
class SharedStateSyncInfo:
    """``pcclSharedStateSyncInfo_t``: bytes moved by a shared-state sync (0 and 0 when this peer
    was already up to date and nobody needed its data)."""

    tx_bytes: int
    rx_bytes: int


# --------------------------------------------------------------------------------- descriptors

@dataclass
class ReduceOperandDescriptor:
    """``pcclReduceOperandDescriptor_t``: the data type of the operands and a hint about their
    distribution (used by quantization)."""

    datatype: DataType
    distribution_hint: DistributionHint = DistributionHint.NONE

    def __post_init__(self) -> None:
        self.datatype = _enum(DataType, self.datatype, "datatype")
        self.distribution_hint = _enum(DistributionHint, self.distribution_hint, "distribution_hint")


@dataclass
class QuantizationOptions:
    """``pcclQuantizationOptions_t``: send the all-reduce's data quantized to
    ``quantized_datatype`` (``UINT8`` or ``UINT16``) with ``algorithm``. Pass ``None`` instead
    (the default of every all-reduce) for no quantization; ``algorithm=QuantizationAlgorithm.NONE``
    means the same.

    Each pipeline segment travels as two float64 parameters plus one code per value (about a
    quarter of float32's bytes with ``UINT8``, half with ``UINT16``), rounded to nearest:

    - ``MIN_MAX``: the segment's finite minimum and maximum span the codes evenly
      (step = (max - min) / (L - 1)).
    - ``ZERO_POINT_SCALE``: a zero point in the middle of the codes and a scale from the
      largest finite magnitude (step = max|x| / ((L - 1) / 2)); 0 is exact.

    L is 2**bits - 3: the three top codes carry NaN, +inf and -inf exactly. Each hop adds an
    error of at most half a step of that segment's range, so the results are approximate, but
    byte-identical on every peer: the owner of each chunk replaces its own copy with
    dequantize(quantize(x)), the very value the others receive. Floating-point data only
    (FLOAT, DOUBLE, FLOAT16, BFLOAT16) with SUM, AVG, MAX or MIN; integers, PROD and other
    target types raise PCCLError ``INVALID_ARGUMENT``. Every peer must pass the same options
    (otherwise PCCLError ``MISMATCH``); ``ReduceInfo`` counts the quantized bytes."""

    quantized_datatype: DataType = DataType.UINT8
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX

    def __post_init__(self) -> None:
        self.quantized_datatype = _enum(DataType, self.quantized_datatype, "quantized_datatype")
        self.algorithm = _enum(QuantizationAlgorithm, self.algorithm, "algorithm")


_NO_QUANTIZATION = (int(DataType.UINT8), int(QuantizationAlgorithm.NONE))


def _quant_tuple(q: Optional[QuantizationOptions]) -> tuple:
    if q is None:
        return _NO_QUANTIZATION
    if not isinstance(q, QuantizationOptions):
        raise TypeError(f"quantization_options must be a QuantizationOptions or None, got {type(q).__name__}")
    return (int(q.quantized_datatype), int(q.algorithm))


@dataclass
class ReduceDescriptor:
    """``pcclReduceDescriptor_t``: one all-reduce: ``count`` elements, ``op``, the ``tag`` that
    identifies it (distinct among concurrent operations), the operand description and the
    quantization options (``None``: no quantization)."""

    count: int
    op: ReduceOp
    tag: int
    operand_descriptor: ReduceOperandDescriptor
    quantization_options: Optional[QuantizationOptions]

    def __post_init__(self) -> None:
        self.count = _uint(self.count, "count", minimum=1)
        self.op = _enum(ReduceOp, self.op, "op")
        self.tag = _uint(self.tag, "tag")
        if not isinstance(self.operand_descriptor, ReduceOperandDescriptor):
            raise TypeError("operand_descriptor must be a ReduceOperandDescriptor, got "
                            f"{type(self.operand_descriptor).__name__}")
        _quant_tuple(self.quantization_options)

    def _native(self, send_ptr: int, recv_ptr: int) -> tuple:
        od = self.operand_descriptor
        qd, qa = _quant_tuple(self.quantization_options)
        return (send_ptr, recv_ptr, self.count, int(od.datatype), int(self.op), self.tag,
                int(od.distribution_hint), qd, qa)


class ReduceOpDescriptor:
    """``pcclReduceOpDescriptor_t``: one all-reduce of a batch
    (``Communicator.all_reduce_multiple_with_retry``): two buffer addresses and a
    ReduceDescriptor. Prefer :meth:`from_torch` / :meth:`from_numpy`, which check the buffers
    against the descriptor and keep them alive as long as this object."""

    def __init__(self, sendbuf_ptr: int, recvbuf_ptr: int, reduce_descriptor: ReduceDescriptor) -> None:
        self.sendbuf_ptr = _uint(sendbuf_ptr, "sendbuf_ptr", minimum=1)
        self.recvbuf_ptr = _uint(recvbuf_ptr, "recvbuf_ptr", minimum=1)
        if not isinstance(reduce_descriptor, ReduceDescriptor):
            raise TypeError(f"reduce_descriptor must be a ReduceDescriptor, got {type(reduce_descriptor).__name__}")
        self.reduce_descriptor = reduce_descriptor
        self._owners: tuple = ()

    @classmethod
    def _from_buffers(cls, send: Buffer, recv: Buffer, desc: ReduceDescriptor) -> "ReduceOpDescriptor":
        if not isinstance(desc, ReduceDescriptor):
            raise TypeError(f"reduce_descriptor must be a ReduceDescriptor, got {type(desc).__name__}")
        check_pair(send, recv, expected_dtype=desc.operand_descriptor.datatype, expected_count=desc.count)
        self = cls(send.ptr, recv.ptr, desc)
        self._owners = (send.owner, recv.owner)
        return self

    @classmethod
    @_keyword_aliases(desc="reduce_descriptor")
    def from_torch(cls, send: Any, recv: Any, reduce_descriptor: ReduceDescriptor) -> "ReduceOpDescriptor":
        """From two torch tensors (contiguous, same dtype and size, matching
        ``reduce_descriptor``; ``desc=`` is accepted as an alias). Raises TypeError/ValueError
        for tensors that do not fit; never blocks."""
        return cls._from_buffers(describe_torch(send, "send"), describe_torch(recv, "recv", writeable=True),
                                 reduce_descriptor)

    @classmethod
    @_keyword_aliases(desc="reduce_descriptor")
    def from_numpy(cls, send: Any, recv: Any, reduce_descriptor: ReduceDescriptor) -> "ReduceOpDescriptor":
        """From two numpy arrays (C-contiguous, same dtype and size, matching
        ``reduce_descriptor``; ``desc=`` is accepted as an alias). Raises TypeError/ValueError
        for arrays that do not fit; never blocks."""
        return cls._from_buffers(describe_numpy(send, "send"), describe_numpy(recv, "recv", writeable=True),
                                 reduce_descriptor)

    def _native(self) -> tuple:
        return self.reduce_descriptor._native(self.sendbuf_ptr, self.recvbuf_ptr)

    def __repr__(self) -> str:
        return (f"ReduceOpDescriptor(sendbuf_ptr={self.sendbuf_ptr:#x}, recvbuf_ptr={self.recvbuf_ptr:#x}, "
                f"reduce_descriptor={self.reduce_descriptor!r})")


# --------------------------------------------------------------------------------- shared state

class TensorInfo:
    """``pcclTensorInfo_t``: one named entry of the shared state.

    ``allow_content_inequality=True`` excludes the entry from the content vote (peers may hold
    different values), but a peer that has never synced still receives it."""

    def __init__(self, name: str, data_ptr: int, *, numel: int, dtype: DataType, device_type: DeviceType,
                 allow_content_inequality: bool = False) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name or "\0" in name:
            raise ValueError("name must be a non-empty string without NUL characters")
        if len(name.encode()) > 4096:
            raise ValueError("name is longer than 4096 bytes")
        self.name = name
        self.numel = _uint(numel, "numel")
        self.data_ptr = _uint(data_ptr, "data_ptr", minimum=0 if self.numel == 0 else 1)
        self.dtype = _enum(DataType, dtype, "dtype")
        self.device_type = _enum(DeviceType, device_type, "device_type")
        self.allow_content_inequality = bool(allow_content_inequality)
        self._owner: Any = None

    @classmethod
    def _from_buffer(cls, buf: Buffer, name: str, allow_content_inequality: bool) -> "TensorInfo":
        info = cls(name, buf.ptr, numel=buf.numel, dtype=buf.dtype, device_type=buf.device,
                   allow_content_inequality=allow_content_inequality)
        info._owner = buf.owner
        return info

    @classmethod
    def from_torch(cls, tensor: Any, name: str, *, allow_content_inequality: bool = False) -> "TensorInfo":
        """From a contiguous torch tensor (kept alive by this TensorInfo). The sync writes into
        it in place. Raises TypeError/ValueError for a tensor that does not fit."""
        return cls._from_buffer(describe_torch(tensor, f"shared state entry '{name}'", writeable=True), name,
                                allow_content_inequality)

    @classmethod
    @_keyword_aliases(array="tensor")
    def from_numpy(cls, tensor: Any, name: str, *, allow_content_inequality: bool = False) -> "TensorInfo":
        """From a C-contiguous, writeable numpy array (kept alive by this TensorInfo). The
        keyword is ``tensor`` as in PCCL 1.0; ``array=`` is accepted as an alias. Raises
        TypeError/ValueError for an array that does not fit."""
        return cls._from_buffer(describe_numpy(tensor, f"shared state entry '{name}'", writeable=True), name,
                                allow_content_inequality)

    def _native(self) -> tuple:
        _check_device(self.device_type, f"shared state entry '{self.name}'")
        return (self.name, self.data_ptr, self.numel, int(self.dtype), int(self.device_type),
                self.allow_content_inequality)

    def __repr__(self) -> str:
        return (f"TensorInfo({self.name!r}, {self.data_ptr:#x}, numel={self.numel}, dtype={self.dtype.name}, "
                f"device_type={self.device_type.name}, allow_content_inequality={self.allow_content_inequality})")


class SharedState:
    """``pcclSharedState_t``: the entries kept identical across the peer group, and a revision.

    ``Communicator.sync_shared_state`` writes the group's revision back into ``revision``.
    The first sync may start at any revision; afterwards each sync advances it by exactly one:
    call :meth:`push_revision` (or set ``revision``) before each sync of new content. A peer
    that is behind is brought up to date; a peer that jumps ahead is removed."""

    def __init__(self, tensor_infos: Iterable[TensorInfo]) -> None:
        infos: List[TensorInfo] = list(tensor_infos)
        names = set()
        for i, info in enumerate(infos):
            if not isinstance(info, TensorInfo):
                raise TypeError(f"tensor_infos[{i}] must be a TensorInfo, got {type(info).__name__}")
            if info.name in names:
                raise ValueError(f"shared state entry name '{info.name}' is used twice")
            names.add(info.name)
        self.tensor_infos: List[TensorInfo] = infos
        self._revision = 0

    @property
    def revision(self) -> int:
        """The revision of this state (read/write; an unsigned 64-bit integer)."""
        return self._revision

    @revision.setter
    def revision(self, value: int) -> None:
        self._revision = _uint(value, "revision")

    def push_revision(self) -> int:
        """Advance the revision by one (before syncing new content); returns the new revision."""
        self.revision = self._revision + 1
        return self._revision

    def __len__(self) -> int:
        return len(self.tensor_infos)

    def __repr__(self) -> str:
        return f"SharedState(revision={self._revision}, entries={[t.name for t in self.tensor_infos]})"


