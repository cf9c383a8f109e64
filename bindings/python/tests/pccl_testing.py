"""Helpers for the pccl Python tests: an embedded master, N connected peers (threads of this
process: every blocking call releases the GIL, so threads are real peers), and running one
function per peer with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Sequence

import pccl

HERE = os.path.dirname(os.path.abspath(__file__))


class PeerFailure(AssertionError):
    pass


def run_threads(fns: Sequence[Callable[[], Any]], timeout: float, on_timeout: Optional[Callable[[], None]] = None,
                names: Optional[Sequence[str]] = None) -> List[Any]:
    """Run every fn in its own thread; return their results in order. Re-raises the first
    exception. Past the deadline, on_timeout() is called (e.g. to close the master, which
    releases threads blocked in the library), the threads get 10 more seconds, and the test
    fails."""
    results: List[Any] = [None] * len(fns)
    errors: List[Optional[BaseException]] = [None] * len(fns)

    def wrap(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors[i] = e

    threads = [threading.Thread(target=wrap, args=(i, fn), daemon=True,
                                name=(names[i] if names else f"peer-{i}")) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        if on_timeout is not None:
            on_timeout()
        for t in threads:
            t.join(10)
        raise PeerFailure(f"threads {hung} did not finish within {timeout} s")
    for e in errors:
        if e is not None:
            raise e
    return results


def admit_until(comm: pccl.Communicator, world: int, timeout: float = 30.0) -> None:
    """The PCCL 1.0 admission loop, run by every accepted peer until the run has `world` peers.
    All peers see the same vote results and world sizes, so they leave the loop together."""
    deadline = time.monotonic() + timeout
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < world:
        if time.monotonic() > deadline:
            raise PeerFailure(f"the run did not reach {world} peers within {timeout} s")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.01)


class Cluster:
    """An embedded master and N peers, all connected (connect + admission) on construction."""

    def __init__(self, n: int, groups: Optional[Sequence[int]] = None, timeout: float = 30.0,
                 master: Optional[pccl.MasterNode] = None, pool_size: int = 0, host: str = "127.0.0.1",
                 peer_kwargs: Optional[Sequence[dict]] = None) -> None:
        self.own_master = master is None
        self.master = master or pccl.MasterNode(f"{host}:0")
        if self.own_master:
            self.master.run()
        self.address = f"{host}:{self.master.port}"
        groups = list(groups) if groups is not None else [0] * n
        kwargs = list(peer_kwargs) if peer_kwargs is not None else [{}] * n  # extensions, per peer
        self.comms = [pccl.Communicator(self.address, peer_group=g, p2p_connection_pool_size=pool_size, **kw)
                      for g, kw in zip(groups, kwargs)]
        try:
            self.comms[0].connect()

            def join(i: int) -> None:
                if i > 0:
                    self.comms[i].connect()
                admit_until(self.comms[i], n, timeout)

            run_threads([lambda i=i: join(i) for i in range(n)], timeout + 10, on_timeout=self.master.close)
        except BaseException:
            self.close()
            raise

    def run(self, fn: Callable[[int, pccl.Communicator], Any], timeout: float = 30.0) -> List[Any]:
        """fn(rank, comm) on every peer concurrently."""
        return run_threads([lambda i=i, c=c: fn(i, c) for i, c in enumerate(self.comms)], timeout,
                           on_timeout=self.master.close)

    def close(self) -> None:
        def close_comm(c: pccl.Communicator) -> None:
            try:
                c.close()
            except pccl.PCCLError:
                pass

        # Leaving is a round trip to the master each: do it in parallel.
        threads = [threading.Thread(target=close_comm, args=(c,), daemon=True) for c in self.comms]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        if self.own_master:
            self.master.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def python_subprocess(code_or_args: Sequence[str], *, env: Optional[dict] = None, **kw: Any) -> subprocess.Popen:
    """Start `python <args>` with this interpreter, unbuffered."""
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    if env:
        e.update(env)
    return subprocess.Popen([sys.executable, *code_or_args], env=e, **kw)
