#!/usr/bin/env python3
"""A joiner receiving the shared state from 1 source vs K sources over rate-limited links
(bench/README.md, "Shared state across rate-limited links").

One network namespace per peer: the joiner's (<prefix>-j, which also runs pccl-master) and one
per source (<prefix>-s1 ...). Source i is joined to the joiner by its own veth pair
(10.78.i.2 <-> 10.78.i.1) with a kernel `tbf` rate limit on both ends; the joiner's namespace
forwards between the sources (ring neighbours connect during admission). Each peer is one
process (`pccl-state-bench --worker`). Per rep every peer takes a 1-float all-reduce as a
barrier, then the sources sync SEND_ONLY and the joiner, its buffer zeroed, RECEIVE_ONLY; the
joiner's call is timed and its state checked byte for byte.

  sudo bench/state_netns.py [--mib 256] [--rate-mbit 300] [--sources 1,3] [--rounds 2] [--reps 3]
                            [--bin-dir BUILD] [--pool 4]
  sudo bench/state_netns.py --cleanup     namespaces left by a run that was SIGKILLed

Everything created is named with a prefix unique to this run (pcclst<pid>, veths pst<pid>...)
and removed at the end, also on failure, ^C or SIGTERM. Traffic stays inside those namespaces.
Processes are ended by the PIDs this script started. Exit 0 when every sync checked ok.
Python 3 standard library only.
"""
import argparse
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class Failure(Exception):
    pass


class Interrupted(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def find_bin(bin_dir, rel):
    """BUILD/rel from --bin-dir, else build/, else the build*/ directory with the newest copy."""
    if bin_dir:
        cands = [os.path.join(bin_dir, rel)]
    else:
        dirs = [os.path.join(REPO, d) for d in os.listdir(REPO) if d.startswith("build")]
        cands = [os.path.join(d, rel) for d in dirs if os.access(os.path.join(d, rel), os.X_OK)]
        cands.sort(key=os.path.getmtime, reverse=True)
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    raise Failure(f"{rel} not found (build it, or pass --bin-dir BUILD)")


class Net:
    """The namespaces, veths and qdiscs of one run; `down` removes them (idempotent)."""

    def __init__(self, tag, sources, rate_mbit):
        self.prefix = f"pcclst{tag}"
        self.short = f"pst{tag}"  # veth names must fit in 15 characters
        self.sources = sources
        self.rate_mbit = rate_mbit
        self.created = []  # namespaces, in creation order

    def ns_joiner(self):
        return f"{self.prefix}-j"

    def ns_source(self, i):
        return f"{self.prefix}-s{i}"

    def up(self):
        existing = run(["ip", "netns", "list"]).stdout
        for ns in [self.ns_joiner()] + [self.ns_source(i) for i in range(1, self.sources + 1)]:
            if re.search(rf"^{re.escape(ns)}\b", existing, re.M):
                raise Failure(f"namespace {ns} exists already (a run with this PID did not clean up?)")
        for ns in [self.ns_joiner()] + [self.ns_source(i) for i in range(1, self.sources + 1)]:
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        j = self.ns_joiner()
        run(["ip", "netns", "exec", j, "sh", "-ec", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        # tbf: burst large enough for a GSO packet, queue (latency) of a few ms at this rate.
        burst = max(64 * 1024, int(self.rate_mbit * 1e6 / 8 / 250))
        for i in range(1, self.sources + 1):
            s, vj, vs = self.ns_source(i), f"{self.short}j{i}", f"{self.short}s{i}"
            # Created straight inside the namespaces: nothing appears in the root namespace.
            run(["ip", "link", "add", vj, "netns", j, "type", "veth", "peer", "name", vs, "netns", s])
            run(["ip", "-n", j, "addr", "add", f"10.78.{i}.1/24", "dev", vj])
            run(["ip", "-n", s, "addr", "add", f"10.78.{i}.2/24", "dev", vs])
            for ns, dev in ((j, vj), (s, vs)):
                run(["ip", "-n", ns, "link", "set", dev, "up"])
                run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{self.rate_mbit}mbit",
                     "burst", str(burst), "latency", "20ms"])
            run(["ip", "-n", s, "route", "add", "default", "via", f"10.78.{i}.1"])

    def qdisc_stats(self, i):
        """(sent bytes, drops) of source i's egress tbf."""
        out = run(["tc", "-n", self.ns_source(i), "-s", "qdisc", "show", "dev", f"{self.short}s{i}"], check=False).stdout
        m = re.search(r"Sent (\d+) bytes \d+ pkt \(dropped (\d+)", out)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def down(self):
        for ns in reversed(self.created):
            # Nothing of ours should be left inside; anything that is was started by us (by PID).
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)  # its veths and qdiscs go with it
        self.created = []


