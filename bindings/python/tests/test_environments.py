"""pccl with only numpy, or only torch: a subprocess whose import system pretends the other one
is not installed runs a two-peer all-reduce (blocking, async, batch) and a shared-state sync."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pccl_testing import HERE

pytestmark = pytest.mark.timeout(120)

BLOCKER = """
import sys, importlib.abc
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == {mod!r} or name.startswith({mod!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
sys.path.insert(0, {here!r})
"""

COMMON = """
import pccl
from pccl_testing import Cluster
assert {blocked!r} not in sys.modules
try:
    import {blocked}
except ImportError:
    pass
else:
    raise SystemExit("the import blocker does not work")
"""

NUMPY_ONLY = """
import numpy as np
with Cluster(2) as cluster:
    def peer(rank, comm):
        x = np.full(1000, rank + 1, dtype=np.float16)
        y = np.empty_like(x)
        assert comm.all_reduce(x, y, op=pccl.ReduceOp.SUM).local_world_size == 2
        assert (y == 3).all()
        h = comm.all_reduce_async(x, x, op=pccl.ReduceOp.MAX, tag=1)
        ok, status, info = h.wait()
        assert ok and (x == 2).all()
        a = np.full(100, rank, dtype=np.int16)
        od = pccl.ReduceOperandDescriptor(pccl.DataType.INT16)
        d = pccl.ReduceOpDescriptor.from_numpy(a, a, pccl.ReduceDescriptor(100, pccl.ReduceOp.SUM, 2, od, None))
        comm.all_reduce_multiple_with_retry([d])
        assert (a == 1).all()
        w = np.arange(50, dtype=np.float64) * (rank == 0)
        st = pccl.SharedState([pccl.TensorInfo.from_numpy(w, "w")])
        st.revision = 5
        info = comm.sync_shared_state(st)
        return info, w
    results = cluster.run(peer)
    assert results[0][1].tolist() == results[1][1].tolist()
    assert pccl.DataType.from_numpy_dtype(np.int16) is pccl.DataType.INT16
try:
    pccl.DataType.FLOAT.to_torch_dtype()
except ImportError:
    pass
else:
    raise SystemExit("to_torch_dtype worked without torch")
assert "torch" not in sys.modules
print("NUMPY-ONLY OK")
"""

TORCH_ONLY = """
import torch
with Cluster(2) as cluster:
    def peer(rank, comm):
        x = torch.full((1000,), float(rank + 1), dtype=torch.bfloat16)
        y = torch.empty_like(x)
        assert comm.all_reduce(x, y, op=pccl.ReduceOp.SUM).local_world_size == 2
        assert (y == 3).all()
        h = comm.all_reduce_async(x, x, op=pccl.ReduceOp.MIN, tag=1)
        ok, status, info = h.wait()
        assert ok and (x == 1).all()
        a = torch.full((100,), rank, dtype=torch.int16)
        od = pccl.ReduceOperandDescriptor(pccl.DataType.INT16)
        d = pccl.ReduceOpDescriptor.from_torch(a, a, pccl.ReduceDescriptor(100, pccl.ReduceOp.SUM, 2, od, None))
        comm.all_reduce_multiple_with_retry([d])
        assert (a == 1).all()
        w = torch.arange(50, dtype=torch.float64) * (rank == 0)
        st = pccl.SharedState([pccl.TensorInfo.from_torch(w, "w")])
        st.revision = 5
        comm.sync_shared_state(st)
        return w
    w0, w1 = cluster.run(peer)
    assert torch.equal(w0, w1)
    assert pccl.DataType.from_torch_dtype(torch.bfloat16) is pccl.DataType.BFLOAT16
try:
    pccl.DataType.FLOAT.to_numpy_dtype()
except ImportError:
    pass
else:
    raise SystemExit("to_numpy_dtype worked without numpy")
assert "numpy" not in sys.modules
print("TORCH-ONLY OK")
"""


def run_without(blocked: str, body: str, expect: str) -> None:
    code = BLOCKER.format(mod=blocked, here=HERE) + COMMON.format(blocked=blocked) + body
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=100,
                         cwd="/")
    assert out.returncode == 0 and expect in out.stdout, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"


def test_numpy_only():
    pytest.importorskip("numpy")
    run_without("torch", NUMPY_ONLY, "NUMPY-ONLY OK")


def test_torch_only():
    pytest.importorskip("torch")
    run_without("numpy", TORCH_ONLY, "TORCH-ONLY OK")
