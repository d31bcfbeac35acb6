"""The user-facing models: `seqtag.load(path)` → `predict`, `evaluate` (and for language models `score` and
`generate`, in `language_model.py`); `seqtag.loading.load` builds them from a model directory.

Prediction runs the same featurizer and collate function as training; raw strings are first split into tokens
that remember their character offsets. Nothing here imports Lightning or the training modules.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig
from .data import schemes
from .data.batching import EncodedBatches, length_batches
from .data.featurizer import Featurizer, _fold_label
from .errors import SeqtagError
from .metrics import classification_scores, span_scores, token_accuracy
from .networks import Network
from .text import split_words

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

    def _decoded(self, items: Sequence, batch_size: int | None):
        """(row indices, label ids, probabilities) per length-sorted batch of the items that have a token."""
        batch_size = batch_size or self.data_config.eval_batch_size
        encoded = self.featurizer.encode(items)
        rows = EncodedBatches.from_lists({key: encoded[key] for key in ("word_ids", "char_ids") if key in encoded})
        lengths = np.diff(rows.word_offsets).tolist()
        with torch.inference_mode():
            for indices in length_batches(lengths, batch_size):
                indices = [i for i in indices if lengths[i]]  # an empty sentence has nothing to tag
                if indices:
                    batch = rows[indices].to(self.device)
                    scores, _ = self.net(batch.features, batch.lengths, batch.mask)
                    label_ids, probabilities = self.net.head.decode(scores, batch.mask)
                    yield indices, label_ids.cpu(), probabilities.cpu()


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

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None
            ) -> tuple[list[list[str]], list[list[float]]]:
        """Labels (in the files' scheme) and their probabilities for pre-tokenized sentences."""
        codec = self.featurizer.labels
        names = codec.labels
        labels: list[list[str]] = [[] for _ in sentences]
        probabilities: list[list[float]] = [[] for _ in sentences]
        for indices, label_ids, label_probabilities in self._decoded(sentences, batch_size):
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

    def predict(self, inputs: str | Sequence[str] | Sequence[Sequence[str]], batch_size: int | None = None
                ) -> TaggedSentence | list[TaggedSentence]:
        """Tag raw strings (split into tokens here, with character offsets) or pre-tokenized lists.

        A single string gives one TaggedSentence; a list gives a list, in input order.
        """
        single = isinstance(inputs, str)
        items = [inputs] if single else list(inputs)
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
        labels, probabilities = self.tag(words, batch_size)
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

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """(N, L) class probabilities, in input order; texts are encoded once and batched by length."""
        out = torch.zeros(len(texts), len(self.labels))
        for indices, _, probabilities in self._decoded(texts, batch_size):
            out[indices] = probabilities
        return out

    def predict(self, texts: str | Sequence[str], top_k: int | None = None, batch_size: int | None = None
                ) -> Classification | list[Classification]:
        """Classify raw strings; a single string gives one Classification, a list gives a list in input order.

        `top_k` (default: every class) limits the ranked list in `Classification.top_k`.
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        for item in items:
            if not isinstance(item, str):
                raise SeqtagError(f"predict() takes strings, got {type(item).__name__}.")
        if top_k is not None and top_k < 1:
            raise SeqtagError(f"top_k is {top_k}; it must be 1 or more.")
        labels = self.labels
        results = []
        for row in self.probabilities(items, batch_size).tolist():
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

