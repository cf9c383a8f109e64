#!/usr/bin/env python3
"""All-reduce benchmark with torch.distributed (gloo backend) on 127.0.0.1.

The reference point for pccl-bench: it runs the same sizes with the same warm-up and
timed iterations, fills the buffers with the same pattern (bench/bench_common.cpp:
rawValue/inputValue; keep them in sync) and checks every element once per size, outside
the timed loop.

Standalone:   python3 bench/gloo_allreduce.py --peers 3 --sizes 1K,1M,16M
From the driver (pccl-bench --gloo): --machine --plan BYTES:WARMUP:ITERS,... ; then the
output is one line per event:
    @gloo begin <bytes>
    @gloo progress <bytes> <warmup|timed> <iterations done>
    @gloo row <bytes> <count> <iters> <median s> <min s> <ok|ok~|FAIL|n/a>
    @gloo error <text>

The parent holds a TCPStore on port 0 (the kernel picks a free port) and starts one
subprocess per rank. Every wait has a deadline; on error, timeout or SIGTERM the parent
kills its workers, and workers exit on their own when the parent disappears.
"""

import argparse
import datetime
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import threading
import time

PERIOD = 65521
PROD_MAP = [1, 1, 1, -1, 2, 1, -1, 1, 1, 1, -1, 1, 2, 1, 1, -1]

DTYPES = {
    # name: (aliases, torch attribute, kind, size)
    "float32": (("f32", "float", "fp32"), "float32", "float", 4),
    "float16": (("f16", "half", "fp16"), "float16", "float", 2),
    "bfloat16": (("bf16", "bfloat"), "bfloat16", "float", 2),
    "float64": (("f64", "double", "fp64"), "float64", "float", 8),
    "int8": (("i8",), "int8", "signed", 1),
    "uint8": (("u8",), "uint8", "unsigned", 1),
    "int16": (("i16",), "int16", "signed", 2),
    "uint16": (("u16",), "uint16", "unsigned", 2),
    "int32": (("i32", "int"), "int32", "signed", 4),
    "uint32": (("u32",), "uint32", "unsigned", 4),
    "int64": (("i64",), "int64", "signed", 8),
    "uint64": (("u64",), "uint64", "unsigned", 8),
}
OPS = {"sum", "avg", "prod", "max", "min"}


def find_dtype(name):
    n = name.lower()
    for canon, (aliases, _, _, _) in DTYPES.items():
        if n == canon or n in aliases:
            return canon
    raise argparse.ArgumentTypeError(f"unknown dtype {name!r}")


def find_op(name):
    n = {"product": "prod", "mean": "avg", "average": "avg"}.get(name.lower(), name.lower())
    if n not in OPS:
        raise argparse.ArgumentTypeError(f"unknown op {name!r}")
    return n


def parse_size(text):
    m = re.fullmatch(r"(\d+)\s*([kmg]?)(i?b)?", text.strip().lower())
    if not m or int(m.group(1)) == 0 or (m.group(3) == "ib" and not m.group(2)):
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def parse_sizes(text):
    if ":" in text:
        parts = text.split(":")
        lo, hi = parse_size(parts[0]), parse_size(parts[1])
        factor = parse_size(parts[2]) if len(parts) > 2 else 2
        out, s = [], lo
        while s <= hi:
            out.append(s)
            s *= factor
        return out
    return [parse_size(p) for p in text.split(",")]


