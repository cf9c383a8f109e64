"""Broadcast, all-gather, reduce-scatter and barrier on a :class:`Communicator`.

The buffers are torch tensors or numpy arrays (contiguous, CPU), as for ``all_reduce``. Ranks are
ring ranks (``Communicator.rank``); the layouts are those of docs/collectives.md: all-gather puts
rank r's block at offset ``r * count`` (or the sum of the counts before it, with uneven
``counts``); reduce-scatter's input has the same layout and rank r receives block r.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from ._buffers import Buffer, describe
from ._enums import Attribute, DataType, ReduceOp
from ._errors import PCCLError
from ._types import QuantizationOptions, _U64_MAX, _enum, _quant_tuple, _uint

__all__ = ["gather_args", "scatter_args", "broadcast_args", "KIND_ALL_GATHER", "KIND_REDUCE_SCATTER",
           "KIND_BROADCAST", "FUNC_NAMES"]

KIND_ALL_GATHER, KIND_REDUCE_SCATTER, KIND_BROADCAST = 1, 2, 3
FUNC_NAMES = {KIND_ALL_GATHER: "pcclAllGather", KIND_REDUCE_SCATTER: "pcclReduceScatter",
              KIND_BROADCAST: "pcclBroadcast"}


def _tag(tag: Any) -> int:
    if type(tag) is not int or tag < 0 or tag > _U64_MAX:
        tag = _uint(tag, "tag")
    return tag


def _pair(whole: Any, part: Any, whole_name: str, part_name: str) -> Tuple[Buffer, Buffer]:
    w = describe(whole, whole_name, writeable=whole_name == "recv")
    p = describe(part, part_name, writeable=part_name == "recv")
    if w.kind != p.kind:
        raise TypeError(f"{whole_name} is a {w.kind} buffer but {part_name} is a {p.kind} buffer; pass two torch "
                        "tensors or two numpy arrays")
    if w.dtype != p.dtype:
        raise TypeError(f"{whole_name} and {part_name} have different dtypes ({w.dtype.name} vs {p.dtype.name})")
    if w.device != p.device:
        raise ValueError(f"{whole_name} and {part_name} are on different devices")
    return w, p


def _layout(whole: Buffer, part: Buffer, counts: Optional[Sequence[int]], whole_name: str,
            part_name: str) -> Tuple[int, List[int], int]:
    """(count, counts, world_size) of a block collective from its two buffers."""
    if counts is None:
        if part.numel == 0:
            raise ValueError(f"{part_name} is empty: give every rank a block of at least one element "
                             "(or pass counts= for uneven blocks)")
        if whole.numel % part.numel:
            raise ValueError(f"{whole_name} has {whole.numel} elements, not a multiple of {part_name}'s "
                             f"{part.numel} (the world size times one block); pass counts= for uneven blocks")
        return part.numel, [], whole.numel // part.numel
    counts = [_uint(c, "counts[i]") for c in counts]
    if not counts:
        raise ValueError("counts is empty: give one count per rank")
    if sum(counts) != whole.numel:
        raise ValueError(f"counts sum to {sum(counts)} but {whole_name} has {whole.numel} elements")
    if part.numel not in counts:
        raise ValueError(f"{part_name} has {part.numel} elements, which is no rank's count in {counts}")
    return 0, counts, len(counts)


def gather_args(send: Any, recv: Any, tag: Any, counts: Optional[Sequence[int]]) -> tuple:
    """The native start_collective arguments of an all-gather of ``send`` into ``recv``."""
    r, s = _pair(recv, send, "recv", "send")
    count, cs, world = _layout(r, s, counts, "recv", "send")
    return KIND_ALL_GATHER, s.ptr, r.ptr, count, cs, world, int(r.dtype), 0, 0, _tag(tag), 0, 0


def scatter_args(send: Any, recv: Any, op: Any, tag: Any, counts: Optional[Sequence[int]],
                 quantization_options: Optional[QuantizationOptions]) -> tuple:
    """The native start_collective arguments of a reduce-scatter of ``send`` into ``recv``."""
    if type(op) is not ReduceOp:
        op = _enum(ReduceOp, op, "op")
    s, r = _pair(send, recv, "send", "recv")
    count, cs, world = _layout(s, r, counts, "send", "recv")
    qd, qa = _quant_tuple(quantization_options)
    return KIND_REDUCE_SCATTER, s.ptr, r.ptr, count, cs, world, int(s.dtype), int(op), 0, _tag(tag), qd, qa


def broadcast_args(comm: Any, buffer: Any, root: Any, tag: Any, world_size: Optional[int]) -> tuple:
    """The native start_collective arguments of an in-place broadcast of ``buffer`` from ``root``."""
    b = describe(buffer, "tensor", writeable=True)
    if b.numel == 0:
        raise ValueError("cannot broadcast an empty buffer (0 elements)")
    root = _uint(root, "root", bits=32)
    if world_size is None:
        world_size = comm.get_attribute(Attribute.PEER_GROUP_WORLD_SIZE)
    world_size = _uint(world_size, "world_size", bits=32)
    return KIND_BROADCAST, b.ptr, b.ptr, b.numel, [], world_size, int(b.dtype), 0, root, _tag(tag), 0, 0
