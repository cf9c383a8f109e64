"""pccl: fault-tolerant collective communication for training across data centres.

The Python API of PCCL 1.0 (same names, signatures and enum values) over this library's C API,
plus what PCCL 1.0 lacks: ``close()`` and context managers, INT16, IPv6 addresses, clear
TypeError/ValueError for wrong tensor arguments, the library's own error messages on
:class:`PCCLError`, and the bound port of a :class:`MasterNode` started on port 0.

torch and numpy are both optional and imported lazily: all-reduce and shared state accept
torch CPU tensors and numpy arrays. Blocking calls release the GIL.

Minimal use::

    import pccl, torch
    comm = pccl.Communicator("127.0.0.1:48148")
    comm.connect()
    x = torch.ones(1024)
    comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)

A training loop: :class:`Loop` runs each step as sync the shared state first, then the caller's
work and all-reduces (retried after a lost peer), then the membership vote, so that peers can
join and leave at any step::

    loop = pccl.Loop(comm, pccl.SharedState([pccl.TensorInfo.from_torch(w, "weights")]), max_steps=100)
    for step in loop:
        grad = compute_gradient(w)
        loop.all_reduce(grad, op=pccl.ReduceOp.AVG)
        w -= 0.1 * grad

Ctrl-C interrupts any blocking call of the main thread (KeyboardInterrupt; the communicator is
aborted, see :meth:`Communicator.abort`).
"""

from __future__ import annotations

import atexit as _atexit

from . import _pccl
from ._enums import (
    Attribute,
    DataType,
    DeviceType,
    DistributionHint,
    QuantizationAlgorithm,
    ReduceOp,
    Result,
    SharedStateSyncStrategy,
)
from ._errors import PCCLError
from ._types import (
    CommStats,
    QuantizationOptions,
    ReduceDescriptor,
    ReduceInfo,
    ReduceOpDescriptor,
    ReduceOperandDescriptor,
    SharedState,
    SharedStateSyncInfo,
    TensorInfo,
)
from ._communicator import AsyncReduceHandle, Communicator, MemberInfo, _close_all_communicators
from ._loop import Loop, LoopReduceHandle
from ._master import MasterNode, _close_all_masters
from ._address import DEFAULT_MASTER_PORT
from . import cuda

_pccl._set_error_type(PCCLError)


def _version_string(v: int) -> str:
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


__version__: str = _version_string(_pccl.version())
"""The library version (``pcclGetVersion``), e.g. ``"0.1.0"``."""


def get_error_string(result: int) -> str:
    """The library's static description of a result code (``pcclGetErrorString``)."""
    return _pccl.error_string(int(result))


@_atexit.register
def _close_everything() -> None:
    # Communicators first (they leave the run gracefully), then the masters they talk to.
    _close_all_communicators()
    _close_all_masters()


__all__ = [
    "Communicator",
    "MemberInfo",
    "MasterNode",
    "ReduceOp",
    "Attribute",
    "SharedStateSyncStrategy",
    "DataType",
    "DeviceType",
    "DistributionHint",
    "QuantizationAlgorithm",
    "ReduceOperandDescriptor",
    "QuantizationOptions",
    "ReduceDescriptor",
    "ReduceOpDescriptor",
    "TensorInfo",
    "SharedState",
    "SharedStateSyncInfo",
    "ReduceInfo",
    "CommStats",
    "AsyncReduceHandle",
    "Loop",
    "LoopReduceHandle",
    "PCCLError",
    "Result",
    "cuda",
    "get_error_string",
    "DEFAULT_MASTER_PORT",
    "__version__",
]
