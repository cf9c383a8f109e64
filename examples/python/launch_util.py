"""Small helpers shared by the Python examples: start worker processes (copies of an example
script), forward their output with a name prefix, watch it for events, and end them by PID.

The launchers use this module; the workers only use ``wait_for_go`` (the start signal).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import pccl

_print_lock = threading.Lock()


def _emit(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def log(msg: str) -> None:
    _emit(f"[launcher] {msg}")


def start_master() -> pccl.MasterNode:
    """An embedded pccl master on 127.0.0.1, on a free port (read it from ``.port``)."""
    master = pccl.MasterNode("127.0.0.1:0")
    master.run()
    log(f"pccl master listening on 127.0.0.1:{master.port}")
    return master


try:  # looked up here, not in the forked child (which must not import anything)
    import ctypes

    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except Exception:  # not Linux/glibc: children just do not die with the launcher
    _prctl = None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the launcher dies (PR_SET_PDEATHSIG), so
    that no worker outlives a launcher that was killed."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)


class Child:
    """A worker process: ``python <script> <args>``, its output (stdout and stderr) forwarded
    line by line as ``[name] line`` and kept in ``lines``. ``wait_for(regex)`` blocks until a
    line matches. With ``stdin=True`` the launcher can write to ``proc.stdin``."""

    def __init__(self, name: str, script: str, args: Sequence[str], env: Optional[Dict[str, str]] = None,
                 stdin: bool = False) -> None:
        self.name = name
        e = dict(os.environ)
        e["PYTHONUNBUFFERED"] = "1"
        e.setdefault("PCCL_LOG_LEVEL", "warn")
        if env:
            e.update(env)
        self.proc = subprocess.Popen([sys.executable, script, *args], env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     text=True, bufsize=1, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        self.lines: List[str] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            _emit(f"[{self.name}] {line}")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def find(self, pattern: str) -> Optional[re.Match]:
        rx = re.compile(pattern)
        with self._cv:
            for line in self.lines:
                m = rx.search(line)
                if m:
                    return m
        return None

    def wait_for(self, pattern: str, timeout: float) -> Optional[re.Match]:
        """The first line matching ``pattern`` (a regex), waiting up to ``timeout`` seconds;
        None on timeout or if the process ended without printing it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cv.wait(min(left, 0.2))

    def go(self) -> None:
        """Release a worker that waits for the launcher's signal (``--wait-for-go``)."""
        assert self.proc.stdin is not None, "started without stdin=True"
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return rc


READY_LINE = "ready, waiting for the launcher's signal"


def wait_for_go() -> bool:
    """Worker side of ``Child.go()``: say so and block until the launcher releases us. Workers
    do their slow start-up (importing torch, building the model) first, so the launcher can
    start them early and time their entry into the run precisely. False if the launcher went
    away instead."""
    print(READY_LINE, flush=True)
    return sys.stdin.readline().strip() == "go"


def wait_ready(children: Sequence[Child], timeout: float) -> None:
    """Wait until every child printed READY_LINE."""
    deadline = time.monotonic() + timeout
    for c in children:
        if c.wait_for(re.escape(READY_LINE), max(0.0, deadline - time.monotonic())) is None:
            raise RuntimeError(f"{c.name} did not get ready within {timeout:.0f} s")


def wait_all(children: Sequence[Child], timeout: float) -> bool:
    """Wait for every child to exit; past ``timeout`` seconds kill the rest (by PID). True if all
    exited with status 0 in time."""
    deadline = time.monotonic() + timeout
    ok = True
    for c in children:
        rc = c.wait(max(0.0, deadline - time.monotonic()))
        if rc is None:
            log(f"{c.name} (pid {c.pid}) did not finish within {timeout:.0f} s; killing it")
            ok = False
    for c in children:
        if c.alive():
            c.kill()
            c.wait(10)
    for c in children:
        rc = c.proc.returncode
        if rc != 0:
            log(f"{c.name} (pid {c.pid}) exited with status {rc}")
            ok = False
    return ok


def kill_all(children: Sequence[Child]) -> None:
    for c in children:
        c.kill()
    for c in children:
        c.wait(10)


def run_launcher(body: Callable[[List[Child]], bool]) -> int:
    """Run ``body(children)`` (which starts children and appends them to the list), making sure
    every child is killed on any failure or Ctrl-C. Returns the exit status."""
    children: List[Child] = []
    t0 = time.monotonic()
    ok = False

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        ok = body(children)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        for c in children:
            if c.alive():
                c.kill()
        for c in children:
            c.wait(10)
    log(f"{'OK' if ok else 'FAILED'} after {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1
