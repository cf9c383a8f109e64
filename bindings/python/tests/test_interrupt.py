"""Ctrl-C and Communicator.abort(): a blocking call in the main thread raises KeyboardInterrupt
promptly on SIGINT (the communicator is aborted under it) and the process exits; abort() from
another thread ends a blocked call with PCCLError ABORTED.

The SIGINT tests run a real peer process (blocked_peer.py) that blocks in one call while the
test's own peer never makes the matching call, send it SIGINT and measure, on the shared
monotonic clock, when KeyboardInterrupt was raised and when the process was gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

import pytest

import pccl

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "blocked_peer.py")

pytest.importorskip("numpy")

# Generous for a loaded CI machine; the measured times are printed (typically a few ms, see
# pytest -s).
INTERRUPT_BOUND_S = 1.0
EXIT_BOUND_S = 5.0


class Child:
    """blocked_peer.py, its stdout read line by line on a thread."""

    def __init__(self, master_port: int, mode: str, *extra: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("PCCL_LOG_LEVEL", "error")
        self.proc = subprocess.Popen([sys.executable, HELPER, "--master", f"127.0.0.1:{master_port}", "--mode", mode,
                                      *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: List[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no line {prefix!r} from the peer process; stdout: {self.lines}, "
                                         f"stderr: {self.stderr() if self.proc.poll() is not None else '(running)'}")
                self._cv.wait(min(left, 0.1))

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_pending(comm: pccl.Communicator, timeout: float = 30) -> None:
    """Vote (as the run's only peer: answered at once) until a peer waits for admission."""
    deadline = time.monotonic() + timeout
    while not comm.are_peers_pending():
        assert time.monotonic() < deadline, "the peer process never asked to be admitted"
        time.sleep(0.01)


def blocked_child(master: pccl.MasterNode, first: pccl.Communicator, mode: str, *extra: str) -> Child:
    """A peer process blocked in `mode`'s call; `first` is the run's first peer."""
    child = Child(master.port, mode, *extra)
    try:
        wait_pending(first)
        if mode == "connect":
            child.wait_for("BLOCKING connect")  # and registered: it waits inside pcclConnect
        else:
            first.update_topology()  # admits it; `first` then never makes the call it blocks in
            child.wait_for(f"BLOCKING {mode}")
            time.sleep(0.3)  # into the C call (a signal before it must work as well)
    except BaseException:
        child.kill()
        raise
    return child


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["connect", "all_reduce", "wait", "are_peers_pending", "sync_shared_state"])
def test_sigint_interrupts_a_blocked_call_and_the_process_exits(master, mode):
    first = pccl.Communicator(f"127.0.0.1:{master.port}")
    first.connect()
    child = blocked_child(master, first, mode)
    try:
        t0 = time.monotonic()
        child.proc.send_signal(signal.SIGINT)
        try:
            rc: Optional[int] = child.proc.wait(EXIT_BOUND_S + 10)
        except subprocess.TimeoutExpired:
            rc = None
        exited_s = time.monotonic() - t0
        assert rc is not None, f"{mode}: the process did not exit {EXIT_BOUND_S + 10} s after SIGINT"
        raised_at = float(child.wait_for("KEYBOARDINTERRUPT").split()[1])
        interrupt_s = raised_at - t0
        err = child.stderr()
        print(f"\n{mode}: KeyboardInterrupt {interrupt_s * 1e3:.1f} ms after SIGINT, process gone after "
              f"{exited_s * 1e3:.1f} ms")
        assert "Traceback" in err and "KeyboardInterrupt" in err, err
        assert rc in (-signal.SIGINT, 128 + signal.SIGINT, 1), (rc, err)  # Python exits by SIGINT
        assert "RETURNED" not in child.lines
        assert interrupt_s < INTERRUPT_BOUND_S, f"{mode}: KeyboardInterrupt only after {interrupt_s:.3f} s"
        assert exited_s < EXIT_BOUND_S, f"{mode}: the process exited only after {exited_s:.3f} s"
    finally:
        child.kill()
        first.close()


@pytest.mark.timeout(60)
def test_a_sigint_handler_that_does_not_raise_leaves_the_call_running(master):
    first = pccl.Communicator(f"127.0.0.1:{master.port}")
    first.connect()
    child = blocked_child(master, first, "connect", "--handler")
    try:
        child.proc.send_signal(signal.SIGINT)
        child.wait_for("HANDLED")
        first.update_topology()  # admit it: its connect() returns as if nothing happened
        child.wait_for("RETURNED")
        assert child.proc.wait(30) == 0
        assert not any(line.startswith("KEYBOARDINTERRUPT") for line in child.lines)
    finally:
        child.kill()
        first.close()


@pytest.mark.timeout(60)
def test_abort_from_another_thread_ends_a_blocked_all_reduce_with_aborted(master):
    np = pytest.importorskip("numpy")
    a = pccl.Communicator(f"127.0.0.1:{master.port}")
    b = pccl.Communicator(f"127.0.0.1:{master.port}")
    a.connect()
    joined = threading.Thread(target=b.connect)
    joined.start()
    wait_pending(a)
    a.update_topology()
    joined.join(30)
    try:
        buf = np.arange(1000, dtype=np.float32)
        timer = threading.Timer(0.3, a.abort)  # b never starts the all-reduce: a blocks
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(pccl.PCCLError) as e:
            a.all_reduce(buf, buf, op=pccl.ReduceOp.SUM)
        assert e.value.result == pccl.Result.ABORTED
        assert time.monotonic() - t0 < 0.3 + INTERRUPT_BOUND_S
        assert np.array_equal(buf, np.arange(1000, dtype=np.float32))  # in place: input restored
        with pytest.raises(pccl.PCCLError) as e:
            a.are_peers_pending()  # and every later call
        assert e.value.result == pccl.Result.ABORTED
        a.abort()  # idempotent
    finally:
        a.close()
        b.close()
    a.abort()  # closed: a no-op
