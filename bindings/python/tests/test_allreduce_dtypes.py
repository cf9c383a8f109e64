"""All-reduce over three peers for every dtype x op, through torch and through numpy, against a
reference computed here; results must also be byte-identical on every peer."""

from __future__ import annotations

import pytest

import pccl
from pccl_testing import Cluster

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.timeout(90)

N = 3
DTYPES = list(pccl.DataType)
OPS = list(pccl.ReduceOp)
INT_NP = {
    pccl.DataType.UINT8: np.uint8, pccl.DataType.INT8: np.int8, pccl.DataType.INT16: np.int16,
    pccl.DataType.UINT16: np.uint16, pccl.DataType.UINT32: np.uint32, pccl.DataType.INT32: np.int32,
    pccl.DataType.UINT64: np.uint64, pccl.DataType.INT64: np.int64,
}
FLOAT_NP = {pccl.DataType.FLOAT16: np.float16, pccl.DataType.FLOAT: np.float32, pccl.DataType.DOUBLE: np.float64}


@pytest.fixture(scope="module")
def cluster():
    with Cluster(N) as c:
        yield c


def make_inputs(dt: pccl.DataType, op: pccl.ReduceOp, count: int, seed: int):
    """Per-peer inputs as numpy arrays (bfloat16: float32 arrays of bf16-representable values)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(N):
        if dt in INT_NP:
            t = INT_NP[dt]
            info = np.iinfo(t)
            if op == pccl.ReduceOp.AVG and info.bits == 64:
                lo, hi = (-1000, 1000) if info.min < 0 else (0, 2000)  # the 64-bit sum must not wrap
            else:
                lo, hi = int(info.min), int(info.max)  # sums and products wrap around
            a = rng.integers(lo, hi, size=count, endpoint=True, dtype=t)
        else:
            if op in (pccl.ReduceOp.MAX, pccl.ReduceOp.MIN):
                a = rng.standard_normal(count).astype(np.float32) * 100
                a[5] = np.nan if r == 1 else a[5]  # NaN propagates
            else:
                a = rng.integers(-4, 4, size=count, endpoint=True).astype(np.float32)  # exact in any order
            if dt == pccl.DataType.BFLOAT16:
                a = torch.from_numpy(a).to(torch.bfloat16).to(torch.float32).numpy()
            else:
                a = a.astype(FLOAT_NP[dt])
        out.append(a)
    return out


def reference(dt: pccl.DataType, op: pccl.ReduceOp, inputs):
    """What the library must produce (see pccl.h: integer sums wrap, integer AVG truncates the
    exact sum, f16/bf16 are reduced in f32 and rounded once)."""
    stack = np.stack(inputs)
    if dt in INT_NP:
        t = INT_NP[dt]
        if op == pccl.ReduceOp.SUM:
            return np.add.reduce(stack, axis=0, dtype=t)
        if op == pccl.ReduceOp.PROD:
            return np.multiply.reduce(stack, axis=0, dtype=t)
        if op == pccl.ReduceOp.MAX:
            return stack.max(axis=0)
        if op == pccl.ReduceOp.MIN:
            return stack.min(axis=0)
        if np.iinfo(t).min < 0:
            s = stack.astype(np.int64).sum(axis=0)
            return np.where(s < 0, -((-s) // N), s // N).astype(t)
        return (stack.astype(np.uint64).sum(axis=0) // np.uint64(N)).astype(t)
    acc = np.float64 if dt == pccl.DataType.DOUBLE else np.float32
    wide = stack.astype(acc)
    if op == pccl.ReduceOp.SUM:
        r = wide.sum(axis=0)
    elif op == pccl.ReduceOp.AVG:
        r = wide.sum(axis=0) / acc(N)
    elif op == pccl.ReduceOp.PROD:
        r = wide.prod(axis=0)
    elif op == pccl.ReduceOp.MAX:
        r = np.maximum.reduce(wide, axis=0)
    else:
        r = np.minimum.reduce(wide, axis=0)
    r = r.astype(acc)
    if dt == pccl.DataType.BFLOAT16:
        return torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)).to(torch.bfloat16)
    return r.astype(FLOAT_NP[dt])


def to_torch(a: np.ndarray, dt: pccl.DataType):
    if dt == pccl.DataType.BFLOAT16:
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(a.copy())


def as_bytes(x) -> bytes:
    if isinstance(x, torch.Tensor):
        return x.contiguous().view(torch.uint8).numpy().tobytes()
    return x.tobytes()


def same(result, want) -> bool:
    if isinstance(want, torch.Tensor):
        return bool(torch.equal(result.float().nan_to_num(7.5), want.float().nan_to_num(7.5))) and bool(
            (result.float().isnan() == want.float().isnan()).all())
    if isinstance(result, torch.Tensor):
        result = result.numpy()
    return np.array_equal(result, want, equal_nan=result.dtype.kind == "f")


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_every_dtype_and_op(cluster, lib, dt, op):
    if lib == "numpy" and dt == pccl.DataType.BFLOAT16:
        try:
            dt.to_numpy_dtype()
        except TypeError:
            pytest.skip("numpy has no bfloat16 without ml_dtypes (covered by test_bfloat16_numpy_raw_pointers)")
    count = 1000
    inputs = make_inputs(dt, op, count, seed=int(dt) * 10 + int(op))
    want = reference(dt, op, inputs)

    def peer(rank, comm):
        if lib == "torch":
            send = to_torch(inputs[rank], dt)
            recv = torch.zeros_like(send)
        else:
            send = inputs[rank].copy()
            recv = np.zeros_like(send)
        info = comm.all_reduce(send, recv, op=op, tag=int(dt) * 10 + int(op))
        assert info.local_world_size == N
        assert info.tx_bytes > 0 and info.rx_bytes > 0
        return recv

    results = cluster.run(peer)
    for r, res in enumerate(results):
        assert same(res, want), f"peer {r}: {res[:8]} != {want[:8]}"
    assert len({as_bytes(res) for res in results}) == 1, "results differ between peers"


def test_bfloat16_numpy_raw_pointers(cluster):
    """numpy has no bfloat16: uint16 arrays holding bf16 bits, passed by address."""
    count = 513
    inputs = make_inputs(pccl.DataType.BFLOAT16, pccl.ReduceOp.SUM, count, seed=99)
    want = reference(pccl.DataType.BFLOAT16, pccl.ReduceOp.SUM, inputs)
    od = pccl.ReduceOperandDescriptor(pccl.DataType.BFLOAT16)

    def peer(rank, comm):
        send = to_torch(inputs[rank], pccl.DataType.BFLOAT16).view(torch.int16).numpy().view(np.uint16).copy()
        recv = np.zeros_like(send)
        d = pccl.ReduceOpDescriptor(send.ctypes.data, recv.ctypes.data,
                                    pccl.ReduceDescriptor(count, pccl.ReduceOp.SUM, 5, od, None))
        info = comm.all_reduce_multiple_with_retry([d])
        assert info.local_world_size == N
        return torch.from_numpy(recv.view(np.int16)).view(torch.bfloat16)

    for res in cluster.run(peer):
        assert torch.equal(res, want)


@pytest.mark.parametrize("dt", [pccl.DataType.FLOAT, pccl.DataType.FLOAT16, pccl.DataType.INT64],
                         ids=lambda d: d.name)
def test_large_in_place(cluster, dt):
    """Several pipeline segments (1 MiB each), in place, torch and numpy."""
    count = 3 * 1024 * 1024 // dt.itemsize + 7
    inputs = make_inputs(dt, pccl.ReduceOp.SUM, count, seed=7)
    want = reference(dt, pccl.ReduceOp.SUM, inputs)

    def peer(rank, comm):
        a = inputs[rank].copy()
        comm.all_reduce(a, a, op=pccl.ReduceOp.SUM, tag=1)
        t = torch.from_numpy(inputs[rank].copy())
        comm.all_reduce(t, t, op=pccl.ReduceOp.SUM, tag=2)
        return a, t

    for a, t in cluster.run(peer):
        assert np.array_equal(a, want)
        assert np.array_equal(t.numpy(), want)


def test_async_and_multiple(cluster):
    """Concurrent async all-reduces with distinct tags, and a batch with retry, torch + numpy."""
    count = 10000

    def peer(rank, comm):
        xs = [torch.full((count,), float(rank + k)) for k in range(4)]
        handles = [comm.all_reduce_async(x, x, op=pccl.ReduceOp.SUM, tag=100 + k) for k, x in enumerate(xs)]
        del xs  # the handles keep the tensors alive
        outcomes = [h.wait() for h in handles]
        assert handles[0].wait() is outcomes[0]  # waiting again: same outcome
        for ok, status, info in outcomes:
            assert ok and status == pccl.Result.SUCCESS and info.local_world_size == N
        values = [h._keepalive for h in handles]
        assert values == [None] * 4  # released after wait
        arrays = [np.full(count, rank * 10 + k, dtype=np.int32) for k in range(6)]
        outs = [np.zeros_like(a) for a in arrays]
        od = pccl.ReduceOperandDescriptor(pccl.DataType.INT32)
        descs = [pccl.ReduceOpDescriptor.from_numpy(a, o, pccl.ReduceDescriptor(count, pccl.ReduceOp.MAX, 200 + k,
                                                                                 od, None))
                 for k, (a, o) in enumerate(zip(arrays, outs))]
        info = comm.all_reduce_multiple_with_retry(descs, max_in_flight=2)
        assert info.local_world_size == N and info.tx_bytes > 0
        return outs

    for outs in cluster.run(peer):
        for k, o in enumerate(outs):
            assert (o == (N - 1) * 10 + k).all()


def test_quantization_options_are_accepted(cluster):
    """Options are agreed between peers (this version reduces at full precision)."""
    def peer(rank, comm):
        x = torch.full((4096,), float(rank + 1))
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=300,
                        operand_descriptor=pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT,
                                                                        pccl.DistributionHint.NORMAL),
                        quantization_options=pccl.QuantizationOptions())
        return x

    for x in cluster.run(peer):
        assert (x == 6.0).all()
