"""PCCLError: raised when a library call fails."""

from __future__ import annotations

from typing import Optional, Union

from ._enums import Result

__all__ = ["PCCLError"]


class PCCLError(Exception):
    """A pccl library call failed.

    Attributes:
        result: the ``pcclResult_t`` code as a :class:`Result` (an ``int``; compare with
            ``Result.RANK_CONNECTION_LOST`` or ``8``). Unknown codes stay plain ints.
        message: the library's reason for this failure (``pcclGetLastErrorMessage``), e.g.
            which peer was lost during which operation; may be empty.
    """

    def __init__(self, result: Union[int, Result], message: Optional[str] = None) -> None:
        try:
            result = Result(int(result))
        except ValueError:
            result = int(result)
        self.result: Union[Result, int] = result
        self.message: str = message or ""
        super().__init__(int(result), self.message)

    @property
    def result_name(self) -> str:
        """The name of the result code (``"RANK_CONNECTION_LOST"``)."""
        return self.result.name if isinstance(self.result, Result) else f"unknown result {self.result}"

    def __str__(self) -> str:
        head = f"{self.result_name} ({int(self.result)})"
        return f"{head}: {self.message}" if self.message else head

    def __repr__(self) -> str:
        return f"PCCLError({self.result_name}, {self.message!r})"

    def __reduce__(self):  # picklable (e.g. across multiprocessing)
        return (type(self), (int(self.result), self.message))
