"""Loop: a training loop in the order pccl needs, so that peers may join and leave at any step."""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Iterator, Optional, Set

from ._buffers import reduce_operands
from ._communicator import AsyncReduceHandle, Communicator
from ._enums import Attribute, Result, SharedStateSyncStrategy
from ._errors import PCCLError
from ._types import QuantizationOptions, ReduceInfo, ReduceOperandDescriptor, SharedState, SharedStateSyncInfo, _enum

__all__ = ["Loop", "LoopReduceHandle"]

# How often a vote or a sync is tried again after a transient failure (a peer lost during it, the
# master's vote deadline, links of a topology update that could not be set up) before it raises.
_ATTEMPTS = 5
_VOTE_RETRY = (Result.RANK_CONNECTION_LOST, Result.TIMEOUT)
_UPDATE_RETRY = (Result.UPDATE_TOPOLOGY_FAILED, Result.RANK_CONNECTION_LOST, Result.TIMEOUT)


class Loop:
    """The steps of a training run over pccl, each in the one order that lets peers join and
    leave at any step without anyone waiting for a vote that cannot come::

        comm = pccl.Communicator("10.0.0.1:48148")
        comm.connect()                        # a joiner waits here until the others' vote admits it
        state = pccl.SharedState([pccl.TensorInfo.from_torch(w, "weights")])
        loop = pccl.Loop(comm, state, max_steps=1000)
        for step in loop:                     # 1. shared-state sync, revision = step
            grad = compute_gradient(w)        # 2. your work ...
            loop.all_reduce(grad, op=pccl.ReduceOp.AVG)   # ... and all-reduces, retried
            w -= lr * grad
                                              # 3. membership vote, admitting waiting peers

    Each step, in every peer:

    1. **Sync** (with a ``shared_state``): its ``revision`` is set to the step (the first sync
       keeps the revision the state has, 0 for a new one) and synchronised with the peer group.
       The group's revision comes back, so a peer that just joined receives the state and learns
       the step, and every peer stops at the same step. A sync that lost a peer is repeated.
       Without a shared state the step is this peer's own count, from 0.
    2. **The body** of the ``for`` loop, with the all-reduces made through :meth:`all_reduce` or
       :meth:`all_reduce_async`: a peer lost during one aborts it on every participant (an
       in-place input is restored) and it is run again on the remaining peers; a peer alone in
       its peer group (``TOO_FEW_PEERS``: a group of one does not reduce) keeps its own values.
    3. **The vote**, last: ``are_peers_pending()`` and, if peers wait, ``update_topology()``,
       which admits them: their :meth:`Communicator.connect` returns and their first step's sync
       brings them the state. Every async all-reduce of the step must have been waited for.

    The loop ends when the step reaches ``max_steps`` (None: never; leave it with ``break``),
    right after that step's sync: a peer admitted by the last vote receives the final state and
    ends too, and :attr:`sync_info` tells whether the last step left the peers in agreement.

    ``strategy`` is the sync strategy of every sync after this peer's first; ``first_strategy``
    that of its first (default: ``strategy``). DiLoCo with verified parity, for example, syncs
    with ``SEND_ONLY`` and lets a joiner catch up with ``first_strategy=RECEIVE_ONLY``, while
    the peers that start the run use ``first_strategy=ENFORCE_POPULAR`` to elect one state.
    ``log`` (e.g. ``print``) receives one line for each event the loop handles itself: a retry,
    an all-reduce alone, an admission.

    Failures the loop does not handle raise :class:`PCCLError` from the ``for`` statement (sync,
    vote) or from :meth:`all_reduce`. Use one Loop per communicator, from one thread."""

    def __init__(self, comm: Communicator, shared_state: Optional[SharedState] = None, *,
                 max_steps: Optional[int] = None,
                 strategy: SharedStateSyncStrategy = SharedStateSyncStrategy.ENFORCE_POPULAR,
                 first_strategy: Optional[SharedStateSyncStrategy] = None,
                 log: Optional[Callable[[str], None]] = None) -> None:
        if not isinstance(comm, Communicator):
            raise TypeError(f"comm must be a pccl.Communicator, got {type(comm).__name__}")
        if shared_state is not None and not isinstance(shared_state, SharedState):
            raise TypeError(f"shared_state must be a SharedState or None, got {type(shared_state).__name__}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0):
            raise ValueError(f"max_steps must be None or an int >= 0, got {max_steps!r}")
        self._comm = comm
        self._state = shared_state
        self._max_steps = max_steps
        self._strategy = _enum(SharedStateSyncStrategy, strategy, "strategy")
        self._first_strategy = (self._strategy if first_strategy is None
                                else _enum(SharedStateSyncStrategy, first_strategy, "first_strategy"))
        self._log = log
        self._started = False
        self._pending: Set["LoopReduceHandle"] = set()
        self._lock = threading.Lock()
        self.step: int = 0
        """The current step (in the body of the loop); after the loop, the step it ended at."""
        self.first_step: Optional[int] = None
        """The first step this peer took part in (> 0 for a peer that joined a running run)."""
        self.sync_info: Optional[SharedStateSyncInfo] = None
        """The current step's sync: bytes received and sent (None without a shared state)."""
        self.admitted: bool = False
        """True if the vote that ended the previous step admitted peers."""

    @property
    def comm(self) -> Communicator:
        return self._comm

    @property
    def world_size(self) -> int:
        """The number of peers in the run (``Attribute.GLOBAL_WORLD_SIZE``)."""
        return self._comm.get_attribute(Attribute.GLOBAL_WORLD_SIZE)

    def _say(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)

    # ----------------------------------------------------------------------------- the steps

    def __iter__(self) -> Iterator[int]:
        if self._started:
            raise RuntimeError("a Loop runs once; make a new one")
        self._started = True
        return self._steps()

    def _steps(self) -> Iterator[int]:
        first = True
        while True:
            if self._state is not None:
                self._sync(first)
            elif not first:
                self.step += 1
            if first:
                self.first_step = self.step
            first = False
            if self._max_steps is not None and self.step >= self._max_steps:
                return
            yield self.step
            self._vote()

    def _sync(self, first: bool) -> None:
        state = self._state
        assert state is not None
        strategy = self._first_strategy if first else self._strategy
        revision = state.revision if first else self.step + 1
        for attempt in range(1, _ATTEMPTS + 1):
            state.revision = revision
            try:
                self.sync_info = self._comm.sync_shared_state(state, strategy)
                break
            except PCCLError as e:
                if e.result != Result.RANK_CONNECTION_LOST or attempt == _ATTEMPTS:
                    raise
                self._say(f"shared-state sync lost a peer ({e.result_name}: {e.message}); syncing again")
        self.step = state.revision

    def _vote(self) -> None:
        with self._lock:
            unfinished = len(self._pending)
        if unfinished:
            raise RuntimeError(f"{unfinished} all_reduce_async operation(s) of step {self.step} were not waited for; "
                               "wait() for each before the step ends (the vote cannot admit peers while "
                               "all-reduces are in flight)")
        self.admitted = False
        pending = _retrying(lambda: self._comm.are_peers_pending(), _VOTE_RETRY, "are_peers_pending", self._say)
        if pending:
            _retrying(self._comm.update_topology, _UPDATE_RETRY, "update_topology", self._say)
            self.admitted = True
            self._say(f"admitted pending peers: world {self.world_size}")

    # ----------------------------------------------------------------------------- all-reduce

    def all_reduce(self, send: Any, recv: Any = None, *, op: Any, tag: int = 0,
                   operand_descriptor: Optional[ReduceOperandDescriptor] = None,
                   quantization_options: Optional[QuantizationOptions] = None) -> ReduceInfo:
        """:meth:`Communicator.all_reduce` (``recv`` None: in place) that runs again when a peer
        was lost during it (``RANK_CONNECTION_LOST``: the operation was aborted on every
        participant and an in-place input restored), until it succeeds or this peer is alone in
        its peer group; alone (``TOO_FEW_PEERS``) ``recv`` gets this peer's own values and the
        info says ``local_world_size`` 1. Other failures raise :class:`PCCLError`."""
        recv = send if recv is None else recv
        while True:
            try:
                return self._comm.all_reduce(send, recv, op=op, tag=tag, operand_descriptor=operand_descriptor,
                                             quantization_options=quantization_options)
            except PCCLError as e:
                if e.result == Result.TOO_FEW_PEERS:
                    return self._alone(send, recv)
                if e.result != Result.RANK_CONNECTION_LOST:
                    raise
                self._lost(e, tag)

    def all_reduce_async(self, send: Any, recv: Any = None, *, op: Any, tag: int = 0,
                         operand_descriptor: Optional[ReduceOperandDescriptor] = None,
                         quantization_options: Optional[QuantizationOptions] = None) -> "LoopReduceHandle":
        """:meth:`Communicator.all_reduce_async` (``recv`` None: in place); the handle's
        :meth:`LoopReduceHandle.wait` retries and handles a peer alone as :meth:`all_reduce`
        does. Wait for it before the step ends."""
        recv = send if recv is None else recv
        args = dict(op=op, tag=tag, operand_descriptor=operand_descriptor, quantization_options=quantization_options)
        try:
            inner: Optional[AsyncReduceHandle] = self._comm.all_reduce_async(send, recv, **args)
        except PCCLError as e:
            if e.result != Result.TOO_FEW_PEERS:
                raise
            inner = None
        handle = LoopReduceHandle(self, inner, send, recv, args)
        with self._lock:
            self._pending.add(handle)
        return handle

    def _lost(self, e: PCCLError, tag: int) -> None:
        self._say(f"all-reduce tag {tag} failed: {e.result_name} ({int(e.result)}): {e.message}; "
                  f"retrying with world {self.world_size}")

    def _alone(self, send: Any, recv: Any) -> ReduceInfo:
        """A group of one does not reduce: recv gets this peer's own values."""
        sp, rp, count, dtype = reduce_operands(send, recv)
        if sp != rp:
            ctypes.memmove(rp, sp, count * dtype.itemsize)
        self._say(f"alone in peer group {self._comm.peer_group}: keeping this peer's own values")
        return ReduceInfo(1, 0, 0)

    def _finished(self, handle: "LoopReduceHandle") -> None:
        with self._lock:
            self._pending.discard(handle)


class LoopReduceHandle:
    """An all-reduce started by :meth:`Loop.all_reduce_async`."""

    def __init__(self, loop: Loop, inner: Optional[AsyncReduceHandle], send: Any, recv: Any, args: dict) -> None:
        self._loop = loop
        self._inner = inner
        self._send = send
        self._recv = recv
        self._args = args
        self._info: Optional[ReduceInfo] = None

    def wait(self) -> ReduceInfo:
        """Block (without the GIL) until the all-reduce is done; after a lost peer it runs again
        on the remaining peers, alone ``recv`` gets this peer's own values. Raises
        :class:`PCCLError` for other failures. Waiting again returns the same info."""
        if self._info is not None:
            return self._info
        loop = self._loop
        try:
            if self._inner is None:
                self._info = loop._alone(self._send, self._recv)
                return self._info
            ok, _, info = self._inner.wait()
            if ok:
                self._info = info
                return info
            err = self._inner.error
            assert err is not None
            if err.result == Result.TOO_FEW_PEERS:
                self._info = loop._alone(self._send, self._recv)
            elif err.result == Result.RANK_CONNECTION_LOST:
                loop._lost(err, self._args["tag"])
                self._info = loop.all_reduce(self._send, self._recv, **self._args)
            else:
                raise err
            return self._info
        finally:
            loop._finished(self)

    def __repr__(self) -> str:
        return f"<LoopReduceHandle tag={self._args['tag']} {'done' if self._info is not None else 'pending'}>"


def _retrying(fn: Callable[[], Any], retry_on: tuple, what: str, say: Callable[[str], None]) -> Any:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return fn()
        except PCCLError as e:
            if e.result not in retry_on or attempt == _ATTEMPTS:
                raise
            say(f"{what}: {e.result_name} ({e.message}); trying again")
    raise AssertionError("unreachable")
