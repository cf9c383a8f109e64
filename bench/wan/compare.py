"""`wan.py compare`: pccl's all-reduce against iperf3 on one emulated link, in one run (issue 20).

The ceiling: iperf3 (Debian's `iperf3`, started by this harness in the hosts' namespaces) with
1, 4 and 16 parallel streams on every link of the ring at once, in the congestion control of
the network (`up --cc`, default here bbr), as the all-reduce loads them: both directions of the
one link with 2 peers (`--bidir`), every link 0->1->...->0 with more. Then pccl-bench for each
pool size (and each `--bench` build, alternating), one call after connecting (the check call,
timed) and `--iters` later calls; each call's per-direction throughput (the bytes each peer
sends, 2(N-1)/N of the buffer, over the slowest rank's time) as a fraction of the ceilings.
"""
import json
import os
import re
import shutil
import subprocess
import time

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * SIZE_UNITS[m.group(2)]


def add_parser(sub, with_profile):
    p = sub.add_parser("compare", help="iperf3 ring ceiling vs pccl all-reduce per pool size, one run")
    with_profile(p, True)
    p.add_argument("--peers", type=int, default=2)
    p.add_argument("--size", default="256M")
    p.add_argument("--pool", default="1,4,16,64")
    p.add_argument("--iters", type=int, default=2, help="timed calls after the first (check) call")
    p.add_argument("--rounds", type=int, default=1, help="repeat the pool sweep (alternating builds)")
    p.add_argument("--streams", default="1,4,16")
    p.add_argument("--iperf-seconds", type=int, default=10)
    p.add_argument("--iperf-omit", type=int, default=0, help="iperf3 -O: seconds of ramp-up not counted (default 0: like a call, the ceiling includes it)")
    p.add_argument("--bench", action="append",
                   help="NAME=PATH of a pccl-bench build (repeat to compare builds; default: the one found)")
    p.add_argument("--env", action="append", help="K=V for the bench processes")
    p.add_argument("--conn-stats", action="store_true", help="PCCL_CONN_STATS=1: per-connection report per call")
    p.add_argument("--bench-log", help="append every bench run's whole stderr (all ranks) to this file")
    p.add_argument("--timeout", type=float, default=600)


def iperf_ring(w, env, hosts, streams, seconds, omit, cc, port=5301):
    """Gbit/s per directed link {(a, b): gbps} with `streams` streams on every ring link at once."""
    iperf = shutil.which("iperf3")
    if not iperf:
        raise w.Failure("iperf3 not found: apt-get install iperf3 (make deps)")
    n = len(hosts)
    if n == 2:
        jobs = [(hosts[0], hosts[1], port, True)]
    else:
        jobs = [(hosts[i], hosts[(i + 1) % n], port + i, False) for i in range(n)]
    servers = []
    try:
        for k, (a, b, p, _) in enumerate(jobs):
            servers.append(env.popen(w.ns_exec(env, b) + [iperf, "-s", "-1", "-p", str(p)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL))
        time.sleep(0.5)
        clients = []
        for a, b, p, bidir in jobs:
            argv = w.ns_exec(env, a) + [iperf, "-c", w.host_ip(b), "-p", str(p), "-P", str(streams), "-t",
                                        str(seconds), "-O", str(omit), "-J"]
            if cc:
                argv += ["-C", cc]
            if bidir:
                argv.append("--bidir")
            clients.append((a, b, bidir, env.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                   stdin=subprocess.DEVNULL)))
        out = {}
        for a, b, bidir, c in clients:
            text, err = c.communicate(timeout=seconds + omit + 60)
            try:
                end = json.loads(text)["end"]
            except (ValueError, KeyError):
                raise w.Failure(f"iperf3 {a}->{b}: {err.strip()[:200]} {text.strip()[:200]}")
            out[(a, b)] = end["sum_received"]["bits_per_second"] / 1e9
            if bidir:
                out[(b, a)] = end["sum_received_bidir_reverse"]["bits_per_second"] / 1e9
        return out
    finally:
        for s in servers:
            try:
                s.wait(5)
            except subprocess.TimeoutExpired:
                s.kill()


