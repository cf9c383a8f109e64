"""Communicator: one peer of a pccl run."""

from __future__ import annotations

import ipaddress
import threading
import time
import weakref
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _pccl
from ._closeable import Closeable
from ._address import SocketAddress, parse_address
from ._buffers import reduce_operands
from . import _collectives
from ._enums import Attribute, ReduceOp, Result, SharedStateSyncStrategy
from ._errors import PCCLError
from ._types import (
    CommStats,
    QuantizationOptions,
    ReduceInfo,
    ReduceOpDescriptor,
    ReduceOperandDescriptor,
    SharedState,
    SharedStateSyncInfo,
    _NO_QUANTIZATION,
    _U64_MAX,
    _enum,
    _quant_tuple,
    _secret,
    _uint,
)

__all__ = ["Communicator", "AsyncReduceHandle", "MemberInfo"]


class MemberInfo(NamedTuple):
    """One member of a peer group (:meth:`Communicator.members`)."""

    uuid: str  # 32 hex digits
    address: str  # the data address the other peers reach it at, "ip:port"
    peer_group: int
    rank: int  # ring position, as Attribute.RANK

# Every open communicator, closed at interpreter exit (before the masters) so that peers leave
# the run gracefully.
_live_communicators: "weakref.WeakSet[Communicator]" = weakref.WeakSet()


class AsyncReduceHandle:
    """An all-reduce started by :meth:`Communicator.all_reduce_async`.

    The send and receive buffers are kept alive (by this handle and by the communicator) until
    :meth:`wait` returns; do not read or modify them before that."""

    def __init__(self, comm: "Communicator", tag: int, keepalive: tuple) -> None:
        self._comm = comm
        self._tag = tag
        self._keepalive: Optional[tuple] = keepalive
        self._lock = threading.Lock()
        self._outcome: Optional[Tuple[bool, Union[Result, int], ReduceInfo]] = None
        self._error: Optional[PCCLError] = None

    @property
    def tag(self) -> int:
        """The operation's tag."""
        return self._tag

    @property
    def error(self) -> Optional[PCCLError]:
        """After :meth:`wait`: the failure as a PCCLError (with the library's message), or None."""
        return self._error

    def wait(self) -> Tuple[bool, Union[Result, int], ReduceInfo]:
        """Block (without the GIL) until the all-reduce completes.

        Returns ``(is_success, status, info)``: ``status`` is the :class:`Result` code
        (``Result.SUCCESS`` on success, e.g. ``Result.RANK_CONNECTION_LOST`` after a peer was
        lost, in which case an in-place buffer holds its original input again and the operation
        can be retried). Does not raise for the operation's failure; :attr:`error` has the
        details. Waiting again returns the same outcome."""
        with self._lock:
            if self._outcome is None:
                native = self._comm._native
                figures: tuple = (0, 0, 0)
                if native is None:
                    r, msg = int(Result.INVALID_USAGE), "the communicator was closed"
                else:
                    try:
                        r, msg, *figures = native.await_async(self._tag)
                    except PCCLError as e:
                        r, msg = int(e.result), e.message
                try:
                    status: Union[Result, int] = Result(r)
                except ValueError:
                    status = r
                self._outcome = (r == 0, status, ReduceInfo(*figures))
                self._error = None if r == 0 else PCCLError(r, "pcclAwaitAsyncReduce", msg)
                self._comm._forget(self._tag, self)
                self._keepalive = None
            return self._outcome

    def __repr__(self) -> str:
        state = "pending" if self._outcome is None else ("ok" if self._outcome[0] else f"failed: {self._error}")
        return f"<AsyncReduceHandle tag={self._tag} {state}>"


