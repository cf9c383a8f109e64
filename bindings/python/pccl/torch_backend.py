"""A ``torch.distributed`` backend over pccl: ``import pccl.torch_backend`` registers ``"pccl"``.

::

    import torch.distributed as dist
    import pccl.torch_backend  # noqa: F401 (registers the backend and the pccl:// init method)

    dist.init_process_group(backend="pccl", init_method="pccl://127.0.0.1:48148", rank=R, world_size=N)

The process connects to the pccl master at the address, is admitted, votes the others in until
the run has ``world_size`` peers, and maps torch's rank ``R`` (its data shard) onto pccl's ring:
results are laid out by torch rank whatever the ring order. ``init_method="env://"`` works too
when ``PCCL_MASTER_ADDR`` names the master (``MASTER_ADDR``/``MASTER_PORT`` are not used: pccl
needs no store). CPU tensors only.

Operations: ``allreduce`` (SUM, AVG, MIN, MAX, PRODUCT), ``broadcast``, ``allgather``,
``all_gather_single`` / ``_allgather_base`` (``all_gather_into_tensor``), ``reduce_scatter``,
``reduce_scatter_single`` / ``_reduce_scatter_base`` (``reduce_scatter_tensor``), ``barrier``.
Every call returns at once with a :class:`torch.distributed.Work` whose ``wait()`` blocks and
whose ``get_future()`` completes by itself (DDP comm hooks chain on it). Other operations
(point-to-point, scatter, gather, reduce, all-to-all, coalesced forms) raise
``NotImplementedError`` naming the operation.

Faults: a peer lost during a collective fails it on every survivor with
:class:`torch.distributed.DistBackendError` carrying pccl's message (all-or-nothing: no survivor
sees success for it; an in-place ``allreduce``/``broadcast``/``reduce_scatter`` input is restored).
The group is then broken: every later call fails at once. Recovery without restarting the
survivors (docs/torch_backend.md): ``dist.destroy_process_group()``, then
``dist.init_process_group(...)`` again with the new ``world_size`` and ranks ``0..N'-1`` (and any
joiner); state that the lost peer held must be re-broadcast by the application.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

import torch
import torch.distributed as dist
from torch.distributed.rendezvous import register_rendezvous_handler

from ._communicator import Communicator
from ._enums import Attribute, ReduceOp
from ._errors import PCCLError

__all__ = ["ProcessGroupPCCL", "BACKEND_NAME"]

BACKEND_NAME = "pccl"

_OPS = {
    dist.ReduceOp.SUM: ReduceOp.SUM,
    dist.ReduceOp.AVG: ReduceOp.AVG,
    dist.ReduceOp.MIN: ReduceOp.MIN,
    dist.ReduceOp.MAX: ReduceOp.MAX,
    dist.ReduceOp.PRODUCT: ReduceOp.PROD,
}

# The master address of the process group being created (set by the pccl:// rendezvous).
_pending_address: Optional[str] = None


def _pccl_op(opts: Any) -> ReduceOp:
    red = opts.reduceOp
    for k, v in _OPS.items():
        if red == k:
            return v
    raise NotImplementedError(f"the pccl backend does not support reduce op {red}")


class _Work(dist.Work):
    """A pccl operation in flight. ``wait()`` blocks until it ends (raising DistBackendError on a
    failure); the future completes with ``result`` (or the error) without anyone waiting."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self._result = result
        self._done = threading.Event()
        self._error: Optional[BaseException] = None
        self._future: torch.futures.Future = torch.futures.Future()

    def _finish(self, error: Optional[BaseException]) -> None:
        self._error = error
        self._done.set()
        if error is None:
            self._future.set_result(self._result)
        else:
            self._future.set_exception(error)

    def wait(self, timeout: timedelta = timedelta(0)) -> bool:
        if timeout and timeout.total_seconds() > 0:
            if not self._done.wait(timeout.total_seconds()):
                raise dist.DistBackendError(f"pccl operation did not finish within {timeout}")
        else:
            self._done.wait()
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:
        return self._done.is_set()

    def is_success(self) -> bool:
        return self._done.is_set() and self._error is None

    def exception(self) -> Optional[BaseException]:
        return self._error

    def get_future(self) -> torch.futures.Future:
        return self._future

    def result(self) -> Any:
        return self._result


