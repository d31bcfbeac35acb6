"""Byte lines to text lines, with the line number of any undecodable byte. Standard library only, so the
prediction command can read its input without loading the dataset readers."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import InputError

_UTF8_BOM = b"\xef\xbb\xbf"


def decode_lines(raw_lines: Iterable[bytes], shown_path: str, keep_line_end: bool = False
                 ) -> Iterator[tuple[int, str]]:
    """Decode byte lines as UTF-8, one by one, so an invalid byte is reported with its exact line.

    With `keep_line_end` a line keeps its ending, as "\n" whatever the file used (raw text for
    language models, where line breaks are characters to predict)."""
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8", errors="replace")) + 1
            raise InputError(
                shown_path,
                number,
                f"is not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {column}); "
                "save the file as UTF-8",
            ) from None
        stripped = text.rstrip("\r\n")
        yield number, stripped + "\n" if keep_line_end and len(stripped) < len(text) else stripped
