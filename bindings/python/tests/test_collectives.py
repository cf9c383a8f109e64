"""Communicator.broadcast / all_gather / reduce_scatter / barrier over three peers (threads of
this process): layouts by ring rank, torch and numpy, uneven blocks, async forms, and the errors
(Python-side argument checks, the library's reasons)."""

from __future__ import annotations

import pytest

import pccl
from pccl_testing import Cluster

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as c:
        yield c


def test_all_gather_torch_and_numpy_by_ring_rank(cluster):
    def body(i, comm):
        me = comm.rank
        send = torch.arange(1000, dtype=torch.float32) + 10000 * me
        out = torch.full((3000,), -1.0)
        info = comm.all_gather(send, out, tag=1)
        assert info.local_world_size == 3 and info.tx_bytes >= 2 * 4000
        expect = torch.cat([torch.arange(1000, dtype=torch.float32) + 10000 * r for r in range(3)])
        assert torch.equal(out, expect)
        # numpy, uneven blocks (ring rank 1 has none), async
        counts = [5, 0, 7]
        a = np.full(counts[me], me + 1, dtype=np.int16)
        b = np.zeros(12, dtype=np.int16)
        h = comm.all_gather_async(a, b, tag=2, counts=counts)
        ok, status, _ = h.wait()
        assert ok, h.error
        assert b.tolist() == [1] * 5 + [3] * 7
        return me

    assert sorted(cluster.run(body)) == [0, 1, 2]


def test_reduce_scatter_every_op_and_in_place(cluster):
    def body(i, comm):
        me = comm.rank
        for op in (pccl.ReduceOp.SUM, pccl.ReduceOp.AVG, pccl.ReduceOp.MAX, pccl.ReduceOp.MIN, pccl.ReduceOp.PROD):
            send = torch.arange(30, dtype=torch.float64) + me
            out = torch.empty(10, dtype=torch.float64)
            comm.reduce_scatter(send, out, op=op, tag=10 + int(op))
            full = torch.stack([torch.arange(30, dtype=torch.float64) + r for r in range(3)])
            ref = {pccl.ReduceOp.SUM: full.sum(0), pccl.ReduceOp.AVG: full.sum(0) / 3, pccl.ReduceOp.MAX: full.max(0).values,
                   pccl.ReduceOp.MIN: full.min(0).values, pccl.ReduceOp.PROD: full.prod(0)}[op]
            assert torch.allclose(out, ref[10 * me:10 * me + 10], rtol=0, atol=1e-12), (op, out)
        # In place: the output is this rank's block of the input.
        buf = np.arange(12, dtype=np.int32) * (me + 1)
        comm.reduce_scatter(buf, buf[4 * me:4 * me + 4], op=pccl.ReduceOp.SUM, tag=20)
        assert buf[4 * me:4 * me + 4].tolist() == [6 * k for k in range(4 * me, 4 * me + 4)]

    cluster.run(body)


def test_broadcast_from_each_root_and_barrier(cluster):
    def body(i, comm):
        me = comm.rank
        for root in range(3):
            t = torch.full((100_000,), float(me), dtype=torch.bfloat16)
            comm.broadcast(t, root=root, tag=30 + root)
            assert torch.equal(t, torch.full((100_000,), float(root), dtype=torch.bfloat16))
        h = comm.broadcast_async(np.arange(5, dtype=np.uint8) + me, root=2, tag=40)
        assert h.wait()[0], h.error
        comm.barrier(tag=41)

    cluster.run(body)


def test_argument_errors_and_library_errors(cluster):
    comm = cluster.comms[0]
    with pytest.raises(ValueError, match="not a multiple"):
        comm.all_gather(torch.zeros(4), torch.zeros(10))
    with pytest.raises(TypeError, match="dtypes"):
        comm.all_gather(torch.zeros(4), torch.zeros(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="counts sum"):
        comm.reduce_scatter(torch.zeros(12), torch.zeros(4), op=pccl.ReduceOp.SUM, counts=[4, 4, 5])
    with pytest.raises(TypeError):
        comm.reduce_scatter(torch.zeros(12), torch.zeros(4), op="sum")
    # Laid out for two peers in a group of three: the library's check, with its reason.
    with pytest.raises(pccl.PCCLError) as e:
        comm.all_gather(torch.zeros(4), torch.zeros(8))
    assert e.value.result == pccl.Result.RANK_CONNECTION_LOST
    assert e.value.func_name == "pcclAllGather" and "world_size 2" in e.value.message
    with pytest.raises(pccl.PCCLError) as e:
        comm.broadcast(torch.zeros(4), root=3)
    assert e.value.result == pccl.Result.INVALID_ARGUMENT and "root 3" in e.value.message