def auto_iters(nbytes):  # bench_common.cpp: autoIters / autoWarmup
    iters = min(20, max(3, (256 << 20) // nbytes))
    return min(5, max(1, iters // 4)), iters


def parse_plan(text):
    plan = []
    for item in text.split(","):
        b, w, i = (int(x) for x in item.split(":"))
        plan.append((b, w, i))
    return plan


def fmt_size(n):
    units = ["B", "KiB", "MiB", "GiB"]
    u = 0
    while u < 3 and n >= 1024 and n % 1024 == 0:
        n //= 1024
        u += 1
    return f"{n} {units[u]}"


# ---------------------------------------------------------------- worker


def worker(args):
    try:
        worker_body(args)
    except Exception as e:  # one line for the parent instead of a traceback per rank
        print("@w error", f"rank {args.rank}: {type(e).__name__}: {e}".replace("\n", " "), flush=True)
        os._exit(1)


def die_with_parent(parent_pid):
    """Exit when the parent script dies, even by SIGKILL: PR_SET_PDEATHSIG where available,
    and a watcher thread as a fallback. parent_pid comes from the command line, so a parent
    that died before this point is noticed too."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(3)

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def worker_body(args):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)

    def emit(*words):
        print("@w", *words, flush=True)

    timeout = datetime.timedelta(seconds=args.timeout)
    store = dist.TCPStore("127.0.0.1", args.store_port, args.peers, False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=args.rank, world_size=args.peers, timeout=timeout)

    _, tattr, kind, esize = DTYPES[args.dtype]
    tdtype = getattr(torch, tattr)
    op = args.op
    n = args.peers
    seed = args.seed % PERIOD

    k = torch.arange(PERIOD, dtype=torch.int64)

    def raw(rank):
        return ((k * k * 31 + k * 7 + rank * 1013 + seed * 7919) % PERIOD) % 16

    def value(rank):  # int64 logical values, as bench_common.cpp inputValue
        r = raw(rank)
        if op == "prod":
            v = torch.tensor(PROD_MAP, dtype=torch.int64)[r]
            return v.abs() if kind == "unsigned" else v
        return r if kind == "unsigned" else r - 8

    def to_dtype(v):  # int64 -> dtype with two's complement wrap-around for integers
        if kind == "float":
            return v.to(torch.float64).to(tdtype)
        if esize == 8:
            return v.to(tdtype)
        bits = 8 * esize
        w = v & ((1 << bits) - 1)
        if kind == "signed":
            w = torch.where(w >= (1 << (bits - 1)), w - (1 << bits), w)
        return w.to(tdtype)

    mine = to_dtype(value(args.rank))
    vals = [value(r) for r in range(n)]
    if kind == "float":
        fv = [v.to(torch.float64) for v in vals]
        if op in ("sum", "avg"):
            acc = sum(fv[1:], fv[0].clone())
        elif op == "prod":
            acc = fv[0].clone()
            for v in fv[1:]:
                acc = acc * v
        elif op == "max":
            acc = torch.stack(fv).amax(0)
        else:
            acc = torch.stack(fv).amin(0)
        if op == "avg":
            acc = acc / n if tdtype == torch.float64 else acc.to(torch.float32) / n
        expected = acc.to(tdtype)
    else:
        if op in ("sum", "avg"):
            acc = torch.stack(vals).sum(0)
        elif op == "prod":
            acc = vals[0].clone()
            for v in vals[1:]:
                acc = acc * v
        elif op == "max":
            acc = torch.stack(vals).amax(0)
        else:
            acc = torch.stack(vals).amin(0)
        if op == "avg":
            acc = torch.div(acc, n, rounding_mode="trunc")
        expected = to_dtype(acc)

    red = {
        "sum": dist.ReduceOp.SUM,
        "avg": dist.ReduceOp.SUM,  # gloo has no AVG: sum, then divide (timed too)
        "prod": dist.ReduceOp.PRODUCT,
        "max": dist.ReduceOp.MAX,
        "min": dist.ReduceOp.MIN,
    }[op]

    def allreduce(t):
        dist.all_reduce(t, op=red)
        if op == "avg":
            if kind == "float":
                t.div_(n)
            else:
                t.copy_(torch.div(t, n, rounding_mode="trunc"))

    def tiled(buf):  # views of buf: full periods as rows, and the remainder
        full = (buf.numel() // PERIOD) * PERIOD
        return buf[:full].view(-1, PERIOD), buf[full:]

    ulp = {torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float64: 2.0**-52}

    def check(buf):
        rows, rest = tiled(buf)
        exact = bool((rows == expected).all()) and bool((rest == expected[: rest.numel()]).all())
        if exact:
            return "ok"
        if op == "avg" and kind == "float":
            e = expected.to(torch.float64)
            scale = torch.exp2(torch.ceil(torch.log2(e.abs().clamp_min(2.0**-126))))
            tol = ulp[tdtype] * scale
            ok_rows = ((rows.to(torch.float64) - e).abs() <= tol).all()
            ok_rest = ((rest.to(torch.float64) - e[: rest.numel()]).abs() <= tol[: rest.numel()]).all()
            if bool(ok_rows) and bool(ok_rest):
                return "ok~"
        return "FAIL"

    coll = args.coll

    def filled(count, values):
        buf = torch.empty(count, dtype=tdtype)
        rows, rest = tiled(buf)
        rows.copy_(values.expand_as(rows))
        rest.copy_(values[: rest.numel()])
        return buf

    def matches(buf, values):
        rows, rest = tiled(buf)
        return bool((rows == values).all()) and bool((rest == values[: rest.numel()]).all())

    def setup(count):
        """(run, check) of one size for --coll; the buffers as pccl-bench's worker lays them out."""
        if coll == "allreduce":
            buf = filled(count, mine)
            return (lambda: allreduce(buf)), (lambda: check(buf))
        if coll == "broadcast":
            root = to_dtype(value(0))
            buf = filled(count, root) if args.rank == 0 else torch.empty(count, dtype=tdtype)
            run = lambda: dist.broadcast(buf, src=0)  # noqa: E731
            return run, (lambda: "ok" if matches(buf, root) else "FAIL")
        per = max(1, count // n)
        if coll == "allgather":
            inp, out = filled(per, mine), torch.empty(per * n, dtype=tdtype)
            run = lambda: dist.all_gather_into_tensor(out, inp)  # noqa: E731
            peers = [to_dtype(value(r)) for r in range(n)]
            return run, (lambda: "ok" if all(matches(out[r * per:(r + 1) * per], peers[r]) for r in range(n))
                         else "FAIL")
        inp, out = filled(per * n, mine), torch.empty(per, dtype=tdtype)

        def run():
            dist.reduce_scatter_tensor(out, inp, op=red)
            if op == "avg":
                if kind == "float":
                    out.div_(n)
                else:
                    out.copy_(torch.div(out, n, rounding_mode="trunc"))

        def check_block():
            want = torch.roll(expected, -((args.rank * per) % PERIOD))
            return "ok" if matches(out, want) else ("ok~" if op == "avg" and kind == "float" else "FAIL")

        return run, check_block

    for nbytes, warmup, iters in parse_plan(args.plan):
        count = max(1, nbytes // esize)
        if coll in ("allgather", "reducescatter"):
            count = max(1, count // n) * n
        emit("begin", nbytes)
        run_once, check_now = setup(count)
        run_once()
        status = check_now()
        last_progress = time.monotonic()

        def progress(phase, i):  # at most once a second (see the driver's inactivity deadline)
            nonlocal last_progress
            if time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                emit("progress", nbytes, phase, i)

        for i in range(warmup):
            run_once()
            progress("warmup", i + 1)
        times = []
        for i in range(iters):
            t0 = time.perf_counter()
            run_once()
            times.append(time.perf_counter() - t0)
            progress("timed", i + 1)
        emit("check", nbytes, count, status)
        emit("times", nbytes, *(f"{t:.9f}" for t in times))
        del run_once, check_now
    dist.barrier()
    dist.destroy_process_group()
    emit("done")


# ---------------------------------------------------------------- parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=2)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1K,64K,1M,16M,256M"))
    ap.add_argument("--plan", default=None, help="bytes:warmup:iters,... (overrides --sizes/--iters/--warmup)")
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=-1)
    ap.add_argument("--dtype", type=find_dtype, default="float32")
    ap.add_argument("--op", type=find_op, default="sum")
    ap.add_argument("--coll", default="allreduce", choices=["allreduce", "allgather", "reducescatter", "broadcast"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60, help="inactivity deadline in seconds")
    ap.add_argument("--machine", action="store_true", help="only '@gloo' lines (for pccl-bench)")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--store-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.plan is None:
        plan = []
        for b in args.sizes:
            w, i = auto_iters(b)
            if args.iters > 0:
                i = args.iters
                w = min(5, max(1, i // 4))
            if args.warmup >= 0:
                w = args.warmup
            plan.append((b, w, i))
        args.plan = ",".join(f"{b}:{w}:{i}" for b, w, i in plan)
    plan = parse_plan(args.plan)

    if args.worker:
        die_with_parent(args.parent_pid)
        worker(args)
        return 0

    def say(*words):
        if args.machine:
            print("@gloo", *words, flush=True)

    _, _, kind, esize = DTYPES[args.dtype]
    if args.dtype in ("uint16", "uint32", "uint64"):
        msg = f"gloo has no {args.dtype} all-reduce"
        if args.machine:
            say("error", msg)
        else:
            print(f"# error: {msg}", file=sys.stderr)
        return 1

    import torch.distributed as dist
    store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=args.timeout),
                          wait_for_workers=False)
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("OMP_NUM_THREADS", "1")
    procs = []
    sel = selectors.DefaultSelector()

    def kill_all():
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def on_term(signum, _frame):
        kill_all()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    for r in range(args.peers):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--rank", str(r), "--peers", str(args.peers),
               "--store-port", str(store.port), "--parent-pid", str(os.getpid()), "--plan", args.plan,
               "--dtype", args.dtype, "--op", args.op, "--coll", args.coll, "--seed", str(args.seed), "--timeout", str(args.timeout)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        procs.append(p)
        sel.register(p.stdout, selectors.EVENT_READ, r)

    results = [dict() for _ in range(args.peers)]  # rank -> bytes -> {"check":..., "times":[...]}
    errors = []
    failed = set()
    done = [False] * args.peers
    begun = set()
    emitted = 0
    last = time.monotonic()
    startup = 120.0  # importing torch in N processes on a busy machine
    open_pipes = args.peers
    if not args.machine:
        print(f"# gloo {args.coll}  peers={args.peers} dtype={args.dtype} op={args.op} seed={args.seed}")
        print("#      size  iters     time(ms)      min(ms)  algbw(GB/s)  busbw(GB/s)  check")
    # nccl-tests' bus bandwidth factors (bench_common.cpp busFactor)
    busf = {"allreduce": 2.0 * (args.peers - 1) / args.peers, "broadcast": 1.0}.get(
        args.coll, (args.peers - 1) / args.peers) if args.peers > 1 else 0.0

    def emit_ready_rows():
        nonlocal emitted
        while emitted < len(plan):
            b, _, iters = plan[emitted]
            if not all(b in res and "times" in res[b] and "check" in res[b] for res in results):
                return
            per_iter = [max(res[b]["times"][i] for res in results) for i in range(iters)]
            med, mn = statistics.median(per_iter), min(per_iter)
            checks = {res[b]["check"] for res in results}
            check = "FAIL" if "FAIL" in checks else ("ok~" if "ok~" in checks else "ok")
            count = max(1, b // esize)
            if args.coll in ("allgather", "reducescatter"):
                count = max(1, count // args.peers) * args.peers
            if args.machine:
                say("row", b, count, iters, f"{med:.9f}", f"{mn:.9f}", check)
            else:
                algbw = count * esize / med / 1e9
                print(f"{fmt_size(count * esize):>12}  {iters:5d}  {med * 1e3:11.3f}  {mn * 1e3:11.3f}  "
                      f"{algbw:11.3f}  {algbw * busf:11.3f}  {check:>5}", flush=True)
            emitted += 1

    try:
        while open_pipes > 0:
            limit = args.timeout + (startup if emitted == 0 else 0)
            cur = max(begun) if begun else 0
            limit += 2.0 * cur / 10e6  # one all-reduce at a pessimistic 10 MB/s, fill and check
            if time.monotonic() - last > limit:
                errors.append(f"timeout: no progress for {limit:.0f} s")
                break
            for key, _ in sel.select(timeout=0.5):
                r = key.data
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                words = line.split()
                if not words or words[0] != "@w":
                    sys.stderr.write(f"[gloo rank {r}] {line}")
                    continue
                last = time.monotonic()
                kind_ = words[1]
                if kind_ == "begin":
                    b = int(words[2])
                    if b not in begun:
                        begun.add(b)
                        say("begin", b)
                elif kind_ == "progress":
                    say("progress", *words[2:])
                elif kind_ == "check":
                    results[r].setdefault(int(words[2]), {})["check"] = words[4]
                elif kind_ == "times":
                    results[r].setdefault(int(words[2]), {})["times"] = [float(x) for x in words[3:]]
                    emit_ready_rows()
                elif kind_ == "error":
                    failed.add(r)
                    errors.append(line.split(None, 2)[2].strip() if len(words) > 2 else f"rank {r} failed")
                elif kind_ == "done":
                    done[r] = True
            for r, p in enumerate(procs):
                if p.poll() not in (None, 0) and r not in failed:
                    failed.add(r)
                    errors.append(f"rank {r} exited with status {p.returncode}")
            if errors and time.monotonic() - last > 5:
                break
        deadline = time.monotonic() + 15
        for r, p in enumerate(procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                errors.append(f"rank {r} did not exit")
            if p.returncode not in (None, 0) and r not in failed:
                failed.add(r)
                errors.append(f"rank {r} exited with status {p.returncode}")
    finally:
        kill_all()
    emit_ready_rows()
    if emitted < len(plan) and not errors:
        errors.append("workers finished without reporting every size")
    for e in errors:
        if args.machine:
            say("error", e)
        else:
            print(f"# error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
