"""Turning torch tensors and numpy arrays into (address, element count, DataType, device).

Neither torch nor numpy is imported here: an object is recognised as a tensor only if torch is
already loaded (a program that holds a torch.Tensor has imported torch), likewise for numpy.
Wrong arguments raise TypeError (wrong kind of object, unsupported or mismatched dtype) or
ValueError (non-contiguous, empty, mismatched size or device, read-only output, CUDA memory in a
build without CUDA support), never an assertion.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from . import _pccl
from ._enums import _BY_NUMPY_DTYPE, _BY_TORCH_DTYPE, ITEMSIZES, DataType, DeviceType

__all__ = ["Buffer", "describe", "describe_torch", "describe_numpy", "check_pair", "reduce_operands"]


@dataclass(frozen=True)
class Buffer:
    """The memory of one tensor or array. ``owner`` keeps the object alive."""

    ptr: int
    numel: int
    dtype: DataType
    device: DeviceType
    kind: str  # "torch" or "numpy"
    owner: Any

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def _is_torch_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _is_numpy_array(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _check_device(device: DeviceType, what: str) -> None:
    if device == DeviceType.CUDA and not _pccl.has_cuda_support():
        raise ValueError(f"{what} is a CUDA tensor, but this pccl build has no CUDA support "
                         "(pccl.cuda.is_available() is False); move it to the CPU first")


def describe_torch(tensor: Any, what: str = "tensor", *, writeable: bool = False) -> Buffer:
    """Describe a torch tensor (must be strided, contiguous, of a supported dtype)."""
    if not _is_torch_tensor(tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
    import torch  # already loaded

    if tensor.layout != torch.strided:
        raise TypeError(f"{what} has layout {tensor.layout}; only dense (strided) tensors are supported")
    dtype = DataType.from_torch_dtype(tensor.dtype)
    if tensor.is_cpu:  # cheaper than tensor.device, which builds a torch.device
        device = DeviceType.CPU
    elif tensor.is_cuda:
        device = DeviceType.CUDA
    else:
        raise ValueError(f"{what} is on device '{tensor.device}'; pccl supports CPU (and CUDA) tensors only")
    _check_device(device, what)
    if tensor.is_neg() or tensor.is_conj():
        raise ValueError(f"{what} is a lazily negated/conjugated view; pass tensor.resolve_neg() / resolve_conj()")
    if not tensor.is_contiguous():
        raise ValueError(f"{what} is not contiguous (shape {tuple(tensor.shape)}, strides {tensor.stride()}); "
                         "pass tensor.contiguous() and copy the result back")
    return Buffer(int(tensor.data_ptr()), int(tensor.numel()), dtype, device, "torch", tensor)


def describe_numpy(array: Any, what: str = "array", *, writeable: bool = False) -> Buffer:
    """Describe a numpy array (must be C-contiguous, of a supported dtype, native byte order)."""
    if not _is_numpy_array(array):
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(array).__name__}")
    dtype = DataType.from_numpy_dtype(array.dtype)
    if not array.flags.c_contiguous:
        raise ValueError(f"{what} is not C-contiguous (shape {array.shape}, strides {array.strides}); "
                         "pass numpy.ascontiguousarray(array) and copy the result back")
    if writeable and not array.flags.writeable:
        raise ValueError(f"{what} is read-only; the result cannot be written into it")
    ptr = int(array.__array_interface__["data"][0])
    return Buffer(ptr, int(array.size), dtype, DeviceType.CPU, "numpy", array)


def describe(obj: Any, what: str = "buffer", *, writeable: bool = False) -> Buffer:
    """Describe a torch tensor or a numpy array."""
    if _is_torch_tensor(obj):
        return describe_torch(obj, what, writeable=writeable)
    if _is_numpy_array(obj):
        return describe_numpy(obj, what, writeable=writeable)
    raise TypeError(f"{what} must be a torch.Tensor or a numpy.ndarray, got {type(obj).__module__}."
                    f"{type(obj).__qualname__}")


def check_pair(send: Buffer, recv: Buffer, *, expected_dtype: Optional[DataType] = None,
               expected_count: Optional[int] = None) -> None:
    """The checks an all-reduce needs on its two buffers."""
    if send.kind != recv.kind:
        raise TypeError(f"send is a {send.kind} buffer but recv is a {recv.kind} buffer; pass two torch tensors "
                        "or two numpy arrays")
    if send.dtype != recv.dtype:
        raise TypeError(f"send and recv have different dtypes ({send.dtype.name} vs {recv.dtype.name})")
    if send.numel != recv.numel:
        raise ValueError(f"send and recv have different sizes ({send.numel} vs {recv.numel} elements)")
    if send.device != recv.device:
        raise ValueError(f"send and recv are on different devices ({send.device.name} vs {recv.device.name})")
    if send.numel == 0:
        raise ValueError("cannot all-reduce an empty buffer (0 elements)")
    if send.ptr != recv.ptr and send.ptr < recv.ptr + recv.nbytes and recv.ptr < send.ptr + send.nbytes:
        raise ValueError("send and recv overlap partially; pass the same buffer twice for an in-place all-reduce")
    if expected_dtype is not None and send.dtype != expected_dtype:
        raise TypeError(f"the descriptor says {DataType(expected_dtype).name} but the buffers are {send.dtype.name}")
    if expected_count is not None and send.numel != expected_count:
        raise ValueError(f"the descriptor says count={expected_count} but the buffers have {send.numel} elements")


def reduce_operands(send: Any, recv: Any, expected_dtype: Optional[DataType] = None) -> Tuple[int, int, int, DataType]:
    """(send address, recv address, element count, DataType) of an all-reduce's two buffers, after
    every check of describe() and check_pair().

    This runs on every all-reduce. The common case, two CPU torch tensors or two numpy arrays
    that pass every check, costs a few attribute reads and a dict lookup; anything else,
    including every failing check, goes through describe() and check_pair(), which raise the
    precise error.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(send, torch.Tensor):
        fast = _torch_pair(torch, send, recv)
    else:
        fast = _numpy_pair(send, recv)
    if fast is not None and (expected_dtype is None or fast[3] == expected_dtype):
        return fast
    s = describe(send, "send")
    r = describe(recv, "recv", writeable=True)
    check_pair(s, r, expected_dtype=expected_dtype)
    return s.ptr, r.ptr, s.numel, s.dtype