class Communicator(Closeable):
    """One peer of a pccl run.

    ``address`` is the master's ``"ip:port"`` (IPv6: ``"[::1]:48148"``; a host name is resolved
    once, here). Peers with the same ``peer_group`` all-reduce and sync shared state together;
    ``p2p_connection_pool_size`` is the number of TCP connections to each ring neighbour
    (0: library default). Creating a communicator does no network traffic; :meth:`connect` joins
    the run. Close it with :meth:`close` or use it as a context manager.

    Deadlines (an extension; keyword-only, milliseconds, 0 = the ``PCCL_*`` environment variable
    or the library default): ``connect_timeout_ms`` (TCP connects), ``heartbeat_timeout_ms``
    (liveness, both ways; >= 100), ``op_timeout_ms`` (progress deadline of a running transfer;
    >= 100), ``admission_timeout_ms`` (the wait in :meth:`connect`), ``io_threads``,
    ``state_compression_level`` (zstd level 1..19 for shared state this peer serves; 0 = off),
    and ``same_host``: peers on one machine copy frames straight out of each other's memory
    instead of through loopback TCP where the handshake proves they can (``None``: the
    ``PCCL_SAME_HOST`` environment variable, else on; ``True``; ``False``: always TCP).

    Security (docs/security.md): ``secret`` is the run secret (``str``, UTF-8 encoded, or
    ``bytes``; at least 16 bytes, no NUL bytes; ``None``: ``PCCL_SECRET``, else the file named
    by ``PCCL_SECRET_FILE``, else an open run). With a secret every connection authenticates
    (:meth:`connect` raises :class:`PCCLError` ``AUTHENTICATION_FAILED`` when the master cannot
    prove the same secret) and ``encrypt`` picks the protection of the traffic (``None``: the
    ``PCCL_ENCRYPT`` environment variable, else on; ``True``: encrypted; ``False``:
    authenticated and integrity-protected, sent in the clear).

    NAT and firewalls (docs/security.md): ``advertised_address`` is where the other peers should
    connect to reach this peer's data plane when a router forwards a public port to it:
    ``"host:port"``, ``"host"`` (keeps the real data port) or ``":port"`` (keeps the address the
    master observes); IPv6 in brackets. ``port_range`` (``"lo-hi"`` or one port) is the port this
    peer listens on, the first free one of the range. ``None``: ``PCCL_ADVERTISED_ADDRESS`` and
    ``PCCL_PORT_RANGE``, else the observed address and any free port. A malformed value raises
    :class:`PCCLError` (INVALID_ARGUMENT) here; no free port in the range, at :meth:`connect`.

    A run outlives its master (docs/master_recovery.md): ``address`` may be a list of masters to
    try in turn (the first is tried first; ``PCCL_MASTER_ADDRESSES`` adds more), and a peer that
    loses its master keeps everything and reconnects for ``master_reconnect_timeout_ms``
    (``None``: ``PCCL_MASTER_RECONNECT_TIMEOUT_MS``, else 60000; ``0``: fail at once, as
    PCCL 1.0); calls made meanwhile wait, and ``MASTER_CONNECTION_LOST`` means it gave up.

    Every blocking call releases the GIL. Failures raise :class:`PCCLError`; wrong arguments
    raise TypeError or ValueError before anything is sent."""

    def __init__(self, address: Union[str, Sequence[str]], peer_group: int = 0, p2p_connection_pool_size: int = 0, *,
                 connect_timeout_ms: int = 0, heartbeat_timeout_ms: int = 0, op_timeout_ms: int = 0,
                 admission_timeout_ms: int = 0, io_threads: int = 0, state_compression_level: int = 0,
                 same_host: Optional[bool] = None, secret: Optional[Union[str, bytes]] = None,
                 encrypt: Optional[bool] = None, advertised_address: Optional[str] = None,
                 port_range: Optional[str] = None, master_reconnect_timeout_ms: Optional[int] = None) -> None:
        self._native: Optional[Any] = None
        if not isinstance(address, str):
            addresses = list(address)
            if not addresses or not all(isinstance(a, str) for a in addresses):
                raise TypeError("address must be a str or a non-empty sequence of str")
            for a in addresses[1:]:
                parse_address(a)  # a malformed one raises here, before anything is sent
            address, self._more_masters = addresses[0], ",".join(addresses[1:]) or None
        else:
            self._more_masters = None
        self._address: SocketAddress = parse_address(address)
        self._peer_group = _uint(peer_group, "peer_group", bits=32)
        self._pool_size = _uint(p2p_connection_pool_size, "p2p_connection_pool_size", bits=32)
        self._ex = [_uint(v, name, bits=32) for v, name in (
            (connect_timeout_ms, "connect_timeout_ms"), (heartbeat_timeout_ms, "heartbeat_timeout_ms"),
            (op_timeout_ms, "op_timeout_ms"), (admission_timeout_ms, "admission_timeout_ms"),
            (io_threads, "io_threads"), (state_compression_level, "state_compression_level"))]
        if same_host is not None and not isinstance(same_host, bool):
            raise TypeError(f"same_host must be None, True or False, got {type(same_host).__name__}")
        # pcclCommCreateParamsEx_t.same_host: PCCL_SAME_HOST_DEFAULT, _ON, _OFF
        self._ex.append(0 if same_host is None else (1 if same_host else 2))
        if encrypt is not None and not isinstance(encrypt, bool):
            raise TypeError(f"encrypt must be None, True or False, got {type(encrypt).__name__}")
        # pcclCommCreateParamsEx_t.encrypt: PCCL_ENCRYPT_DEFAULT, _ON, _OFF
        self._ex.append(0 if encrypt is None else (1 if encrypt else 2))
        # pcclCommCreateParamsEx_t.master_reconnect_timeout_ms: None = the environment or 60000;
        # 0 = PCCL_MASTER_RECONNECT_OFF (fail at once, as PCCL 1.0)
        if master_reconnect_timeout_ms is None:
            self._ex.append(0)
        elif _uint(master_reconnect_timeout_ms, "master_reconnect_timeout_ms", bits=32) == 0:
            self._ex.append(0xFFFFFFFF)
        else:
            self._ex.append(min(int(master_reconnect_timeout_ms), 0xFFFFFFFE))
        self._secret = _secret(secret, "secret")
        for v, name in ((advertised_address, "advertised_address"), (port_range, "port_range")):
            if v is not None and not isinstance(v, str):
                raise TypeError(f"{name} must be None or a str, got {type(v).__name__}")
        self._advertised_address = advertised_address
        self._port_range = port_range
        self._in_flight: Dict[int, AsyncReduceHandle] = {}
        self._lock = threading.Lock()
        self._native = self._new_native()
        _live_communicators.add(self)

    def _new_native(self) -> Any:
        a = self._address
        return _pccl.Communicator(a.protocol, a.ip, a.port, self._peer_group, self._pool_size, self._ex, self._secret,
                                  self._advertised_address, self._port_range, self._more_masters)

    def _require(self) -> Any:
        native = self._native
        if native is None:
            raise PCCLError(Result.INVALID_USAGE, message="the communicator is closed")
        return native

    def _forget(self, tag: int, handle: AsyncReduceHandle) -> None:
        with self._lock:
            if self._in_flight.get(tag) is handle:
                del self._in_flight[tag]

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def master_address(self) -> str:
        """The master's address, as resolved."""
        return str(self._address)

    @property
    def peer_group(self) -> int:
        return self._peer_group

    @property
    def closed(self) -> bool:
        return self._native is None

    def connect(self, n_attempts: int = 5) -> None:
        """Connect to the master and join the run; blocks until admitted.

        The first peer of a run is admitted at once; a later peer waits until the accepted peers
        call :meth:`update_topology`: ``if comm.are_peers_pending(): comm.update_topology()``
        at the end of each step of their loop, after the shared-state sync and the all-reduces
        (:class:`pccl.Loop` runs a step in that order). The wait has no limit by default
        (``admission_timeout_ms``); Ctrl-C ends it (KeyboardInterrupt, the communicator
        aborted, see :meth:`abort`). When the master cannot be reached
        (``Result.MASTER_CONNECTION_FAILED``) the attempt is repeated up to ``n_attempts``
        times in all, with a short sleep in between; other failures raise at once."""
        if isinstance(n_attempts, bool) or not isinstance(n_attempts, int):
            raise TypeError(f"n_attempts must be an int, got {type(n_attempts).__name__}")
        if n_attempts < 1:
            raise ValueError(f"n_attempts must be at least 1, got {n_attempts}")
        for attempt in range(1, n_attempts + 1):
            native = self._require()
            try:
                native.connect()
                return
            except PCCLError as e:
                if e.result != Result.MASTER_CONNECTION_FAILED:
                    raise
                if attempt == n_attempts:
                    suffix = f" (gave up after {n_attempts} attempt{'s' if n_attempts > 1 else ''})"
                    raise PCCLError(e.result, e.func_name, e.message + suffix) from None
            # A failed connect may leave the C communicator unusable: start the next attempt
            # with a fresh one.
            native.close()
            self._native = self._new_native()
            time.sleep(min(0.5 * attempt, 2.0))

    def abort(self) -> None:
        """Abort the communicator (``pcclAbortCommunicator``; an extension): every call blocked on
        it, in any thread, raises PCCLError ``ABORTED`` promptly (an in-place all-reduce input is
        restored), and so does every later call; then only :meth:`close` is left. Callable from
        any thread, also while other threads are inside calls, and more than once; never blocks.
        A closed communicator ignores it.

        Ctrl-C does this by itself: a blocking call in the main thread (:meth:`connect`, the
        votes, :meth:`all_reduce`, :meth:`sync_shared_state`, :meth:`AsyncReduceHandle.wait`)
        that a signal handler interrupts with an exception (KeyboardInterrupt) aborts the
        communicator, waits for the call to return and re-raises."""
        native = self._native
        if native is not None:
            native.abort()

    def close(self) -> None:
        """Leave the run gracefully and free the communicator. Idempotent.

        Operations still in flight are aborted. Raises PCCLError (``INVALID_USAGE``) if another
        thread is inside a call on this communicator."""
        native = self._native
        if native is None:
            return
        native.close()  # raises while another thread is inside a call
        self._native = None
        with self._lock:
            self._in_flight.clear()
        _live_communicators.discard(self)

    def __repr__(self) -> str:
        state = "closed" if self._native is None else "open"
        return f"<pccl.Communicator master={self._address} peer_group={self._peer_group} {state}>"

    @property
    def last_error_message(self) -> str:
        """The library's reason for the last failed call on this communicator ("" if none)."""
        native = self._native
        return native.last_error_message() if native is not None else ""

    # ----------------------------------------------------------------------------- membership

    def update_topology(self) -> None:
        """Collective vote over all accepted peers: admit pending peers and rewire the ring.
        In a training loop it comes last in a step, after the shared-state sync and the
        all-reduces, when :meth:`are_peers_pending` said so (:class:`pccl.Loop` does this).
        Raises PCCLError (e.g. ``PENDING_ASYNC_OPS`` while all-reduces are in flight,
        ``UPDATE_TOPOLOGY_FAILED``)."""
        self._require().update_topology()

    def are_peers_pending(self) -> bool:
        """Collective vote over all accepted peers: are peers waiting to be admitted? Every
        peer gets the same answer. May be called while all-reduces are in flight."""
        return bool(self._require().are_peers_pending())

    def optimize_topology(self) -> None:
        """Collective vote over all accepted peers: optimise the ring order (see pccl.h for
        what this version does)."""
        self._require().optimize_topology()

    def get_attribute(self, attribute: Attribute) -> int:
        """Read a world-size :class:`Attribute` from this peer's latest view of the run."""
        attribute = _enum(Attribute, attribute, "attribute")
        return int(self._require().get_attribute(int(attribute)))

    def members(self) -> "list[MemberInfo]":
        """The members of this peer's group in rank order, this peer included (an extension):
        ``MemberInfo(uuid, address, peer_group, rank)`` with ``uuid`` as 32 hex digits and
        ``address`` the data address the other peers reach it at (``"ip:port"``, IPv6 in
        brackets). Non-blocking; raises :class:`PCCLError` when not connected."""
        out = []
        for uuid, family, ip, port, group, rank in self._require().members():
            host = ipaddress.ip_address(bytes(ip))
            address = f"[{host}]:{port}" if family == 6 else f"{host}:{port}"
            out.append(MemberInfo(bytes(uuid).hex(), address, int(group), int(rank)))
        return out

    def stats(self) -> CommStats:
        """This communicator's statistics (``pcclGetCommunicatorStats``, an extension): all-reduces,
        shared-state syncs and votes completed and failed, data-plane bytes sent and received,
        the latest all-reduce's duration and size, the world size, rank and epoch. Non-blocking;
        works before :meth:`connect` (zeros, ``rank`` None) and after a failure (the counters
        are kept). The library reports the same counters to the master (every 2 s at most)."""
        v = [int(x) for x in self._require().stats()]
        rank = v[10]
        v[10] = None if rank == 0xFFFFFFFF else rank
        return CommStats(*v)

    @property
    def rank(self) -> int:
        """This peer's rank in its peer group: its position in the group's ring, 0 ..
        ``LOCAL_WORLD_SIZE - 1``, stable until the ring changes (a join, a loss, an optimize)."""
        return self.get_attribute(Attribute.RANK)

    # ----------------------------------------------------------------------------- all-reduce

    def _reduce_args(self, send: Any, recv: Any, op: Any, tag: Any,
                     operand_descriptor: Optional[ReduceOperandDescriptor],
                     quantization_options: Optional[QuantizationOptions]) -> tuple:
        """The extension's all_reduce arguments: (send address, recv address, count, dtype, op,
        tag, distribution hint, quantized dtype, quantization algorithm). Raises TypeError or
        ValueError for wrong arguments. Runs on every all-reduce: the common case (a ReduceOp,
        an int tag, no descriptors) takes no detours."""
        if type(op) is not ReduceOp:
            op = _enum(ReduceOp, op, "op")
        if type(tag) is not int or tag < 0 or tag > _U64_MAX:
            tag = _uint(tag, "tag")
        if operand_descriptor is None and quantization_options is None:
            sp, rp, count, dtype = reduce_operands(send, recv)
            return sp, rp, count, dtype, op, tag, 0, _NO_QUANTIZATION[0], _NO_QUANTIZATION[1]
        expected = None
        hint = 0
        if operand_descriptor is not None:
            if not isinstance(operand_descriptor, ReduceOperandDescriptor):
                raise TypeError("operand_descriptor must be a ReduceOperandDescriptor or None, got "
                                f"{type(operand_descriptor).__name__}")
            expected = operand_descriptor.datatype
            hint = int(operand_descriptor.distribution_hint)
        sp, rp, count, dtype = reduce_operands(send, recv, expected)
        qd, qa = _quant_tuple(quantization_options)
        return sp, rp, count, dtype, op, tag, hint, qd, qa

    def all_reduce(self, send: Any, recv: Any, *, op: Any, tag: int = 0,
                   operand_descriptor: Optional[ReduceOperandDescriptor] = None,
                   quantization_options: Optional[QuantizationOptions] = None) -> ReduceInfo:
        """All-reduce ``send`` into ``recv`` over the peer group; blocks (without the GIL).

        ``send`` and ``recv`` are two torch tensors or two numpy arrays: contiguous, same dtype,
        same number of elements; ``recv`` may be ``send`` (in place). ``op`` is a
        :class:`ReduceOp`; ``tag`` identifies the operation (distinct among concurrent ones);
        ``operand_descriptor`` defaults to the buffers' dtype (if given it must match);
        ``quantization_options`` None means no quantization.

        Raises PCCLError; ``Result.RANK_CONNECTION_LOST`` means a peer was lost and the
        operation was aborted everywhere: an in-place buffer holds its input again, and calling
        again reduces over the remaining peers."""
        args = self._reduce_args(send, recv, op, tag, operand_descriptor, quantization_options)
        native = self._native
        if native is None:
            native = self._require()  # raises
        # send and recv stay referenced by this frame until the call returns.
        return ReduceInfo(*native.all_reduce(*args))

    def all_reduce_async(self, send: Any, recv: Any, *, op: Any, tag: int = 0,
                         operand_descriptor: Optional[ReduceOperandDescriptor] = None,
                         quantization_options: Optional[QuantizationOptions] = None,
                         world_size: int = 0) -> AsyncReduceHandle:
        """Start an all-reduce (arguments as :meth:`all_reduce`) and return at once. Concurrent
        operations need distinct tags. Leave both buffers alone until the handle's
        :meth:`AsyncReduceHandle.wait` returns; they are kept alive until then. ``world_size``
        (0: any) is the group size the caller counts on: a group of another size, now or when
        the operation starts, fails it with ``RANK_CONNECTION_LOST`` and nothing is reduced."""
        args = self._reduce_args(send, recv, op, tag, operand_descriptor, quantization_options)
        native = self._require()
        tag = args[5]
        handle = AsyncReduceHandle(self, tag, (send, recv))
        native.all_reduce_async(*args, _uint(world_size, "world_size", bits=32) if world_size else 0)
        with self._lock:
            self._in_flight[tag] = handle
        return handle

    def all_reduce_multiple_with_retry(self, descriptors: Sequence[ReduceOpDescriptor], *,
                                       max_in_flight: int = 4) -> ReduceInfo:
        """Run several all-reduces, at most ``max_in_flight`` (at least 1) at once, retrying
        those aborted by a lost peer until all succeed; blocks (without the GIL). Tags must be
        distinct. Raises PCCLError (``INVALID_ARGUMENT`` for ``max_in_flight`` of 0 or less,
        ``TOO_FEW_PEERS`` when fewer than two peers remain). The returned info has the summed
        bytes, the final world size, and the wall time of the whole call (retries included) with
        the throughput over it."""
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, got {type(max_in_flight).__name__}")
        descriptors = list(descriptors)
        tags = set()
        native_ops: List[tuple] = []
        for i, d in enumerate(descriptors):
            if not isinstance(d, ReduceOpDescriptor):
                raise TypeError(f"descriptors[{i}] must be a ReduceOpDescriptor, got {type(d).__name__}")
            tag = d.reduce_descriptor.tag
            if tag in tags:
                raise ValueError(f"descriptors[{i}]: tag {tag} is used twice; tags must be distinct")
            tags.add(tag)
            native_ops.append(d._native())
        max_in_flight = max(-(1 << 31), min(max_in_flight, (1 << 31) - 1))
        figures = self._require().all_reduce_multiple_with_retry(native_ops, max_in_flight)
        del descriptors  # (kept alive, with their buffers, until here)
        return ReduceInfo(*figures)

    # ----------------------------------------------------------------------------- other collectives

    def _start(self, args: tuple, keepalive: tuple, func: Optional[str] = None) -> AsyncReduceHandle:
        """Starts a collective; a refusal raises PCCLError naming ``func`` (the blocking call's
        name) or, for the async forms, the native ``...Async`` call."""
        native = self._require()
        tag = args[9]
        handle = AsyncReduceHandle(self, tag, keepalive)
        try:
            native.start_collective(*args)
        except PCCLError as e:
            if func is None:
                raise
            raise PCCLError(e.result, func, e.message) from None
        with self._lock:
            self._in_flight[tag] = handle
        return handle

    def _finish(self, handle: AsyncReduceHandle, func: str) -> ReduceInfo:
        ok, status, info = handle.wait()
        if not ok:
            err = handle.error
            raise PCCLError(status, func, err.message if err is not None else "")
        return info

    def all_gather_async(self, send: Any, recv: Any, *, tag: int = 0,
                         counts: Optional[Sequence[int]] = None) -> AsyncReduceHandle:
        """Start an all-gather (arguments as :meth:`all_gather`) and return at once; leave both
        buffers alone until the handle's :meth:`AsyncReduceHandle.wait` returns."""
        args = _collectives.gather_args(send, recv, tag, counts)
        return self._start(args, (send, recv))

    def all_gather(self, send: Any, recv: Any, *, tag: int = 0,
                   counts: Optional[Sequence[int]] = None) -> ReduceInfo:
        """All-gather over the peer group; blocks (without the GIL).

        ``recv`` receives every rank's ``send`` in ring rank order (:attr:`rank`): rank r's block
        at offset ``r * send.numel``, so ``recv`` has world size x ``send`` elements. Uneven
        blocks: ``counts`` lists every rank's element count (``recv`` holds their sum, ``send``
        this rank's count). ``send`` may be this rank's block inside ``recv`` (in place).
        Raises PCCLError as :meth:`all_reduce` does (``RANK_CONNECTION_LOST`` also when ``recv``
        is laid out for another group size than the group's current one)."""
        args = _collectives.gather_args(send, recv, tag, counts)
        return self._finish(self._start(args, (send, recv), "pcclAllGather"), "pcclAllGather")

    def reduce_scatter_async(self, send: Any, recv: Any, *, op: Any, tag: int = 0,
                             counts: Optional[Sequence[int]] = None,
                             quantization_options: Optional[QuantizationOptions] = None) -> AsyncReduceHandle:
        """Start a reduce-scatter (arguments as :meth:`reduce_scatter`) and return at once."""
        args = _collectives.scatter_args(send, recv, op, tag, counts, quantization_options)
        return self._start(args, (send, recv))

    def reduce_scatter(self, send: Any, recv: Any, *, op: Any, tag: int = 0,
                       counts: Optional[Sequence[int]] = None,
                       quantization_options: Optional[QuantizationOptions] = None) -> ReduceInfo:
        """Reduce-scatter over the peer group; blocks (without the GIL).

        ``send`` holds every rank's block in ring rank order (the layout of :meth:`all_gather`'s
        ``recv``); ``recv`` (one block, or ``counts[rank]`` elements) receives the reduction with
        ``op`` of this rank's block over all peers. ``recv`` may be this rank's block inside
        ``send`` (in place: restored if the operation fails). Raises as :meth:`all_gather`."""
        args = _collectives.scatter_args(send, recv, op, tag, counts, quantization_options)
        return self._finish(self._start(args, (send, recv), "pcclReduceScatter"), "pcclReduceScatter")

    def broadcast_async(self, tensor: Any, *, root: int, tag: int = 0,
                        world_size: Optional[int] = None) -> AsyncReduceHandle:
        """Start a broadcast (arguments as :meth:`broadcast`) and return at once."""
        args = _collectives.broadcast_args(self, tensor, root, tag, world_size)
        return self._start(args, (tensor,))

    def broadcast(self, tensor: Any, *, root: int, tag: int = 0, world_size: Optional[int] = None) -> ReduceInfo:
        """Broadcast ``tensor`` from ring rank ``root`` into ``tensor`` on every peer, in place;
        blocks (without the GIL). A receiving peer whose call fails holds its own data again.
        ``world_size`` (default: the group's size now) is the group size ``root`` refers to; a
        group of another size fails the call with ``RANK_CONNECTION_LOST``."""
        args = _collectives.broadcast_args(self, tensor, root, tag, world_size)
        return self._finish(self._start(args, (tensor,), "pcclBroadcast"), "pcclBroadcast")

    def barrier(self, *, tag: int = 0) -> None:
        """Block (without the GIL) until every peer of the group called barrier with this tag.
        Raises PCCLError (``RANK_CONNECTION_LOST`` when a peer was lost while the others waited)."""
        self._require().barrier(_collectives._tag(tag))

    # ----------------------------------------------------------------------------- shared state

    def sync_shared_state(self, shared_state: SharedState,
                          strategy: SharedStateSyncStrategy = SharedStateSyncStrategy.ENFORCE_POPULAR
                          ) -> SharedStateSyncInfo:
        """Synchronise the shared state over the peer group; blocks (without the GIL).

        The popular content (by hash) wins and every outdated peer receives it in place, bit for
        bit. The group's revision is written back into ``shared_state.revision``. Returns the
        bytes this peer sent and received (both 0 when nothing had to move)."""
        if not isinstance(shared_state, SharedState):
            raise TypeError(f"shared_state must be a SharedState, got {type(shared_state).__name__}")
        strategy = _enum(SharedStateSyncStrategy, strategy, "strategy")
        entries = [info._native() for info in shared_state.tensor_infos]
        revision, tx, rx = self._require().sync_shared_state(shared_state.revision, entries, int(strategy))
        shared_state.revision = revision
        return SharedStateSyncInfo(tx, rx)


def _close_all_communicators() -> None:
    for comm in list(_live_communicators):
        try:
            comm.close()
        except Exception:
            pass
