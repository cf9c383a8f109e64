"""MasterNode start/stop, port 0, IPv6, and the pccl-master / python -m pccl.master commands."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

import pytest

import pccl
from pccl_testing import Cluster, python_subprocess

pytestmark = pytest.mark.timeout(60)


def test_start_and_stop():
    m = pccl.MasterNode("127.0.0.1:0")
    assert m.port == 0 and not m.running
    m.run()
    assert m.running and 0 < m.port < 65536
    assert m.listen_address == f"127.0.0.1:{m.port}"
    # It really listens.
    with socket.create_connection(("127.0.0.1", m.port), timeout=5):
        pass
    with pytest.raises(pccl.PCCLError) as ei:
        m.run()  # already running
    assert ei.value.result == pccl.Result.INVALID_USAGE
    m.interrupt()
    m.await_termination()
    m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(pccl.PCCLError):
        m.run()


def test_context_manager_and_close_while_awaiting():
    with pccl.MasterNode("127.0.0.1:0") as m:
        m.run()
        port = m.port
        waiter = threading.Thread(target=m.await_termination, daemon=True)
        waiter.start()
        time.sleep(0.1)
    # Leaving the block interrupted the master, released the waiting thread, and freed it.
    waiter.join(10)
    assert not waiter.is_alive()
    assert m.closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_port_in_use():
    with pccl.MasterNode("127.0.0.1:0") as a:
        a.run()
        b = pccl.MasterNode(f"127.0.0.1:{a.port}")
        with pytest.raises(pccl.PCCLError) as ei:
            b.run()
        assert ei.value.message  # the reason (bind failed ...)
        b.close()


def test_close_with_connected_peers_makes_their_calls_fail():
    with Cluster(2) as cluster:
        cluster.master.close()
        for comm in cluster.comms:
            with pytest.raises(pccl.PCCLError) as ei:
                comm.update_topology()
            assert ei.value.result in (pccl.Result.MASTER_CONNECTION_LOST, pccl.Result.TIMEOUT)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_master_and_peers():
    torch = pytest.importorskip("torch")
    with pccl.MasterNode("[::1]:0") as m:
        m.run()
        assert m.listen_address == f"[::1]:{m.port}"
        with Cluster(3, master=m, host="[::1]") as cluster:
            def peer(rank, comm):
                x = torch.full((100_000,), float(rank))
                info = comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
                return info.local_world_size, float(x[0])

            assert cluster.run(peer) == [(3, 3.0)] * 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_master_command(cmd, port):
    proc = subprocess.Popen(cmd + ["--listen-address", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"pccl-master listening on 127.0.0.1:{port}", (line, proc.stderr.read())
        # Peers can use it.
        c = pccl.Communicator(f"127.0.0.1:{port}")
        c.connect()
        assert c.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1
        c.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "pccl-master stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_python_m_pccl_master():
    _run_master_command([sys.executable, "-m", "pccl.master"], _free_port())


@pytest.mark.parametrize("name", ["pccl-master", "pccl_master"])
def test_pccl_master_console_script(name):
    exe = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(script):
        exe = script  # the one installed with this interpreter's pccl
    if exe is None:
        pytest.skip(f"{name} is not on PATH")
    _run_master_command([exe], _free_port())


def test_master_command_errors():
    p = python_subprocess(["-m", "pccl.master", "--listen-address", "nonsense:xx"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "port 'xx' is not a decimal number" in err
    with pccl.MasterNode("127.0.0.1:0") as m:
        m.run()
        p = python_subprocess(["-m", "pccl.master", "--listen", f"127.0.0.1:{m.port}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1 and "cannot listen" in err
    p = python_subprocess(["-m", "pccl.master", "--help"], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and "--listen HOST:PORT" in out and "--heartbeat-timeout-ms" in out


def test_await_termination_is_interruptible_by_ctrl_c():
    code = ("import pccl\n"
            "m = pccl.MasterNode('127.0.0.1:0')\n"
            "m.run()\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    m.await_termination()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "m.close()\n")
    p = python_subprocess(["-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
        assert p.returncode == 0 and "interrupted" in out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


# ------------------------------------------------------------------------------------------
# PCCL 1.0's MasterNode lifetime: once run, a master serves until interrupted, whatever happens
# to the object or the script. Real subprocesses: what counts is how the interpreter exits.

def _script(code: str, **kw) -> subprocess.Popen:
    # SIGINT at its default in the child even under a background job: conftest.py.
    return python_subprocess(["-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(p: subprocess.Popen, timeout: float = 15) -> tuple:
    """Wait for p to exit on its own; returns (returncode, stdout, stderr, seconds waited)."""
    t0 = time.monotonic()
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err, time.monotonic() - t0


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
        p.wait(5)


def _serves(port: int) -> bool:
    """A peer can join the master on port (a run of one)."""
    try:
        with pccl.Communicator(f"127.0.0.1:{port}") as c:
            c.connect(n_attempts=1)
            return c.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1
    except pccl.PCCLError:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


# The PCCL 1.0 master script, with the object dropped and collected before the script's last
# statement: neither the finaliser nor the end of the script may stop the master. A thread of
# the test's reports when the script body has ended (the main thread is done).
_MASTER_SCRIPT = ("import gc, threading, time, pccl\n"
                  "def report_end():\n"
                  "    while threading.main_thread().is_alive():\n"
                  "        time.sleep(0.01)\n"
                  "    print('body ended', flush=True)\n"
                  "threading.Thread(target=report_end).start()\n"
                  "m = pccl.MasterNode('127.0.0.1:0')\n"
                  "m.run()\n"
                  "port = m.port\n"
                  "del m\n"
                  "gc.collect()\n"
                  "print(port, flush=True)\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_master_script_serves_after_its_end_until_a_signal_then_exits_0(sig):
    p = _script(_MASTER_SCRIPT)
    try:
        port = int(p.stdout.readline())
        assert p.stdout.readline() == "body ended\n"
        assert _serves(port), p.stderr.read() if p.poll() is not None else "the master refused the peer"
        assert _serves(port)  # and again: still there
        assert p.poll() is None
        p.send_signal(sig)
        rc, out, err, waited = _finish(p)
        assert rc == 0, err
        assert waited < 5, f"exited {waited:.1f} s after {sig.name}"
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert not _listening(port)
    finally:
        _kill(p)


def test_interrupt_ends_a_master_script():
    code = ("import pccl, sys\n"
            "m = pccl.MasterNode('127.0.0.1:0')\n"
            "m.run()\n"
            "print(m.port, flush=True)\n"
            "sys.stdin.readline()\n"
            "m.interrupt()\n")
    p = _script(code, stdin=subprocess.PIPE)
    try:
        port = int(p.stdout.readline())
        assert _serves(port)
        p.stdin.write("\n")
        p.stdin.flush()
        rc, out, err, waited = _finish(p)
        assert rc == 0 and waited < 5, (rc, waited, err)
        assert not _listening(port)
    finally:
        _kill(p)


def test_a_with_block_scopes_the_master():
    code = ("import pccl, sys\n"
            "with pccl.MasterNode('127.0.0.1:0') as m:\n"
            "    m.run()\n"
            "    print(m.port, flush=True)\n"
            "    sys.stdin.readline()\n"
            "print('left the block', flush=True)\n"
            "sys.stdin.readline()\n")
    p = _script(code, stdin=subprocess.PIPE)
    try:
        port = int(p.stdout.readline())
        assert _serves(port)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "left the block"
        assert not _listening(port)  # stopped when the block was left, while the script goes on
        p.stdin.write("\n")
        p.stdin.flush()
        rc, out, err, waited = _finish(p)
        assert rc == 0 and waited < 5, (rc, waited, err)
    finally:
        _kill(p)


def test_ctrl_c_while_the_script_runs_raises_keyboard_interrupt_and_stops_the_master():
    code = ("import pccl, time\n"
            "m = pccl.MasterNode('127.0.0.1:0')\n"
            "m.run()\n"
            "try:\n"
            "    print(m.port, flush=True)\n"
            "    while True:\n"
            "        time.sleep(0.05)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n")
    p = _script(code)
    try:
        port = int(p.stdout.readline())
        assert _serves(port)
        p.send_signal(signal.SIGINT)
        rc, out, err, waited = _finish(p)
        assert rc == 0 and "interrupted" in out and waited < 5, (rc, out, err, waited)
    finally:
        _kill(p)


def test_sigterm_while_the_script_runs_kills_it_as_without_a_master():
    code = ("import pccl, time\n"
            "m = pccl.MasterNode('127.0.0.1:0')\n"
            "m.run()\n"
            "print(m.port, flush=True)\n"
            "while True:\n"
            "    time.sleep(0.05)\n")
    p = _script(code)
    try:
        int(p.stdout.readline())
        p.send_signal(signal.SIGTERM)
        rc, out, err, waited = _finish(p)
        assert rc == -signal.SIGTERM and waited < 5, (rc, err, waited)
    finally:
        _kill(p)


def test_a_dropped_running_master_keeps_serving_in_process():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    m = pccl.MasterNode("127.0.0.1:0")
    m.run()
    port = m.port
    ref = weakref.ref(m)
    del m
    gc.collect()
    m = ref()
    assert m is not None and m.running  # held by its serving thread
    try:
        assert _serves(port)
        m.interrupt()
        m.await_termination()
        assert not m.running and not m.closed
        assert not _listening(port)
    finally:
        m.close()
    # The signal handlers are back as they were once no master runs.
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
