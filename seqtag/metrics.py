"""Token accuracy and span precision/recall/F1, computed the way conlleval computes them.

Every figure is a percentage (0-100) kept at full float precision; rounding is left to
whoever prints it. Sentences are scored separately, so no chunk crosses a sentence
boundary (conlleval with a blank line between sentences).
"""
from __future__ import annotations

import math

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


def confusion_scores(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> dict:
    """Classification figures from a confusion matrix (rows: gold label, columns: predicted label).

    "accuracy" and "macro_f1" (the unweighted mean F1 over the labels seen in gold or
    predictions); "per_label" maps each label to precision, recall, f1, support,
    predicted and correct; "confusion" is {gold: {predicted: count}}; "texts" the count.
    """
    size = len(labels)
    gold_counts = [sum(confusion[g]) for g in range(size)]
    predicted_counts = [sum(confusion[g][p] for g in range(size)) for p in range(size)]
    per_label = {}
    for i, label in enumerate(labels):
        correct = confusion[i][i]
        precision, recall = _percent(correct, predicted_counts[i]), _percent(correct, gold_counts[i])
        per_label[label] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
                            "support": gold_counts[i], "predicted": predicted_counts[i], "correct": correct}
    seen = [scores["f1"] for scores in per_label.values() if scores["support"] or scores["predicted"]]
    texts = sum(gold_counts)
    return {"accuracy": _percent(sum(confusion[i][i] for i in range(size)), texts),
            "macro_f1": sum(seen) / len(seen) if seen else 0.0,
            "per_label": per_label,
            "confusion": {g: {p: confusion[i][j] for j, p in enumerate(labels)} for i, g in enumerate(labels)},
            "texts": texts}


def classification_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    """`confusion_scores` for gold and predicted label strings. A gold label outside `labels` (never seen in
    training, so never predicted) joins the table as a row of errors and is counted in "unseen_labels"."""
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} labels but predicted has {len(predicted)}")
    known = set(labels)
    unseen: dict[str, int] = {}
    for label in gold:
        if label not in known:
            unseen[label] = unseen.get(label, 0) + 1
    labels = list(labels) + list(unseen)
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted):
        confusion[index[g]][index[p]] += 1
    return {**confusion_scores(confusion, labels), "unseen_labels": unseen}


def perplexity(loss: float) -> float:
    """exp(loss) for a loss in nats per token (infinite instead of an overflow error)."""
    return math.exp(loss) if loss < 700 else math.inf


def language_model_scores(nats: float, predicted: int, text_tokens: int, characters: int,
                          tokens_are_characters: bool, tokens_cover_text: bool) -> dict:
    """Perplexity, loss (nats per predicted token) and the count of predicted tokens; bits per character for
    character models (`tokens_are_characters`), and for sub-word models whose tokens spell the text out exactly
    (`tokens_cover_text`, byte-level BPE) the mean loss over all `text_tokens` spread over the text's
    `characters`."""
    loss = nats / predicted
    scores = {"perplexity": perplexity(loss), "loss": loss, "tokens": predicted}
    if tokens_are_characters:
        scores["bits_per_char"] = loss / math.log(2)
    elif tokens_cover_text and characters:
        scores["bits_per_char"] = loss * text_tokens / (characters * math.log(2))
    return scores


def tag_scores(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict:
    """Token-level figures per tag, for tags that are not spans (POS): "per_label" maps each tag seen on
    either side, sorted, to precision, recall, f1, support (gold tokens), predicted and correct; "macro_f1"
    is their unweighted mean F1; "confusion" is {gold tag: {predicted tag: tokens}}."""
    pairs: Counter = Counter()
    for gold_labels, predicted_labels in _pairs(gold, predicted):
        pairs.update(zip(gold_labels, predicted_labels))
    tags = sorted({tag for pair in pairs for tag in pair})
    matrix = [[pairs[g, p] for p in tags] for g in tags]
    scores = confusion_scores(matrix, tags)
    return {key: scores[key] for key in ("per_label", "macro_f1", "confusion")}


MISSED, SPURIOUS = "missed", "spurious"


def span_confusion(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict:
    """{gold type: {predicted type: spans}} over spans matched by their exact extent (start and end).

    A gold span whose extent is predicted with any type counts under gold type × predicted type (the
    diagonal is the correct spans); one whose extent no predicted span has counts under gold type ×
    "missed"; a predicted span whose extent no gold span has counts under "spurious" × predicted type.
    Rows are the types then "spurious", columns the types then "missed", every cell present."""
    cells: Counter = Counter()
    for gold_labels, predicted_labels in _pairs(gold, predicted):
        gold_by_extent = {(start, end): kind for kind, start, end in spans(gold_labels)}
        predicted_by_extent = {(start, end): kind for kind, start, end in spans(predicted_labels)}
        for extent, kind in gold_by_extent.items():
            cells[kind, predicted_by_extent.get(extent, MISSED)] += 1
        for extent, kind in predicted_by_extent.items():
            if extent not in gold_by_extent:
                cells[SPURIOUS, kind] += 1
    kinds = sorted({name for cell in cells for name in cell} - {MISSED, SPURIOUS})
    return {g: {p: cells[g, p] for p in [*kinds, MISSED]} for g in [*kinds, SPURIOUS]}


def calibration(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict:
    """Expected calibration error and the reliability table of predictions whose confidence is the
    probability of the predicted class.

    The range [0, 1] is cut into `bins` equal-width bins (the last one holds 1.0). "reliability" lists each
    bin's range ("low", "high"), "count", mean "confidence" and "accuracy" (None in an empty bin); "ece" is
    the mean of |accuracy - confidence| over the bins weighted by their counts. Percentages, as everywhere.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} correctness flags")
    counts, confidence_sums, correct_sums = [0] * bins, [0.0] * bins, [0] * bins
    for confidence, right in zip(confidences, correct):
        index = min(max(int(confidence * bins), 0), bins - 1)
        counts[index] += 1
        confidence_sums[index] += confidence
        correct_sums[index] += bool(right)
    total = sum(counts)
    reliability, gap = [], 0.0
    for index in range(bins):
        count = counts[index]
        mean_confidence = 100.0 * confidence_sums[index] / count if count else None
        accuracy = _percent(correct_sums[index], count) if count else None
        if count:
            gap += count * abs(accuracy - mean_confidence)
        reliability.append({"low": 100.0 * index / bins, "high": 100.0 * (index + 1) / bins, "count": count,
                            "confidence": mean_confidence, "accuracy": accuracy})
    return {"ece": gap / total if total else 0.0, "reliability": reliability}
