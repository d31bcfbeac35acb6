"""Raw text to tokens with character offsets, close to UD/PTB English tokenization.

`split_words` keeps URLs, e-mail addresses, @mentions, #hashtags, numbers such as
3.5, 1,000 and 10:30, abbreviations such as "U.S." and hyphenated words whole; splits
clitics PTB-style ("don't" -> "do" "n't", "I'm" -> "I" "'m"); and makes every other
punctuation mark or symbol its own token, except "..." and "--".  It is one pass of
a compiled regex, as it runs on every prediction request.
"""
from __future__ import annotations

import re
import unicodedata


def _combining_marks() -> str:
    """Character-class ranges of combining marks (category M).

    Python's `\\w` leaves out marks, which would cut words in Devanagari, Thai,
    decomposed Latin and so on; planes 0-1 plus the variation selectors cover them.
    """
    ranges: list[tuple[int, int]] = []
    for code in range(0x20000):
        if unicodedata.category(chr(code))[0] == "M":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    ranges.append((0xE0100, 0xE01EF))
    return "".join(
        re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in ranges
    )


# A word character: letters, digits and underscore (any script), combining marks, and
# the zero-width (non-)joiners that Persian and Indic scripts use inside words.
_W = f"[\\w{_combining_marks()}\u200c\u200d]"
_LETTER = r"[^\W\d_]"
_APOSTROPHE = "'\u2019"
_TLDS = "com|org|net|edu|gov|io|uk|de|fr|eu|info|biz"
_URL_TAIL = r"""[^\s<>"]*[^\s<>"'.,;:!?()\[\]{}]"""  # no trailing punctuation
# A piece of a word: a number with internal . , : / (3.5 1,000 10:30 1/2) or a run of
# word characters.
_PIECE = rf"(?:\d+(?:[.,:/]\d+)+|{_W}+)"

_TITLES = (
    "Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Gen|Gov|Sen|Rep|Rev|Lt|Col|Sgt|Capt|Inc|Ltd|Co|Corp"
    "|vs|etc|approx|dept|Jan|Feb|Mar|Apr|Aug|Sept|Sep|Oct|Nov|Dec"
)

# Zero-width spaces and BOMs count as space.  `\s` and str.isspace agree, and no
# space character lies above U+3000.
_SPACE = "[\\s\u200b\u2060\ufeff]"
_SPACE_CHARS = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + "\u200b\u2060\ufeff"

# Group 1 is the token, alternatives in priority order (the first that matches wins).
# Skipping leading space inside the match is much faster than letting finditer try
# every alternative at every space.
_TOKEN = re.compile(
    f"{_SPACE}*+("
    + "|".join(
        [
            # Fast paths for the common cases, safe to try first: a plain run of word
            # characters followed by space or punctuation that cannot continue a longer
            # token (so not "." "-" "'" "@" ":"), and punctuation no longer token starts with.
            rf"{_W}++(?=\s|$|,(?!\d)|[;!?\"()\[\]{{}}])",
            r"[,;:!?\"()\[\]{}]",
            # URLs with a scheme or www., then bare domains with a common TLD.
            rf"(?i:[a-z][a-z0-9+.-]*://|www\.){_URL_TAIL}",
            rf"(?i:(?<![\w@.])[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:{_TLDS})(?![\w-]))"
            rf"(?:/{_URL_TAIL})?",
            # E-mail addresses, then @mentions and #hashtags.
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}",
            rf"[@#]{_W}+",
            # Abbreviations: titles, letter-dot sequences (U.S., e.g., Ph.D.), AT&T.
            rf"(?<!\w)(?:{_TITLES})\.",
            rf"(?:{_LETTER}\.){{2,}}|{_LETTER}{{2}}\.(?:{_LETTER}\.)+",
            r"(?<!\w)[A-Z]{1,4}&[A-Z]{1,4}(?!\w)",
            # Words: pieces joined by hyphens and apostrophes; clitics are split off later.
            rf"(?P<word>{_PIECE}(?:[-\u2010{_APOSTROPHE}]{_PIECE})*)",
            r"(?<![\w.])\.\d+",  # .5
            r"\.{2,}|-{2,}",  # ... and --
            # Anything else that is not space.
            f"[^{_SPACE[1:]}",
        ]
    )
    + ")"
)

# A clitic at the end of a word: n't 's 'm 'd 'll 're 've (straight or curly apostrophe).
_CLITIC = re.compile(rf"(?i)(?:n[{_APOSTROPHE}]t|[{_APOSTROPHE}](?:s|m|d|ll|re|ve))$")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split `text` into (token, start, end) with ``text[start:end] == token``."""
    words: list[tuple[str, int, int]] = []
    append = words.append
    # Stop before trailing space: there the space-skipping prefix would be retried at
    # every position and find nothing, which is quadratic in the length of the run.
    for match in _TOKEN.finditer(text, 0, len(text.rstrip(_SPACE_CHARS))):
        token = match.group(1)
        start, end = match.span(1)
        if ("'" in token or "\u2019" in token) and match.group("word"):
            words.extend(_split_clitics(token, start))
        else:
            append((token, start, end))
    return words


def _split_clitics(word: str, start: int) -> list[tuple[str, int, int]]:
    """Split trailing clitics off `word` ("shouldn't've" -> should n't 've)."""
    clitics: list[tuple[str, int, int]] = []
    stem_end = len(word)
    while True:
        match = _CLITIC.search(word, 0, stem_end)
        if match is None or match.start() == 0:
            break  # no clitic, or nothing would be left of the word
        clitics.append((word[match.start():stem_end], start + match.start(), start + stem_end))
        stem_end = match.start()
    clitics.append((word[:stem_end], start, start + stem_end))
    clitics.reverse()
    return clitics
