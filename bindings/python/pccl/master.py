"""Run a pccl master: ``python -m pccl.master --listen-address 0.0.0.0:48148`` (or the
``pccl-master`` console command installed with the package).

It serves until SIGINT or SIGTERM, then stops cleanly (exit status 0). Exit status 2 means a
bad argument, 1 that the address could not be bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import List, Optional

from ._address import DEFAULT_MASTER_PORT
from ._errors import PCCLError
from ._master import MasterNode

__all__ = ["MasterNode", "main"]

_LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "off")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pccl-master",
        description="The pccl master: admits peers, runs the votes and sequences the collectives of a run.")
    p.add_argument("--listen-address", "--listen", dest="listen_address", default=f"0.0.0.0:{DEFAULT_MASTER_PORT}",
                   help="address to listen on, ip:port (default %(default)s; IPv6: [::]:48148; "
                        "port 0 = any free port)")
    p.add_argument("--log-level", choices=_LOG_LEVELS, default=None,
                   help="library log verbosity on stderr (default: $PCCL_LOG_LEVEL, else info)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``pccl-master`` and ``python -m pccl.master``."""
    args = _parser().parse_args(argv)
    # The library reads PCCL_LOG_LEVEL when it first logs, which is after this point.
    if args.log_level is not None:
        os.environ["PCCL_LOG_LEVEL"] = args.log_level
    else:
        os.environ.setdefault("PCCL_LOG_LEVEL", "info")
    try:
        master = MasterNode(args.listen_address)
    except (TypeError, ValueError) as e:
        print(f"pccl-master: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            master.run()
        except PCCLError as e:
            print(f"pccl-master: cannot listen on {args.listen_address}: {e}", file=sys.stderr)
            return 1
        print(f"pccl-master listening on {master.listen_address}", flush=True)
        while not stop.wait(0.25):
            pass
        master.interrupt()
        master.await_termination()
        print("pccl-master stopped", flush=True)
        return 0
    finally:
        master.close()
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