class Procs:
    """The processes this script started; ended by PID."""

    def __init__(self):
        self.items = []

    def start(self, argv, name):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.items.append((name, p))
        return p

    def stop(self):
        for _, p in self.items:
            if p.poll() is None:
                p.terminate()
        for _, p in self.items:
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3)
        self.items = []


def read_line(p, timeout, what):
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if ready else ""
    if not line:
        err = p.stderr.read() if p.poll() is not None else ""
        raise Failure(f"{what}: no output within {timeout:.0f} s {err.strip()}")
    return line.strip()


def one_config(net, procs, bench, master_bin, k, args):
    """Master + k sources + joiner; returns [(seconds, rx bytes, ok)] per rep."""
    j = net.ns_joiner()
    master = procs.start(["ip", "netns", "exec", j, master_bin, "--listen", "0.0.0.0:0"], "master")
    line = read_line(master, 10, "pccl-master")
    m = re.search(r"listening on .*:(\d+)$", line)
    if not m:
        raise Failure(f"pccl-master said: {line}")
    port = m.group(1)
    common = ["--world", str(k + 1), "--mib", str(args.mib), "--reps", str(args.reps)]
    env = dict(os.environ, PCCL_POOL_SIZE=str(args.pool)) if args.pool else None
    workers = []
    for i in range(1, k + 1):
        workers.append(procs.start(["ip", "netns", "exec", net.ns_source(i), bench, "--worker", "source", "--master",
                                    f"10.78.{i}.1:{port}"] + common, f"source {i}"))
    # The joiner reaches the master by its own link address, so the address the master hands
    # the sources for it is one they can reach (not 127.0.0.1).
    joiner = procs.start(["ip", "netns", "exec", j, bench, "--worker", "joiner", "--master", f"10.78.1.1:{port}"]
                         + common, "joiner")
    per_rep = args.mib * 8 * 1.048576 / (args.rate_mbit * k) + 5
    deadline = 60 + 4 * per_rep
    rows = []
    try:
        while len(rows) < args.reps:
            line = read_line(joiner, deadline, f"joiner ({k} sources)")
            if line.startswith("sync "):
                _, rep, secs, rx, ok = line.split()
                rows.append((float(secs), int(rx), ok == "ok"))
                log(f"#   {k} source{'s' if k > 1 else ' '} rep {rep}: {float(secs):7.3f} s  rx {int(rx)} B  {ok}")
        for name, p in [("joiner", joiner)] + [(f"source {i + 1}", w) for i, w in enumerate(workers)]:
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                raise Failure(f"{name} did not exit after the last rep")
            if rc != 0:
                raise Failure(f"{name} exited {rc}: {p.stderr.read().strip()[-400:]}")
    finally:
        procs.stop()
    return rows


