"""The status server of an embedded master (``MasterNode(http=...)``, ``PCCL_MASTER_HTTP``) and
``pccl-top``, the status page in a terminal (docs/observability.md).

pccl-top is found through $PCCL_TOP_BIN, else next to the C pccl-master of test_master_program.py;
the pccl-top tests are skipped without it. The MasterNode tests are skipped when this build of the
library has no HTTP server (-DPCCL_HTTP=OFF).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import List, Optional, Tuple

import numpy as np
import pytest

import pccl
from pccl_testing import Cluster
from pccl_testing import c_master_daemon

C_DAEMON = c_master_daemon()

pytestmark = pytest.mark.timeout(120)


def _top_binary() -> Optional[str]:
    explicit = os.environ.get("PCCL_TOP_BIN")
    if explicit:
        return explicit
    if C_DAEMON:
        candidate = os.path.join(os.path.dirname(C_DAEMON), "pccl-top")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


TOP = _top_binary()
needs_top = pytest.mark.skipif(TOP is None, reason="no pccl-top built (set PCCL_TOP_BIN)")


def http_master(**kwargs) -> pccl.MasterNode:
    """A running MasterNode on 127.0.0.1:0 with its status server on 127.0.0.1:0."""
    master = pccl.MasterNode("127.0.0.1:0", http="127.0.0.1:0", **kwargs)
    try:
        master.run()
    except pccl.PCCLError as e:
        master.close()
        if "-DPCCL_HTTP=OFF" in str(e):
            pytest.skip("this build of the library has no HTTP server")
        raise
    return master


def get(port: int, path: str = "/api/status", token: Optional[str] = None) -> Tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def top(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOP, *args], capture_output=True, text=True, timeout=30)


def all_reduce(rank: int, comm: pccl.Communicator) -> None:
    x = np.full(1024, rank + 1, dtype=np.float32)
    y = np.zeros_like(x)
    comm.all_reduce(x, y, op=pccl.ReduceOp.SUM, tag=0)


def wait_status(port: int, done, timeout: float = 10.0) -> dict:
    """Polls /api/status until done(document); the master publishes every 250 ms."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = get(port)
        status = json.loads(body) if code == 200 else None
        if status is not None and done(status):
            return status
        assert time.monotonic() < deadline, f"no such status within {timeout} s; last: {status}"
        time.sleep(0.05)


def test_an_embedded_master_serves_its_status_with_http():
    master = http_master()
    try:
        assert master.http_port and master.http_port != master.port
        with Cluster(3, master=master) as cluster:
            cluster.run(all_reduce)
            status = wait_status(master.http_port, lambda s: sorted(p["rank"] for p in s["peers"]) == [0, 1, 2])
            assert {p["uuid"] for p in status["peers"]} == set(status["rings"][0]["order"])
            code, metrics = get(master.http_port, "/metrics")
            assert code == 200 and "pccl_peer_joins_total 3\n" in metrics
    finally:
        master.close()
    assert master.http_port is None


def test_the_environment_asks_embedded_masters_for_http_and_http_empty_declines(monkeypatch):
    monkeypatch.setenv("PCCL_MASTER_HTTP", "127.0.0.1:0")
    with pccl.MasterNode("127.0.0.1:0") as master:
        try:
            master.run()
        except pccl.PCCLError as e:
            if "-DPCCL_HTTP=OFF" in str(e):
                pytest.skip("this build of the library has no HTTP server")
            raise
        assert master.http_port
        assert get(master.http_port)[0] == 200
    with pccl.MasterNode("127.0.0.1:0", http="") as master:
        master.run()
        assert master.http_port is None


def test_the_token_file_and_the_loopback_rule_of_embedded_masters(tmp_path):
    token = tmp_path / "token"
    token.write_text("py-token\n")
    master = http_master(http_token_file=token)
    try:
        assert get(master.http_port)[0] == 401
        assert get(master.http_port, token="nope")[0] == 401
        assert get(master.http_port, token="py-token")[0] == 200
    finally:
        master.close()
    # A run with a secret and no token: only a loopback address.
    with pccl.MasterNode("127.0.0.1:0", secret="s" * 20, http="0.0.0.0:0") as refused:
        with pytest.raises(pccl.PCCLError) as e:
            refused.run()
        if "-DPCCL_HTTP=OFF" not in str(e.value):
            assert e.value.result == pccl.Result.INVALID_ARGUMENT
            assert "loopback" in str(e.value)


