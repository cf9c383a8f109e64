"""A peer process killed (SIGKILL) in the middle of a large all-reduce: every survivor gets
PCCLError(RANK_CONNECTION_LOST) quickly, its in-place input is restored, and a retry succeeds on
the remaining peers."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

import pccl
from pccl_testing import HERE, Cluster, admit_until, python_subprocess

np = pytest.importorskip("numpy")

COUNT = 8 * 1024 * 1024  # 32 MiB of float32 per peer
VICTIM_VALUE = 100.0
DIE_IN = 2


def survivor_value(rank: int) -> float:
    return 1.0 if rank == 0 else 10.0


class Victim:
    def __init__(self, address: str, *extra: str) -> None:
        self.proc = python_subprocess(
            [os.path.join(HERE, "peer_process.py"), "--master", address, "--count", str(COUNT), "--value",
             str(VICTIM_VALUE), "--die-in", str(DIE_IN), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list = []
        self.seen: dict = {}  # line -> time.monotonic() when it was read
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.seen.setdefault(line.strip(), time.monotonic())
            self.lines.append(line.strip())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def transcript(self) -> str:
        err = ""
        if self.proc.poll() is not None and self.proc.stderr:
            err = self.proc.stderr.read()
        return "\n".join(self.lines) + ("\nstderr:\n" + err if err else "")


def start_three(cluster: Cluster, *extra: str) -> Victim:
    """Two survivors (the cluster) admit the victim process: a run of three."""
    victim = Victim(cluster.address, *extra)
    try:
        cluster.run(lambda rank, comm: admit_until(comm, 3, timeout=30), timeout=40)
    except BaseException:
        victim.kill()
        raise
    return victim


@pytest.mark.timeout(90)
def test_killed_peer_fails_survivors_fast_and_they_retry():
    with Cluster(2) as cluster:
        victim = start_three(cluster)
        try:
            def survive(rank, comm):
                orig = np.full(COUNT, survivor_value(rank), dtype=np.float32)
                buf = orig.copy()
                both = survivor_value(0) + survivor_value(1)
                failed_at = None
                for i in range(DIE_IN + 1):
                    np.copyto(buf, orig)
                    try:
                        info = comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM, tag=0)
                    except pccl.PCCLError as e:
                        failed_at = (i, e, time.monotonic())
                        break
                    assert info.local_world_size == 3, (i, info)
                    assert (buf == both + VICTIM_VALUE).all(), i
                assert failed_at is not None, "no survivor call failed although the victim died mid-operation"
                i, err, when = failed_at
                assert i == DIE_IN, f"failed in iteration {i}: {err!r}"
                assert err.result == pccl.Result.RANK_CONNECTION_LOST == 8, repr(err)
                assert err.message, "the library's reason is missing"
                assert np.array_equal(buf, orig), "the in-place input was not restored"
                # Retry the same call directly: now over the two survivors.
                info = comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM, tag=0)
                assert info.local_world_size == 2
                assert (buf == both).all()
                # A topology update without the lost peer, and one more all-reduce.
                comm.update_topology()
                assert comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 2
                np.copyto(buf, orig)
                assert comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM, tag=1).local_world_size == 2
                assert (buf == both).all()
                return when

            failed_when = cluster.run(survive, timeout=60)
            assert victim.proc.wait(10) == -signal.SIGKILL, victim.transcript()
            assert f"INFLIGHT {DIE_IN}" in victim.seen, victim.transcript()
            # Every survivor failed promptly after the victim died (it dies right after this line).
            latency = max(failed_when) - victim.seen[f"INFLIGHT {DIE_IN}"]
            assert latency < 5.0, f"survivors failed {latency:.2f} s after the kill"
        finally:
            victim.kill()


@pytest.mark.timeout(90)
def test_killed_peer_during_batch_with_retry_is_retried_away():
    with Cluster(2) as cluster:
        victim = start_three(cluster, "--batch")
        try:
            def survive(rank, comm):
                od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
                bufs = [np.full(COUNT, survivor_value(rank), dtype=np.float32) for _ in range(8)]
                both = survivor_value(0) + survivor_value(1)
                for i in range(DIE_IN + 2):
                    for b in bufs:
                        b.fill(survivor_value(rank))
                    descs = [pccl.ReduceOpDescriptor.from_numpy(b, b, pccl.ReduceDescriptor(COUNT, pccl.ReduceOp.SUM,
                                                                                            t, od, None))
                             for t, b in enumerate(bufs)]
                    info = comm.all_reduce_multiple_with_retry(descs, max_in_flight=2)
                    with3 = [bool((b == both + VICTIM_VALUE).all()) for b in bufs]
                    with2 = [bool((b == both).all()) for b in bufs]
                    if i < DIE_IN:
                        assert info.local_world_size == 3 and all(with3), (i, info, with3)
                    elif i == DIE_IN:
                        # Finished before the kill: the 3-peer sum; retried or started after: 2 peers.
                        assert info.local_world_size == 2, info
                        assert all(a or b for a, b in zip(with3, with2)), (with3, with2)
                        assert all(with2[2:]), "operations that started after the kill must have 2 peers"
                    else:
                        assert info.local_world_size == 2 and all(with2), (i, info, with2)
                assert comm.get_attribute(pccl.Attribute.LOCAL_WORLD_SIZE) == 2

            cluster.run(survive, timeout=60)
            assert victim.proc.wait(10) == -signal.SIGKILL, victim.transcript()
        finally:
            victim.kill()
