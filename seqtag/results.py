"""What predictors return, and the backend-free steps around the network that every predictor shares.

The result classes (`TaggedSentence`, `Span`, `Token`, `Classification`), the cutting of over-long items
into windows, the spans of a labelled sentence and the train-scheme → file-scheme folding of probabilities.
Standard library and numpy only: the PyTorch predictors (`predict.py`) and the onnxruntime ones
(`onnx_predict.py`) both use them, and the latter never imports torch.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .data import schemes
from .errors import SeqtagError
from .text import split_words

log = logging.getLogger("seqtag")

MAX_TOKENS = 4096     # tokens per network row: a longer item is read in windows (bounded memory and time)
WINDOW_CONTEXT = 64   # tokens of the neighbouring text on each side of a tagger's window, read but not kept


def windowed_features(featurizer, items: Sequence, max_tokens: int | None, context: int, index_offset: int
                      ) -> tuple[dict[str, list], list[tuple[int, int, int, int]] | None]:
    """(features, pieces): the featurizer's word (and character) ids of the items, and with an item over
    `max_tokens` (default MAX_TOKENS) tokens, the rows cut into windows (see `_windows`; pieces None: row i is
    item i)."""
    encoded = featurizer.encode(items)
    features = {key: encoded[key] for key in ("word_ids", "char_ids", "lm_char_ids") if key in encoded}
    if any(len(ids) > (max_tokens or MAX_TOKENS) for ids in features["word_ids"]):
        return _windows(features, max_tokens or MAX_TOKENS, context, index_offset)
    return features, None


def _windows(features: dict[str, list], max_tokens: int, context: int, index_offset: int
             ) -> tuple[dict[str, list], list[tuple[int, int, int, int]]]:
    """The rows of `features` with every item over `max_tokens` tokens cut into windows of at most that many:
    each keeps the results of its middle tokens and reads `context` tokens of the text around them. Returns the
    rows and, per row, (item, first token, first kept token, end of the kept tokens)."""
    context = min(context, max_tokens // 4)
    step = max_tokens - 2 * context
    rows: dict[str, list] = {key: [] for key in features}
    pieces = []
    for item, ids in enumerate(features["word_ids"]):
        length = len(ids)
        if length <= max_tokens:
            for key, values in features.items():
                rows[key].append(values[item])
            pieces.append((item, 0, 0, length))
            continue
        for keep_start in range(0, length, step):
            keep_end = min(length, keep_start + step)
            start, end = max(0, keep_start - context), min(length, keep_end + context)
            for key, values in features.items():
                rows[key].append(values[item][start:end])
            pieces.append((item, start, keep_start, keep_end))
        log.warning("input %d: %s tokens, more than max_tokens=%d: read in %d windows of at most %d tokens",
                    index_offset + item + 1, f"{length:,}", max_tokens, -(-length // step), max_tokens)
    return rows, pieces


@dataclass
class Token:
    text: str
    label: str
    probability: float
    start: int | None = None   # character offsets in the raw string (None for pre-tokenized input)
    end: int | None = None


@dataclass
class Span:
    label: str
    text: str
    token_start: int           # first token, inclusive
    token_end: int             # last token, exclusive
    probability: float         # the mean of its tokens' label probabilities (each in the files' scheme; with a
                               # CRF head, marginals: not the probability of the whole span)
    start: int | None = None   # character offsets in the raw string (None for pre-tokenized input)
    end: int | None = None


@dataclass
class TaggedSentence:
    """One tagged sentence. Results are kept as parallel lists; `tokens` gives them as Token objects."""

    words: list[str]
    labels: list[str]
    probabilities: list[float]
    offsets: list[tuple[int, int]] | None   # character offsets in the raw string; None for pre-tokenized input
    spans: list[Span]
    gold: list[str] | None = None           # a labelled CoNLL input's own labels (`--output conll` writes them)

    @property
    def tokens(self) -> list[Token]:
        offsets = self.offsets or [(None, None)] * len(self.words)
        return [Token(w, l, p, s, e) for w, l, p, (s, e) in zip(self.words, self.labels, self.probabilities, offsets)]

    def conll(self) -> str:
        """The sentence as CoNLL lines: token and label, or token, gold and predicted label when it was read
        from a labelled CoNLL file (the three columns conlleval reads)."""
        if self.gold is not None and len(self.gold) == len(self.words):
            return "".join(f"{w}\t{g}\t{l}\n" for w, g, l in zip(self.words, self.gold, self.labels))
        return "".join(f"{w}\t{l}\n" for w, l in zip(self.words, self.labels))

    def to_dict(self) -> dict:
        return {"tokens": self.words, "labels": self.labels,
                "probabilities": [round(p, 6) for p in self.probabilities],
                "offsets": None if self.offsets is None else [list(o) for o in self.offsets],
                "spans": [asdict(span) for span in self.spans]}


@dataclass
class Classification:
    """The label of one text, the probability of every class, and the `top_k` most probable classes."""

    label: str
    probability: float
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": round(self.probability, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "top_k": [[label, round(p, 6)] for label, p in self.top_k]}


def tagged_sentence(raw, words: list[str], offsets, labels: list[str], probabilities: list[float],
                    is_span: bool) -> TaggedSentence:
    """A TaggedSentence with its spans (for span schemes): each span's text is cut from the raw string when
    there are offsets, else its tokens joined by spaces; its probability is the mean of its tokens'."""
    spans = []
    if is_span:
        for kind, first, last in schemes.spans(labels):
            start = end = None
            if offsets is not None:
                start, end = offsets[first][0], offsets[last - 1][1]
                text = raw[start:end]
            else:
                text = " ".join(words[first:last])
            spans.append(Span(kind, text, first, last, sum(probabilities[first:last]) / (last - first), start, end))
    # A CoNLL file's own labels come with its tokens (readers.LabelledTokens), for --output conll.
    return TaggedSentence(words, labels, probabilities, offsets, spans, getattr(raw, "gold", None))


