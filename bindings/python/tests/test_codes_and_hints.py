"""Right codes and hints as Python sees them: max_in_flight below one is INVALID_ARGUMENT (the C
API rejects it), and a shared-state revision that was not advanced says how to fix it."""

from __future__ import annotations

import pytest

import pccl
from pccl_testing import Cluster

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(90)

SUM = pccl.ReduceOp.SUM


def test_max_in_flight_below_one_is_invalid_argument():
    with Cluster(2) as cluster:
        x = np.ones(16, dtype=np.float32)
        od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
        d = pccl.ReduceOpDescriptor.from_numpy(x, x, pccl.ReduceDescriptor(16, SUM, 1, od, None))
        for bad in (0, -1):
            with pytest.raises(pccl.PCCLError) as e:
                cluster.comms[0].all_reduce_multiple_with_retry([d], max_in_flight=bad)
            assert e.value.result == pccl.Result.INVALID_ARGUMENT
            assert "max_in_flight" in str(e.value)
        assert x[0] == 1.0  # nothing ran


def test_a_revision_not_advanced_names_the_fix():
    with Cluster(2) as cluster:
        states = [pccl.SharedState([pccl.TensorInfo.from_numpy(np.zeros(8, np.float32), "w")]) for _ in range(2)]

        def sync(rank, comm):
            states[rank].revision = 5
            comm.sync_shared_state(states[rank])
            try:  # the same revision again: nobody is at the group's next revision, 6
                comm.sync_shared_state(states[rank])
            except pccl.PCCLError as e:
                return e
            return None

        for err in cluster.run(sync):
            assert err is not None and err.result == pccl.Result.NO_SHARED_STATE_AVAILABLE
            assert "advance the revision by exactly one each step" in str(err), str(err)
            assert "push_revision" in str(err)
