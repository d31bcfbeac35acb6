"""Tests for seqtag.data.schemes: conlleval-style spans, conversion, detection, checks."""
from __future__ import annotations

import pytest

from seqtag.data.schemes import convert, detect_scheme, find_violation, from_spans, spans


def labels(text: str) -> list[str]:
    return text.split()


# One sentence in the three schemes: two adjacent PER entities, then a LOC at the end.
IOB1 = labels("I-PER I-PER B-PER O I-LOC")
IOB2 = labels("B-PER I-PER B-PER O B-LOC")
BIOES = labels("B-PER E-PER S-PER O S-LOC")
SPANS = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)]


@pytest.mark.parametrize("sequence", [IOB1, IOB2, BIOES])
def test_spans_read_every_scheme(sequence):
    assert spans(sequence) == SPANS


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("O O", []),
    ("I-PER", [("PER", 0, 1)]),                          # at start and end of sentence
    ("O I-PER I-PER", [("PER", 1, 3)]),                  # I- after O opens a chunk
    ("I-PER I-LOC", [("PER", 0, 1), ("LOC", 1, 2)]),     # type change opens a chunk
    ("B-PER I-LOC I-LOC", [("PER", 0, 1), ("LOC", 1, 3)]),
    ("I-PER B-PER I-PER", [("PER", 0, 1), ("PER", 1, 3)]),
    ("B-PER B-PER", [("PER", 0, 1), ("PER", 1, 2)]),
    ("B-PER E-LOC", [("PER", 0, 1), ("LOC", 1, 2)]),
    ("O E-PER I-PER", [("PER", 1, 2), ("PER", 2, 3)]),   # E- closes; I- after E opens
    ("B-PER I-PER", [("PER", 0, 2)]),                    # BIOES missing its E-: still a chunk
    ("S-PER I-PER E-PER", [("PER", 0, 1), ("PER", 1, 3)]),
    ("S-PER S-PER", [("PER", 0, 1), ("PER", 1, 2)]),
    ("E-PER B-PER", [("PER", 0, 1), ("PER", 1, 2)]),
    ("B-PER-X I-PER-X", [("PER-X", 0, 2)]),              # type is everything after the first "-"
])
def test_spans_follow_conlleval_rules(text, expected):
    assert spans(labels(text)) == expected


@pytest.mark.parametrize("scheme, expected", [("iob1", IOB1), ("iob2", IOB2), ("bioes", BIOES)])
def test_from_spans_writes_each_scheme(scheme, expected):
    assert from_spans(SPANS, 5, scheme) == expected


@pytest.mark.parametrize("source", [IOB1, IOB2, BIOES])
@pytest.mark.parametrize("scheme, expected", [("iob1", IOB1), ("iob2", IOB2), ("bioes", BIOES)])
def test_convert_round_trips(source, scheme, expected):
    assert convert(source, scheme) == expected


def test_from_spans_iob1_b_only_between_same_type_and_long_bioes():
    written = from_spans([("PER", 0, 1), ("LOC", 1, 2), ("LOC", 3, 4)], 4, "iob1")
    assert written == labels("I-PER I-LOC O I-LOC")
    assert from_spans([("LOC", 0, 3)], 3, "bioes") == labels("B-LOC I-LOC E-LOC")


def test_convert_repairs_ill_formed_prediction():
    # A tagger's IOB2 output with I- after O and an unclosed type switch.
    predicted = labels("I-PER I-PER O I-LOC I-ORG O")
    assert convert(predicted, "iob2") == labels("B-PER I-PER O B-LOC B-ORG O")
    assert convert(predicted, "bioes") == labels("B-PER E-PER O S-LOC S-ORG O")


def test_from_spans_rejects_bad_input():
    with pytest.raises(ValueError, match="overlaps"):
        from_spans([("PER", 0, 2), ("LOC", 1, 3)], 3, "iob2")
    with pytest.raises(ValueError, match="outside"):
        from_spans([("PER", 2, 4)], 3, "iob2")
    with pytest.raises(ValueError, match="unknown span scheme"):
        from_spans([], 3, "none")


@pytest.mark.parametrize("sentences, expected", [
    ([IOB1, labels("O O")], "iob1"),
    ([IOB2, labels("O B-LOC I-LOC")], "iob2"),
    ([BIOES], "bioes"),
    ([labels("I-PER B-PER O"), labels("O I-LOC I-ORG")], "iob1"),
    ([labels("NN VBZ DT NN"), labels("-LRB- CD -RRB-")], "none"),
    ([labels("O O"), []], "none"),          # "O" alone is no evidence of spans
    ([labels("B-PER I-PER O B-LOC")], "iob2"),
])
def test_detect_scheme(sentences, expected):
    assert detect_scheme(iter(sentences)) == expected


def test_detect_scheme_rejects_mixed_evidence():
    with pytest.raises(ValueError, match="mixed.*declare the scheme"):
        detect_scheme([labels("O I-PER O"), labels("B-LOC I-LOC")])


@pytest.mark.parametrize("text, scheme, index, fragment", [
    ("O I-PER", "iob2", 1, "'I-PER' follows 'O'; in IOB2 an entity starts with B-PER"),
    ("I-PER", "iob2", 0, "'I-PER' starts the sentence"),
    ("B-PER I-LOC", "iob2", 1, "starts with B-LOC"),
    ("B-PER E-PER", "iob2", 1, "prefix 'E'"),
    ("I-PER O B-LOC", "iob1", 2, "'B-LOC' follows 'O'; in IOB1 an entity starts with I-LOC"),
    ("I-PER B-LOC", "iob1", 1, "starts with I-LOC"),
    ("O PER", "iob1", 1, "neither 'O' nor PREFIX-TYPE"),
    ("O B-", "iob2", 1, "neither 'O' nor PREFIX-TYPE"),
    ("B-PER O", "bioes", 1, "must go on with I-PER or end with E-PER"),
    ("B-PER I-PER E-LOC", "bioes", 2, "must go on with I-PER"),
    ("O E-PER", "bioes", 1, "starts with B-PER, or is S-PER"),
    ("S-PER I-PER E-PER", "bioes", 1, "starts with B-PER"),
    ("O B-PER I-PER", "bioes", 2, "ends inside a PER entity"),
])
def test_find_violation(text, scheme, index, fragment):
    found = find_violation(labels(text), scheme)
    assert found is not None and found[0] == index
    assert fragment in found[1]


@pytest.mark.parametrize("sequence, scheme", [(IOB1, "iob1"), (IOB2, "iob2"), (BIOES, "bioes"),
                                              (labels("NN I-PER"), "none"), ([], "bioes")])
def test_find_violation_accepts_valid_sequences(sequence, scheme):
    assert find_violation(sequence, scheme) is None