def _unsupported(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"the pccl backend does not support {name} "
                                  "(supported: allreduce, broadcast, allgather, all_gather_single, reduce_scatter, "
                                  "reduce_scatter_single, their coalesced forms, barrier)")

    method.__name__ = name
    return method


class ProcessGroupPCCL(dist.ProcessGroup):
    """The process group of ``backend="pccl"``: one pccl communicator, its ring mapped onto torch
    ranks. Collectives start on the calling thread, in call order (every rank issues them in the
    same order, so their tags agree); one completion thread awaits them in that order, copies
    results into place and completes the Work objects."""

    def __init__(self, comm: Communicator, rank: int, world_size: int, ring_to_user: List[int],
                 timeout: timedelta) -> None:
        super().__init__(rank, world_size)
        self._comm = comm
        self._rank = rank
        self._world = world_size
        self._ring_to_user = ring_to_user
        self._user_to_ring = [0] * world_size
        for ring, user in enumerate(ring_to_user):
            self._user_to_ring[user] = ring
        self._identity = ring_to_user == list(range(world_size))
        self._timeout = timeout
        self._tag = 1  # tag 0 was the rank exchange
        self._broken: Optional[BaseException] = None
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue()
        self._thread = threading.Thread(target=self._complete, name="pccl-torch-completion", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ plumbing

    def getBackendName(self) -> str:
        return BACKEND_NAME

    def size(self) -> int:
        return self._world

    def rank(self) -> int:
        return self._rank

    # The group's name lives on the C++ backends of a ProcessGroup; this one has none, so it keeps
    # the name itself (DeviceMesh and FSDP2 look groups up by it).
    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    @property
    def group_name(self) -> str:
        name = getattr(self, "_group_name", None)
        if name is None:
            name = dist.distributed_c10d._world.pg_names.get(self, "")
        return name

    @property
    def communicator(self) -> Communicator:
        """The pccl communicator under this group (for pccl-only calls: shared-state sync)."""
        return self._comm

    def _next_tag(self) -> int:
        tag = self._tag
        self._tag += 1
        return tag

    def _error(self, e: BaseException) -> BaseException:
        if isinstance(e, PCCLError):
            err: BaseException = dist.DistBackendError(f"pccl: {e}")
            err.__cause__ = e
            return err
        return e

    def _submit(self, result: Any, start: Callable[[], List[Any]], finish: Callable[[], None] = lambda: None) -> _Work:
        """Starts an operation (start() returns the pccl handles, or a callable run on the
        completion thread for a blocking call) and queues its completion."""
        work = _Work(result)
        if self._broken is not None:
            work._finish(dist.DistBackendError(f"pccl: the process group is broken by an earlier failure ({self._broken}); "
                                               "re-create it (docs/torch_backend.md)"))
            return work
        try:
            handles = start()
        except PCCLError as e:
            self._broken = e
            work._finish(self._error(e))
            return work
        self._queue.put((work, handles, finish))
        return work

    def _complete(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            work, handles, finish = item
            error: Optional[BaseException] = None
            for h in handles:
                try:
                    if callable(h):
                        h()
                        continue
                    ok, _status, _info = h.wait()
                    if not ok and error is None:
                        error = h.error
                except BaseException as e:  # noqa: BLE001 (handed to the waiter)
                    error = error or e
            if error is None:
                try:
                    finish()
                except BaseException as e:  # noqa: BLE001
                    error = e
            if error is not None and isinstance(error, PCCLError):
                self._broken = self._broken or error
            work._finish(None if error is None else self._error(error))

    def shutdown(self) -> None:
        """Stops the completion thread and closes the communicator (destroy_process_group)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=60)
        self._comm.close()

    # ------------------------------------------------------------------ collectives

    def allreduce(self, tensors: Sequence[torch.Tensor], opts: Any = None) -> _Work:
        op = _pccl_op(opts if opts is not None else dist.AllreduceOptions())
        tensors = list(tensors)
        bufs = [t if t.is_contiguous() else t.contiguous() for t in tensors]

        def start() -> List[Any]:
            return [self._comm.all_reduce_async(b, b, op=op, tag=self._next_tag(), world_size=self._world)
                    for b in bufs if b.numel()]

        def finish() -> None:
            for t, b in zip(tensors, bufs):
                if b is not t:
                    t.copy_(b)

        return self._submit(tensors, start, finish)

    def broadcast(self, tensors: Sequence[torch.Tensor], opts: Any = None) -> _Work:
        opts = opts if opts is not None else dist.BroadcastOptions()
        root = self._user_to_ring[opts.rootRank]
        tensors = list(tensors)
        bufs = [t if t.is_contiguous() else t.contiguous() for t in tensors]

        def start() -> List[Any]:
            return [self._comm.broadcast_async(b, root=root, tag=self._next_tag(), world_size=self._world)
                    for b in bufs if b.numel()]

        def finish() -> None:
            for t, b in zip(tensors, bufs):
                if b is not t:
                    t.copy_(b)

        return self._submit(tensors, start, finish)

    # A plan is (start, finish): start() starts pccl operations on the calling thread and returns
    # their handles; finish() runs on the completion thread once they all succeeded.
    _Plan = Tuple[Callable[[], List[Any]], Callable[[], None]]

    def _submit_plans(self, result: Any, plans: List["ProcessGroupPCCL._Plan"]) -> _Work:
        def start() -> List[Any]:
            return [h for st, _ in plans for h in st()]

        def finish() -> None:
            for _, fin in plans:
                fin()

        return self._submit(result, start, finish)

    def _gather_plan(self, out_blocks: List[torch.Tensor], inp: torch.Tensor) -> "ProcessGroupPCCL._Plan":
        """All-gather into blocks given by torch rank: gathered in ring order into one buffer,
        then copied out."""
        counts_ring = [out_blocks[self._ring_to_user[r]].numel() for r in range(self._world)]
        if inp.numel() != counts_ring[self._user_to_ring[self._rank]]:
            raise ValueError(f"allgather: the input has {inp.numel()} elements but this rank's output block has "
                             f"{counts_ring[self._user_to_ring[self._rank]]}")
        even = len(set(counts_ring)) == 1
        src = inp if inp.is_contiguous() else inp.contiguous()
        staging = torch.empty(sum(counts_ring), dtype=inp.dtype)

        def start() -> List[Any]:
            return [self._comm.all_gather_async(src, staging, tag=self._next_tag(),
                                                counts=None if even else counts_ring)]

        def finish() -> None:
            off = 0
            for r in range(self._world):
                n = counts_ring[r]
                out_blocks[self._ring_to_user[r]].view(-1).copy_(staging[off:off + n])
                off += n

        return start, finish

    def _gather_single_plan(self, output: torch.Tensor, input: torch.Tensor) -> "ProcessGroupPCCL._Plan":
        if output.numel() != input.numel() * self._world:
            raise ValueError(f"all_gather_single: output has {output.numel()} elements, not {self._world} x "
                             f"{input.numel()}")
        if not output.is_contiguous():
            raise ValueError("all_gather_single: the output tensor must be contiguous")
        if self._identity:
            # Torch's order is the ring's: gather straight into the output.
            src = input if input.is_contiguous() else input.contiguous()
            return (lambda: [self._comm.all_gather_async(src, output.view(-1), tag=self._next_tag())]), (lambda: None)
        return self._gather_plan(list(output.view(-1).chunk(self._world)), input)

    def allgather(self, output_tensors: List[List[torch.Tensor]], input_tensors: List[torch.Tensor],
                  opts: Any = None) -> _Work:
        if len(input_tensors) != len(output_tensors):
            raise ValueError("allgather: one output list per input tensor")
        for outs in output_tensors:
            if len(outs) != self._world:
                raise ValueError(f"allgather: {len(outs)} output tensors for a group of {self._world}")
        plans = [self._gather_plan(outs, inp) for outs, inp in zip(output_tensors, input_tensors)]
        return self._submit_plans(output_tensors, plans)

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> _Work:
        return self._submit_plans(output, [self._gather_single_plan(output, input)])

    _allgather_base = all_gather_single

    def all_gather_single_coalesced(self, outputs: List[torch.Tensor], inputs: List[torch.Tensor],
                                    opts: Any = None) -> _Work:
        plans = [self._gather_single_plan(o, i) for o, i in zip(outputs, inputs, strict=True)]
        return self._submit_plans(outputs, plans)

    allgather_into_tensor_coalesced = all_gather_single_coalesced

    def _scatter_plan(self, out: torch.Tensor, in_blocks: List[torch.Tensor], op: ReduceOp) -> "ProcessGroupPCCL._Plan":
        counts_ring = [in_blocks[self._ring_to_user[r]].numel() for r in range(self._world)]
        if out.numel() != counts_ring[self._user_to_ring[self._rank]]:
            raise ValueError(f"reduce_scatter: the output has {out.numel()} elements but this rank's input block has "
                             f"{counts_ring[self._user_to_ring[self._rank]]}")
        even = len(set(counts_ring)) == 1
        staging = torch.cat([in_blocks[self._ring_to_user[r]].reshape(-1) for r in range(self._world)])
        dst = out if out.is_contiguous() else torch.empty(out.numel(), dtype=out.dtype)

        def start() -> List[Any]:
            return [self._comm.reduce_scatter_async(staging, dst, op=op, tag=self._next_tag(),
                                                    counts=None if even else counts_ring)]

        def finish() -> None:
            if dst is not out:
                out.copy_(dst.view_as(out))

        return start, finish

    def _scatter_single_plan(self, output: torch.Tensor, input: torch.Tensor, op: ReduceOp) -> "ProcessGroupPCCL._Plan":
        if input.numel() != output.numel() * self._world:
            raise ValueError(f"reduce_scatter_single: input has {input.numel()} elements, not {self._world} x "
                             f"{output.numel()}")
        if self._identity and input.is_contiguous() and output.is_contiguous():
            return (lambda: [self._comm.reduce_scatter_async(input.view(-1), output.view(-1), op=op,
                                                             tag=self._next_tag())]), (lambda: None)
        return self._scatter_plan(output, list(input.reshape(-1).chunk(self._world)), op)

    def reduce_scatter(self, output_tensors: List[torch.Tensor], input_tensors: List[List[torch.Tensor]],
                       opts: Any = None) -> _Work:
        op = _pccl_op(opts if opts is not None else dist.ReduceScatterOptions())
        if len(output_tensors) != len(input_tensors):
            raise ValueError("reduce_scatter: one input list per output tensor")
        for ins in input_tensors:
            if len(ins) != self._world:
                raise ValueError(f"reduce_scatter: {len(ins)} input tensors for a group of {self._world}")
        plans = [self._scatter_plan(o, ins, op) for o, ins in zip(output_tensors, input_tensors)]
        return self._submit_plans(output_tensors, plans)

    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> _Work:
        op = _pccl_op(opts if opts is not None else dist.ReduceScatterOptions())
        return self._submit_plans(output, [self._scatter_single_plan(output, input, op)])

    _reduce_scatter_base = reduce_scatter_single

    def reduce_scatter_single_coalesced(self, outputs: List[torch.Tensor], inputs: List[torch.Tensor],
                                        opts: Any = None) -> _Work:
        op = _pccl_op(opts if opts is not None else dist.ReduceScatterOptions())
        plans = [self._scatter_single_plan(o, i, op) for o, i in zip(outputs, inputs, strict=True)]
        return self._submit_plans(outputs, plans)

    reduce_scatter_tensor_coalesced = reduce_scatter_single_coalesced

    def allreduce_coalesced(self, tensors: List[torch.Tensor], opts: Any = None) -> _Work:
        return self.allreduce(tensors, opts)

    def barrier(self, opts: Any = None) -> _Work:
        tag = [0]

        def start() -> List[Any]:
            tag[0] = self._next_tag()
            return [lambda: self._comm.barrier(tag=tag[0])]

        return self._submit(None, start)

    for _name in ("send", "recv", "recv_anysource", "scatter", "gather", "reduce", "alltoall", "alltoall_base",
                  "all_to_all_single", "allgather_coalesced", "monitored_barrier"):
        locals()[_name] = _unsupported(_name)
    del _name


# ---------------------------------------------------------------------- creation


def _admit_until(comm: Communicator, world: int, deadline: float) -> None:
    """Votes newcomers in until the group has ``world`` peers (every peer runs this loop)."""
    while True:
        n = comm.get_attribute(Attribute.PEER_GROUP_WORLD_SIZE)
        if n == world:
            return
        if n > world:
            raise dist.DistBackendError(f"pccl: the run has {n} peers but world_size is {world}")
        if time.monotonic() > deadline:
            raise dist.DistBackendError(f"pccl: the run did not reach {world} peers in time (it has {n})")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.02)


def _ring_order(comm: Communicator, rank: int, world: int) -> List[int]:
    """torch rank of every ring rank: each peer all-gathers its torch rank (tag 0)."""
    mine = torch.tensor([rank], dtype=torch.int64)
    ranks = torch.empty(world, dtype=torch.int64)
    comm.all_gather(mine, ranks, tag=0)
    order = [int(r) for r in ranks]
    if sorted(order) != list(range(world)):
        raise dist.DistBackendError(f"pccl: the peers' torch ranks {order} are not 0..{world - 1} once each")
    return order


def _create(store: Any, rank: int, world_size: int, timeout: timedelta) -> ProcessGroupPCCL:
    global _pending_address
    address = _pending_address or os.environ.get("PCCL_MASTER_ADDR")
    _pending_address = None
    if not address:
        raise ValueError("the pccl backend needs the master's address: init_method='pccl://HOST:PORT' "
                         "(or PCCL_MASTER_ADDR with another init method)")
    if world_size < 2:
        raise ValueError(f"the pccl backend needs world_size >= 2 (got {world_size}): pccl reduces over two or more peers")
    deadline = time.monotonic() + (timeout.total_seconds() if timeout else 1800.0)
    comm = Communicator(address)
    try:
        comm.connect()
        _admit_until(comm, world_size, deadline)
        order = _ring_order(comm, rank, world_size)
    except BaseException:
        comm.close()
        raise
    return ProcessGroupPCCL(comm, rank, world_size, order, timeout)


def _rendezvous(url: str, **kwargs: Any):
    """``pccl://HOST:PORT?rank=R&world_size=N``: no store is needed (pccl's master admits and
    orders the peers); a process-local HashStore satisfies torch."""
    global _pending_address
    parsed = urlparse(url)
    if not parsed.netloc:
        raise ValueError(f"pccl:// init method without an address: {url!r} (use pccl://HOST:PORT)")
    query = dict(q.split("=", 1) for q in parsed.query.split("&") if "=" in q)
    rank, world = int(query.get("rank", -1)), int(query.get("world_size", -1))
    if rank < 0 or world < 1:
        raise ValueError("pccl:// rendezvous needs rank= and world_size= (pass them to init_process_group)")
    _pending_address = parsed.netloc
    yield dist.HashStore(), rank, world
    raise RuntimeError("pccl:// rendezvous cannot re-rendezvous; call init_process_group again")


dist.Backend.register_backend(BACKEND_NAME, _create, devices=["cpu"])
register_rendezvous_handler("pccl", _rendezvous)