def as_items(inputs, expected: str) -> list:
    """`inputs` as a list, or a SeqtagError naming what predict() takes (None, bytes and numbers are no input)."""
    if inputs is None or isinstance(inputs, (bytes, bytearray)) or not isinstance(inputs, Iterable):
        raise SeqtagError(f"predict() takes a string or a list of {expected}, got {type(inputs).__name__}.")
    return list(inputs)


def tagger_inputs(inputs) -> tuple[bool, list, list[list[str]], list[list[tuple[int, int]] | None]]:
    """(single, items, words, offsets) of what a tagger's predict() was given: one string or a list of raw
    strings (split here, offsets kept) and token lists (offsets None); anything else is a SeqtagError."""
    single = isinstance(inputs, str)
    items = [inputs] if single else as_items(inputs, "strings or lists of token strings")
    words, offsets = [], []
    for item in items:
        if isinstance(item, str):
            pieces = split_words(item)
            words.append([p[0] for p in pieces])
            offsets.append([(p[1], p[2]) for p in pieces])
        elif isinstance(item, Sequence) and all(isinstance(w, str) for w in item):
            words.append(list(item))
            offsets.append(None)
        else:
            raise SeqtagError(f"predict() takes strings or lists of token strings, got {type(item).__name__}.")
    return single, items, words, offsets


def tagged_inputs(tag, is_span: bool, inputs, *options) -> TaggedSentence | list[TaggedSentence]:
    """A tagger's `predict`: the inputs checked and split (`tagger_inputs`), tagged by `tag(words, *options)`,
    as one TaggedSentence for one string and a list otherwise."""
    single, items, words, offsets = tagger_inputs(inputs)
    labels, probabilities = tag(words, *options)
    results = [tagged_sentence(item, w, o, l, p, is_span)
               for item, w, o, l, p in zip(items, words, offsets, labels, probabilities)]
    return results[0] if single else results


def classifier_inputs(texts, top_k: int | None) -> tuple[bool, list[str]]:
    """(single, texts) of what a classifier's predict() was given; a SeqtagError for anything but strings."""
    single = isinstance(texts, str)
    items = [texts] if single else as_items(texts, "strings")
    for item in items:
        if not isinstance(item, str):
            raise SeqtagError(f"predict() takes strings, got {type(item).__name__}.")
    if top_k is not None and top_k < 1:
        raise SeqtagError(f"top_k is {top_k}; it must be 1 or more.")
    return single, items


