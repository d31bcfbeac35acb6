"""The user-facing models: `seqtag.load(path)` → `predict`, `evaluate` (and for language models `score` and
`generate`, in `language_model.py`); `seqtag.loading.load` builds them from a model directory.

Prediction runs the same featurizer and collate function as training; raw strings are first split into tokens
that remember their character offsets. Nothing here imports Lightning or the training modules.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig
from .data.batching import MAX_BATCH_TOKENS, EncodedBatches, length_batches
from .data.featurizer import Featurizer
from .data.growth import LabelMap
from .metrics import calibration, classification_scores, span_confusion, span_scores, tag_scores, token_accuracy
from .networks import Network
# The result classes, windows, spans and folding are torch-free (results.py): the onnxruntime predictors share
# them. Their names stay importable from here.
from .results import (WINDOW_CONTEXT, Classification, Span, TaggedSentence, Token,  # noqa: F401
                      classifications, classifier_inputs, fold_columns, join_windows, tagged_inputs,
                      windowed_features)
from .streaming import StreamedPredictions, evaluation

log = logging.getLogger("seqtag")


class Predictor(StreamedPredictions):
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

    label_map: dict[str, str] = {}           # a fine-tuned model's finetune.label_map: the data's labels → its own

    def gold_as_trained(self, gold: list) -> list:
        """Gold labels (one per text, or a list per sentence) renamed by the fine-tuning label map as fine-tuning
        renamed its data (a span label's type: B-person → B-PER), so that a file in that data's labels scores."""
        if not self.label_map:
            return gold
        rename = LabelMap(self.label_map, "").label
        return [[rename(label) for label in value] if isinstance(value, list) else rename(value) for value in gold]

    def _decoded(self, items: Sequence, batch_size: int | None, batch_tokens: int | None = None,
                 max_tokens: int | None = None, context: int = 0, index_offset: int = 0):
        """(pieces, batches): the network's results per length-sorted batch of the items that have a token, as
        (row indices, label ids, probabilities).

        An item longer than `max_tokens` tokens is cut into windows of at most that many (with `context` tokens
        of the neighbouring text on each side, whose results are not kept), each a row of its own, with one
        warning naming the item (`index_offset` + its position, 1-based). `pieces` is None when no item was cut
        (row i is item i), else one (item, first token, first kept token, end of the kept tokens) per row."""
        batch_size = batch_size or self.data_config.eval_batch_size
        features, pieces = windowed_features(self.featurizer, items, max_tokens, context, index_offset)
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
    inputs = "strings or lists of token strings"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        codec = self.featurizer.labels
        self._fold, self._fold_column = None, {}
        if codec.is_span and codec.file_scheme != codec.train_scheme:
            # Train-scheme probabilities → file-scheme ones: a 0/1 matrix summing the labels each one stands for.
            matrix, self._fold_column = fold_columns(codec.labels, self.labels, codec.file_scheme)
            self._fold = torch.tensor(matrix)

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
        """`tag` for rows that are windows of the sentences (see `results.join_windows`)."""
        fold = None if self._fold is None else self._fold.numpy()
        return join_windows(sentences, pieces, ((indices, ids.numpy(), probabilities.numpy())
                                                for indices, ids, probabilities in batches),
                            self.featurizer.labels, fold, self._fold_column)

    def result_line(self, result: TaggedSentence, output: str = "jsonl") -> str:
        """A tagged sentence as `seqtag predict` writes it: a JSON line, or CoNLL (a token and its label per line;
        the line after it is the blank line that ends the sentence). A sentence read from a labelled CoNLL file
        writes token, gold and predicted label, the three columns conlleval reads."""
        return result.conll() if output == "conll" else super().result_line(result)

    def predict(self, inputs: str | Sequence[str] | Sequence[Sequence[str]], batch_size: int | None = None,
                batch_tokens: int | None = None, max_tokens: int | None = None, index_offset: int = 0
                ) -> TaggedSentence | list[TaggedSentence]:
        """Tag raw strings (split into tokens here, with character offsets) or pre-tokenized lists.

        A single string gives one TaggedSentence; a list gives a list, in input order. A sentence longer than
        `max_tokens` tokens (default 4,096) is tagged in overlapping windows whose labels are joined back, with
        one warning naming it (its position plus `index_offset`). For inputs of any length see `predict_stream`.
        """
        return tagged_inputs(self.tag, self.featurizer.labels.is_span, inputs, batch_size, batch_tokens, max_tokens,
                             index_offset)

    @evaluation("a file path (str or Path) or a dataset with tokens and labels columns")
    def evaluate(self, source, batch_size: int | None = None, details: bool = False) -> dict:
        """Metrics on a file (read with the model's own reader settings) or a dataset with tokens/labels.
        Gold labels the model never saw in training are scored as errors and counted in "unseen_labels".

        Span schemes: conlleval's figures per entity type and a span "confusion" (gold type × predicted type,
        with "missed" and "spurious"); other tags: token accuracy, figures per tag and a tag "confusion".
        `details` adds "details": per sentence, its tokens, gold and predicted labels and count of errors."""
        if isinstance(source, (str, Path)):
            from .data.corpus import check_scheme, read_corpus  # reading files needs `datasets`; prediction not

            dataset = read_corpus(self.data_config, str(source))
            check_scheme(dataset, self.featurizer.labels.file_scheme, str(source))
        else:
            dataset = source
        gold = self.gold_as_trained(list(dataset["labels"]))
        tokens = list(dataset["tokens"])
        predicted, _ = self.tag(tokens, batch_size)
        if self.featurizer.labels.is_span:
            result = span_scores(gold, predicted)
            result["confusion"] = span_confusion(gold, predicted)
        else:
            result = {**token_accuracy(gold, predicted), **tag_scores(gold, predicted)}
        result["sentences"] = len(gold)
        result["tokens"] = sum(len(labels) for labels in gold)
        known = set(self.labels)
        unseen: dict[str, int] = {}
        for label in (label for labels in gold for label in labels if label not in known):
            unseen[label] = unseen.get(label, 0) + 1
        result["unseen_labels"] = unseen
        if details:
            result["details"] = [{"tokens": list(words), "gold": list(g), "predicted": p,
                                  "errors": sum(a != b for a, b in zip(g, p))}
                                 for words, g, p in zip(tokens, gold, predicted)]
        return result


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
        single, items = classifier_inputs(texts, top_k)
        rows = self.probabilities(items, batch_size, batch_tokens, max_tokens, index_offset).tolist()
        results = classifications(self.labels, rows, top_k)
        return results[0] if single else results

    @evaluation("a file path (str or Path) or a dataset with text and label columns")
    def evaluate(self, source, batch_size: int | None = None, details: bool = False) -> dict:
        """Accuracy, macro-F1, per-label figures and the confusion matrix on a file (read with the model's own
        reader settings) or a dataset with text/label columns. Gold classes the model never saw in training are
        scored as errors and counted in "unseen_labels".

        Calibration, with the probability of the predicted class as its confidence: "ece" (expected calibration
        error, 10 equal-width bins) and the "reliability" table (`metrics.calibration`). `details` adds
        "details": per text, its text, gold and predicted class and that confidence."""
        if isinstance(source, (str, Path)):
            from .data.classification import read_texts  # reading files needs `datasets`; prediction not

            dataset = read_texts(self.data_config, str(source))
        else:
            dataset = source
        texts, gold = list(dataset["text"]), self.gold_as_trained(list(dataset["label"]))
        # numpy: the onnxruntime classifier runs this method on its own (numpy) probabilities too.
        probabilities = np.asarray(self.probabilities(texts, batch_size))
        predicted = [self.labels[i] for i in probabilities.argmax(-1).tolist()]
        confidences = probabilities.max(-1).tolist()
        result = classification_scores(gold, predicted, self.labels)
        result.update(calibration(confidences, [g == p for g, p in zip(gold, predicted)]))
        if details:
            result["details"] = [{"text": text, "gold": g, "predicted": p, "confidence": c}
                                 for text, g, p, c in zip(texts, gold, predicted, confidences)]
        return result

