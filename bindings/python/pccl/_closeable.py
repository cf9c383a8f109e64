"""Context-manager and finalizer behaviour shared by the objects that own a native handle."""

from __future__ import annotations

from typing import Any


class Closeable:
    """Mixin: ``with obj:`` closes on exit, and garbage collection closes quietly.

    Subclasses implement ``close()`` (idempotent).
    """

    def close(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
