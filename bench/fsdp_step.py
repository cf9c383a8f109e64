#!/usr/bin/env python3
"""An FSDP2 training step over torch.distributed backend "pccl" vs "gloo" (issue 17).

    PYTHONPATH=<installed pccl> python3 bench/fsdp_step.py --hidden 64,1024,4096 --steps 30 --reps 2

Per hidden width and repetition, runs N processes of bindings/python/tests/torch_backend_peer.py
fsdp with each backend in turn (pccl, gloo, pccl, gloo, ...), against an embedded pccl master
(gloo: a tcp:// store on a free port), and prints every rank's median ms/step, the first and
last loss, and whether every rank ends with the same parameters. docs/torch_backend.md has
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import pccl

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "bindings", "python", "tests", "torch_backend_peer.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(backend: str, hidden: int, steps: int, n: int, timeout: float) -> list:
    with pccl.MasterNode("127.0.0.1:0") as m:
        m.run()
        init = f"tcp://127.0.0.1:{free_port()}"
        procs = [subprocess.Popen([sys.executable, PEER, "fsdp", "--master", f"127.0.0.1:{m.port}", "--rank", str(r),
                                   "--world", str(n), "--backend", backend, "--init", init, "--steps", str(steps),
                                   "--hidden", str(hidden)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in range(n)]
        results = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=timeout)
                got = [json.loads(line[len("RESULT "):]) for line in out.splitlines() if line.startswith("RESULT ")]
                if not got:
                    print(f"# {backend} rank failed: {err[-800:]}", file=sys.stderr)
                results += got
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", default="64,1024", help="hidden widths, comma-separated")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    ok = True
    for hidden in (int(h) for h in args.hidden.split(",")):
        for _ in range(args.reps):
            for backend in ("pccl", "gloo"):
                r = run(backend, hidden, args.steps, args.peers, args.timeout)
                same = len({x["hash"] for x in r}) == 1 and len(r) == args.peers
                ok = ok and same
                ms = " ".join(f"{x['ms_per_step']:.1f}" for x in r)
                loss = f"{r[0]['losses'][0]:.3f}->{r[0]['losses'][-1]:.3f}" if r else "-"
                print(f"hidden={hidden} {backend}: ms/step {ms}  loss {loss}  same params: {same}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
