"""The user-facing model: `seqtag.load(path)` → `predict`, `evaluate`.

Prediction runs the same encoder and collate function as training; raw strings are
first split into tokens that remember their character offsets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .artifact import read_model_files
from .config import DataConfig
from .data import schemes
from .data.batching import collate
from .data.classification import TextPreprocessor, check_labels, read_texts
from .data.corpus import Preprocessor, check_scheme, read_corpus, span_label_list
from .data.vocab import Encoder, TextEncoder
from .errors import SeqtagError
from .metrics import classification_scores, span_scores, token_accuracy
from .language_model import LanguageModel
from .nn import ClassifierNet, LanguageModelConfig, LanguageModelNet, NetConfig, TaggerNet
from .text import split_words

MAX_BATCH_TOKENS = 16_384  # caps memory on very long inputs, whatever the batch size


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
    probability: float         # mean probability of its tokens' labels
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


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most batch_size sentences and MAX_BATCH_TOKENS tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for index in order:
        longest = max(longest, lengths[index])
        if current and (len(current) >= batch_size or longest * (len(current) + 1) > MAX_BATCH_TOKENS):
            batches.append(current)
            current, longest = [], lengths[index]
        current.append(index)
    if current:
        batches.append(current)
    return batches


class _TrainedModel:
    """What a loaded model holds: the network (in eval mode), its preprocessing, reader settings and figures."""

    def __init__(self, net: TaggerNet | ClassifierNet, preprocessor: Preprocessor | TextPreprocessor,
                 data_config: DataConfig, metrics: dict | None = None, path: Path | None = None):
        self.net = net.eval()
        self.preprocessor = preprocessor
        self.data_config = data_config
        self.metrics = metrics or {}
        self.path = path


class SequenceTagger(_TrainedModel):
    """A trained tagger: labels with probabilities per token, and entity spans for span schemes."""

    @property
    def labels(self) -> list[str]:
        """The labels the model can output, in the files' scheme."""
        if self.preprocessor.file_scheme == "none":
            return list(self.preprocessor.labels)
        types = {label.split("-", 1)[1] for label in self.preprocessor.labels if "-" in label}
        return span_label_list(types, self.preprocessor.file_scheme)

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None
            ) -> tuple[list[list[str]], list[list[float]]]:
        """Labels (in the files' scheme) and their probabilities for pre-tokenized sentences."""
        batch_size = batch_size or self.data_config.eval_batch_size
        labels: list[list[str]] = [[] for _ in sentences]
        probabilities: list[list[float]] = [[] for _ in sentences]
        names = self.preprocessor.labels
        lengths = [len(s) for s in sentences]
        # Encode everything once (distinct words are spelled out once), then batch by length.
        encoded = self.preprocessor.encoder.encode(sentences)
        with torch.inference_mode():
            for indices in _batches(lengths, batch_size):
                indices = [i for i in indices if lengths[i]]  # an empty sentence has nothing to tag
                if not indices:
                    continue
                batch = collate([{"word_ids": encoded["word_ids"][i], "char_ids": encoded["char_ids"][i]}
                                 for i in indices])
                logits = self.net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)  # (B, T, L)
                top, top_ids = logits.max(-1)                                                # (B, T)
                top_probs = (top - logits.logsumexp(-1)).exp()  # softmax probability of the top label
                for i, ids, probs in zip(indices, top_ids.tolist(), top_probs.tolist()):
                    n = lengths[i]
                    labels[i] = self.preprocessor.to_file_scheme([names[j] for j in ids[:n]])
                    probabilities[i] = probs[:n]
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
        if self.preprocessor.file_scheme != "none":
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
        """Metrics on a file (read with the model's own reader settings) or a dataset with tokens/labels."""
        if isinstance(source, (str, Path)):
            dataset = read_corpus(self.data_config, str(source))
            check_scheme(dataset, self.preprocessor.file_scheme, str(source))
        else:
            dataset = source
        gold = list(dataset["labels"])
        predicted, _ = self.tag(list(dataset["tokens"]), batch_size)
        if self.preprocessor.file_scheme == "none":
            result = token_accuracy(gold, predicted)
        else:
            result = span_scores(gold, predicted)
        result["sentences"] = len(gold)
        result["tokens"] = sum(len(labels) for labels in gold)
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


class TextClassifier(_TrainedModel):
    """A trained text classifier: a label per raw text, with the probability of every class."""

    @property
    def labels(self) -> list[str]:
        return list(self.preprocessor.labels)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """(N, L) class probabilities, in input order; texts are encoded once and batched by length."""
        batch_size = batch_size or self.data_config.eval_batch_size
        encoded = self.preprocessor.encoder.encode(texts)
        keys = [key for key in ("word_ids", "char_ids") if key in encoded]
        lengths = [len(ids) for ids in encoded["word_ids"]]
        out = torch.zeros(len(texts), len(self.labels))
        with torch.inference_mode():
            for indices in _batches(lengths, batch_size):
                batch = collate([{key: encoded[key][i] for key in keys} for i in indices])
                logits = self.net(batch.word_ids, batch.char_ids, batch.lengths, batch.mask)  # (B, L)
                out[indices] = logits.float().softmax(-1)
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
        reader settings) or a dataset with text/label columns."""
        if isinstance(source, (str, Path)):
            dataset = read_texts(self.data_config, str(source))
            check_labels(dataset, self.labels, str(source))
        else:
            dataset = source
        predicted = self.probabilities(list(dataset["text"]), batch_size).argmax(-1).tolist()
        return classification_scores(list(dataset["label"]), [self.labels[i] for i in predicted], self.labels)


def load(path: str | Path) -> SequenceTagger | TextClassifier | LanguageModel:
    """Load a saved model directory (a tagger, a classifier or a language model, as config.json says); needs no
    network and not the training corpus."""
    parts = read_model_files(path)
    config = parts["config"]
    is_classifier = config.get("task") == "classification"
    if config.get("task") == "lm":
        net = LanguageModelNet(LanguageModelConfig(**config["net"]))
    else:
        net = (ClassifierNet if is_classifier else TaggerNet)(NetConfig(**config["net"]))
    try:
        net.load_state_dict(parts["state_dict"])
    except RuntimeError as err:
        raise SeqtagError(f"{path}: model.safetensors does not match config.json ({str(err).splitlines()[0]}).") from None
    data_config = DataConfig(**config["data"])
    if config.get("task") == "lm":
        return LanguageModel(net, parts["tokenizer"], data_config, parts["metrics"], Path(path))
    if is_classifier:
        encoder = TextEncoder(parts["words"], parts["chars"], data_config.max_word_length, data_config.max_length)
        return TextClassifier(net, TextPreprocessor(encoder, parts["labels"]), data_config, parts["metrics"],
                              Path(path))
    preprocessor = Preprocessor(Encoder(parts["words"], parts["chars"], data_config.max_word_length),
                                parts["labels"], config["file_scheme"], config["train_scheme"])
    return SequenceTagger(net, preprocessor, data_config, parts["metrics"], Path(path))
