"""The documented loop (sync first, all-reduce with retry, vote last), by hand as in the README
and as pccl.Loop, with peers joining a running run: every step's all-reduce result is the sum
of exactly the peers that took part in that step, byte-identical on all of them, and every peer
ends at the same step with the same shared state.

Peer 0 runs in the main thread (its blocking calls go through the Ctrl-C relay) and starts
alone (all-reduces of one keep its own values); peer 1 is started in its step 3, peer 2 in its
step 12, as threads. Each is admitted by the vote at the end of a step and learns the step from
its first sync.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import pytest

import pccl

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)

STEPS = 40
JOIN_AT = {1: 3, 2: 12}  # peer -> the step of peer 0 in which it is started
COUNT = 4096


def contribution(rank: int, step: int):
    """Peer `rank`'s values in `step`: the sum over a set of peers names the set (bit `rank`)."""
    return np.full(COUNT, float(1 << rank) * (step + 1), dtype=np.float64)


def run_documented_loop(comm: pccl.Communicator, state: pccl.SharedState, steps: int,
                        body: Callable[[int, Callable], None]) -> Tuple[int, int]:
    """The loop of bindings/python/README.md, by hand. Returns (first step, final step)."""
    first_step: Optional[int] = None
    step = 0
    while True:
        # 1. Sync first: revision = step. A peer that just joined receives the state and the step.
        if first_step is not None:
            state.revision = step + 1
        while True:
            try:
                comm.sync_shared_state(state)
                break
            except pccl.PCCLError as e:
                if e.result != pccl.Result.RANK_CONNECTION_LOST:
                    raise
        step = state.revision
        if first_step is None:
            first_step = step
        if step >= steps:
            return first_step, step

        # 2. The work, with the all-reduce retried after a lost peer; alone: own values.
        def all_reduce(buf):
            while True:
                try:
                    return comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM)
                except pccl.PCCLError as e:
                    if e.result == pccl.Result.TOO_FEW_PEERS:
                        return pccl.ReduceInfo(1, 0, 0)
                    if e.result != pccl.Result.RANK_CONNECTION_LOST:
                        raise

        body(step, all_reduce)

        # 3. Vote last: admit the peers that wait in connect().
        if comm.are_peers_pending():
            comm.update_topology()


