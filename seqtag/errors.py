"""Errors that are the user's to fix.

The CLI prints a `SeqtagError` as one paragraph and exits non-zero, without a stack
trace; anything else is a bug in seqtag and keeps its traceback.
"""
from __future__ import annotations

from os import PathLike


class SeqtagError(Exception):
    """A mistake in the user's input, files or settings, explained in the message."""


class InputError(SeqtagError):
    """A problem at a known place in an input file.

    The message reads "<path>, line <n>: <what was found and what was expected>",
    so the user can open the file at that line.  `line` is None when the problem is
    with the file as a whole (missing, empty); `unit` names the kind of position when
    it is not a text line (for example "row" for a dataset loaded from the hub).
    """

    def __init__(self, path: str | PathLike, line: int | None, message: str, unit: str = "line"):
        self.path = str(path)
        self.line = line
        self.detail = message
        where = self.path if line is None else f"{self.path}, {unit} {line}"
        super().__init__(f"{where}: {message}")


class ModelFileError(SeqtagError):
    """A saved model directory that cannot be loaded as it is: a file missing, truncated, damaged, edited
    out of step with the others, from another model, or being replaced by a save at that moment.

    The message reads "<path>: <what is wrong and what to do>", where `path` is the file at fault (or the
    directory, when the directory as a whole is). Catch it to tell a broken model apart from other mistakes.
    """

    def __init__(self, path: str | PathLike, message: str):
        self.path = str(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}")
