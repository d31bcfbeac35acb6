"""Byte lines to text lines, with the line number of any undecodable byte. Standard library only, so the
prediction command can read its input without loading the dataset readers."""
from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

from ..errors import InputError, SeqtagError

_UTF8_BOM = b"\xef\xbb\xbf"


def decode_lines(raw_lines: Iterable[bytes], shown_path: str, keep_line_end: bool = False, encoding: str = "utf-8"
                 ) -> Iterator[tuple[int, str]]:
    """Decode byte lines, one by one, so an undecodable byte is reported with its exact line.

    `encoding` (UTF-8 by default) must keep "\n" a byte of its own, as UTF-8, Latin-1 or cp1252 do: see
    `check_line_encoding`. With `keep_line_end` a line keeps its ending, as "\n" whatever the file used (raw text for
    language models, where line breaks are characters to predict)."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1 and utf8 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM):]
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode(encoding, errors="replace")) + 1
            byte = f"byte 0x{raw[error.start]:02x} at column {column}"
            raise InputError(
                shown_path,
                number,
                f"is not valid UTF-8 ({byte}); save the file as UTF-8" if utf8 else
                f"is not valid {encoding} ({byte}); give the file's own encoding (--encoding) or save it as UTF-8",
            ) from None
        stripped = text.rstrip("\r\n")
        yield number, stripped + "\n" if keep_line_end and len(stripped) < len(text) else stripped


def check_line_encoding(encoding: str, option: str = "--encoding") -> str:
    """`encoding` if files can be read in it line by line, else a SeqtagError naming `option`: an unknown name, or
    an encoding such as UTF-16 in which a line break is not the byte 0x0a."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise SeqtagError(f"{option} is {encoding!r}, which Python does not know; give an encoding name such as "
                          "utf-8, latin-1 or cp1252.") from None
    if not "a\n".encode(name).endswith(b"a\n"):  # a byte-order mark before it (utf-8-sig) is fine
        raise SeqtagError(f"{option} is {encoding!r}: seqtag reads files line by line at the byte 0x0a, which this "
                          "encoding does not use for a line break; convert the file to UTF-8 (iconv -f "
                          f"{encoding} -t utf-8).")
    return encoding