def classifications(labels: Sequence[str], rows: Iterable[Sequence[float]], top_k: int | None
                    ) -> list[Classification]:
    """A Classification per row of class probabilities (in `labels` order), its classes ranked."""
    results = []
    for row in rows:
        ranked = sorted(zip(labels, row), key=lambda pair: -pair[1])
        results.append(Classification(ranked[0][0], ranked[0][1], dict(zip(labels, row)), ranked[:top_k]))
    return results


def fold_label(label: str, file_scheme: str) -> str:
    """The file-scheme label a train-scheme label turns into token by token (outside any context):
    BIOES S-/E- become IOB2 B-/I-. IOB1 folds B- and I- into I-, its usual spelling of an entity token."""
    if "-" not in label:
        return label
    prefix, kind = label.split("-", 1)
    if file_scheme == "iob1":
        return f"I-{kind}"
    if file_scheme == "iob2":
        return f"{ {'S': 'B', 'E': 'I'}.get(prefix, prefix)}-{kind}"
    return label


def fold_columns(labels: Sequence[str], file_labels: Sequence[str], file_scheme: str
                 ) -> tuple[list[list[float]], dict[str, int]]:
    """Train-scheme probabilities → file-scheme ones: a 0/1 matrix (train labels × folded keys) summing the
    labels each one stands for, and the column of every label the files' scheme can show."""
    keys = list(dict.fromkeys(fold_label(label, file_scheme) for label in labels))
    matrix = [[0.0] * len(keys) for _ in labels]
    for i, label in enumerate(labels):
        matrix[i][keys.index(fold_label(label, file_scheme))] = 1.0
    shown = list(file_labels) + [f"B-{label[2:]}" for label in file_labels if label.startswith("I-")]
    return matrix, {label: keys.index(fold_label(label, file_scheme)) for label in shown}


def join_windows(sentences: Sequence[Sequence[str]], pieces: Sequence[tuple[int, int, int, int]] | None, batches,
                 codec, fold: np.ndarray | None, fold_column: dict[str, int]
                 ) -> tuple[list[list[str]], list[list[float]]]:
    """Labels and probabilities per sentence from decoded batches of rows, each batch (row indices, label ids
    (B, T), label probabilities (B, T, L)) as numpy arrays. With `pieces` a row is a window (sentence, start,
    keep_start, keep_end) of a sentence: its kept tokens go to their place, and a sentence's labels are read
    once all its windows are back (the scheme's conversion reads neighbours). `fold` (L, K) sums the network's
    scheme into the files' (`fold_column`: a file label's column), or None when they are the same."""
    names = codec.labels
    parts: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for indices, label_ids, label_probabilities in batches:
        if fold is not None:
            label_probabilities = label_probabilities @ fold                                   # (B, T, K)
        for row, index in enumerate(indices):
            item, start, keep_start, keep_end = (pieces[index] if pieces is not None
                                                 else (index, 0, 0, len(sentences[index])))
            kept = slice(keep_start - start, keep_end - start)
            parts.setdefault(item, {})[keep_start] = (label_ids[row, kept], label_probabilities[row, kept])
    labels: list[list[str]] = [[] for _ in sentences]
    probabilities: list[list[float]] = [[] for _ in sentences]
    for item, windows in parts.items():
        ordered = [windows[start] for start in sorted(windows)]
        ids = np.concatenate([window_ids for window_ids, _ in ordered]).tolist()
        rows = np.concatenate([window_rows for _, window_rows in ordered])                      # (n, L or K)
        if fold is None:
            labels[item] = [names[j] for j in ids]
            probabilities[item] = rows[np.arange(len(ids)), ids].tolist()
        else:
            labels[item] = codec.to_file([names[j] for j in ids])
            columns = [fold_column[label] for label in labels[item]]
            probabilities[item] = rows[np.arange(len(ids)), columns].tolist()
    return labels, probabilities
