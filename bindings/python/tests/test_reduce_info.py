"""ReduceInfo reports how long an all-reduce took and the throughput it reached (from
pcclReduceInfoEx_t), for the blocking, async and batched calls; PCCL 1.0's three-field
constructor still works."""

from __future__ import annotations

import math
import time

import pytest

import pccl
from pccl_testing import Cluster

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(90)

SUM = pccl.ReduceOp.SUM
COUNT = 1 << 18  # 1 MiB of float32


def check_speed(info: pccl.ReduceInfo, wall_s: float) -> None:
    assert info.local_world_size == 2
    assert info.tx_bytes > 0 and info.rx_bytes > 0
    assert isinstance(info.duration_s, float) and isinstance(info.bytes_per_second, float)
    assert 0.0 < info.duration_s <= wall_s, (info, wall_s)
    assert math.isclose(info.bytes_per_second, (info.tx_bytes + info.rx_bytes) / info.duration_s, rel_tol=1e-9)


def test_pccl1_constructor_leaves_duration_and_rate_zero():
    info = pccl.ReduceInfo(2, 10, 20)
    assert (info.local_world_size, info.tx_bytes, info.rx_bytes) == (2, 10, 20)
    assert (info.duration_s, info.bytes_per_second) == (0.0, 0.0)
    assert pccl.ReduceInfo(2, 10, 20, 0.5, 60.0).bytes_per_second == 60.0


def test_all_reduce_async_and_batch_report_duration_and_bytes_per_second():
    with Cluster(2) as cluster:
        def work(rank, comm):
            x = np.full(COUNT, float(rank + 1), dtype=np.float32)
            t0 = time.monotonic()
            blocking = comm.all_reduce(x, x, op=SUM, tag=1)
            check_speed(blocking, time.monotonic() - t0)
            assert x[0] == 3.0

            y = np.ones(COUNT, dtype=np.float32)
            t0 = time.monotonic()
            handle = comm.all_reduce_async(y, y, op=SUM, tag=2)
            ok, status, info = handle.wait()
            assert ok and status == pccl.Result.SUCCESS
            check_speed(info, time.monotonic() - t0)

            bufs = [np.ones(COUNT // 4, dtype=np.float32) for _ in range(4)]
            od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
            descs = [pccl.ReduceOpDescriptor.from_numpy(b, b, pccl.ReduceDescriptor(b.size, SUM, 10 + i, od, None))
                     for i, b in enumerate(bufs)]
            t0 = time.monotonic()
            batch = comm.all_reduce_multiple_with_retry(descs, max_in_flight=2)
            check_speed(batch, time.monotonic() - t0)
            assert all(b[0] == 2.0 for b in bufs)
            return blocking, info, batch

        for blocking, info, batch in cluster.run(work):
            # The batch moved four quarter-size operations: about as much as one full one.
            assert batch.tx_bytes == pytest.approx(blocking.tx_bytes, rel=0.01)
