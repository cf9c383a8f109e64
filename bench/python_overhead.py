#!/usr/bin/env python3
"""What the Python bindings cost on top of the C library.

(a) Latency: a 1 MiB float32 SUM all-reduce between 2 local peer processes, out of place,
    back to back with a new tag per call, timed per call; an iteration's time is the slower
    peer's; the median over --iters iterations (after --warmup). Once through
    ``pccl.Communicator.all_reduce`` on torch tensors, once through the C API with the same
    settings by ``pccl-bench`` (bench/worker.cpp does exactly this loop); prints both and the
    ratio. Each Python call alternates with the extension's all_reduce on prepared arguments;
    the paired difference of the two is the wrapper's cost inside the real loop. Also the
    wrapper's own per-call cost without I/O (Communicator.all_reduce with the extension swapped
    for a stub: argument checks, dtype mapping, the result), on torch tensors and numpy arrays.

(b) Zero copy: a 256 MiB float32 all-reduce (torch tensors, out of place, and in place) between
    2 peers. Each peer resets its peak-RSS mark (/proc/self/clear_refs) after allocating and
    touching its buffers, and reads VmHWM after the all-reduce: the growth must be far below the
    256 MiB a copy of the tensor would cost. The time is compared with a memcpy of 256 MiB
    (torch ``copy_``, 1 thread) in the same process.

    python3 bench/python_overhead.py                     # both parts
    python3 bench/python_overhead.py --iters 500 --bench-bin build/bench/pccl-bench
    python3 bench/python_overhead.py --no-cpp            # Python side only

Needs the installed package (pip install --no-build-isolation ./bindings/python), torch and
numpy. To compare two versions of the package, put the other one first on PYTHONPATH.
The peers are processes of this script; everything runs on 127.0.0.1 with a master on port 0.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MIB = 1 << 20


# ------------------------------------------------------------------------------- peer side

def proc_status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def connect(master: str, world: int):
    import pccl

    comm = pccl.Communicator(master)
    comm.connect(n_attempts=10)
    deadline = time.monotonic() + 60
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < world:
        if time.monotonic() > deadline:
            raise TimeoutError("peers did not arrive")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.01)
    return comm


def peer_latency(args: argparse.Namespace) -> Dict:
    import torch

    import pccl

    torch.set_num_threads(1)
    comm = connect(args.master, 2)
    count = args.size // 4
    send = torch.full((count,), float(args.rank + 1), dtype=torch.float32)
    recv = torch.empty_like(send)
    tag = 1
    comm.all_reduce(send, recv, op=pccl.ReduceOp.SUM, tag=tag)
    assert bool((recv == 3.0).all()), "wrong result"
    for _ in range(args.warmup):
        tag += 1
        comm.all_reduce(send, recv, op=pccl.ReduceOp.SUM, tag=tag)
    # Alternate, call by call: the Python API (pccl.Communicator.all_reduce on torch tensors) and
    # the same operation straight into the extension module with the arguments prepared once
    # (what remains is pybind11 and the GIL release around pcclAllReduce). Alternating keeps
    # warm-up effects and machine noise out of the difference.
    native = comm._native
    # send, recv, count, dtype, op, tag, distribution hint, quantized dtype, quantization algorithm
    nargs = [send.data_ptr(), recv.data_ptr(), count, int(pccl.DataType.FLOAT), int(pccl.ReduceOp.SUM), 0,
             int(pccl.DistributionHint.NONE), int(pccl.DataType.UINT8), int(pccl.QuantizationAlgorithm.NONE)]
    times, native_times = [], []
    for _ in range(args.iters):
        tag += 1
        t0 = time.perf_counter()
        comm.all_reduce(send, recv, op=pccl.ReduceOp.SUM, tag=tag)
        times.append(time.perf_counter() - t0)
        tag += 1
        nargs[5] = tag
        t0 = time.perf_counter()
        native.all_reduce(*nargs)
        native_times.append(time.perf_counter() - t0)
    comm.are_peers_pending()  # a last vote: nobody leaves while the other still reduces
    # The binding's own cost per call, without any I/O: Communicator.all_reduce with the
    # extension object swapped for a stub that returns at once (argument checks, dtype mapping,
    # the ReduceInfo); torch tensors and numpy arrays of the size above, out of place.
    class Stub:
        def all_reduce(self, *a):
            return (2, count * 4, count * 4)

    import numpy as np

    arrays = (np.full(count, 1.0, np.float32), np.empty(count, np.float32))
    comm._native = Stub()
    try:
        own = {}
        for kind, (s, r) in (("torch", (send, recv)), ("numpy", arrays)):
            n, best = 20000, float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for i in range(n):
                    comm.all_reduce(s, r, op=pccl.ReduceOp.SUM, tag=i)
                best = min(best, (time.perf_counter() - t0) / n)
            own[kind] = best
    finally:
        comm._native = native
    comm.close()
    return {"times": times, "native_times": native_times, "own_s": own}


def peer_zero_copy(args: argparse.Namespace) -> Dict:
    import torch

    import pccl

    torch.set_num_threads(1)
    comm = connect(args.master, 2)
    small = torch.ones(1024)
    comm.all_reduce(small, small, op=pccl.ReduceOp.SUM, tag=1)  # connections are up
    count = args.big // 4
    send = torch.full((count,), float(args.rank + 1), dtype=torch.float32)  # written: resident
    recv = torch.full((count,), -1.0, dtype=torch.float32)
    out: Dict = {"buffers_bytes": 2 * count * 4}

    # memcpy reference, same buffers
    copies = []
    for _ in range(3):
        t0 = time.perf_counter()
        recv.copy_(send)
        copies.append(time.perf_counter() - t0)
    out["memcpy_s"] = statistics.median(copies)

    tag = 10
    for mode in ("out_of_place", "in_place"):
        times, growth = [], []
        for i in range(args.big_iters):
            if mode == "in_place":
                recv.fill_(float(args.rank + 1))
                dst = recv
                src = recv
            else:
                recv.fill_(-1.0)
                src, dst = send, recv
            comm.are_peers_pending()  # line both peers up before each timed call
            out["hwm_reset"] = reset_peak_rss()
            before = proc_status("VmRSS")
            tag += 1
            t0 = time.perf_counter()
            comm.all_reduce(src, dst, op=pccl.ReduceOp.SUM, tag=tag)
            times.append(time.perf_counter() - t0)
            growth.append(proc_status("VmHWM") - before)
            assert float(dst[0]) == 3.0 and float(dst[-1]) == 3.0, "wrong result"
        out[mode] = {"times": times, "growth_bytes": growth}
    comm.are_peers_pending()
    comm.close()
    return out


# ------------------------------------------------------------------------------- driver side

def run_peers(kind: str, args: argparse.Namespace) -> List[Dict]:
    import pccl

    master = pccl.MasterNode("127.0.0.1:0")
    master.run()
    procs = []
    try:
        for rank in range(2):
            cmd = [sys.executable, os.path.abspath(__file__), "--peer", kind, "--master", f"127.0.0.1:{master.port}",
                   "--rank", str(rank), "--iters", str(args.iters), "--warmup", str(args.warmup), "--size",
                   str(args.size), "--big", str(args.big), "--big-iters", str(args.big_iters)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=args.timeout)
            if p.returncode != 0:
                raise RuntimeError(f"peer failed (status {p.returncode}):\n{out}")
            line = [l for l in out.splitlines() if l.startswith("RESULT ")]
            results.append(json.loads(line[-1][len("RESULT "):]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        master.close()


def find_bench(explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit
    candidates = [os.path.join(REPO, d, "bench", "pccl-bench") for d in ("build-pyov", "build", "build-bench")]
    candidates += sorted(glob.glob(os.path.join(REPO, "build*", "bench", "pccl-bench")))
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    return None


def run_cpp(bench: str, args: argparse.Namespace) -> Optional[Dict]:
    cmd = [bench, "--sizes", str(args.size), "--peers", "2", "--iters", str(args.iters), "--warmup",
           str(args.warmup), "--dtype", "f32", "--op", "sum", "--no-gloo", "--csv"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=args.timeout)
    rows = [l for l in p.stdout.splitlines() if l and not l.startswith("#")]
    if p.returncode != 0 or len(rows) < 2:
        print(f"    pccl-bench failed (status {p.returncode}):\n{p.stdout}")
        return None
    header = rows[0].split(",")
    row = dict(zip(header, rows[1].split(",")))
    return row


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=200, help="(a) timed iterations")
    ap.add_argument("--warmup", type=int, default=20, help="(a) warm-up iterations")
    ap.add_argument("--repeat", type=int, default=3, help="(a) alternating Python / C++ runs")
    ap.add_argument("--size", type=int, default=MIB, help="(a) bytes per all-reduce (default 1 MiB)")
    ap.add_argument("--big", type=int, default=256 * MIB, help="(b) bytes of the big all-reduce (default 256 MiB)")
    ap.add_argument("--big-iters", type=int, default=3, help="(b) big all-reduces per mode")
    ap.add_argument("--bench-bin", help="pccl-bench to compare with (default: build-pyov, build, build-bench, ...)")
    ap.add_argument("--no-cpp", action="store_true", help="(a) skip the C++ comparison")
    ap.add_argument("--no-latency", action="store_true", help="skip (a)")
    ap.add_argument("--no-zero-copy", action="store_true", help="skip (b)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--peer", choices=("latency", "zerocopy"), help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.peer:
        result = peer_latency(args) if args.peer == "latency" else peer_zero_copy(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    import pccl

    print(f"pccl {pccl.__version__} ({os.path.dirname(pccl.__file__)}), python {sys.version.split()[0]}")
    status = 0
    if not args.no_latency:
        print(f"(a) {args.size / MIB:g} MiB float32 sum all-reduce, 2 peer processes, out of place, pool default, "
              f"{args.iters} iterations after {args.warmup} warm-up; iteration time = the slower peer's; "
              f"Python and C++ alternate, {args.repeat} runs each")
        bench = None if args.no_cpp else find_bench(args.bench_bin)
        if not args.no_cpp and bench is None:
            print("    C++: no pccl-bench found (build one: cmake -S . -B build-pyov -G Ninja "
                  "-DCMAKE_BUILD_TYPE=Release && cmake --build build-pyov --target pccl-bench); skipped")
        elif bench is not None:
            print(f"    C++: {bench} --sizes {args.size} --peers 2 --iters {args.iters} --warmup {args.warmup} "
                  f"--dtype f32 --op sum --no-gloo --csv")
        py_meds, py_mins, cpp_meds, cpp_mins, nat_meds, nat_mins, diffs = [], [], [], [], [], [], []
        own: Dict[str, List[float]] = {"torch": [], "numpy": []}
        for rep in range(args.repeat):
            res = run_peers("latency", args)
            per_iter = [max(a, b) for a, b in zip(res[0]["times"], res[1]["times"])]
            py_meds.append(statistics.median(per_iter))
            py_mins.append(min(per_iter))
            per_iter_native = [max(a, b) for a, b in zip(res[0]["native_times"], res[1]["native_times"])]
            nat_meds.append(statistics.median(per_iter_native))
            nat_mins.append(min(per_iter_native))
            # Paired: each API call against the extension call right after it.
            diffs.append(statistics.median(a - b for a, b in zip(per_iter, per_iter_native)))
            for kind in own:
                own[kind].append(min(r["own_s"][kind] for r in res))
            line = (f"    run {rep + 1}: python median {fmt_ms(py_meds[-1])} min {fmt_ms(py_mins[-1])} | "
                    f"extension call median {fmt_ms(nat_meds[-1])} min {fmt_ms(nat_mins[-1])} | "
                    f"paired python - extension {diffs[-1] * 1e6:+.0f} us")
            if bench is not None:
                row = run_cpp(bench, args)
                if row is None:
                    status = 1
                    bench = None
                else:
                    cpp_meds.append(float(row["time_ms"]) / 1e3)
                    cpp_mins.append(float(row["min_ms"]) / 1e3)
                    line += (f" | C++ median {fmt_ms(cpp_meds[-1])} min {fmt_ms(cpp_mins[-1])} (check {row['check']})"
                             f" | ratio {py_meds[-1] / cpp_meds[-1]:.3f}")
            print(line, flush=True)
        py_med, py_min = statistics.median(py_meds), min(py_mins)
        print(f"    python  pccl.Communicator.all_reduce(torch tensors): median {fmt_ms(py_med)}  min {fmt_ms(py_min)}")
        print(f"    python  the extension's all_reduce, args prepared:  median {fmt_ms(statistics.median(nat_meds))}  "
              f"min {fmt_ms(min(nat_mins))}")
        if cpp_meds:
            cpp_med, cpp_min = statistics.median(cpp_meds), min(cpp_mins)
            print(f"    C++     pccl-bench (pcclAllReduce):                median {fmt_ms(cpp_med)}  min {fmt_ms(cpp_min)}")
            print(f"    ratio python / C++: {py_med / cpp_med:.3f} (medians), {py_min / cpp_min:.3f} (minima); "
                  f"difference {(py_med - cpp_med) * 1e6:+.0f} us (medians), {(py_min - cpp_min) * 1e6:+.0f} us (minima)")
        print(f"    paired difference python - extension call (median per run): "
              f"{', '.join(f'{d * 1e6:+.0f}' for d in diffs)} us")
        print(f"    the binding's own work per call, no I/O (argument checks, dtype mapping, result): "
              f"torch {min(own['torch']) * 1e6:.1f} us, numpy {min(own['numpy']) * 1e6:.1f} us")
    if not args.no_zero_copy:
        print(f"(b) {args.big / MIB:g} MiB float32 sum all-reduce of torch tensors, 2 peer processes, "
              f"{args.big_iters} per mode")
        res = run_peers("zerocopy", args)
        if not all(r.get("hwm_reset") for r in res):
            print("    (could not reset VmHWM: the growth below is relative to the earlier peak)")
        print(f"    buffers per peer: {res[0]['buffers_bytes'] / MIB:.0f} MiB (send + recv, resident before the call)")
        memcpy = statistics.median(r["memcpy_s"] for r in res)
        print(f"    memcpy of {args.big / MIB:g} MiB (torch copy_, 1 thread): {fmt_ms(memcpy)} "
              f"({args.big / memcpy / 1e9:.2f} GB/s)")
        for mode in ("out_of_place", "in_place"):
            per_iter = [max(a, b) for a, b in zip(res[0][mode]["times"], res[1][mode]["times"])]
            med = statistics.median(per_iter)
            growth = [max(r[mode]["growth_bytes"]) for r in res]
            print(f"    {mode.replace('_', ' '):12s}: all-reduce median {fmt_ms(med)} = {med / memcpy:.1f}x the memcpy "
                  f"(busbw {args.big / med / 1e9:.2f} GB/s); peak RSS growth during the call: "
                  f"{', '.join(f'{g / MIB:.1f} MiB' for g in growth)} (peer 0, peer 1)")
    return status


if __name__ == "__main__":
    sys.exit(main())
