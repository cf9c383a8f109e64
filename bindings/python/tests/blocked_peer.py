"""A pccl peer that blocks in one call until it gets SIGINT (for test_interrupt.py; numpy only).

    python blocked_peer.py --master 127.0.0.1:PORT --mode MODE [--handler]

MODE is the call that blocks: ``connect`` (the run's only accepted peer never votes, so this peer
is never admitted), or, once admitted, ``all_reduce``, ``wait`` (of an all_reduce_async),
``are_peers_pending`` or ``sync_shared_state`` (the other peer never makes the matching call).
Prints ``CONNECTED`` once admitted, ``BLOCKING <mode>`` right before the call, and
``KEYBOARDINTERRUPT <time.monotonic()>`` when the call raises KeyboardInterrupt, which it then
re-raises (traceback, exit by SIGINT). With ``--handler`` a SIGINT handler that only prints
``HANDLED`` is installed instead: the call must go on, and the peer prints ``RETURNED`` when it
returns and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import numpy as np

import pccl


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--master", required=True)
    p.add_argument("--mode", required=True,
                   choices=["connect", "all_reduce", "wait", "are_peers_pending", "sync_shared_state"])
    p.add_argument("--handler", action="store_true")
    args = p.parse_args()
    if args.handler:
        signal.signal(signal.SIGINT, lambda signum, frame: print("HANDLED", flush=True))

    comm = pccl.Communicator(args.master)
    buf = np.ones(1 << 20, dtype=np.float32)
    if args.mode == "connect":
        call = comm.connect
    else:
        comm.connect()
        print("CONNECTED", flush=True)
        calls = {
            "all_reduce": lambda: comm.all_reduce(buf, buf, op=pccl.ReduceOp.SUM),
            "wait": lambda: comm.all_reduce_async(buf, buf, op=pccl.ReduceOp.SUM).wait(),
            "are_peers_pending": comm.are_peers_pending,
            "sync_shared_state": lambda: comm.sync_shared_state(pccl.SharedState([pccl.TensorInfo.from_numpy(buf, "w")])),
        }
        call = calls[args.mode]
    print(f"BLOCKING {args.mode}", flush=True)
    try:
        call()
    except KeyboardInterrupt:
        print(f"KEYBOARDINTERRUPT {time.monotonic():.6f}", flush=True)
        raise
    print("RETURNED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
