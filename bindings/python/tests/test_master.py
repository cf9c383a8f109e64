"""MasterNode start/stop, port 0, IPv6, and the pccl-master / python -m pccl.master commands."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

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


def test_pccl_master_console_script():
    exe = shutil.which("pccl-master", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    script = os.path.join(os.path.dirname(sys.executable), "pccl-master")
    if os.path.exists(script):
        exe = script  # the one installed with this interpreter's pccl
    if exe is None:
        pytest.skip("pccl-master is not on PATH")
    _run_master_command([exe], _free_port())


def test_master_command_errors():
    p = python_subprocess(["-m", "pccl.master", "--listen-address", "nonsense:xx"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and "bad port" in err
    with pccl.MasterNode("127.0.0.1:0") as m:
        m.run()
        p = python_subprocess(["-m", "pccl.master", "--listen", f"127.0.0.1:{m.port}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1 and "cannot listen" in err
    p = python_subprocess(["-m", "pccl.master", "--help"], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0 and "--listen-address" in out


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
