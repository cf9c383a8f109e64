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


REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def c_master_daemon() -> Optional[str]:
    """The C pccl-master (master/main.cpp): $PCCL_MASTER_BIN, else the newest one under the
    repository's build directories; None when there is none."""
    import glob

    explicit = os.environ.get("PCCL_MASTER_BIN")
    if explicit:
        return explicit
    patterns = ("build*/master/pccl-master", "bindings/python/build/*/pccl_build/master/pccl-master")
    candidates = [p for pattern in patterns for p in glob.glob(os.path.join(REPO, pattern)) if os.access(p, os.X_OK)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def restartable_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a master that is restarted
    on it: nothing bound to port 0 and no outgoing connection takes it while the master is
    down (a peer reconnecting to 127.0.0.1:P from the ephemeral port P would reach itself)."""
    import random
    import socket

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randint(10000, low - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in 10000..{low - 1}")


class DaemonMaster:
    """The C pccl-master daemon as a child process on 127.0.0.1:port, its stdout collected by a
    thread. kill() is SIGKILL; start() again restarts it on the same port."""

    def __init__(self, binary: str, port: int, *args: str) -> None:
        self.binary, self.port, self.args = binary, port, list(args)
        self.proc: Optional[subprocess.Popen] = None
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("PCCL_LOG_LEVEL", None)
        self.proc = subprocess.Popen([self.binary, "--listen", self.address, "--log-level", "warn", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        with self._cond:
            self.lines = []
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self.wait_for_line("pccl-master listening on ", 10):
            raise PeerFailure(f"{self.binary} did not start: {self.lines}")

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self._cond:
                if proc is self.proc:
                    self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, prefix: str, timeout: float) -> Optional[str]:
        """The first line of the current process that starts with prefix, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