def run_bench(w, env, bench, args, pool, extra_env):
    """[(call, seconds)] per call: 0 = the first after connecting, then the timed ones (slowest rank)."""
    ip = shutil.which("ip")
    argv = w.ns_exec(env, 0) + [bench, "--master-addr", w.host_ip(0), "--launch",
                                f"{ip} netns exec {env.prefix}-h{{rank}}", "--peers", str(args.peers),
                                "--sizes", args.size, "--pool", str(pool), "--no-gloo", "--csv", "--verbose",
                                "--iters", str(args.iters), "--warmup", "0", "--timeout", str(args.timeout)]
    environ = dict(os.environ)
    environ.update(extra_env)
    p = env.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
                  stdin=subprocess.DEVNULL)
    out, err = p.communicate()
    if getattr(args, "bench_log", None):  # poolcheck passes its own arguments
        with open(args.bench_log, "a") as f:
            f.write(f"==== {bench} pool {pool} env {extra_env}\n{err}")
    first, times, checks, report = {}, {}, [], []
    for line in err.splitlines():
        m = re.match(r"\[rank (\d+)\] @pb (first|times) \d+ (.*)", line)
        if m:
            vals = [float(x) for x in m.group(3).split()]
            (first if m.group(2) == "first" else times)[int(m.group(1))] = vals
        elif args.conn_stats and ("connections of operation" in line or "data connections to" in line or
                                  re.match(r"\s+(to|from) [0-9a-f]+( #|: \d+ of)", line)):
            report.append(line)
        elif "PROBLEM" in line:
            report.append(line)
    rows = [line.split(",") for line in out.splitlines() if line and line[0].isdigit()]
    check = rows[0][12] if rows else "FAILED"
    if p.returncode != 0 or not first or not times:
        return None, check, err.strip().splitlines()[-15:]
    calls = [max(v[0] for v in first.values())]
    k = min(len(v) for v in times.values())
    calls += [max(v[i] for v in times.values()) for i in range(k)]
    return calls, check, report


def cmd_compare(w, env, args):
    pools = [int(p) for p in args.pool.split(",")]
    streams = [int(s) for s in args.streams.split(",")]
    benches = []
    for spec in args.bench or [f"pccl={env.binary(w.BENCH)}"]:
        name, _, path = spec.partition("=")
        benches.append((name, path))
    extra = dict(kv.partition("=")[::2] for kv in args.env or [])
    if args.conn_stats:
        extra["PCCL_CONN_STATS"] = "1"
    size = parse_size(args.size)
    sent = size * 2 * (args.peers - 1) / args.peers  # bytes each peer sends per all-reduce
    with w.Network(env, args.profile, args.rate_scale, cc="bbr") as net:
        cc = net.state["cc"]
        hosts = list(range(args.peers))
        L = net.links[(0, 1)]
        print(f"# compare on {net.state['profile']}: {L['rtt_ms']:g} ms RTT, {L['rate_mbit']:g} Mbit/s, "
              f"{L['loss_pct']:g}% loss, cc {cc}; {args.peers} peers, {args.size} float32 sum all-reduce")
        ceil = {}
        for s in streams:
            res = iperf_ring(w, env, hosts, s, args.iperf_seconds, args.iperf_omit, cc)
            ceil[s] = min(res.values())
            print(f"# iperf3 {s:2d} stream(s) on every ring link at once ({args.iperf_seconds} s, -O "
                  f"{args.iperf_omit}): " + ", ".join(f"{a}->{b} {g:.3f}" for (a, b), g in sorted(res.items())) +
                  f" Gbit/s; ceiling (slowest) {ceil[s]:.3f}", flush=True)
        top = max(streams)
        print(f"# per call: per-direction Gbit/s = {sent / 2**20:.0f} MiB sent by each peer / slowest rank's time; "
              f"% of the {top}-stream ceiling")
        print("# build       pool  first call (s, Gbit/s, %)       later calls (s, Gbit/s, %)       check")
        summary = []
        for rnd in range(args.rounds):
            for pool in pools:
                for name, bench in benches:
                    calls, check, report = run_bench(w, env, bench, args, pool, extra)
                    if calls is None:
                        print(f"  {name:12s} {pool:4d}  FAILED ({check})")
                        for line in report:
                            print(f"#   {line}")
                        summary.append((name, pool, None, check))
                        continue
                    gb = [sent * 8 / t / 1e9 for t in calls]
                    cells = [f"{t:6.2f} {g:.3f} {g / ceil[top] * 100:3.0f}%" for t, g in zip(calls, gb)]
                    print(f"  {name:12s} {pool:4d}  {cells[0]:30s}  {'  '.join(cells[1:]):30s}  {check}", flush=True)
                    for line in report:
                        print(f"#   {line}")
                    summary.append((name, pool, [g / ceil[top] for g in gb], check))
        args.summary = summary
        return 0 if all(r[2] is not None and r[3] in ("ok", "ok~") for r in summary) else 1
