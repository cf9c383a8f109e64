"""The pccl master program in Python: ``pccl-master``, ``pccl_master`` (PCCL 1.0's name) and
``python -m pccl.master``.

One master program: the same flags, output and exit statuses as the C daemon
(``master/main.cpp``), over an embedded master. It prints ``pccl-master listening on HOST:PORT``
once it accepts connections, one status line per membership change (``pccl-master: <change> |
accepted N, pending M``), and ``pccl-master stopped`` after SIGINT or SIGTERM, then exits 0.
Exit status 2 means a bad argument, 1 that the address could not be bound. Log lines go to
stderr (default level info).

``--secret-file``, ``--require-secret``, ``--http`` and ``--http-token-file`` are MasterNode's
``secret_file``, ``require_secret``, ``http`` and ``http_token_file`` (``pcclCreateMasterEx``);
with a status server it prints ``pccl-master status page on http://HOST:PORT/`` after the
listening line, as the daemon. The other flags reach the embedded master's core
through the environment variables it reads when the master is created: ``PCCL_HEARTBEAT_TIMEOUT_MS``,
``PCCL_VOTE_TIMEOUT_MS``, ``PCCL_HANDSHAKE_TIMEOUT_MS``, ``PCCL_MAX_HEARTBEAT_TIMEOUT_MS``,
``PCCL_MAX_CONNECTIONS``, ``PCCL_MAX_CONNECTIONS_PER_ADDRESS`` and ``PCCL_MASTER_PRINT_STATUS``; and ``PCCL_LOG_LEVEL``, which the
library reads at its first log line (so ``--log-level`` only works in a process that has not
logged yet: ``main()`` is meant to run as a program).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, TextIO

from ._address import DEFAULT_MASTER_PORT, INET_IPV6, SocketAddress, parse_address
from ._errors import PCCLError
from ._master import MasterNode

__all__ = ["MasterNode", "main"]

_LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "off")
_MAX_MS = 24 * 3600000
_MAX_CONNECTIONS = 1000000  # master/server.h kMaxConnectionsLimit

# Word for word master/main.cpp's usage(): a test compares the --help output of both programs.
_USAGE = (
    "usage: pccl-master [--listen HOST:PORT] [--log-level LEVEL] [--heartbeat-timeout-ms MS]\n"
    "                   [--vote-timeout-ms MS] [--secret-file PATH] [--require-secret]\n"
    "                   [--handshake-timeout-ms MS] [--max-heartbeat-timeout-ms MS]\n"
    "                   [--max-connections N] [--max-connections-per-address N]\n"
    "                   [--http HOST:PORT] [--http-token-file PATH] [--end-run-on-exit] [--epoch N]\n"
    "                   [--etcd http://HOST:PORT --run-id NAME [--advertise HOST:PORT] [--lease-ttl-s S]]\n"
    "  --listen                address to listen on (default 0.0.0.0:48148; IPv6: [::]:48148; port 0 = any)\n"
    "  --log-level             trace|debug|info|warn|error|off on stderr (default info; env PCCL_LOG_LEVEL)\n"
    "  --heartbeat-timeout-ms  remove a peer silent this long, unless it asked for another deadline\n"
    "                          (default 5000; env PCCL_HEARTBEAT_TIMEOUT_MS)\n"
    "  --vote-timeout-ms       settle a vote or collective start still open after this long: remove\n"
    "                          the laggards if the waiting peers outnumber them, else fail the\n"
    "                          waiting calls with pcclTimeout (default 60000, 0 = never; env\n"
    "                          PCCL_VOTE_TIMEOUT_MS)\n"
    "  --secret-file           the run secret, in a file only its owner may read (else env\n"
    "                          PCCL_SECRET or PCCL_SECRET_FILE); every peer must hold the same secret\n"
    "  --require-secret        refuse to start without a run secret (docs/security.md)\n"
    "  --handshake-timeout-ms  close a connection whose Hello was not accepted this long after it\n"
    "                          connected (default 5000; env PCCL_HANDSHAKE_TIMEOUT_MS)\n"
    "  --max-heartbeat-timeout-ms\n"
    "                          cap on the heartbeat deadline a peer may ask for (default 60000;\n"
    "                          env PCCL_MAX_HEARTBEAT_TIMEOUT_MS)\n"
    "  --max-connections       open connections kept in total; more are closed at once\n"
    "                          (default 4096; env PCCL_MAX_CONNECTIONS)\n"
    "  --max-connections-per-address\n"
    "                          open connections kept from one source IP address (default 64;\n"
    "                          env PCCL_MAX_CONNECTIONS_PER_ADDRESS)\n"
    "  --http                  serve the status page, /api/status and /metrics on this address (off by\n"
    "                          default; env PCCL_MASTER_HTTP; a bare PORT binds 127.0.0.1). With a run\n"
    "                          secret a non-loopback address needs --http-token-file (docs/observability.md)\n"
    "  --http-token-file       every HTTP request must carry 'Authorization: Bearer <first line of PATH>'\n"
    "                          (env PCCL_MASTER_HTTP_TOKEN_FILE)\n"
    "  --end-run-on-exit       on SIGINT/SIGTERM tell the peers the run has ended (they fail at once);\n"
    "                          by default they keep the run and wait for a restarted master\n"
    "                          (docs/master_recovery.md)\n"
    "  --epoch                 this master's first epoch (default 1; a restarted master moves past\n"
    "                          the epoch its peers report)\n"
    "  --etcd                  a standby master: campaign through this etcd (v3 HTTP gateway) for the\n"
    "                          leadership of run --run-id; only the leader serves peers, the others\n"
    "                          send them to it. Peers list every master (PCCL_MASTER_ADDRESSES); a\n"
    "                          killed leader's peers all-reduce again 3.1-3.5 s later (measured,\n"
    "                          default TTL; docs/master_recovery.md, Standby masters)\n"
    "  --run-id                the run's name in etcd (key /pccl/NAME/leader)\n"
    "  --advertise             the address peers reach this master at (default: --listen, which must\n"
    "                          then name a host)\n"
    "  --lease-ttl-s           the leadership lease's TTL in seconds (default 3; etcd's minimum is 2)\n"
    "Prints one status line per membership change; SIGINT/SIGTERM stop it cleanly.\n"
)


class _UsageError(Exception):
    """A bad command line: the message is printed after ``pccl-master: ``; exit status 2."""

    def __init__(self, message: str, show_usage: bool = False) -> None:
        super().__init__(message)
        self.show_usage = show_usage


class _Options:
    def __init__(self) -> None:
        self.listen = f"0.0.0.0:{DEFAULT_MASTER_PORT}"
        self.log_level = "info"
        # PCCL_* variables for the master core. Like the C daemon, a stop by a signal keeps the
        # run (its peers wait for a restarted master) unless --end-run-on-exit.
        self.environment: Dict[str, str] = {"PCCL_MASTER_END_RUN_ON_EXIT": "0"}
        self.secret_file: Optional[str] = None
        self.require_secret = False
        self.http: Optional[str] = None  # None: PCCL_MASTER_HTTP (read by the embedded master)
        self.http_token_file: Optional[str] = None
        self.help = False


def _millis(flag: str, text: str, lowest: int) -> str:
    """The C daemon's millis(): a decimal number of milliseconds in lowest..86400000."""
    m = re.fullmatch(r"\s*([+-]?)([0-9]+)", text)
    value = int(m.group(2)) if m else -1
    if not m or (m.group(1) == "-" and value != 0) or value < lowest or value > _MAX_MS:
        raise _UsageError(f"{flag} needs milliseconds in {lowest}..{_MAX_MS}, got '{text}'")
    return str(value)


