"""MasterNode: an embedded pccl master (the coordinator of a run)."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

from . import _pccl
from ._closeable import Closeable
from ._address import DEFAULT_MASTER_PORT, SocketAddress, parse_address
from ._enums import Result
from ._errors import PCCLError

__all__ = ["MasterNode"]

_live_masters: "weakref.WeakSet[MasterNode]" = weakref.WeakSet()


class MasterNode(Closeable):
    """A pccl master running inside this process (``pcclCreateMaster``).

    ``listen_address`` is ``"ip:port"`` (IPv6: ``"[::]:48148"``); port 0 picks a free port,
    readable from :attr:`port` once running. :meth:`run` starts serving on a background thread
    and returns; :meth:`interrupt` asks it to stop; :meth:`close` (or leaving a ``with`` block)
    stops and frees it. Typical use::

        with pccl.MasterNode("127.0.0.1:0") as master:
            master.run()
            comm = pccl.Communicator(f"127.0.0.1:{master.port}")
    """

    def __init__(self, listen_address: str = f"0.0.0.0:{DEFAULT_MASTER_PORT}") -> None:
        self._native: Optional[Any] = None
        self._listen: SocketAddress = parse_address(listen_address, allow_port_zero=True)
        self._bound_port: Optional[int] = None
        self._native = _pccl.Master(self._listen.protocol, self._listen.ip, self._listen.port)
        _live_masters.add(self)

    def _require(self) -> Any:
        native = self._native
        if native is None:
            raise PCCLError(Result.INVALID_USAGE, "the master is closed")
        return native

    def run(self) -> None:
        """Bind the listen address and serve on a background thread; returns once listening.
        Raises PCCLError if the address cannot be bound (e.g. the port is in use) or the master
        was already started."""
        native = self._require()
        native.run()
        self._bound_port = int(native.port())

    @property
    def port(self) -> int:
        """The port the master listens on (after :meth:`run`; before it, the requested port)."""
        return self._bound_port if self._bound_port is not None else self._listen.port

    @property
    def listen_address(self) -> str:
        """The listen address with the actual port (``"127.0.0.1:40123"``, ``"[::1]:40123"``)."""
        return str(self._listen._replace(port=self.port))

    @property
    def running(self) -> bool:
        """True between :meth:`run` and :meth:`close`/termination (as far as this object knows)."""
        return self._native is not None and self._bound_port is not None

    @property
    def closed(self) -> bool:
        return self._native is None

    def interrupt(self) -> None:
        """Ask the master to stop; returns at once (async-signal-safe in C)."""
        self._require().interrupt()

    def await_termination(self) -> None:
        """Block (without the GIL) until the master has stopped after :meth:`interrupt`.

        In the main thread the wait stays interruptible: Ctrl-C (KeyboardInterrupt) or another
        exception raised by a signal handler interrupts the master, waits for it to stop and
        propagates."""
        native = self._require()
        if threading.current_thread() is not threading.main_thread():
            native.await_termination()
            return
        # The C wait cannot be interrupted by Python signal handlers: wait in a helper thread.
        done = threading.Event()
        failure: list = []

        def wait() -> None:
            try:
                native.await_termination()
            except BaseException as e:  # re-raised in the caller
                failure.append(e)
            finally:
                done.set()

        waiter = threading.Thread(target=wait, name="pccl-master-await", daemon=True)
        waiter.start()
        try:
            while not done.wait(0.25):
                pass
        except BaseException:
            native.interrupt()
            waiter.join()
            raise
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Stop the master if it runs, wait for it, and free it. Idempotent."""
        native = self._native
        if native is None:
            return
        native.close()
        self._native = None
        self._bound_port = None
        _live_masters.discard(self)

    def __repr__(self) -> str:
        state = "closed" if self._native is None else ("running" if self._bound_port is not None else "created")
        return f"<pccl.MasterNode {self.listen_address} {state}>"


def _close_all_masters() -> None:
    for master in list(_live_masters):
        try:
            master.close()
        except Exception:
            pass
