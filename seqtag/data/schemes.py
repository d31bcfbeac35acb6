"""Tag schemes for span labelling: reading spans, writing labels, detection and checks.

A label is "O" or PREFIX-TYPE ("B-PER", "I-LOC", "E-ORG", "S-MISC"). Three span
schemes are supported:

* "iob1": every entity token is I-X; B-X only marks the first token of an entity that
  directly follows another entity of the same type.
* "iob2": B-X on the first token of every entity, I-X on the rest.
* "bioes": S-X for a one-token entity, otherwise B-X, I-X..., E-X.

"none" means plain token labels (e.g. POS tags) that carry no spans.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

SPAN_SCHEMES = ("iob1", "iob2", "bioes")
SCHEMES = SPAN_SCHEMES + ("none",)

# Which (previous prefix, current prefix) pairs close or open a chunk, as in the
# IOBES-aware conlleval.  A type change is handled separately (see `spans`).
_ENDS = ({("B", t) for t in "BSO"} | {("I", t) for t in "BSO"}
         | {(p, t) for p in "ES" for t in "BIESO"})
_STARTS = ({(p, t) for p in "BIESO" for t in "BS"}
           | {(p, "I") for p in "OES"} | {(p, "E") for p in "OES"})
# conlleval never opens or closes a chunk on a type change at these tags.
_OUTSIDE = ("O", ".")


def _split(label: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; a label without "-" is all prefix, with type ""."""
    prefix, dash, kind = label.partition("-")
    return (prefix, kind) if dash else (label, "")


def _chunk_ends(prev_tag: str, prev_type: str, tag: str, kind: str) -> bool:
    return (prev_tag, tag) in _ENDS or (prev_tag not in _OUTSIDE and prev_type != kind)


def _chunk_starts(prev_tag: str, prev_type: str, tag: str, kind: str) -> bool:
    return (prev_tag, tag) in _STARTS or (tag not in _OUTSIDE and prev_type != kind)