def _torch_pair(torch: Any, send: Any, recv: Any) -> Optional[Tuple[int, int, int, DataType]]:
    """The fast path for torch tensors: None unless every check passes. It makes a subset of
    describe_torch's tensor calls (none that can raise on a strided CPU tensor). is_conj() is
    skipped: torch sets the conjugate bit on complex tensors only, which the dtype lookup has
    already turned away."""
    strided = torch.strided
    if send.layout is not strided or not send.is_cpu:
        return None
    dtype = _BY_TORCH_DTYPE.get(send.dtype)
    if dtype is None or send.is_neg() or not send.is_contiguous():
        return None
    n = send.numel()
    if not n:
        return None
    sp = send.data_ptr()
    if recv is send:
        return sp, sp, n, dtype
    if (not isinstance(recv, torch.Tensor) or recv.layout is not strided or not recv.is_cpu
            or recv.dtype is not send.dtype or recv.is_neg() or not recv.is_contiguous() or recv.numel() != n):
        return None
    rp = recv.data_ptr()
    if sp != rp:
        nbytes = n * ITEMSIZES[dtype]
        if sp < rp + nbytes and rp < sp + nbytes:
            return None
    return sp, rp, n, dtype


def _numpy_pair(send: Any, recv: Any) -> Optional[Tuple[int, int, int, DataType]]:
    """The fast path for numpy arrays: None unless every check passes. The addresses come from
    the buffer protocol (_pccl.contiguous_address: C-contiguous, and writeable for recv), which
    is far cheaper than __array_interface__."""
    if not (_is_numpy_array(send) and _is_numpy_array(recv)):
        return None
    dtype = _BY_NUMPY_DTYPE.get(send.dtype)
    if dtype is None or _BY_NUMPY_DTYPE.get(recv.dtype) is not dtype:
        return None
    n = send.size
    if not n or recv.size != n:
        return None
    sp = _pccl.contiguous_address(send, False)
    rp = _pccl.contiguous_address(recv, True)
    if sp is None or rp is None:
        return None
    if sp != rp:
        nbytes = n * ITEMSIZES[dtype]
        if sp < rp + nbytes and rp < sp + nbytes:
            return None
    return sp, rp, n, dtype
