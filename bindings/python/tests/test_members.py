"""Rank and member list (issue 16, item 11): Communicator.rank and Communicator.members()."""

from __future__ import annotations

import pytest

import pccl
from pccl_testing import Cluster

pytestmark = pytest.mark.timeout(60)


def test_ranks_are_distinct_and_members_are_listed_in_rank_order():
    with Cluster(3) as cluster:
        def read(rank, comm):
            return comm.rank, comm.members(), comm.get_attribute(pccl.Attribute.RANK)

        results = cluster.run(read)
        ranks = sorted(r for r, _, _ in results)
        assert ranks == [0, 1, 2]
        for rank, members, attr in results:
            assert attr == rank
            assert [m.rank for m in members] == [0, 1, 2]
            assert all(isinstance(m, pccl.MemberInfo) for m in members)
            assert len({m.uuid for m in members}) == 3
            assert all(len(m.uuid) == 32 for m in members)
            assert all(m.address.startswith("127.") and int(m.address.rsplit(":", 1)[1]) > 0 for m in members)
            assert all(m.peer_group == 0 for m in members)
        # Every peer sees the same ring.
        assert len({tuple(m.uuid for m in members) for _, members, _ in results}) == 1


def test_members_before_connect_is_an_error():
    with pccl.MasterNode("127.0.0.1:0") as master:
        master.run()
        comm = pccl.Communicator(f"127.0.0.1:{master.port}")
        try:
            with pytest.raises(pccl.PCCLError) as e:
                comm.members()
            assert e.value.result == pccl.Result.INVALID_USAGE
        finally:
            comm.close()
