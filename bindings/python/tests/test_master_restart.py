"""A run outlives its master (docs/master_recovery.md), from Python: the master address may be
a list, ``master_reconnect_timeout_ms`` bounds the wait for a lost master (0: fail at once, as
PCCL 1.0; None: PCCL_MASTER_RECONNECT_TIMEOUT_MS, else 60 s), and peer processes training with
the C pccl-master daemon go on when it is SIGKILLed and restarted on the same port.

The daemon is found like in test_master_program.py ($PCCL_MASTER_BIN or the build directories);
without one the tests that need it are skipped.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pccl
from pccl_testing import (HERE, DaemonMaster, PeerFailure, admit_until, c_master_daemon, python_subprocess,
                          restartable_port, run_threads)

C_DAEMON = c_master_daemon()
needs_daemon = pytest.mark.skipif(C_DAEMON is None, reason="no C pccl-master built (set PCCL_MASTER_BIN)")


def test_a_list_of_masters_and_the_reconnect_timeout_are_checked_before_anything_is_sent():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        first = f"127.0.0.1:{listener.getsockname()[1]}"
        with pccl.Communicator([first, "127.0.0.1:7001", "[::1]:7002"], master_reconnect_timeout_ms=1500) as c:
            assert c.master_address == first
        with pccl.Communicator((first,), master_reconnect_timeout_ms=None) as c:
            assert c.master_address == first
        for bad in ([first, "127.0.0.1:"], [first, "127.0.0.1:x"], [first, "127.0.0.1:70000"], [first, "[::1"],
                    [first, "127.0.0.1:0"], [first, "no.such.host.invalid:5"], ["127.0.0.1:x", first]):
            with pytest.raises(ValueError):
                pccl.Communicator(bad)
        for bad in ([], [first, 7001], [first, b"127.0.0.1:7001"], [first, None]):
            with pytest.raises(TypeError):
                pccl.Communicator(bad)
        for bad, exc in ((-1, ValueError), (1 << 32, ValueError), ("1000", TypeError), (1.5, TypeError)):
            with pytest.raises(exc, match="master_reconnect_timeout_ms"):
                pccl.Communicator(first, master_reconnect_timeout_ms=bad)
        # None of these reached the first master.
        assert select.select([listener], [], [], 0.2)[0] == []


def _pair_on(master: DaemonMaster, **kwargs) -> list:
    comms = [pccl.Communicator(master.address, heartbeat_timeout_ms=1000, **kwargs) for _ in range(2)]
    comms[0].connect()

    def join(i: int) -> None:
        if i:
            comms[i].connect()
        admit_until(comms[i], 2, 20)

    run_threads([lambda i=i: join(i) for i in range(2)], 30, on_timeout=master.kill)
    return comms


def _all_reduce_after_a_kill(master: DaemonMaster, comms: list) -> list:
    """SIGKILL the master, then all-reduce on both peers: [(result, seconds after the kill)]."""
    x = [np.ones(16, dtype=np.float32) for _ in comms]
    master.kill()
    killed = time.monotonic()

    def reduce(i: int):
        try:
            comms[i].all_reduce(x[i], x[i], op=pccl.ReduceOp.SUM)
            return pccl.Result.SUCCESS, time.monotonic() - killed, ""
        except pccl.PCCLError as e:
            return e.result, time.monotonic() - killed, e.message

    return run_threads([lambda i=i: reduce(i) for i in range(len(comms))], 30)


@needs_daemon
@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout_ms, env, low, high", [
    (0, None, 0.0, 1.0),       # PCCL 1.0: a lost master fails every call at once
    (1500, None, 1.2, 5.0),    # gives up after the timeout, not before
    (None, "1000", 0.8, 4.0),  # None: PCCL_MASTER_RECONNECT_TIMEOUT_MS
], ids=["zero-fails-at-once", "explicit", "none-reads-the-environment"])
def test_a_lost_master_is_given_up_after_the_reconnect_timeout(monkeypatch, timeout_ms, env, low, high):
    if env is not None:
        monkeypatch.setenv("PCCL_MASTER_RECONNECT_TIMEOUT_MS", env)
    else:
        monkeypatch.delenv("PCCL_MASTER_RECONNECT_TIMEOUT_MS", raising=False)
    master = DaemonMaster(C_DAEMON, restartable_port())
    comms = []
    try:
        comms = _pair_on(master, master_reconnect_timeout_ms=timeout_ms)
        for result, waited, message in _all_reduce_after_a_kill(master, comms):
            assert result == pccl.Result.MASTER_CONNECTION_LOST, (result, message)
            assert low <= waited < high, f"gave up {waited:.2f} s after the master died ({message})"
            if timeout_ms != 0:
                assert "gave up on the master" in message, message
    finally:
        for c in comms:
            c.close()
        master.close()


@needs_daemon
@pytest.mark.timeout(60)
def test_with_the_default_timeout_a_call_waits_for_the_restarted_master(monkeypatch):
    monkeypatch.delenv("PCCL_MASTER_RECONNECT_TIMEOUT_MS", raising=False)
    master = DaemonMaster(C_DAEMON, restartable_port())
    comms = []
    try:
        comms = _pair_on(master)  # master_reconnect_timeout_ms=None, no environment: 60 s
        restart = threading.Timer(1.5, master.start)
        restart.start()
        try:
            for result, waited, message in _all_reduce_after_a_kill(master, comms):
                assert result == pccl.Result.SUCCESS, (result, message)
                assert 1.4 <= waited < 10, f"the all-reduce returned {waited:.2f} s after the kill"
        finally:
            restart.join()
        assert master.wait_for_line("pccl-master: run rebuilt from 2 peer(s)", 5), master.lines
    finally:
        for c in comms:
            c.close()
        master.close()


STEPS = 40
VALUES = (1.0, 2.0, 4.0)


def _read_lines(proc: subprocess.Popen, out: list, cond: threading.Condition) -> None:
    for line in proc.stdout:
        with cond:
            out.append(line.rstrip("\n"))
            cond.notify_all()


@needs_daemon
@pytest.mark.timeout(60)
def test_peer_processes_train_through_a_master_killed_and_restarted_on_the_same_port(monkeypatch):
    monkeypatch.delenv("PCCL_MASTER_RECONNECT_TIMEOUT_MS", raising=False)  # the peers' default: 60 s
    master = DaemonMaster(C_DAEMON, restartable_port())
    procs, outs, cond = [], [[] for _ in VALUES], threading.Condition()
    try:
        for i, v in enumerate(VALUES):
            procs.append(python_subprocess([os.path.join(HERE, "training_peer.py"), "--master", master.address,
                                            "--value", str(v), "--world", str(len(VALUES)), "--total",
                                            str(sum(VALUES)), "--steps", str(STEPS)],
                                           stdout=subprocess.PIPE, text=True))
            threading.Thread(target=_read_lines, args=(procs[-1], outs[i], cond), daemon=True).start()

        def steps(i: int) -> int:
            return sum(1 for line in outs[i] if line.startswith("STEP "))

        def wait(pred, timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            with cond:
                while not pred():
                    failed = [o[-1] for o in outs if o and o[-1].startswith("FAIL")]
                    if failed or time.monotonic() > deadline:
                        raise PeerFailure(f"{what}: {failed or outs}")
                    cond.wait(0.1)

        wait(lambda: all(steps(i) >= 8 for i in range(len(VALUES))), 30, "training did not start")
        master.kill()
        with cond:
            at_kill = [steps(i) for i in range(len(VALUES))]
        time.sleep(1.0)
        with cond:
            during = [steps(i) - at_kill[i] for i in range(len(VALUES))]
        assert max(during) <= 1, f"steps completed without a master: {during}"
        master.start()  # same port
        assert master.wait_for_line(f"pccl-master: run rebuilt from {len(VALUES)} peer(s)", 10), master.lines
        for i, p in enumerate(procs):
            assert p.wait(40) == 0, outs[i][-5:]
        done = [next(line for line in out if line.startswith("DONE ")).split() for out in outs]
        assert {d[1] for d in done} == {str(STEPS)}, done  # revisions continued to the last step
        assert len({d[2] for d in done}) == 1, done       # states bit-identical
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        master.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
