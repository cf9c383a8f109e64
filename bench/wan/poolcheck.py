"""`wan.py poolcheck`: CI check of which connections of a pool send (issue 20), over a real link.

On loopback every pool is "on this host" and sends on up to 16 connections unmeasured; only a
link between two network namespaces exercises the measured sender count (SenderControl,
docs/design.md "Segment scheduling"). Brings up the 2-host `selftest` profile (20 ms RTT,
200 Mbit/s) under its own prefix and runs pccl-bench (2 peers, pool 8, PCCL_CONN_STATS=1):

- PCCL_DATA_SENDERS=2: every call checks, each peer reports "2 of 8 connections send", and in
  every call connections #0 and #1 carry all the frames and #2..#7 none (the first N live
  connections of a pool are its senders).
- measured (the default): every call checks and each peer's report names a count in 4..8.

Exit 0 pass, 1 fail, 77 skipped (as selftest).
"""
import argparse
import re
import time

import compare

REPORT = re.compile(r"\s*to ([0-9a-f]+)(?: #(\d+))?: (.*)")
COUNT = re.compile(r"(\d+) of (\d+) connections send")


def add_parser(sub):
    p = sub.add_parser("poolcheck", help="CI: which connections of a pool send, over an emulated link (77 = skipped)")
    p.add_argument("--size", default="32M")
    p.add_argument("--pool", type=int, default=8)
    p.add_argument("--iters", type=int, default=2)


def calls_of(report):
    """The report's lines per call and peer: [{"count": (n, of) or None, "conns": {i: text}}]."""
    calls = []
    for line in report:
        if "connections of operation" in line:
            calls.append({"count": None, "conns": {}})
            continue
        m = REPORT.match(line)
        if not m or not calls:
            continue
        if m.group(2) is None:
            c = COUNT.search(m.group(3))
            if c:
                calls[-1]["count"] = (int(c.group(1)), int(c.group(2)))
        else:
            calls[-1]["conns"][int(m.group(2))] = m.group(3)
    return calls


def run(w, env, args, extra, check, label):
    a = argparse.Namespace(peers=2, size=args.size, iters=args.iters, timeout=120, conn_stats=True)
    calls, result, report = compare.run_bench(w, env, env.binary(w.BENCH), a, args.pool,
                                              dict(extra, PCCL_CONN_STATS="1"))
    check(f"{label}: all-reduce", calls is not None and result in ("ok", "ok~"),
          f"check {result}" + ("" if calls else ": " + " | ".join(report[-3:])))
    blocks = calls_of(report or [])
    want = 2 * (args.iters + 1)  # each peer reports each call
    check(f"{label}: reports", len(blocks) == want, f"{len(blocks)} per-call reports, want {want}")
    return blocks


def cmd_poolcheck(w, env, args):
    why = w.preflight()
    if why:
        print(f"SKIP: {why}")
        return 77
    try:
        env.binary(w.EMU), env.binary(w.BENCH)
    except w.Failure as e:
        print(f"SKIP: {e}")
        return 77
    if env.state() or w.list_namespaces(env):
        w.down(env, quiet=True)  # a leftover of an interrupted run (own prefix)
    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}", flush=True)

    t0 = time.time()
    n = args.pool
    with w.Network(env, "selftest"):
        fixed = run(w, env, args, {"PCCL_DATA_SENDERS": "2"}, check, "2 senders")
        counts = [b["count"] for b in fixed]
        check("2 senders: count", counts and all(c == (2, n) for c in counts), f"reported {counts}")
        busy = [sorted(i for i, text in b["conns"].items() if not text.startswith("idle")) for b in fixed]
        check("2 senders: the first two carry every frame", busy and all(b == [0, 1] for b in busy),
              f"connections with frames per call and peer: {busy}")
        measured = run(w, env, args, {}, check, "measured")
        counts = [b["count"] for b in measured]
        check("measured: count", counts and all(c is not None and 4 <= c[0] <= n and c[1] == n for c in counts),
              f"reported {counts}")
    left = w.list_namespaces(env)
    check("teardown", not left and not env.state(), "namespaces gone" if not left else f"left: {left}")
    passed = sum(results)
    print(f"poolcheck: {passed} passed, {len(results) - passed} failed ({time.time() - t0:.1f} s)")
    return 0 if passed == len(results) else 1