def cleanup_stale():
    """Deletes pcclst<pid>-* namespaces whose <pid> is not running. Processes still inside
    are listed, not killed (this run did not start them); the namespace goes when they exit."""
    for ns in run(["ip", "netns", "list"], check=False).stdout.split():
        m = re.fullmatch(r"pcclst(\d+)-(j|s\d+)", ns)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        inside = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        if inside:
            log(f"state_netns: {ns} still holds processes {' '.join(inside)}")
        run(["ip", "netns", "del", ns], check=False)
        log(f"state_netns: deleted {ns}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rate-mbit", type=int, default=300, help="tbf rate of every source link (both directions)")
    ap.add_argument("--sources", default="1,3", help="source counts to compare; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=2, help="the configurations alternate this many times")
    ap.add_argument("--reps", type=int, default=3, help="syncs per configuration and round")
    ap.add_argument("--pool", type=int, default=0, help="PCCL_POOL_SIZE (0: library default)")
    ap.add_argument("--bin-dir", help="build directory (default: build/ or the newest build*/)")
    ap.add_argument("--cleanup", action="store_true",
                    help="only delete the namespaces of earlier runs whose script is gone (e.g. SIGKILLed)")
    args = ap.parse_args()
    counts = [int(x) for x in args.sources.split(",")]

    if os.geteuid() != 0:
        log("state_netns: needs root (network namespaces, tc)")
        return 77
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            log(f"state_netns: `{tool}` not found")
            return 77
    if args.cleanup:
        return cleanup_stale()
    bench = find_bin(args.bin_dir, "bench/pccl-state-bench")
    master_bin = find_bin(args.bin_dir, "master/pccl-master")

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    net = Net(str(os.getpid()), max(counts), args.rate_mbit)
    procs = Procs()
    results = {k: [] for k in counts}
    ok = True
    try:
        log(f"# {net.prefix}: joiner + master in {net.ns_joiner()}, sources in {net.prefix}-s1..s{max(counts)}, "
            f"each source link tbf {args.rate_mbit} Mbit/s")
        net.up()
        log(f"# {bench}")
        for rnd in range(args.rounds):
            for k in counts:
                before = [net.qdisc_stats(i) for i in range(1, k + 1)]
                rows = one_config(net, procs, bench, master_bin, k, args)
                after = [net.qdisc_stats(i) for i in range(1, k + 1)]
                share = [a[0] - b[0] for a, b in zip(after, before)]
                drops = sum(a[1] - b[1] for a, b in zip(after, before))
                total = sum(share) or 1
                log(f"#   round {rnd}, {k} sources: bytes per source link "
                    + " ".join(f"{100 * x / total:.0f}%" for x in share) + f", tbf drops {drops}")
                results[k] += rows
                ok = ok and all(r[2] for r in rows)
    except Interrupted as e:
        log(f"state_netns: interrupted ({e}); cleaning up")
        ok = False
        return 130
    except Failure as e:
        log(f"state_netns: FAILED: {e}")
        ok = False
        return 1
    finally:
        procs.stop()
        net.down()
        left = [ns for ns in run(["ip", "netns", "list"], check=False).stdout.split() if ns.startswith(net.prefix)]
        if left:
            log(f"state_netns: could not remove {left}")
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    nbytes = args.mib << 20
    print(f"state {args.mib} MiB, source links {args.rate_mbit} Mbit/s (tbf), {args.rounds} rounds x {args.reps} reps, "
          "joiner RECEIVE_ONLY, sources SEND_ONLY")
    print(f"{'sources':>7} {'median(s)':>10} {'min(s)':>8} {'max(s)':>8} {'Mbit/s':>8} {'of links':>9}  check")
    base = None
    for k in counts:
        t = [r[0] for r in results[k]]
        med = statistics.median(t)
        rate = nbytes * 8 / med / 1e6
        base = base or med
        print(f"{k:>7} {med:>10.3f} {min(t):>8.3f} {max(t):>8.3f} {rate:>8.0f} {100 * rate / (k * args.rate_mbit):>8.0f}%  "
              f"{'ok' if all(r[2] for r in results[k]) else 'BAD'}")
    for k in counts[1:]:
        print(f"speed-up {k} sources vs {counts[0]}: {base / statistics.median([r[0] for r in results[k]]):.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
