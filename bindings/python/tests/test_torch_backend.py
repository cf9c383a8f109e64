"""torch.distributed over backend="pccl": three processes per test (torch_backend_peer.py) against
an embedded master. DDP with bit-parity, FSDP2 with falling loss and identical parameters, every
supported op against its definition, and a killed peer whose survivors re-create the group."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pccl
from pccl_testing import python_subprocess

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "torch_backend_peer.py")


def run_ranks(mode, world=3, timeout=100, extra=()):
    """Runs `world` ranks of torch_backend_peer.py MODE; returns {rank: result} of those that
    printed one (a killed rank prints none)."""
    m = pccl.MasterNode("127.0.0.1:0")
    m.run()
    procs = []
    try:
        for r in range(world):
            procs.append(python_subprocess([PEER, mode, "--master", f"127.0.0.1:{m.port}", "--rank", str(r),
                                            "--world", str(world), *extra],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results, logs = {}, {}
        for r, p in enumerate(procs):
            out, err = p.communicate(timeout=timeout)
            logs[r] = (p.returncode, err[-3000:])
            for line in out.splitlines():
                if line.startswith("RESULT "):
                    results[r] = json.loads(line[len("RESULT "):])
        return results, logs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        m.close()


def test_importing_pccl_alone_does_not_import_torch():
    code = "import sys, pccl; assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.timeout(120)
def test_every_supported_op_and_unsupported_send():
    results, logs = run_ranks("ops")
    assert sorted(results) == [0, 1, 2], logs
    for r, res in results.items():
        assert all(res["checks"].values()), (r, res["checks"])


@pytest.mark.timeout(120)
def test_ddp_bit_parity():
    results, logs = run_ranks("ddp", extra=("--steps", "6"))
    assert sorted(results) == [0, 1, 2], logs
    hashes = {res["hash"] for res in results.values()}
    assert len(hashes) == 1, results


@pytest.mark.timeout(150)
def test_fsdp2_trains_with_identical_parameters():
    results, logs = run_ranks("fsdp", extra=("--steps", "12"))
    assert sorted(results) == [0, 1, 2], logs
    assert len({res["hash"] for res in results.values()}) == 1, results
    for res in results.values():
        losses = res["losses"]
        assert sum(losses[-4:]) < 0.8 * sum(losses[:4]), losses


@pytest.mark.timeout(150)
def test_killed_peer_survivors_recreate_the_group_and_continue():
    results, logs = run_ranks("kill")
    assert 2 not in results, "the victim was not killed"
    assert sorted(results) == [0, 1], logs
    for r in (0, 1):
        res = results[r]
        rec = res["recovered"]
        assert rec is not None, res
        assert rec["step"] == 3 and rec["restored"], rec
        assert "pccl" in rec["error"], rec
        # Three peers before the loss, two after; no step reports a partial sum as success.
        assert res["results"] == [3.0] * 3 + [2.0] * 5, res
