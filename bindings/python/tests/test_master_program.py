"""One master program: the Python pccl-master (python -m pccl.master) and the C daemon
(master/main.cpp) take the same flags and print the same lines.

The C daemon is found through $PCCL_MASTER_BIN, else the newest pccl-master under the
repository's build directories; without one, these tests are skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import List, Tuple

import pytest

import pccl
from pccl_testing import c_master_daemon, python_subprocess

pytestmark = pytest.mark.timeout(120)

C_DAEMON = c_master_daemon()
needs_daemon = pytest.mark.skipif(C_DAEMON is None, reason="no C pccl-master built (set PCCL_MASTER_BIN)")

PROGRAMS = {"c": lambda: [C_DAEMON], "python": lambda: [sys.executable, "-m", "pccl.master"]}


def _start(program: str, args: List[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PCCL_LOG_LEVEL", None)
    return subprocess.Popen(PROGRAMS[program]() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
        p.wait(5)


_LOG_PREFIX = re.compile(r"^\[pccl \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9]+ (\w+)\] ")
_ADDRESS = re.compile(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+")
_PEER = re.compile(r"peer [0-9a-f]+ ")


def _normalise(text: str) -> List[str]:
    """Lines without what differs from run to run: log timestamps and pids, ports, peer ids."""
    lines = []
    for line in text.splitlines():
        line = _LOG_PREFIX.sub(r"[\1] ", line)
        line = _ADDRESS.sub(r"\1:PORT", line)
        lines.append(_PEER.sub("peer ID ", line))
    return lines


def _session(program: str) -> Tuple[int, List[str], List[str]]:
    """Start the program with every flag, let a peer join and leave, stop it with SIGTERM.
    Returns (exit status, stdout lines, stderr lines), normalised."""
    p = _start(program, ["--listen", "127.0.0.1:0", "--log-level", "info", "--heartbeat-timeout-ms", "3000",
                         "--vote-timeout-ms", "20000"])
    try:
        banner = p.stdout.readline()
        m = re.fullmatch(r"pccl-master listening on 127\.0\.0\.1:(\d+)\n", banner)
        assert m, (banner, p.stderr.read() if p.poll() is not None else "")
        out = [banner]
        with pccl.Communicator(f"127.0.0.1:{m.group(1)}") as comm:
            comm.connect()
        # The master reports the peer's leaving before it is stopped.
        while " left |" not in out[-1]:
            line = p.stdout.readline()
            assert line, f"{program}: no 'left' status line; stdout so far: {out}"
            out.append(line)
        p.send_signal(signal.SIGTERM)
        rest, err = p.communicate(timeout=15)
        return p.returncode, _normalise("".join(out) + rest), _normalise(err)
    finally:
        _kill(p)


@needs_daemon
def test_both_programs_print_the_same_lines():
    rc_c, out_c, err_c = _session("c")
    rc_py, out_py, err_py = _session("python")
    assert rc_c == rc_py == 0, (err_c, err_py)
    assert out_py == out_c
    assert err_py == err_c
    # What that output is: each membership change once (a status line, no log line repeating it).
    # The counts are those after the message that caused the changes: the first peer is admitted
    # as soon as it registers.
    assert out_c == [
        "pccl-master listening on 127.0.0.1:PORT",
        "pccl-master: peer ID (127.0.0.1:PORT) registered in group 0, waiting for admission | accepted 1, pending 0",
        "pccl-master: peer ID (127.0.0.1:PORT) admitted to group 0 | accepted 1, pending 0",
        "pccl-master: peer ID (127.0.0.1:PORT) left | accepted 0, pending 0",
        "pccl-master stopped",
    ], out_c
    assert not any("master: peer " in line for line in err_c), err_c
    assert "[INFO] master: shutting down" in err_c


BAD_COMMAND_LINES = [
    ["--help"],
    ["-h"],
    ["--bogus"],
    ["--listen"],
    ["--listen", "nonsense:xx"],
    ["--listen-address", "1.2.3.4:99999"],
    ["--log-level", "loud"],
    ["--heartbeat-timeout-ms", "50"],
    ["--heartbeat-timeout-ms", "1e3"],
    ["--vote-timeout-ms", "-5"],
    ["--vote-timeout-ms", "86400001"],
    ["--vote-timeout-ms"],
    ["--handshake-timeout-ms", "99"],
    ["--max-heartbeat-timeout-ms", "x"],
    ["--max-connections", "0"],
    ["--max-connections-per-address", "1000001"],
]


@needs_daemon
@pytest.mark.parametrize("args", BAD_COMMAND_LINES, ids=" ".join)
def test_both_programs_answer_the_same_to_help_and_bad_flags(args):
    results = {}
    for program in PROGRAMS:
        p = _start(program, args)
        try:
            out, err = p.communicate(timeout=30)
        finally:
            _kill(p)
        results[program] = (p.returncode, out, err)
    assert results["python"] == results["c"]
    assert results["c"][0] == (0 if args[0] in ("--help", "-h") else 2)


@pytest.mark.parametrize("flag", ["--etcd", "--run-id", "--advertise", "--lease-ttl-s"])
def test_the_python_master_refuses_standby_flags_and_names_the_c_one(flag):
    # Standby masters (docs/master_recovery.md) campaign through etcd: the C pccl-master only.
    p = _start("python", [flag, "x"])
    try:
        out, err = p.communicate(timeout=30)
    finally:
        _kill(p)
    assert p.returncode == 2
    assert f"pccl-master: {flag}: the Python pccl-master cannot stand by through etcd; run the C pccl-master" in err
    assert out == ""


@needs_daemon
def test_both_programs_fail_the_same_on_a_port_in_use():
    with pccl.MasterNode("127.0.0.1:0") as holder:
        holder.run()
        results = {}
        for program in PROGRAMS:
            p = _start(program, ["--listen", f"127.0.0.1:{holder.port}"])
            try:
                out, err = p.communicate(timeout=30)
            finally:
                _kill(p)
            # Log lines carry a time and a pid (e.g. the warning that the run has no secret).
            err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("[pccl "))
            results[program] = (p.returncode, out, err)
    assert results["python"] == results["c"]
    assert results["c"][0] == 1 and "cannot listen" in results["c"][2]


def test_python_m_pccl_master_sets_no_variables_for_later_masters():
    # The flags reach the embedded master through the environment only while it is created.
    code = ("import os, threading, signal, time, pccl.master\n"
            "def stop():\n"  # SIGTERM once main() has put its handler in place
            "    while signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:\n"
            "        time.sleep(0.01)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "threading.Thread(target=stop, daemon=True).start()\n"
            "rc = pccl.master.main(['--listen', '127.0.0.1:0', '--vote-timeout-ms', '7000'])\n"
            "print(rc, [k for k in ('PCCL_VOTE_TIMEOUT_MS', 'PCCL_MASTER_PRINT_STATUS') if k in os.environ])\n")
    p = python_subprocess(["-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={"PCCL_VOTE_TIMEOUT_MS": ""})
    try:
        out, err = p.communicate(timeout=30)
    finally:
        _kill(p)
    assert p.returncode == 0, err
    assert out.splitlines()[-1] == "0 ['PCCL_VOTE_TIMEOUT_MS']"  # restored (to the empty value it had)