def spans(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks as (type, start, end) with `end` exclusive, decided as conlleval decides.

    A label is split at its first "-" into prefix and type ("O" and other labels
    without "-" have type ""); the sentence is read as if "O" came before and after it.
    Between each previous label and the current one:

    * a chunk ends after B-X or I-X when B, S or O follows; after E-X or S-X when
      any of B, I, E, S, O follows; and after any label other than "O" or "." when the
      type changes;
    * a chunk starts at B-X and S-X; at I-X and E-X after O, E or S; and at any label
      other than "O" or "." whose type differs from the previous label's type.

    So I-X after O opens a chunk (IOB1 style, and a lenient reading of ill-formed
    IOB2), I-X I-Y is two chunks, B-X after I-X starts a new one, E-X closes, S-X is a
    single token and "B-X E-Y" is two chunks. These are the rules of the conlleval
    version that knows E and S (the 2004 original lacks the S rules); its "[" "]"
    bracket tags are not supported. Chunks end at the end of the sequence. As in
    conlleval, a stray label without "-" (say "PER") after an entity opens a chunk of
    type ""; `find_violation` reports such labels.
    """
    chunks = []
    open_type: str | None = None
    start = 0
    prev_tag, prev_type = "O", ""
    for i, label in enumerate(labels):
        tag, kind = _split(label)
        starts = _chunk_starts(prev_tag, prev_type, tag, kind)
        # A new start also closes the open chunk: conlleval counts one chunk per start.
        if open_type is not None and (starts or _chunk_ends(prev_tag, prev_type, tag, kind)):
            chunks.append((open_type, start, i))
            open_type = None
        if starts:
            open_type, start = kind, i
        prev_tag, prev_type = tag, kind
    if open_type is not None:
        chunks.append((open_type, start, len(labels)))
    return chunks


def _check_span_scheme(scheme: str) -> None:
    if scheme not in SPAN_SCHEMES:
        raise ValueError(f"unknown span scheme {scheme!r}; expected one of {', '.join(SPAN_SCHEMES)}")


def from_spans(span_list: Iterable[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    """Labels of a `length`-token sentence holding `span_list`, written in `scheme`.

    Raises ValueError for an unknown scheme or spans that overlap or leave the sentence.
    """
    _check_span_scheme(scheme)
    labels = ["O"] * length
    prev_type, prev_end = None, 0
    for kind, start, end in sorted(span_list, key=lambda span: (span[1], span[2])):
        if not (prev_end <= start < end <= length):
            raise ValueError(f"span ({kind!r}, {start}, {end}) overlaps another span or lies "
                             f"outside a sentence of {length} tokens")
        size = end - start
        if scheme == "iob1":
            # B- is needed only to separate two adjacent entities of one type.
            first = "B" if (start == prev_end and kind == prev_type) else "I"
            prefixes = [first] + ["I"] * (size - 1)
        elif scheme == "iob2":
            prefixes = ["B"] + ["I"] * (size - 1)
        else:
            prefixes = ["S"] if size == 1 else ["B"] + ["I"] * (size - 2) + ["E"]
        labels[start:end] = [f"{prefix}-{kind}" for prefix in prefixes]
        prev_type, prev_end = kind, end
    return labels


def convert(labels: Sequence[str], target_scheme: str) -> list[str]:
    """`labels` (IOB1, IOB2 or BIOES, even ill-formed) rewritten in `target_scheme`."""
    return from_spans(spans(labels), len(labels), target_scheme)


def _has_span_prefix(label: str) -> bool:
    prefix, dash, _ = label.partition("-")
    return bool(dash) and prefix in ("B", "I", "E", "S")


def detect_scheme(label_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of gold label sequences: "none", "iob1", "iob2" or "bioes".

    "none" when no label has a B-/I-/E-/S- prefix ("O" alone is no evidence); "bioes"
    when any E- or S- label occurs; "iob1" when some I-X opens an entity (at sentence
    start, after O or after another type); "iob2" otherwise. Raises ValueError when
    I-X opens entities and B-X also opens one at sentence start or after O.
    """
    any_prefix = any_bioes = False
    i_start = b_start = None  # first (sentence, token, label, previous) as evidence
    for sentence, labels in enumerate(label_sequences):
        prev = None
        for token, label in enumerate(labels):
            if _has_span_prefix(label):
                any_prefix = True
                tag, kind = _split(label)
                prev_tag, prev_type = _split(prev) if prev is not None else ("O", "")
                continues = prev_tag in ("B", "I") and prev_type == kind and _has_span_prefix(prev)
                if tag in ("E", "S"):
                    any_bioes = True
                elif tag == "I" and not continues and i_start is None:
                    i_start = (sentence, token, label, prev)
                elif tag == "B" and (prev is None or not _has_span_prefix(prev)) and b_start is None:
                    b_start = (sentence, token, label, prev)
            prev = label
    if not any_prefix:
        return "none"
    if any_bioes:
        return "bioes"
    if i_start and b_start:
        raise ValueError(
            f"the label scheme is mixed: {_where(*i_start)} opens an entity (IOB1 style) but "
            f"{_where(*b_start)} opens one with B- (IOB2 style); declare the scheme explicitly")
    return "iob1" if i_start else "iob2"


def _where(sentence: int, token: int, label: str, prev: str | None) -> str:
    after = "at the start" if prev is None else f"after {prev!r}"
    return f"{label!r} {after} (sentence {sentence}, token {token})"


def find_violation(labels: Sequence[str], scheme: str) -> tuple[int, str] | None:
    """(index, explanation) of the first label breaking `scheme`, or None if all is well.

    A sentence that ends inside an open BIOES entity is reported at its last label.
    Scheme "none" has no rules, so it always gives None.
    """
    if scheme == "none":
        return None
    _check_span_scheme(scheme)
    prev = None
    for i, label in enumerate(labels):
        problem = _violation(prev, label, scheme)
        if problem:
            return i, problem
        prev = label
    if scheme == "bioes" and prev is not None and _split(prev)[0] in ("B", "I"):
        kind = _split(prev)[1]
        return len(labels) - 1, (f"the sentence ends inside a {kind} entity at {prev!r}; in BIOES "
                                 f"an entity ends with E-{kind}, or is S-{kind} if it has one token")
    return None


def _violation(prev: str | None, label: str, scheme: str) -> str | None:
    """What is wrong with `label` after `prev` (None at sentence start), or None."""
    name = scheme.upper()
    prefixes = "BIES" if scheme == "bioes" else "BI"
    if label == "O":
        tag, kind = "O", ""
    else:
        tag, dash, kind = label.partition("-")
        if not dash or not kind:
            return f"{label!r} is neither 'O' nor PREFIX-TYPE (like 'B-PER')"
        if tag not in prefixes:
            allowed = ", ".join(f"{p}-" for p in prefixes)
            return f"{label!r} has prefix {tag!r}; {name} allows only {allowed} and 'O'"
    # `prev` already passed these checks, so it is "O" or a well-formed label.
    prev_tag, prev_type = _split(prev) if prev is not None else ("O", "")
    continues = prev_tag in ("B", "I") and prev_type == kind
    where = "starts the sentence" if prev is None else f"follows {prev!r}"
    if scheme == "iob2" and tag == "I" and not continues:
        return f"{label!r} {where}; in IOB2 an entity starts with B-{kind}"
    if scheme == "iob1" and tag == "B" and not continues:
        return (f"{label!r} {where}; in IOB1 an entity starts with I-{kind} "
                f"(B-{kind} only starts a {kind} entity right after another)")
    if scheme == "bioes":
        if prev_tag in ("B", "I") and not (tag in ("I", "E") and continues):
            return (f"{label!r} {where}; in BIOES the {prev_type} entity must go on with "
                    f"I-{prev_type} or end with E-{prev_type}")
        if prev_tag not in ("B", "I") and tag in ("I", "E"):
            return (f"{label!r} {where}; in BIOES an entity starts with B-{kind}, "
                    f"or is S-{kind} if it has one token")
    return None
