"""A pccl peer in its own process, for the fault tests (numpy only).

    python peer_process.py --master 127.0.0.1:PORT --count N --value V --die-in K [--batch]

Connects (waits to be admitted), prints CONNECTED, then runs all-reduces (SUM, float32, every
element = V) in a loop. In iteration K, as soon as reduced data shows up in its receive buffer
(the operation has started on every peer and is not finished), it prints INFLIGHT K and kills
itself with SIGKILL: a peer that dies in the middle of an all-reduce.
With --batch each iteration is all_reduce_multiple_with_retry over 8 buffers instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import numpy as np

import pccl


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--value", type=float, default=100.0)
    p.add_argument("--die-in", type=int, required=True)
    p.add_argument("--batch", action="store_true")
    args = p.parse_args()

    comm = pccl.Communicator(args.master)
    comm.connect()
    print("CONNECTED", flush=True)
    n_bufs = 8 if args.batch else 1
    sends = [np.full(args.count, args.value, dtype=np.float32) for _ in range(n_bufs)]
    recvs = [np.zeros(args.count, dtype=np.float32) for _ in range(n_bufs)]
    od = pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT)
    for k in range(args.die_in + 1):
        for r in recvs:
            r.fill(0)
        if args.batch:
            descs = [pccl.ReduceOpDescriptor.from_numpy(s, r, pccl.ReduceDescriptor(args.count, pccl.ReduceOp.SUM,
                                                                                    t, od, None))
                     for t, (s, r) in enumerate(zip(sends, recvs))]
            worker = threading.Thread(target=comm.all_reduce_multiple_with_retry, args=(descs,),
                                      kwargs={"max_in_flight": 2}, daemon=True)
            worker.start()
            if k < args.die_in:
                worker.join()
                print(f"DONE {k}", flush=True)
                continue
        else:
            handle = comm.all_reduce_async(sends[0], recvs[0], op=pccl.ReduceOp.SUM, tag=0)
            if k < args.die_in:
                ok, status, info = handle.wait()
                print(f"DONE {k} {ok} {int(status)} {info.local_world_size}", flush=True)
                continue
        # Iteration die_in: die as soon as the operation is visibly under way.
        deadline = time.monotonic() + 30
        while not recvs[0][::16384].any():
            if time.monotonic() > deadline:
                print("FAIL never saw the operation start", flush=True)
                return 1
            time.sleep(0.0005)
        print(f"INFLIGHT {k}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
