"""Tests for seqtag.metrics against numbers worked out by hand as conlleval would print them."""
from __future__ import annotations

import pytest

from seqtag.data.schemes import convert
from seqtag.metrics import span_scores, token_accuracy


def labels(text: str) -> list[str]:
    return text.split()


# Gold and predicted labels in IOB1, one pair per sentence.  Chunks (type, start, end):
GOLD = [
    # 1: PER at the start, split from a second PER by B- (IOB1), LOC at the end.
    #    gold PER(0,2) PER(2,3) LOC(4,6)
    labels("I-PER I-PER B-PER O I-LOC I-LOC"),
    # 2: gold ORG(1,3) MISC(4,5)
    labels("O I-ORG I-ORG O I-MISC O"),
    # 3: no entities
    labels("O O O"),
    # 4: PER at the end ...
    labels("O I-PER"),
    # 5: ... and PER at the start of the next sentence: must not merge with 4.
    #    gold PER(0,1) ORG(2,3)
    labels("I-PER O I-ORG"),
]
PREDICTED = [
    # 1: the B- is missed, so one PER(0,3) that matches neither gold PER; LOC(4,6) correct.
    #    tokens right: 5 of 6 (index 2 is I-PER for B-PER)
    labels("I-PER I-PER I-PER O I-LOC I-LOC"),
    # 2: LOC(1,3) has the wrong type; B-MISC after O is ill-formed IOB1 but still opens
    #    MISC(4,6), whose end is wrong.  tokens right: 2 of 6 (indices 0 and 3)
    labels("O I-LOC I-LOC O B-MISC I-MISC"),
    # 3: a false positive MISC(1,2).  tokens right: 2 of 3
    labels("O I-MISC O"),
    # 4: PER(1,2) correct.  tokens right: 2 of 2
    labels("O I-PER"),
    # 5: PER(0,1) correct, ORG missed.  tokens right: 2 of 3
    labels("I-PER O O"),
]
# conlleval would print:
#   processed 20 tokens with 8 phrases; found: 7 phrases; correct: 3.
#   gold:      PER 4 (2 in s1, s4, s5), LOC 1, ORG 2, MISC 1           = 8
#   predicted: PER 3 (s1, s4, s5), LOC 2 (s1, s2), MISC 2 (s2, s3)    = 7
#   correct:   LOC(4,6) in s1, PER in s4, PER in s5                    = 3
#   accuracy:  (5+2+2+2+2)/20 = 13/20 = 65.00%
#   precision: 3/7 = 42.86%; recall: 3/8 = 37.50%; FB1 = 2*3/(7+8) = 40.00
#   LOC:  precision 1/2 = 50.00%; recall 1/1 = 100.00%; FB1 2*1/(2+1) = 66.67   2
#   MISC: precision 0/2 =  0.00%; recall 0/1 =   0.00%; FB1  0.00                2
#   ORG:  precision  0.00% (none found); recall 0/2 = 0.00%; FB1  0.00           0
#   PER:  precision 2/3 = 66.67%; recall 2/4 = 50.00%; FB1 2*2/(3+4) = 57.14     3
EXPECTED_OVERALL = {
    "precision": 300 / 7, "recall": 37.5, "f1": 40.0,
    "gold_spans": 8, "predicted_spans": 7, "correct_spans": 3,
}
EXPECTED_PER_LABEL = {
    "LOC": {"precision": 50.0, "recall": 100.0, "f1": 200 / 3, "support": 1, "predicted": 2, "correct": 1},
    "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 2, "correct": 0},
    "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2, "predicted": 0, "correct": 0},
    "PER": {"precision": 200 / 3, "recall": 50.0, "f1": 400 / 7, "support": 4, "predicted": 3, "correct": 2},
}


def span_figures(scores: dict) -> dict:
    """Everything span_scores reports except the token-level figures."""
    return {key: value for key, value in scores.items() if key not in ("accuracy", "tokens")}


def test_span_scores_match_hand_worked_conlleval_numbers():
    scores = span_scores(GOLD, PREDICTED)
    assert scores["tokens"] == 20
    assert scores["accuracy"] == pytest.approx(65.0)
    for key, expected in EXPECTED_OVERALL.items():
        assert scores[key] == pytest.approx(expected), key
    assert list(scores["per_label"]) == ["LOC", "MISC", "ORG", "PER"]
    for kind, expected in EXPECTED_PER_LABEL.items():
        assert scores["per_label"][kind] == pytest.approx(expected), kind


@pytest.mark.parametrize("scheme", ["iob2", "bioes"])
def test_span_scores_do_not_depend_on_the_scheme(scheme):
    original = span_scores(GOLD, PREDICTED)
    converted = span_scores([convert(s, scheme) for s in GOLD], [convert(s, scheme) for s in PREDICTED])
    # Token accuracy is left out: relabelling changes which tokens match (e.g. B-MISC
    # vs I-MISC in sentence 2 becomes B-MISC vs B-MISC in IOB2), but the spans do not.
    assert span_figures(converted) == span_figures(original)
    assert converted["tokens"] == original["tokens"]


def test_lenient_iob2_reading_of_i_after_o():
    # Predicted I- after O is ill-formed IOB2, but conlleval still reads it as a chunk
    # start: PER(0,2) and LOC(3,4) both match.  Only 2 of 4 labels are identical.
    scores = span_scores([labels("B-PER I-PER O B-LOC")], [labels("I-PER I-PER O I-LOC")])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (100.0, 100.0, 100.0)
    assert scores["accuracy"] == 50.0


def test_no_predicted_spans_scores_zero():
    scores = span_scores([labels("B-PER O"), labels("O O")], [labels("O O"), labels("O O")])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert (scores["gold_spans"], scores["predicted_spans"], scores["correct_spans"]) == (1, 0, 0)
    assert scores["accuracy"] == 75.0
    assert scores["per_label"] == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                           "support": 1, "predicted": 0, "correct": 0}}


def test_no_spans_anywhere():
    scores = span_scores([labels("O O")], [labels("O O")])
    assert (scores["precision"], scores["recall"], scores["f1"], scores["per_label"]) == (0.0, 0.0, 0.0, {})
    assert span_scores([], [])["accuracy"] == 0.0


def test_token_accuracy():
    assert token_accuracy(GOLD, PREDICTED) == {"accuracy": pytest.approx(65.0), "tokens": 20, "correct": 13}
    assert token_accuracy([labels("NN VBZ"), labels("DT")], [labels("NN NN"), labels("DT")]) == {
        "accuracy": pytest.approx(200 / 3), "tokens": 3, "correct": 2}
    assert token_accuracy([], []) == {"accuracy": 0.0, "tokens": 0, "correct": 0}


def test_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match="sentence 1: gold has 2 labels but predicted has 3"):
        token_accuracy([labels("O"), labels("O O")], [labels("O"), labels("O O O")])
    with pytest.raises(ValueError, match="sentence 0"):
        span_scores([labels("B-PER")], [labels("B-PER O")])
    with pytest.raises(ValueError, match="predicted has only 1 sentences"):
        span_scores([labels("O"), labels("O")], [labels("O")])
