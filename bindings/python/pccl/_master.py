"""MasterNode: an embedded pccl master (the coordinator of a run).

Lifetime, as in PCCL 1.0: once :meth:`MasterNode.run` has returned, the master serves until it
is interrupted (SIGINT, SIGTERM or :meth:`MasterNode.interrupt`) or closed (:meth:`close`, the
end of a ``with`` block). Dropping the object or reaching the end of the script does not stop
it, so a PCCL 1.0 master script, ``MasterNode("0.0.0.0:48148").run()`` and nothing else, serves
until Ctrl-C. How:

- ``run()`` starts a non-daemon thread that waits (without the GIL) for the master to stop. It
  holds the MasterNode, so the finaliser cannot stop it, and at the end of the script the
  interpreter waits for it (``threading._shutdown`` joins non-daemon threads before ``atexit``).
- ``run()`` in the main thread installs a handler for SIGINT and for SIGTERM where Python's
  default is still in place (a program's own handlers are left alone: they call ``interrupt()``
  themselves). The handler interrupts every running master. While the script body still runs it
  then does what the default would (SIGINT: KeyboardInterrupt; SIGTERM: the process dies of the
  signal); once the body has ended (the interpreter waiting for the masters) it just returns, the
  masters stop, and the process exits with the script's status (0). Python runs signal handlers
  in the main thread between bytecodes, so while a master runs, SIGTERM waits for the main
  thread to leave a blocking C call, as SIGINT always does. The handlers are put back when
  the last master is closed in the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from typing import Any, Dict, Optional, Set, Union

from . import _pccl
from ._closeable import Closeable
from ._address import DEFAULT_MASTER_PORT, SocketAddress, parse_address
from ._enums import Result
from ._errors import PCCLError
from ._types import _secret

__all__ = ["MasterNode"]

_live_masters: "weakref.WeakSet[MasterNode]" = weakref.WeakSet()

# Masters between run() and termination. The set and each master's serving thread hold them.
# Reentrant: the signal handler takes it in the main thread, which may hold it already.
_serving: "Set[MasterNode]" = set()
_serving_lock = threading.RLock()

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Signal number -> the (default) handler that _on_signal replaced. Main thread only.
_replaced_handlers: Dict[int, Any] = {}


def _path(value: Any, name: str) -> Optional[bytes]:
    """A file path argument as bytes for the C API (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be None, a str, bytes or os.PathLike, got {type(value).__name__}")
    value = os.fsencode(value)
    if not value or b"\0" in value:
        raise ValueError(f"{name} must be a non-empty path without NUL bytes")
    return value


class MasterNode(Closeable):
    """A pccl master running inside this process (``pcclCreateMaster``).

    ``listen_address`` is ``"ip:port"`` (IPv6: ``"[::]:48148"``); port 0 picks a free port,
    readable from :attr:`port` once running. :meth:`run` starts serving on a background thread
    and returns. The master then serves until :meth:`interrupt`, SIGINT/SIGTERM, or
    :meth:`close`, even when this object is dropped or the script ends (the process stays alive
    for it: PCCL 1.0 master scripts are ``MasterNode(...).run()`` and nothing else). A ``with``
    block scopes it instead: leaving the block stops and frees it. Typical use::

        with pccl.MasterNode("127.0.0.1:0") as master:
            master.run()
            comm = pccl.Communicator(f"127.0.0.1:{master.port}")

    Security (keyword-only; docs/security.md): ``secret`` is the run secret (``str``, UTF-8
    encoded, or ``bytes``; at least 16 bytes), ``secret_file`` a file holding it (refused if
    group or others may read it); with neither, ``PCCL_SECRET``, else ``PCCL_SECRET_FILE``, else
    none: an open run, which anyone who reaches the master can join. ``require_secret=True``
    makes :meth:`run` fail when no secret was found. A bad secret (too short, an unreadable or
    group-readable file) is reported by :meth:`run` (:class:`PCCLError` ``INVALID_ARGUMENT``).

    Status page (keyword-only; docs/observability.md): ``http="127.0.0.1:0"`` serves the status
    page, ``/api/status`` and ``/metrics`` there, as ``pccl-master --http`` (a bare port binds
    127.0.0.1; port 0 any free port, read from :attr:`http_port` once running); None: the
    environment's ``PCCL_MASTER_HTTP``, else none; ``""``: none. ``http_token_file`` makes every
    request carry ``Authorization: Bearer <its first line>`` (None: ``PCCL_MASTER_HTTP_TOKEN_FILE``).
    With a run secret and no token file the status server binds to a loopback address only;
    :meth:`run` raises :class:`PCCLError` ``INVALID_ARGUMENT`` when it cannot start.
    """

    def __init__(self, listen_address: str = f"0.0.0.0:{DEFAULT_MASTER_PORT}", *,
                 secret: Optional[Union[str, bytes]] = None,
                 secret_file: Optional[Union[str, bytes, "os.PathLike[str]"]] = None,
                 require_secret: bool = False, http: Optional[str] = None,
                 http_token_file: Optional[Union[str, bytes, "os.PathLike[str]"]] = None) -> None:
        self._native: Optional[Any] = None
        self._listen: SocketAddress = parse_address(listen_address, allow_port_zero=True)
        key = _secret(secret, "secret")
        secret_file = _path(secret_file, "secret_file")
        if not isinstance(require_secret, bool):
            raise TypeError(f"require_secret must be True or False, got {type(require_secret).__name__}")
        if http is not None:
            if not isinstance(http, str):
                raise TypeError(f"http must be None or a str ('HOST:PORT'), got {type(http).__name__}")
            if "\0" in http:
                raise ValueError("http must not contain NUL characters")
        http_token_file = _path(http_token_file, "http_token_file")
        self._bound_port: Optional[int] = None
        self._http_port: Optional[int] = None
        self._terminated: Optional[threading.Event] = None  # set once the master has stopped
        self._native = _pccl.Master(self._listen.protocol, self._listen.ip, self._listen.port, key, secret_file,
                                    require_secret, http, http_token_file)
        _live_masters.add(self)

    def _require(self) -> Any:
        native = self._native
        if native is None:
            raise PCCLError(Result.INVALID_USAGE, message="the master is closed")
        return native

    def run(self) -> None:
        """Bind the listen address and serve on a background thread; returns once listening.
        From then on the master serves until interrupted or closed (see the class docstring).
        Raises PCCLError if the address cannot be bound (e.g. the port is in use) or the master
        was already started."""
        native = self._require()
        native.run()
        self._bound_port = int(native.port())
        try:
            self._http_port = int(native.http_port())
        except PCCLError:
            self._http_port = None  # no status server asked for
        self._terminated = threading.Event()
        with _serving_lock:
            _serving.add(self)
        _install_signal_handlers()
        # Not a daemon: the interpreter waits for it at exit, so the master outlives the script.
        threading.Thread(target=self._serve, args=(native, self._terminated), name=f"pccl-master {self.listen_address}",
                         daemon=False).start()

    def _serve(self, native: Any, terminated: threading.Event) -> None:
        """The serving thread: waits (without the GIL) until the master stops."""
        try:
            native.await_termination()
        except PCCLError:
            pass  # closed before this thread got to wait: it has stopped as well
        finally:
            with _serving_lock:
                _serving.discard(self)
            terminated.set()

    @property
    def port(self) -> int:
        """The port the master listens on (after :meth:`run`; before it, the requested port)."""
        return self._bound_port if self._bound_port is not None else self._listen.port

    @property
    def http_port(self) -> Optional[int]:
        """The port of the status server (``http=``, ``PCCL_MASTER_HTTP``) once running; None
        without one or before :meth:`run`."""
        return self._http_port

    @property
    def listen_address(self) -> str:
        """The listen address with the actual port (``"127.0.0.1:40123"``, ``"[::1]:40123"``)."""
        return str(self._listen._replace(port=self.port))

    @property
    def running(self) -> bool:
        """True between :meth:`run` and the master's termination or :meth:`close`."""
        return self._native is not None and self._terminated is not None and not self._terminated.is_set()

    @property
    def closed(self) -> bool:
        return self._native is None

    def interrupt(self) -> None:
        """Ask the master to stop; returns at once (async-signal-safe in C). Raises PCCLError
        if the master is closed."""
        self._require().interrupt()

    def await_termination(self) -> None:
        """Block until the master has stopped (after :meth:`interrupt` or a signal). Raises
        PCCLError if it was never run or is closed.

        In the main thread the wait stays interruptible: Ctrl-C (KeyboardInterrupt) or another
        exception raised by a signal handler interrupts the master, waits for it to stop and
        propagates."""
        native = self._require()
        terminated = self._terminated
        if terminated is None:
            native.await_termination()  # raises: never run
            return
        try:
            terminated.wait()  # lock waits are interruptible by signal handlers in the main thread
        except BaseException:
            try:
                native.interrupt()
            except PCCLError:
                pass  # closed meanwhile: stopped
            terminated.wait()
            raise

    def close(self) -> None:
        """Stop the master if it runs, wait for it, and free it. Idempotent; blocks until the
        master has stopped (its connections closed)."""
        native = self._native
        if native is None:
            return
        native.close()  # interrupts and waits for the serving thread's wait to return
        self._native = None
        self._bound_port = None
        self._http_port = None
        _live_masters.discard(self)
        if self._terminated is not None:
            self._terminated.wait()
        _restore_signal_handlers_if_idle()

    def __repr__(self) -> str:
        state = "closed" if self._native is None else (
            "running" if self.running else ("stopped" if self._terminated is not None else "created"))
        return f"<pccl.MasterNode {self.listen_address} {state}>"


def _interrupt_all_serving() -> bool:
    """Interrupt every running master; True if there was one. Callable from a signal handler."""
    with _serving_lock:
        masters = list(_serving)
    for master in masters:
        try:
            master.interrupt()
        except Exception:
            pass  # closed meanwhile
    return bool(masters)


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM while masters run (installed in place of Python's default): stop them. At
    interpreter exit (the main thread done, waiting for the masters) that is all, and the
    process exits normally; otherwise, what the default handler would have done."""
    if _interrupt_all_serving() and not threading.main_thread().is_alive():
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # dies of the signal, as without a master


def _install_signal_handlers() -> None:
    """Put _on_signal in place of Python's default SIGINT/SIGTERM handling (main thread only;
    a handler the program installed stays)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        current = signal.getsignal(sig)
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        if current is not _on_signal and current == default:
            signal.signal(sig, _on_signal)
            _replaced_handlers[sig] = current


def _restore_signal_handlers_if_idle() -> None:
    """Put the default handlers back once no master runs (main thread only; a handler installed
    after ours stays)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _serving_lock:
        if _serving:
            return
    for sig, previous in list(_replaced_handlers.items()):
        if signal.getsignal(sig) is _on_signal:
            signal.signal(sig, previous)
        del _replaced_handlers[sig]


def _forget_masters_in_child() -> None:
    """After fork, in the child: the masters (and their serving threads) belong to the parent.
    Drop them without touching the C handles, which the parent's threads still use."""
    global _serving_lock
    _serving_lock = threading.RLock()  # another thread may have held it at the fork
    for master in list(_live_masters):
        master._native = None
        master._bound_port = None
        if master._terminated is not None:
            master._terminated.set()
    _live_masters.clear()
    _serving.clear()
    _replaced_handlers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_masters_in_child)


def _close_all_masters() -> None:
    for master in list(_live_masters):
        try:
            master.close()
        except Exception:
            pass