def _count(flag: str, text: str) -> str:
    """The C daemon's count(): a decimal number of connections in 1..1000000."""
    m = re.fullmatch(r"\s*([+-]?)([0-9]+)", text)
    value = int(m.group(2)) if m else -1
    if not m or (m.group(1) == "-" and value != 0) or value < 1 or value > _MAX_CONNECTIONS:
        raise _UsageError(f"{flag} needs a count in 1..{_MAX_CONNECTIONS}, got '{text}'")
    return str(value)


def _parse(argv: List[str]) -> _Options:
    """master/main.cpp's flag loop, message for message. Raises _UsageError."""
    o = _Options()
    env_level = os.environ.get("PCCL_LOG_LEVEL")
    if env_level is not None and env_level.lower() in _LOG_LEVELS:
        o.log_level = env_level.lower()
    i = 0
    while i < len(argv):
        arg = argv[i]

        def value(name: str) -> str:
            nonlocal i
            if i + 1 >= len(argv):
                raise _UsageError(f"{name} needs a value")
            i += 1
            return argv[i]

        if arg in ("--listen", "--listen-address"):
            o.listen = value("--listen")
        elif arg == "--log-level":
            level = value("--log-level")
            if level.lower() not in _LOG_LEVELS:
                raise _UsageError(f"unknown log level '{level}'")
            o.log_level = level.lower()
        elif arg == "--heartbeat-timeout-ms":
            o.environment["PCCL_HEARTBEAT_TIMEOUT_MS"] = _millis(arg, value(arg), 100)
        elif arg == "--vote-timeout-ms":
            o.environment["PCCL_VOTE_TIMEOUT_MS"] = _millis(arg, value(arg), 0)
        elif arg == "--handshake-timeout-ms":
            o.environment["PCCL_HANDSHAKE_TIMEOUT_MS"] = _millis(arg, value(arg), 100)
        elif arg == "--max-heartbeat-timeout-ms":
            o.environment["PCCL_MAX_HEARTBEAT_TIMEOUT_MS"] = _millis(arg, value(arg), 100)
        elif arg == "--max-connections":
            o.environment["PCCL_MAX_CONNECTIONS"] = _count(arg, value(arg))
        elif arg == "--max-connections-per-address":
            o.environment["PCCL_MAX_CONNECTIONS_PER_ADDRESS"] = _count(arg, value(arg))
        elif arg == "--end-run-on-exit":
            o.environment["PCCL_MASTER_END_RUN_ON_EXIT"] = "1"
        elif arg == "--epoch":
            o.environment["PCCL_MASTER_EPOCH"] = _count(arg, value(arg))
        elif arg == "--secret-file":
            o.secret_file = value(arg)
        elif arg == "--require-secret":
            o.require_secret = True
        elif arg == "--http":
            o.http = value(arg)
        elif arg == "--http-token-file":
            o.http_token_file = value(arg)
        elif arg in ("--etcd", "--run-id", "--advertise", "--lease-ttl-s"):
            value(arg)
            raise _UsageError(f"{arg}: the Python pccl-master cannot stand by through etcd; run the C pccl-master")
        elif arg in ("--help", "-h"):
            o.help = True
            return o
        else:
            raise _UsageError(f"unknown argument '{arg}'", show_usage=True)
        i += 1
    return o


