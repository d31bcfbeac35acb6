"""The user-facing models: `seqtag.load(path)` → `predict`, `evaluate` (and for language models `score` and
`generate`, in `language_model.py`); `seqtag.loading.load` builds them from a model directory.

Prediction runs the same featurizer and collate function as training; raw strings are first split into tokens
that remember their character offsets. Nothing here imports Lightning or the training modules.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig
from .data import schemes
from .data.batching import MAX_BATCH_TOKENS, EncodedBatches, length_batches
from .data.featurizer import Featurizer, _fold_label
from .errors import SeqtagError
from .metrics import classification_scores, span_scores, token_accuracy
from .networks import Network
from .streaming import Progress, input_format, read_items, stream_results, write_lines
from .text import split_words

log = logging.getLogger("seqtag")

MAX_TOKENS = 4096     # tokens per network row: a longer item is read in windows (bounded memory and time)
WINDOW_CONTEXT = 64   # tokens of the neighbouring text on each side of a tagger's window, read but not kept


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

    @property
    def tokens(self) -> list[Token]:
        offsets = self.offsets or [(None, None)] * len(self.words)
        return [Token(w, l, p, s, e) for w, l, p, (s, e) in zip(self.words, self.labels, self.probabilities, offsets)]

    def to_dict(self) -> dict:
        return {"tokens": self.words, "labels": self.labels,
                "probabilities": [round(p, 6) for p in self.probabilities],
                "offsets": None if self.offsets is None else [list(o) for o in self.offsets],
                "spans": [asdict(span) for span in self.spans]}


def _as_list(inputs, expected: str) -> list:
    """`inputs` as a list, or a SeqtagError naming what predict() takes (None, bytes and numbers are no input)."""
    if inputs is None or isinstance(inputs, (bytes, bytearray)) or not isinstance(inputs, Iterable):
        raise SeqtagError(f"predict() takes a string or a list of {expected}, got {type(inputs).__name__}.")
    return list(inputs)


class Predictor:
    """What every loaded model holds: the network (in eval mode, on `device`), the featurizer that turns
    items into its features, the reader settings for `evaluate`, and the figures saved with it."""

    def __init__(self, net: Network, featurizer: Featurizer, data_config: DataConfig, metrics: dict | None = None,
                 path: Path | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.featurizer = featurizer
        self.data_config = data_config
        self.metrics = metrics or {}
        self.path = path

    outputs: tuple[str, ...] = ("jsonl",)  # what `result_line` writes

    def result_line(self, result, output: str = "jsonl") -> str:
        """A result as `seqtag predict` writes it: one JSON line."""
        return json.dumps(result.to_dict(), ensure_ascii=False)

    def predict_stream(self, items: Iterable, batch_size: int | None = None, batch_tokens: int | None = None,
                       window: int | None = None, max_tokens: int | None = None, workers: int = 1,
                       progress: bool | Progress | None = None, **options) -> Iterator:
        """`predict` over an iterable of any length, as a generator: items are read lazily, `window` at a time
        (default 4,096), sorted by length within the window and batched (at most `batch_size` items and
        `batch_tokens` padded tokens per batch), and the results come out in input order, so memory stays flat.
        `workers` > 1 predicts in that many processes, each with its own copy of the network (output identical
        to one worker). `progress` (True or a `streaming.Progress`) reports items/s on stderr. An item over
        `max_tokens` tokens is read in windows (see `predict`). Other keyword options go to `predict`."""
        return stream_results(self, "predict", items, window, workers, progress,
                              dict(batch_size=batch_size, batch_tokens=batch_tokens, max_tokens=max_tokens, **options))

    def predict_file(self, source: str | Path, target: str | Path, format: str | None = None, output: str = "jsonl",
                     pretokenized: bool = False, workers: int = 1, progress: bool | Progress | None = None,
                     **options) -> int:
        """Predict every item of the file `source` and write the results to `target` as `seqtag predict` does
        (JSON lines, or CoNLL for taggers), streamed; `target` appears complete or not at all. `format` is how to
        read `source` (default: its extension; see `seqtag predict --format`). Returns the count written."""
        if output not in self.outputs:
            raise SeqtagError(f"output is {output!r}; this model ({self.task}) writes {' or '.join(self.outputs)}.")
        fmt = input_format(str(source), format, self.task)
        items = read_items(str(source), fmt, self.data_config, pretokenized)
        results = self.predict_stream(items, workers=workers, progress=progress, **options)
        return write_lines(target, (self.result_line(result, output) for result in results))

    def _decoded(self, items: Sequence, batch_size: int | None, batch_tokens: int | None = None,
                 max_tokens: int | None = None, context: int = 0, index_offset: int = 0):
        """(pieces, batches): the network's results per length-sorted batch of the items that have a token, as
        (row indices, label ids, probabilities).

        An item longer than `max_tokens` tokens is cut into windows of at most that many (with `context` tokens
        of the neighbouring text on each side, whose results are not kept), each a row of its own, with one
        warning naming the item (`index_offset` + its position, 1-based). `pieces` is None when no item was cut
        (row i is item i), else one (item, first token, first kept token, end of the kept tokens) per row."""
        batch_size = batch_size or self.data_config.eval_batch_size
        max_tokens = max_tokens or MAX_TOKENS
        encoded = self.featurizer.encode(items)
        features = {key: encoded[key] for key in ("word_ids", "char_ids") if key in encoded}
        pieces = None
        if any(len(ids) > max_tokens for ids in features["word_ids"]):
            features, pieces = _windows(features, max_tokens, context, index_offset)
        rows = EncodedBatches.from_lists(features)
        lengths = np.diff(rows.word_offsets).tolist()

        def batches():
            with torch.inference_mode():
                for indices in length_batches(lengths, batch_size, batch_tokens or MAX_BATCH_TOKENS):
                    indices = [i for i in indices if lengths[i]]  # an empty sentence has nothing to tag
                    if indices:
                        batch = rows[indices].to(self.device)
                        scores, _ = self.net(batch.features, batch.lengths, batch.mask)
                        label_ids, probabilities = self.net.head.decode(scores, batch.mask)
                        yield indices, label_ids.cpu(), probabilities.cpu()

        return pieces, batches()


class SequenceTagger(Predictor):
    """A trained tagger: labels with probabilities per token, and entity spans for span schemes.

    A token's probability is that of the label shown, in the files' scheme: when the network was trained
    in another scheme it sums the labels it stands for (IOB2 B-PER = P(B-PER) + P(S-PER) of BIOES). A span's
    probability is the mean of its tokens' probabilities.

    With a CRF head (`model.head=crf`) the labels are the sentence's best labelling as a whole (Viterbi), and a
    token's probability is the marginal probability of its label given the whole sentence (forward–backward:
    the share of every labelling's probability that puts this label here). So a token's shown label is not
    always its most probable one on its own, and a span's probability, still the mean of its tokens'
    marginals, is not the probability that the CRF gives this exact span.
    """

    task = "tagging"  # its family in seqtag.families
    outputs = ("jsonl", "conll")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        codec = self.featurizer.labels
        self._fold, self._fold_column = None, {}
        if codec.is_span and codec.file_scheme != codec.train_scheme:
            # Train-scheme probabilities → file-scheme ones: a 0/1 matrix summing the labels each one stands for.
            keys = list(dict.fromkeys(_fold_label(label, codec.file_scheme) for label in codec.labels))
            self._fold = torch.zeros(len(codec.labels), len(keys))
            for i, label in enumerate(codec.labels):
                self._fold[i, keys.index(_fold_label(label, codec.file_scheme))] = 1.0
            file_labels = self.labels + [f"B-{label[2:]}" for label in self.labels if label.startswith("I-")]
            self._fold_column = {label: keys.index(_fold_label(label, codec.file_scheme)) for label in file_labels}

    @property
    def labels(self) -> list[str]:
        """The labels the model can output, in the files' scheme."""
        return self.featurizer.labels.file_labels()

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, batch_tokens: int | None = None,
            max_tokens: int | None = None, index_offset: int = 0) -> tuple[list[list[str]], list[list[float]]]:
        """Labels (in the files' scheme) and their probabilities for pre-tokenized sentences. A sentence longer
        than `max_tokens` (default MAX_TOKENS) is tagged in overlapping windows whose labels are joined back."""
        codec = self.featurizer.labels
        names = codec.labels
        labels: list[list[str]] = [[] for _ in sentences]
        probabilities: list[list[float]] = [[] for _ in sentences]
        pieces, batches = self._decoded(sentences, batch_size, batch_tokens, max_tokens, WINDOW_CONTEXT, index_offset)
        if pieces is not None:
            return self._tag_windows(sentences, pieces, batches)
        for indices, label_ids, label_probabilities in batches:
            if self._fold is None:  # the files' scheme is the network's: the best label's own probability
                best = label_probabilities.gather(-1, label_ids[..., None]).squeeze(-1).tolist()  # (B, T)
                for i, ids, row in zip(indices, label_ids.tolist(), best):
                    n = len(sentences[i])
                    labels[i] = [names[j] for j in ids[:n]]
                    probabilities[i] = row[:n]
                continue
            folded = label_probabilities @ self._fold                                          # (B, T, K)
            for row, (i, ids) in enumerate(zip(indices, label_ids.tolist())):
                n = len(sentences[i])
                labels[i] = codec.to_file([names[j] for j in ids[:n]])
                columns = [self._fold_column[label] for label in labels[i]]
                probabilities[i] = folded[row, torch.arange(n), columns].tolist()
        return labels, probabilities

    def _tag_windows(self, sentences, pieces, batches) -> tuple[list[list[str]], list[list[float]]]:
        """`tag` for rows that are windows of the sentences: each window's kept tokens go to their place, and a
        sentence's labels are read once all its windows are back (the scheme's conversion reads neighbours)."""
        codec = self.featurizer.labels
        names = codec.labels
        parts: dict[int, dict[int, tuple[list[int], torch.Tensor]]] = {}
        for indices, label_ids, label_probabilities in batches:
            if self._fold is not None:
                label_probabilities = label_probabilities @ self._fold                        # (B, T, K)
            for row, index in enumerate(indices):
                item, start, keep_start, keep_end = pieces[index]
                kept = slice(keep_start - start, keep_end - start)
                parts.setdefault(item, {})[keep_start] = (label_ids[row, kept].tolist(), label_probabilities[row, kept])
        labels: list[list[str]] = [[] for _ in sentences]
        probabilities: list[list[float]] = [[] for _ in sentences]
        for item, windows in parts.items():
            ordered = [windows[start] for start in sorted(windows)]
            ids = [label for window_ids, _ in ordered for label in window_ids]
            rows = torch.cat([window_rows for _, window_rows in ordered])                      # (n, L or K)
            if self._fold is None:
                labels[item] = [names[j] for j in ids]
                probabilities[item] = rows.gather(-1, torch.tensor(ids)[:, None]).squeeze(-1).tolist()
            else:
                labels[item] = codec.to_file([names[j] for j in ids])
                columns = [self._fold_column[label] for label in labels[item]]
                probabilities[item] = rows[torch.arange(len(ids)), columns].tolist()
        return labels, probabilities

    def result_line(self, result: TaggedSentence, output: str = "jsonl") -> str:
        """A tagged sentence as `seqtag predict` writes it: a JSON line, or CoNLL (a token and its label per line;
        the line after it is the blank line that ends the sentence)."""
        if output == "conll":
            return "".join(f"{w}\t{l}\n" for w, l in zip(result.words, result.labels))
        return super().result_line(result)

    def predict(self, inputs: str | Sequence[str] | Sequence[Sequence[str]], batch_size: int | None = None,
                batch_tokens: int | None = None, max_tokens: int | None = None, index_offset: int = 0
                ) -> TaggedSentence | list[TaggedSentence]:
        """Tag raw strings (split into tokens here, with character offsets) or pre-tokenized lists.

        A single string gives one TaggedSentence; a list gives a list, in input order. A sentence longer than
        `max_tokens` tokens (default 4,096) is tagged in overlapping windows whose labels are joined back, with
        one warning naming it (its position plus `index_offset`). For inputs of any length see `predict_stream`.
        """
        single = isinstance(inputs, str)
        items = [inputs] if single else _as_list(inputs, "strings or lists of token strings")
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
        labels, probabilities = self.tag(words, batch_size, batch_tokens, max_tokens, index_offset)
        results = [self._sentence(item, w, o, l, p)
                   for item, w, o, l, p in zip(items, words, offsets, labels, probabilities)]
        return results[0] if single else results

    def _sentence(self, raw, words, offsets, labels, probabilities) -> TaggedSentence:
        spans = []
        if self.featurizer.labels.is_span:
            for kind, first, last in schemes.spans(labels):
                start = end = None
                if offsets is not None:
                    start, end = offsets[first][0], offsets[last - 1][1]
                    text = raw[start:end]
                else:
                    text = " ".join(words[first:last])
                spans.append(Span(kind, text, first, last, sum(probabilities[first:last]) / (last - first), start, end))
        return TaggedSentence(words, labels, probabilities, offsets, spans)

    def evaluate(self, source, batch_size: int | None = None) -> dict:
        """Metrics on a file (read with the model's own reader settings) or a dataset with tokens/labels.
        Gold labels the model never saw in training are scored as errors and counted in "unseen_labels"."""
        if isinstance(source, (str, Path)):
            from .data.corpus import check_scheme, read_corpus  # reading files needs `datasets`; prediction not

            dataset = read_corpus(self.data_config, str(source))
            check_scheme(dataset, self.featurizer.labels.file_scheme, str(source))
        else:
            dataset = source
        gold = list(dataset["labels"])
        predicted, _ = self.tag(list(dataset["tokens"]), batch_size)
        result = span_scores(gold, predicted) if self.featurizer.labels.is_span else token_accuracy(gold, predicted)
        result["sentences"] = len(gold)
        result["tokens"] = sum(len(labels) for labels in gold)
        known = set(self.labels)
        unseen: dict[str, int] = {}
        for label in (label for labels in gold for label in labels if label not in known):
            unseen[label] = unseen.get(label, 0) + 1
        result["unseen_labels"] = unseen
        return result


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


