"""A run with a secret from Python (docs/security.md): MasterNode(secret=..., secret_file=...,
require_secret=...) and Communicator(secret=..., encrypt=...)."""

from __future__ import annotations

import os
import subprocess

import pytest

import pccl
from pccl_testing import Cluster, python_subprocess

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(60)

SECRET = "python-test-secret-0123456789abc"
OTHER = b"another-secret-of-32-characters!"


@pytest.fixture(autouse=True)
def _no_secret_in_environment(monkeypatch):
    for name in ("PCCL_SECRET", "PCCL_SECRET_FILE", "PCCL_ENCRYPT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def secured_master():
    m = pccl.MasterNode("127.0.0.1:0", secret=SECRET)
    m.run()
    try:
        yield m
    finally:
        m.close()


def check_all_reduce(cluster: Cluster) -> None:
    n = len(cluster.comms)

    def reduce(rank, comm):
        send = np.full(4096, rank + 1, dtype=np.float32)
        recv = np.zeros_like(send)
        comm.all_reduce(send, recv, op=pccl.ReduceOp.SUM, tag=1)
        return recv

    for recv in cluster.run(reduce):
        assert np.all(recv == n * (n + 1) / 2)


@pytest.mark.parametrize("encrypt", [None, True, False])
def test_peers_with_the_secret_all_reduce(secured_master, encrypt):
    # str and bytes name the same secret
    kwargs = [{"secret": SECRET, "encrypt": encrypt}, {"secret": SECRET.encode(), "encrypt": encrypt}]
    with Cluster(2, master=secured_master, peer_kwargs=kwargs) as cluster:
        check_all_reduce(cluster)


def test_secret_from_a_private_file(tmp_path):
    path = tmp_path / "run.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    with pccl.MasterNode("127.0.0.1:0", secret_file=str(path), require_secret=True) as master:
        master.run()
        with Cluster(2, master=master, peer_kwargs=[{"secret": SECRET}] * 2) as cluster:
            check_all_reduce(cluster)


@pytest.mark.parametrize("secret, words", [(None, "run secret"), (OTHER, "different secrets")])
def test_peer_without_the_secret_is_refused(secured_master, secret, words):
    with pccl.Communicator(f"127.0.0.1:{secured_master.port}", secret=secret) as comm:
        with pytest.raises(pccl.PCCLError) as e:
            comm.connect()
    assert e.value.result == pccl.Result.AUTHENTICATION_FAILED
    assert words in e.value.message


def test_peer_with_a_secret_refuses_an_open_master(master):
    with pccl.Communicator(f"127.0.0.1:{master.port}", secret=SECRET) as comm:
        with pytest.raises(pccl.PCCLError) as e:
            comm.connect()
    assert e.value.result == pccl.Result.AUTHENTICATION_FAILED


def test_secret_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "run.secret"
    path.write_text(SECRET)
    path.chmod(0o644)
    with pccl.MasterNode("127.0.0.1:0", secret_file=path) as master:
        with pytest.raises(pccl.PCCLError) as e:
            master.run()
    assert e.value.result == pccl.Result.INVALID_ARGUMENT
    assert "group or others" in e.value.message


def test_require_secret_without_one_fails():
    with pccl.MasterNode("127.0.0.1:0", require_secret=True) as master:
        with pytest.raises(pccl.PCCLError) as e:
            master.run()
    assert e.value.result == pccl.Result.INVALID_ARGUMENT


def test_short_secret_is_refused():
    with pytest.raises(pccl.PCCLError) as e:
        pccl.Communicator("127.0.0.1:48148", secret="too short")
    assert e.value.result == pccl.Result.INVALID_ARGUMENT


@pytest.mark.parametrize("kwargs, error", [
    ({"secret": 12345}, TypeError),
    ({"secret": ["x" * 32]}, TypeError),
    ({"secret": "x" * 16 + "\0" + "y" * 16}, ValueError),
    ({"encrypt": 1}, TypeError),
    ({"encrypt": "off"}, TypeError),
])
def test_communicator_argument_types(kwargs, error):
    with pytest.raises(error):
        pccl.Communicator("127.0.0.1:48148", **kwargs)


@pytest.mark.parametrize("kwargs, error", [
    ({"secret": 12345}, TypeError),
    ({"secret": b"x" * 16 + b"\0"}, ValueError),
    ({"secret_file": 3}, TypeError),
    ({"secret_file": ""}, ValueError),
    ({"require_secret": 1}, TypeError),
])
def test_master_argument_types(kwargs, error):
    with pytest.raises(error):
        pccl.MasterNode("127.0.0.1:0", **kwargs)


def test_keywords_only():
    with pytest.raises(TypeError):
        pccl.MasterNode("127.0.0.1:0", SECRET)  # type: ignore[misc]
    assert os.environ.get("PCCL_SECRET") is None


@pytest.mark.parametrize("flags, words", [(["--require-secret"], "no run secret"),
                                          (["--secret-file", "/nonexistent/run.secret"], "secret file")])
def test_master_program_secret_flags(flags, words):
    p = python_subprocess(["-m", "pccl.master", "--listen", "127.0.0.1:0"] + flags, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1, (out, err)
    assert words in err
