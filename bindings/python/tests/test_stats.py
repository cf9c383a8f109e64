"""Communicator.stats() (pcclGetCommunicatorStats, issue 18): all-reduces and collectives completed and failed,
bytes moved, the latest all-reduce's size and duration, the world, rank and epoch."""

from __future__ import annotations

import numpy as np
import pytest

import pccl
from pccl_testing import Cluster

pytestmark = pytest.mark.timeout(60)

N_PEERS = 3
N_OPS = 5
COUNT = 1 << 16  # float32: 256 KiB per buffer


def test_stats_before_connect_are_zero_without_rank():
    with pccl.MasterNode("127.0.0.1:0") as master:
        master.run()
        comm = pccl.Communicator(f"127.0.0.1:{master.port}")
        try:
            s = comm.stats()
            assert isinstance(s, pccl.CommStats)
            assert s.all_reduces_completed == 0 and s.tx_bytes == 0 and s.rx_bytes == 0
            assert s.world_size == 0 and s.rank is None and s.epoch == 0
            assert s.last_all_reduce_bytes_per_second == 0.0
        finally:
            comm.close()


def test_stats_count_all_reduces_bytes_and_failures():
    with Cluster(N_PEERS) as cluster:
        def work(rank, comm):
            x = np.full(COUNT, rank + 1, dtype=np.float32)
            for i in range(N_OPS):
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=i)
            after_ok = comm.stats()
            # Peers disagree on the count: every one of them fails with a mismatch.
            y = np.ones(COUNT + rank, dtype=np.float32)
            with pytest.raises(pccl.PCCLError) as e:
                comm.all_reduce(y, y, op=pccl.ReduceOp.SUM, tag=100)
            assert e.value.result == pccl.Result.MISMATCH
            return after_ok, comm.stats(), comm.rank

        results = cluster.run(work)
        # What a ring moves per peer: 2 * (N - 1) chunks of at least COUNT // N elements each way.
        ring_bytes = N_OPS * 2 * (N_PEERS - 1) * (COUNT // N_PEERS) * 4
        for s, after, rank in results:
            assert s.all_reduces_completed == N_OPS
            assert s.all_reduces_failed == 0
            assert s.tx_bytes >= ring_bytes and s.rx_bytes >= ring_bytes
            assert s.last_all_reduce_bytes == COUNT * 4
            assert s.last_all_reduce_micros > 0
            assert s.last_all_reduce_bytes_per_second > 0
            assert s.world_size == N_PEERS and s.group_world_size == N_PEERS
            assert s.rank == rank
            assert s.epoch >= 1
            assert after.all_reduces_failed == 1
            assert after.all_reduces_completed == N_OPS
            assert after.last_all_reduce_bytes == COUNT * 4  # of the last successful one
        assert sorted(r for _, _, r in results) == list(range(N_PEERS))


def test_stats_count_every_collective_kind_and_all_reduces_apart():
    with Cluster(N_PEERS) as cluster:
        def work(rank, comm):
            x = np.full(COUNT, rank + 1, dtype=np.float32)
            comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=1)
            b = np.full(1000, rank, dtype=np.float32)
            comm.broadcast(b, root=0, tag=2)
            g = np.zeros(N_PEERS * 10, dtype=np.float32)
            comm.all_gather(np.full(10, rank, dtype=np.float32), g, tag=3)
            comm.barrier(tag=4)
            return comm.stats()

        for s in cluster.run(work):
            assert s.collectives_completed == 4
            assert s.collectives_failed == 0
            assert s.all_reduces_completed == 1
            assert s.last_all_reduce_bytes == COUNT * 4  # the all-reduce's, not the later collectives'