def test_master_node_checks_its_http_arguments():
    with pytest.raises(TypeError):
        pccl.MasterNode("127.0.0.1:0", http=8080)
    with pytest.raises(ValueError):
        pccl.MasterNode("127.0.0.1:0", http="127.0.0.1:0\0")
    with pytest.raises(TypeError):
        pccl.MasterNode("127.0.0.1:0", http_token_file=3)
    with pytest.raises(ValueError):
        pccl.MasterNode("127.0.0.1:0", http_token_file="")


def _short_uuids(status: dict) -> List[str]:
    return [p["uuid"][:8] for p in status["peers"]]


@needs_top
def test_pccl_top_once_shows_the_peers_and_the_ring():
    master = http_master()
    try:
        with Cluster(3, master=master) as cluster:
            cluster.run(all_reduce)
            status = wait_status(master.http_port, lambda s: len(s["rings"]) == 1 and len(s["rings"][0]["order"]) == 3
                                 and any(c["result"] == "completed" and c["count"] == 1
                                         for c in s["counters"]["collectives"]))
            r = top("--http", f"127.0.0.1:{master.http_port}", "--once")
            assert r.returncode == 0, r.stderr
            out = r.stdout
            assert "peers 3 (accepted 3" in out
            assert "group 0: 3 peer(s)" in out
            assert "all_reduce         1 completed" in out
            for uuid in _short_uuids(status):
                assert f"\n{uuid}  " in out
            order = [u[:8] for u in status["rings"][0]["order"]]
            for i in range(3):
                assert f"{i} {order[i]} -> {(i + 1) % 3} {order[(i + 1) % 3]}" in out
    finally:
        master.close()


@needs_top
def test_pccl_top_redraws_until_interrupted():
    master = http_master()
    try:
        p = subprocess.Popen([TOP, "--http", f"127.0.0.1:{master.http_port}", "--interval-ms", "100"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        p.send_signal(2)  # SIGINT
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        assert out.count("pccl master 127.0.0.1:") >= 3  # several frames
    finally:
        master.close()


class _Junk(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"version": "0.1.0", "peers": ['
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@needs_top
def test_pccl_top_errors_are_clear_with_distinct_exit_codes(tmp_path):
    # Nothing listens there.
    with http.server.HTTPServer(("127.0.0.1", 0), _Junk) as s:
        closed = s.server_address[1]
    r = top("--http", f"127.0.0.1:{closed}", "--once")
    assert r.returncode == 3 and "cannot reach the status server" in r.stderr and "refused" in r.stderr
    # 401 without a token, and with a wrong one.
    token = tmp_path / "token"
    token.write_text("right\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    master = http_master(http_token_file=token)
    try:
        r = top("--http", f"127.0.0.1:{master.http_port}", "--once")
        assert r.returncode == 4 and "requires a bearer token" in r.stderr and "--token-file" in r.stderr
        r = top("--http", f"127.0.0.1:{master.http_port}", "--once", "--token-file", str(wrong))
        assert r.returncode == 4 and "refused the token" in r.stderr
        r = top("--http", f"127.0.0.1:{master.http_port}", "--once", "--token-file", str(token))
        assert r.returncode == 0 and "(no peers)" in r.stdout
    finally:
        master.close()
    # Not a status document.
    with http.server.HTTPServer(("127.0.0.1", 0), _Junk) as s:
        t = threading.Thread(target=s.serve_forever, daemon=True)
        t.start()
        r = top("--http", f"127.0.0.1:{s.server_address[1]}", "--once")
        s.shutdown()
    assert r.returncode == 5 and "not a pccl status document" in r.stderr
    # Bad arguments.
    r = top("--once")
    assert r.returncode == 2 and "--http HOST:PORT is required" in r.stderr
    r = top("--http", "127.0.0.1:1", "--interval-ms", "5")
    assert r.returncode == 2 and "--interval-ms" in r.stderr


@pytest.mark.skipif(C_DAEMON is None, reason="no C pccl-master built (set PCCL_MASTER_BIN)")
@pytest.mark.parametrize("program", ["c", "python"])
def test_both_master_programs_serve_http_and_print_the_url(program):
    from test_master_program import _kill, _start
    p = _start(program, ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
    try:
        assert p.stdout.readline().startswith("pccl-master listening on 127.0.0.1:")
        line = p.stdout.readline()
        if program == "python" and not line:
            err = p.stderr.read()
            if "-DPCCL_HTTP=OFF" in err:
                pytest.skip("this build of the library has no HTTP server")
        assert line.startswith("pccl-master status page on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].rstrip("/\n"))
        assert get(port)[0] == 200
    finally:
        _kill(p)