class TextClassifier(Predictor):
    """A trained text classifier: a label per raw text, with the probability of every class."""

    task = "classification"  # its family in seqtag.families

    @property
    def labels(self) -> list[str]:
        return list(self.featurizer.labels.labels)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None, batch_tokens: int | None = None,
                      max_tokens: int | None = None, index_offset: int = 0) -> torch.Tensor:
        """(N, L) class probabilities, in input order; texts are encoded once and batched by length. A text
        longer than `max_tokens` tokens is read in windows whose probabilities are averaged, each weighing as
        many tokens as it holds."""
        out = torch.zeros(len(texts), len(self.labels))
        pieces, batches = self._decoded(texts, batch_size, batch_tokens, max_tokens, 0, index_offset)
        if pieces is None:
            for indices, _, probabilities in batches:
                out[indices] = probabilities
            return out
        weights = torch.zeros(len(texts), 1)
        for indices, _, probabilities in batches:
            for row, index in enumerate(indices):
                item, _, keep_start, keep_end = pieces[index]
                out[item] += probabilities[row] * (keep_end - keep_start)
                weights[item] += keep_end - keep_start
        return out / weights.clamp(min=1)

    def predict(self, texts: str | Sequence[str], top_k: int | None = None, batch_size: int | None = None,
                batch_tokens: int | None = None, max_tokens: int | None = None, index_offset: int = 0
                ) -> Classification | list[Classification]:
        """Classify raw strings; a single string gives one Classification, a list gives a list in input order.

        `top_k` (default: every class) limits the ranked list in `Classification.top_k`. A text longer than
        `max_tokens` tokens (default 4,096) is read in windows (see `probabilities`). For inputs of any length
        see `predict_stream`.
        """
        single = isinstance(texts, str)
        items = [texts] if single else _as_list(texts, "strings")
        for item in items:
            if not isinstance(item, str):
                raise SeqtagError(f"predict() takes strings, got {type(item).__name__}.")
        if top_k is not None and top_k < 1:
            raise SeqtagError(f"top_k is {top_k}; it must be 1 or more.")
        labels = self.labels
        results = []
        for row in self.probabilities(items, batch_size, batch_tokens, max_tokens, index_offset).tolist():
            ranked = sorted(zip(labels, row), key=lambda pair: -pair[1])
            results.append(Classification(ranked[0][0], ranked[0][1], dict(zip(labels, row)), ranked[:top_k]))
        return results[0] if single else results

    def evaluate(self, source, batch_size: int | None = None) -> dict:
        """Accuracy, macro-F1, per-label figures and the confusion matrix on a file (read with the model's own
        reader settings) or a dataset with text/label columns. Gold classes the model never saw in training are
        scored as errors and counted in "unseen_labels"."""
        if isinstance(source, (str, Path)):
            from .data.classification import read_texts  # reading files needs `datasets`; prediction not

            dataset = read_texts(self.data_config, str(source))
        else:
            dataset = source
        predicted = self.probabilities(list(dataset["text"]), batch_size).argmax(-1).tolist()
        return classification_scores(list(dataset["label"]), [self.labels[i] for i in predicted], self.labels)