@pytest.mark.parametrize("style", ["pccl.Loop", "by hand"])
def test_peers_joining_mid_run_get_correct_results_every_step(master, style):
    address = f"127.0.0.1:{master.port}"
    records: Dict[int, List[Tuple[int, int, bytes]]] = {r: [] for r in range(3)}
    finals: Dict[int, Tuple[int, int, bytes]] = {}
    errors: Dict[int, BaseException] = {}
    connecting = {r: threading.Event() for r in JOIN_AT}
    threads: Dict[int, threading.Thread] = {}
    logs: List[str] = []

    def peer(rank: int) -> None:
        comm = pccl.Communicator(address)
        try:
            if rank in connecting:
                connecting[rank].set()
            comm.connect()  # a joiner waits here for the vote at the end of one of peer 0's steps
            w = np.zeros(COUNT, dtype=np.float64)
            state = pccl.SharedState([pccl.TensorInfo.from_numpy(w, "w")])

            def body(step: int, all_reduce: Callable) -> None:
                grad = contribution(rank, step)
                info = all_reduce(grad)
                records[rank].append((step, info.local_world_size, grad.tobytes()))
                np.add(w, grad, out=w)  # in place: the shared state points at w
                if rank == 0:
                    pace(step, info.local_world_size)

            if style == "pccl.Loop":
                loop = pccl.Loop(comm, state, max_steps=STEPS, log=lambda m: logs.append(f"[{rank}] {m}"))
                for step in loop:
                    body(step, lambda g: loop.all_reduce(g, op=pccl.ReduceOp.SUM))
                first, last = loop.first_step, loop.step
                assert loop.sync_info is not None and loop.sync_info.rx_bytes == 0
            else:
                first, last = run_documented_loop(comm, state, STEPS, body)
            finals[rank] = (first, last, w.tobytes())
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors[rank] = e
            raise
        finally:
            comm.close()

    def pace(step: int, world: int) -> None:
        """Peer 0 starts the joiners, and slows down while one is on its way in (it is admitted
        by the vote at the end of a step, which peer 0 must not run out of)."""
        for rank, at in JOIN_AT.items():
            if step == at:
                threads[rank] = threading.Thread(target=peer, args=(rank,), name=f"peer-{rank}", daemon=True)
                threads[rank].start()
            if step == at + 1:
                assert connecting[rank].wait(30), f"peer {rank} did not start"
        expected = 1 + sum(step > at for at in JOIN_AT.values())
        if world < expected:
            time.sleep(0.05)

    try:
        peer(0)
    finally:
        for t in threads.values():
            t.join(30)
            if t.is_alive():
                master.close()  # releases a joiner that was never admitted
                t.join(10)
    for rank, e in errors.items():
        raise AssertionError(f"peer {rank} failed: {e!r}") from e
    assert sorted(finals) == [0, 1, 2], finals

    # Every step: the same bytes on every peer that took part, the sum of exactly those peers.
    by_step: Dict[int, Dict[int, Tuple[int, bytes]]] = {}
    for rank, recs in records.items():
        for step, world, result in recs:
            by_step.setdefault(step, {})[rank] = (world, result)
    assert sorted(by_step) == list(range(STEPS)), sorted(by_step)
    total = np.zeros(COUNT, dtype=np.float64)
    for step, peers in sorted(by_step.items()):
        results = {result for _, result in peers.values()}
        assert len(results) == 1, f"step {step}: the peers got different results"
        values = np.frombuffer(results.pop(), dtype=np.float64)
        mask = values[0] / (step + 1)
        assert np.all(values == values[0]) and mask == int(mask), (step, values[:4])
        members = {r for r in range(3) if int(mask) >> r & 1}
        assert members == set(peers), f"step {step}: reduced over {members}, taken part: {set(peers)}"
        assert all(world == len(members) for world, _ in peers.values()), (step, peers.keys())
        total += values
    assert set(by_step[STEPS - 1]) == {0, 1, 2}, "the joiners were not in the run at the end"

    # Joined mid-run; everyone ends at the same step with the same state (the sum of all steps).
    firsts = {r: finals[r][0] for r in range(3)}
    assert firsts[0] == 0 and JOIN_AT[1] < firsts[1] <= JOIN_AT[2] < firsts[2] < STEPS, firsts
    assert {finals[r][1] for r in range(3)} == {STEPS}
    assert all(finals[r][2] == total.tobytes() for r in range(3)), "the peers' shared states differ"
    assert min(records[1])[0] == firsts[1] and min(records[2])[0] == firsts[2]
    if style == "pccl.Loop":
        assert any("[0] alone in peer group 0" in m for m in logs), logs
        assert any("[0] admitted pending peers: world 3" in m for m in logs), logs


def test_loop_without_shared_state_counts_its_own_steps_and_keeps_own_values_alone(master):
    with pccl.Communicator(f"127.0.0.1:{master.port}") as comm:
        comm.connect()
        loop = pccl.Loop(comm, max_steps=3)
        seen = []
        for step in loop:
            send = np.full(8, step + 1.0, dtype=np.float32)
            recv = np.zeros(8, dtype=np.float32)
            info = loop.all_reduce(send, recv, op=pccl.ReduceOp.AVG)
            assert info.local_world_size == 1 and np.array_equal(recv, send)  # alone: own values
            handle = loop.all_reduce_async(send, recv, op=pccl.ReduceOp.AVG, tag=1)
            assert handle.wait().local_world_size == 1 and np.array_equal(recv, send)
            seen.append(step)
        assert seen == [0, 1, 2] and loop.step == 3 and loop.first_step == 0 and loop.sync_info is None
        with pytest.raises(RuntimeError):
            iter(loop)  # runs once


def test_loop_refuses_to_vote_with_an_all_reduce_not_waited_for(master):
    with pccl.Communicator(f"127.0.0.1:{master.port}") as comm:
        comm.connect()
        loop = pccl.Loop(comm, max_steps=2)
        buf = np.ones(16, dtype=np.float32)
        with pytest.raises(RuntimeError, match="not waited for"):
            for _ in loop:
                handle = loop.all_reduce_async(buf, op=pccl.ReduceOp.SUM)
        assert handle.wait().local_world_size == 1
