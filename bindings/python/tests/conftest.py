"""pytest configuration: a hard per-test deadline and shared fixtures.

Every test has a deadline: `@pytest.mark.timeout(seconds)` or the default below. The deadline
is enforced without plugins: faulthandler dumps every thread's stack and exits the process, so a
wedged test can never hang the suite (and if pytest-timeout is installed it honours the same
marker).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# The tests use the installed package. Running pytest from bindings/python would put the source
# tree's `pccl/` (which has no compiled extension) first on sys.path: drop that entry.
_SOURCE_ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _SOURCE_ROOT]
sys.path.insert(0, HERE)

try:
    import pccl  # noqa: F401
except ImportError as e:  # a clear message instead of a collection error in every module
    pytest.exit(f"cannot import pccl ({e}); install it first: "
                "pip install --no-build-isolation ./bindings/python", returncode=2)

DEFAULT_TIMEOUT_S = 60.0

# Started from a shell's background job (a CI runner's, or `make test &`), pytest inherits SIGINT
# ignored, and so would every child: Python then installs no KeyboardInterrupt handler, and the
# Ctrl-C tests (test_interrupt.py, test_master.py) wait out their deadline. A handled signal is
# reset to its default by exec, an ignored one is not: handle it here, and every child starts
# with SIGINT at its default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timeout(seconds): hard deadline of the test (default 60 s)")
    config.addinivalue_line("markers", "examples: runs an example of examples/python (10-30 s each); "
                                       "deselect with -m 'not examples'")


def pytest_unconfigure(config: pytest.Config) -> None:
    # A running master keeps the interpreter alive at exit until it is interrupted (PCCL 1.0's
    # MasterNode lifetime): stop any that a failed test left running, or pytest would not exit.
    from pccl._master import _close_all_masters

    _close_all_masters()


@pytest.fixture(autouse=True)
def _hard_deadline(request: pytest.FixtureRequest):
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0]) if marker and marker.args else DEFAULT_TIMEOUT_S
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def master():
    import pccl

    m = pccl.MasterNode("127.0.0.1:0")
    m.run()
    try:
        yield m
    finally:
        m.close()
