"""A training peer in its own process, for the master-restart test (numpy only).

    python training_peer.py --master 127.0.0.1:PORT --value V --world W --total T --steps N
                            [--pause-ms MS]

Connects, admits peers until the run has W, prints READY, then runs N steps: an in-place SUM
all-reduce of a float32 buffer filled with V * (step + 1), whose every element must be
T * (step + 1) (T: the sum of every peer's V), then the state is updated from the result and
synced at revision step + 1 (ENFORCE_POPULAR); each step prints STEP k. A retryable failure
(RANK_CONNECTION_LOST, TIMEOUT: an operation the restarted master aborted everywhere) must
leave the input in place; the step is then run again. At the end it prints
DONE <revision> <sha256 of the state> <retries> and exits 0; any other failure prints FAIL and
exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import numpy as np

import pccl

COUNT = 4096
RETRYABLE = (pccl.Result.RANK_CONNECTION_LOST, pccl.Result.TIMEOUT)


def fail(msg: str) -> int:
    print(f"FAIL {msg}", flush=True)
    return 1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--value", type=float, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--total", type=float, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--pause-ms", type=int, default=50)
    args = p.parse_args()

    comm = pccl.Communicator(args.master)
    comm.connect(n_attempts=20)
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < args.world:
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.01)
    print("READY", flush=True)

    weights = np.zeros(COUNT, dtype=np.float32)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(weights, "weights")])
    buf = np.empty(COUNT, dtype=np.float32)
    retries = 0
    for step in range(args.steps):
        mine = np.float32(args.value * (step + 1))
        for attempt in range(6):
            buf.fill(mine)
            try:
                comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM, tag=step)
                break
            except pccl.PCCLError as e:
                if e.result not in RETRYABLE or attempt == 5:
                    return fail(f"step {step}: all_reduce: {e}")
                if not np.all(buf == mine):
                    return fail(f"step {step}: the input was not restored after {e.result.name}")
                retries += 1
        expected = np.float32(args.total * (step + 1))
        if not np.all(buf == expected):
            return fail(f"step {step}: sum {buf[0]}, expected {expected}")
        weights += buf / np.float32(1024)
        state.revision = step + 1
        for attempt in range(6):
            try:
                comm.sync_shared_state(state)
                break
            except pccl.PCCLError as e:
                if e.result not in RETRYABLE or attempt == 5:
                    return fail(f"step {step}: sync_shared_state: {e}")
                retries += 1
        if state.revision != step + 1:
            return fail(f"step {step}: the group's revision is {state.revision}, expected {step + 1}")
        print(f"STEP {step}", flush=True)
        time.sleep(args.pause_ms / 1000)
    digest = hashlib.sha256(weights.tobytes()).hexdigest()
    print(f"DONE {state.revision} {digest} {retries}", flush=True)
    comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
