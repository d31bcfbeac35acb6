"""Token accuracy and span precision/recall/F1, computed the way conlleval computes them.

Every figure is a percentage (0-100) kept at full float precision; rounding is left to
whoever prints it. Sentences are scored separately, so no chunk crosses a sentence
boundary (conlleval with a blank line between sentences).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import zip_longest

from seqtag.data.schemes import spans

_MISSING = object()


def _pairs(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]
           ) -> Iterator[tuple[Sequence[str], Sequence[str]]]:
    """Gold and predicted sentences side by side; ValueError if the shapes differ."""
    for index, (gold_labels, predicted_labels) in enumerate(zip_longest(gold, predicted, fillvalue=_MISSING)):
        if gold_labels is _MISSING or predicted_labels is _MISSING:
            shorter = "gold" if gold_labels is _MISSING else "predicted"
            raise ValueError(f"{shorter} has only {index} sentences but the other side has more")
        if len(gold_labels) != len(predicted_labels):
            raise ValueError(f"sentence {index}: gold has {len(gold_labels)} labels "
                             f"but predicted has {len(predicted_labels)}")
        yield gold_labels, predicted_labels


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def token_accuracy(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict:
    """{"accuracy", "tokens", "correct"}: the share of tokens whose label is exactly right."""
    tokens = correct = 0
    for gold_labels, predicted_labels in _pairs(gold, predicted):
        tokens += len(gold_labels)
        correct += sum(g == p for g, p in zip(gold_labels, predicted_labels))
    return {"accuracy": _percent(correct, tokens), "tokens": tokens, "correct": correct}


def span_scores(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict:
    """Overall and per-type span precision/recall/F1, plus conlleval's token accuracy.

    A predicted span is correct when its type, start and end all match a gold span.
    "per_label" maps each type seen on either side, sorted by name, to its
    precision, recall, f1, support (gold spans), predicted and correct counts.
    """
    tokens = correct_tokens = 0
    gold_counts, predicted_counts, correct_counts = Counter(), Counter(), Counter()
    for gold_labels, predicted_labels in _pairs(gold, predicted):
        tokens += len(gold_labels)
        correct_tokens += sum(g == p for g, p in zip(gold_labels, predicted_labels))
        gold_spans, predicted_spans = spans(gold_labels), spans(predicted_labels)
        gold_counts.update(kind for kind, _, _ in gold_spans)
        predicted_counts.update(kind for kind, _, _ in predicted_spans)
        correct_counts.update(kind for kind, _, _ in set(gold_spans) & set(predicted_spans))

    def scores(correct: int, found: int, support: int) -> dict:
        precision, recall = _percent(correct, found), _percent(correct, support)
        return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}

    per_label = {kind: {**scores(correct_counts[kind], predicted_counts[kind], gold_counts[kind]),
                        "support": gold_counts[kind], "predicted": predicted_counts[kind],
                        "correct": correct_counts[kind]}
                 for kind in sorted(gold_counts.keys() | predicted_counts.keys())}
    total_gold, total_predicted = sum(gold_counts.values()), sum(predicted_counts.values())
    total_correct = sum(correct_counts.values())
    return {**scores(total_correct, total_predicted, total_gold),
            "accuracy": _percent(correct_tokens, tokens), "tokens": tokens,
            "gold_spans": total_gold, "predicted_spans": total_predicted,
            "correct_spans": total_correct, "per_label": per_label}
