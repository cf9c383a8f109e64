#!/usr/bin/env python3
"""Many real peers survive a master restart (issue 15, docs/master_recovery.md).

Starts one pccl-master and PEERS processes of `pccl_test_peer allreduce-loop` (an in-place
float32 sum all-reduce in a loop, one process per peer) on loopback; once every peer has
completed --warmup all-reduces, SIGKILLs the master, restarts it on the same port --down-s
later, and waits until every peer has completed --after more all-reduces. Prints the time to
form the run, the restart -> "run rebuilt" time from the master's log, the restart -> every peer
past its next successful all-reduce time, and how many all-reduces failed. Exits 1 if a peer
failed or exited, or the run did not go on within --timeout-s.

    python3 bench/master_restart_scale.py --build build --peers 128
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    def __init__(self, path: str, proc: subprocess.Popen):
        self.path, self.proc = path, proc
        self.offset = 0
        self.pending = ""
        self.ok = 0          # successful all-reduces so far
        self.failed = []     # "DONE i RESULT" lines with another result
        self.fail = ""       # a FAIL line

    def poll(self) -> None:
        with open(self.path, "r", errors="replace") as f:
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        lines = (self.pending + data).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if line.startswith("DONE "):
                if line.endswith(" pcclSuccess"):
                    self.ok += 1
                else:
                    self.failed.append(line)
            elif line.startswith("FAIL"):
                self.fail = line


def start_master(binary: str, port: int, log, heartbeat_ms: int) -> subprocess.Popen:
    return subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--log-level", "info",
                             "--heartbeat-timeout-ms", str(heartbeat_ms),
                             "--max-connections-per-address", "100000", "--max-connections", "100000"],
                            stdout=log, stderr=log, env=dict(os.environ, PCCL_LOG_LEVEL="info"))


def wait(cond, timeout_s: float, peers, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        for p in peers:
            p.poll()
            if p.fail or p.proc.poll() is not None:
                sys.exit(f"a peer failed while waiting for {what}: {p.fail or 'exit %s' % p.proc.returncode} ({p.path})")
        if time.monotonic() - t0 > timeout_s:
            sys.exit(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--peers", type=int, default=128)
    ap.add_argument("--count", type=int, default=4096, help="float32 elements per all-reduce")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--after", type=int, default=3)
    ap.add_argument("--down-s", type=float, default=2.0)
    ap.add_argument("--heartbeat-ms", type=int, default=20000,
                    help="master and peers (a 2-core machine running 128 peers is slow to answer)")
    ap.add_argument("--timeout-s", type=float, default=300)
    ap.add_argument("--peer-log-level", default="warn")
    args = ap.parse_args()

    master_bin = os.path.join(args.build, "master", "pccl-master")
    peer_bin = os.path.join(args.build, "tests", "pccl_test_peer")
    tmp = tempfile.mkdtemp(prefix="pccl-restart-scale-")
    port = free_port()
    env = dict(os.environ, PCCL_HEARTBEAT_TIMEOUT_MS=str(args.heartbeat_ms), PCCL_LOG_LEVEL=args.peer_log_level)
    master_log_path = os.path.join(tmp, "master.log")
    master_log = open(master_log_path, "w")
    master = start_master(master_bin, port, master_log, args.heartbeat_ms)
    time.sleep(0.3)
    peers = []
    t0 = time.monotonic()
    try:
        for i in range(args.peers):
            path = os.path.join(tmp, f"peer{i}.log")
            out = open(path, "w")
            proc = subprocess.Popen([peer_bin, "allreduce-loop", "--master", f"127.0.0.1:{port}", "--world",
                                     str(args.peers), "--count", str(args.count), "--iters", "1000000000",
                                     "--value", str(i % 5), "--heartbeat-ms", str(args.heartbeat_ms)],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)
            peers.append(Peer(path, proc))
        formed = wait(lambda: all(p.ok >= args.warmup for p in peers), args.timeout_s, peers,
                      f"{args.warmup} all-reduces on every peer")
        print(f"# {args.peers} peers, {args.count * 4} B all-reduces: every peer past {args.warmup} all-reduces "
              f"{formed:.2f} s after the last was started")
        master.send_signal(signal.SIGKILL)
        master.wait()
        killed_at = time.monotonic()
        # An all-reduce in flight at the kill finishes its transfer and waits for the commit:
        # no peer completes one while the master is down, so what they printed by now is the base.
        time.sleep(min(0.5, args.down_s))
        for p in peers:
            p.poll()
        base = [p.ok for p in peers]
        time.sleep(max(0.0, args.down_s - 0.5))
        master_log.write("---- restarted ----\n")
        master_log.flush()
        master = start_master(master_bin, port, master_log, args.heartbeat_ms)
        restarted = time.monotonic()
        first = wait(lambda: all(p.ok > b for p, b in zip(peers, base)), args.timeout_s, peers,
                     "every peer's next all-reduce after the restart")
        more = wait(lambda: all(p.ok >= b + args.after for p, b in zip(peers, base)), args.timeout_s, peers,
                    f"{args.after} more all-reduces on every peer")
        with open(master_log_path, errors="replace") as f:
            after_restart = f.read().split("---- restarted ----", 1)[1]
        rebuilt = re.search(r"run rebuilt from (\d+) peer", after_restart)
        failed = sum(len(p.failed) for p in peers)
        print(f"master SIGKILLed, restarted on the same port {args.down_s:.1f} s later "
              f"(restart at +{restarted - killed_at:.2f} s)")
        print("  master log: " + (rebuilt.group(0) if rebuilt else 'no "run rebuilt" line'))
        print(f"  restart -> every peer past its next successful all-reduce: {first:.2f} s; "
              f"{args.after} more on every peer: +{more:.2f} s")
        print(f"  failed all-reduces over the run: {failed}; peers restarted: 0")
        for p in peers:
            for line in p.failed[:1]:
                print(f"    {os.path.basename(p.path)}: {line}")
        ok = rebuilt is not None and int(rebuilt.group(1)) == args.peers
        if not ok:
            print("FAILED: the restarted master did not rebuild the run from every peer")
        return 0 if ok else 1
    finally:
        for p in peers:
            if p.proc.poll() is None:
                p.proc.kill()
        for p in peers:
            p.proc.wait()
        if master.poll() is None:
            master.kill()
            master.wait()
        print(f"# logs: {tmp}")


if __name__ == "__main__":
    sys.exit(main())
