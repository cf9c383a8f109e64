"""pccl-master --http (docs/observability.md): /metrics parsed by prometheus_client, /api/status
validated against docs/status.schema.json, a killed peer counted as a crash, and the page rendered
by headless Chromium (skipped where Chromium is missing).

The C daemon is found as in test_master_program.py ($PCCL_MASTER_BIN, else the newest build);
without one built with --http these tests are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest

import pccl
from pccl_testing import Cluster, admit_until, python_subprocess
from pccl_testing import REPO, c_master_daemon

C_DAEMON = c_master_daemon()

prometheus_parser = pytest.importorskip("prometheus_client.parser")
jsonschema = pytest.importorskip("jsonschema")

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(C_DAEMON is None, reason="no C pccl-master built (set PCCL_MASTER_BIN)")]

ALL_REDUCES = 4


class DaemonWithHttp:
    """pccl-master --listen 127.0.0.1:0 --http 127.0.0.1:0; reads both ports from its banner."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([C_DAEMON, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = self.http = None
        deadline = time.monotonic() + 10
        while (self.port is None or self.http is None) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("pccl-master listening on "):
                self.port = int(line.rsplit(":", 1)[1])
            elif line.startswith("pccl-master status page on "):
                self.http = line.split()[-1].rstrip("/")
        if self.http is None:
            self.close()
            pytest.skip("this pccl-master has no --http (built with -DPCCL_HTTP=OFF?)")
        # Drain the status lines so that the daemon never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.http + path, timeout=5) as r:
            return r.read().decode()

    def metrics(self) -> dict:
        """{(sample name, frozenset(labels)): value} of one scrape."""
        out = {}
        for family in prometheus_parser.text_string_to_metric_families(self.get("/metrics")):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def wait_metric(self, name: str, labels: dict, value: float, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if m.get((name, frozenset(labels.items()))) == value or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def master(self):
        daemon = self

        class Handle:  # what pccl_testing.Cluster needs of a master
            port = daemon.port

            def close(self) -> None:
                daemon.close()
        return Handle()


@pytest.fixture
def daemon():
    d = DaemonWithHttp()
    yield d
    d.close()


def all_reduce(rank: int, comm: pccl.Communicator) -> None:
    for tag in range(ALL_REDUCES):
        x = np.full(1 << 16, rank + 1, dtype=np.float32)
        y = np.zeros_like(x)
        comm.all_reduce(x, y, op=pccl.ReduceOp.SUM, tag=tag)
        assert y[0] == 6


def test_metrics_count_what_the_peers_did(daemon):
    with Cluster(3, master=daemon.master()) as cluster:
        cluster.run(all_reduce)
        labels = {"kind": "all_reduce", "result": "completed"}
        completed = ("pccl_collectives_total", frozenset(labels.items()))
        m = daemon.wait_metric("pccl_collectives_total", labels, ALL_REDUCES, timeout=5)
        assert m[completed] == ALL_REDUCES
        assert m[("pccl_peer_joins_total", frozenset())] == 3
        assert m[("pccl_peers", frozenset({"state": "accepted"}.items()))] == 3
        assert m[("pccl_peer_groups", frozenset())] == 1
        assert m[("pccl_collective_duration_seconds_count", frozenset({"kind": "all_reduce"}.items()))] == ALL_REDUCES
        assert m[("pccl_collectives_total", frozenset({"kind": "all_reduce", "result": "aborted"}.items()))] == 0
        assert m[("pccl_master_uptime_seconds", frozenset())] > 0
        assert [v for k, v in m.items() if k[0] == "pccl_build_info"] == [1]


def test_status_json_matches_its_schema(daemon):
    with open(os.path.join(REPO, "docs", "status.schema.json")) as f:
        schema = json.load(f)
    with Cluster(3, master=daemon.master()) as cluster:
        cluster.run(all_reduce)
        deadline = time.monotonic() + 5
        while True:
            status = json.loads(daemon.get("/api/status"))
            # The master publishes its view every 250 ms: wait for one after the last admission.
            if sorted(p["rank"] for p in status["peers"]) == [0, 1, 2] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        jsonschema.validate(status, schema)
        assert len(status["peers"]) == 3
        assert sorted(p["rank"] for p in status["peers"]) == [0, 1, 2]
        assert len(status["rings"]) == 1 and len(status["rings"][0]["order"]) == 3
        assert any("admitted" in e["text"] for e in status["events"])


def test_killed_peer_counts_as_a_crash_within_two_seconds(daemon):
    with Cluster(3, master=daemon.master()) as cluster:
        address = f"127.0.0.1:{daemon.port}"
        child = python_subprocess(["-c", "import sys, time, pccl\n"
                                   f"c = pccl.Communicator('{address}'); c.connect(); print('CONNECTED', flush=True)\n"
                                   "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
        try:
            cluster.run(lambda rank, comm: admit_until(comm, 4))
            assert child.stdout.readline().strip() == "CONNECTED"
            crash = {"reason": "crash"}
            assert daemon.metrics()[("pccl_peer_losses_total", frozenset(crash.items()))] == 0
            child.kill()
            child.wait(10)
            killed = time.monotonic()
            m = daemon.wait_metric("pccl_peer_losses_total", crash, 1, timeout=2)
            assert m[("pccl_peer_losses_total", frozenset(crash.items()))] == 1, \
                f"no crash counted {time.monotonic() - killed:.1f} s after the kill"
        finally:
            child.kill()
            child.wait(10)


def test_shared_state_transfer_bytes_are_exported_per_peer(daemon):
    """The outdated peer of three receives the popular state: its StatsReport (within ~2 s)
    carries the bytes as pccl_shared_state_transfer_bytes_total{direction="rx"}, and its
    pccl_peer_rx_bytes_total covers them."""
    n = 1 << 16

    def sync(rank: int, comm: pccl.Communicator):
        buf = np.full(n, 1.0 if rank < 2 else 2.0, dtype=np.float32)
        info = comm.sync_shared_state(pccl.SharedState([pccl.TensorInfo.from_numpy(buf, "w")]))
        assert buf[0] == 1.0
        return comm.stats(), info

    with Cluster(3, master=daemon.master()) as cluster:
        results = cluster.run(sync)
        assert results[2][1].rx_bytes >= 4 * n
        deadline = time.monotonic() + 6
        while True:  # peer -> shared-state bytes received, as exported
            m = daemon.metrics()
            received = {dict(labels)["peer"]: v for (name, labels), v in m.items()
                        if name == "pccl_shared_state_transfer_bytes_total" and dict(labels)["direction"] == "rx"}
            if sum(received.values()) >= 4 * n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sum(received.values()) >= 4 * n, received
        for peer, v in received.items():
            assert m[("pccl_peer_rx_bytes_total", frozenset({"peer": peer}.items()))] >= v


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_page_renders_in_headless_chromium(daemon, tmp_path):
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1280,800", "--virtual-time-budget=6000"]
    with Cluster(3, master=daemon.master()) as cluster:
        cluster.run(all_reduce)
        dom = subprocess.run(browser + ["--dump-dom", daemon.http + "/"], capture_output=True, text=True,
                             timeout=60).stdout
        status = json.loads(daemon.get("/api/status"))
        for p in status["peers"]:  # the page shows the first 8 hex digits of each
            assert p["uuid"][:8] in dom, "the page does not list every peer"
        assert dom.count("<circle") == 3, "the ring does not show three peers"
        assert "live" in dom
        shot = tmp_path / "status_page.png"
        subprocess.run(browser + [f"--screenshot={shot}", daemon.http + "/"], capture_output=True, timeout=60)
        assert shot.exists() and shot.stat().st_size > 20000, "no screenshot, or an empty one"
        artifacts = os.environ.get("PCCL_TEST_ARTIFACTS")
        if artifacts:
            os.makedirs(artifacts, exist_ok=True)
            shutil.copy(shot, os.path.join(artifacts, "status_page.png"))
