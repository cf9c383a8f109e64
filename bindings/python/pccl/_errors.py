"""PCCLError: raised when a library call fails."""

from __future__ import annotations

from typing import Optional, Union

from ._enums import Result

__all__ = ["PCCLError"]


class PCCLError(Exception):
    """A pccl library call failed.

    ``PCCLError(result, func_name)`` as in PCCL 1.0; this library adds ``message``, its own
    reason for the failure (``pcclGetLastErrorMessage``). ``message`` may also be passed by
    keyword alone (``PCCLError(result, message="...")``), as before PCCL 1.0 compatibility.

    Attributes:
        result: the ``pcclResult_t`` code as a :class:`Result` (an ``int``; compare with
            ``Result.RANK_CONNECTION_LOST`` or ``8``). Unknown codes stay plain ints.
        func_name: the C function that failed (``"pcclAllReduce"``), or None when the failure
            was found by the Python layer (e.g. a closed communicator).
        message: the library's reason for this failure, e.g. which peer was lost during which
            operation; may be empty.
    """

    def __init__(self, result: Union[int, Result], func_name: Optional[str] = None,
                 message: Optional[str] = None) -> None:
        try:
            result = Result(int(result))
        except ValueError:
            result = int(result)
        self.result: Union[Result, int] = result
        self.func_name: Optional[str] = func_name
        self.message: str = message or ""
        super().__init__(int(result), func_name, self.message)

    @staticmethod
    def check(result: Union[int, Result], func_name: str) -> None:
        """PCCL 1.0: raise ``PCCLError(result, func_name)`` unless ``result`` is
        ``Result.SUCCESS`` (0); return None otherwise. Never blocks."""
        if int(result) != Result.SUCCESS:
            raise PCCLError(result, func_name)

    @property
    def result_name(self) -> str:
        """The name of the result code (``"RANK_CONNECTION_LOST"``)."""
        return self.result.name if isinstance(self.result, Result) else f"unknown result {self.result}"

    def __str__(self) -> str:
        text = f"{self.result_name} ({int(self.result)})"
        if self.message:
            text = f"{text}: {self.message}"
        # PCCL 1.0's wording: "<func_name> failed with error: <result>".
        return f"{self.func_name} failed with error: {text}" if self.func_name else text

    def __repr__(self) -> str:
        return f"PCCLError({self.result_name}, {self.func_name!r}, {self.message!r})"

    def __reduce__(self):  # picklable (e.g. across multiprocessing)
        return (type(self), (int(self.result), self.func_name, self.message))