def _c_address(address: SocketAddress) -> str:
    """The address as the C library writes it (NetAddr::str): IPv6 as eight hex groups without
    leading zeros, uncompressed (``[0:0:0:0:0:0:0:1]:48148``)."""
    if address.protocol == INET_IPV6:
        groups = ":".join(format(int.from_bytes(address.ip[i:i + 2], "big"), "x") for i in range(0, 16, 2))
        return f"[{groups}]:{address.port}"
    return str(address)


def _http_host(listen: str, port: int) -> str:
    """HOST:PORT of the status server as the daemon prints it (HttpStatus::url): a bare PORT or
    ``:PORT`` is 127.0.0.1."""
    if ":" not in listen:
        listen = f"127.0.0.1:{listen}"
    elif listen.startswith(":"):
        listen = f"127.0.0.1{listen}"
    return _c_address(parse_address(listen, allow_port_zero=True)._replace(port=port))


@contextlib.contextmanager
def _environment(values: Dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fail(message: str, status: int, err: TextIO) -> int:
    print(f"pccl-master: {message}", file=err, flush=True)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``pccl-master``, ``pccl_master`` and ``python -m pccl.master``: serve
    until SIGINT/SIGTERM (blocks), then return the exit status (0; 1 if the address cannot be
    bound; 2 for a bad argument)."""
    try:
        options = _parse(sys.argv[1:] if argv is None else list(argv))
    except _UsageError as e:
        _fail(str(e), 2, sys.stderr)
        if e.show_usage:
            sys.stderr.write(_USAGE)
        return 2
    if options.help:
        sys.stdout.write(_USAGE)
        sys.stdout.flush()
        return 0
    # Read by the library at its first log line, which comes after this point.
    os.environ["PCCL_LOG_LEVEL"] = options.log_level
    try:
        # pcclCreateMaster reads the master core's variables; status lines as the daemon's.
        with _environment(dict(options.environment, PCCL_MASTER_PRINT_STATUS="1")):
            master = MasterNode(options.listen, secret_file=options.secret_file,
                                require_secret=options.require_secret, http=options.http,
                                http_token_file=options.http_token_file or None)
            http_listen = options.http if options.http is not None else os.environ.get("PCCL_MASTER_HTTP", "")
    except (TypeError, ValueError) as e:
        return _fail(str(e), 2, sys.stderr)
    # Handlers of our own, installed before run(), so MasterNode leaves the signals to us.
    def on_signal(signum: int, frame: Any) -> None:
        with contextlib.suppress(PCCLError):  # closed already: stopped
            master.interrupt()

    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            master.run()
        except PCCLError as e:
            return _fail(e.message or str(e), 1, sys.stderr)
        print(f"pccl-master listening on {_c_address(master._listen._replace(port=master.port))}", flush=True)
        if master.http_port is not None:
            print(f"pccl-master status page on http://{_http_host(http_listen, master.http_port)}/", flush=True)
        master.await_termination()
        print("pccl-master stopped", flush=True)
        return 0
    finally:
        master.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
