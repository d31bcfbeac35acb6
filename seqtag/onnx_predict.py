"""Predictors on onnxruntime, for folders written by `seqtag export --format onnx` (see `export.py`):

    tagger = seqtag.load("runs/demo/model-onnx")          # or seqtag.load(path, backend="onnx")
    tagger.predict("Ada Lovelace was born in London.")    # the same TaggedSentence as the PyTorch tagger's

The API and the results are those of the PyTorch predictors (`predict.py`, `language_model.py`): the same
featurizer, batching by length, windows for over-long items, span decoding and scheme folding
(`results.py`), the CRF's Viterbi and marginals in numpy (`crf_numpy.py`). Only the network runs in
onnxruntime. Prediction, scoring and generation never import torch; `evaluate` reads its file with the
training readers, whose recipe classes (config.py) import torch.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tokenizers import Tokenizer

from .crf_numpy import CRFDecoder
from .data.featurizer import LM_CHAR_IDS, LM_CHUNK_ROWS, LM_TOKENIZER, Featurizer, LabelCodec, line_layout
from .data.lengths import MAX_BATCH_TOKENS, length_batches, pad_ragged
from .data.tokens import encode_text, start_ids, token_level, window_rows
from .data.vocab import BPE_PIECES, CHAR, PAD_ID, UNK_ID
from .errors import InputError, ModelFileError, SeqtagError
from .metrics import language_model_scores, perplexity
from .results import (WINDOW_CONTEXT, Classification, TaggedSentence, classifications, classifier_inputs,
                      fold_columns, join_windows, tagged_inputs, windowed_features)
from .sampling import generated_text, generation_context, sample_next_numpy
from .streaming import Progress, StreamedPredictions, stream_results

EXPORT_FILE = "export.json"   # what marks a folder as an export; export.py writes it
FORMAT_VERSIONS = (1,)
SCORE_CHUNK = 1024            # tokens per run when scoring (as language_model.SCORE_CHUNK)


def is_export(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def load_export(path: str | Path, threads: int | None = None):
    """The predictor of an exported folder, on onnxruntime. `threads` (default: $OMP_NUM_THREADS, else
    onnxruntime's choice) is its intra-op thread count."""
    path = Path(path)
    try:
        manifest = json.loads((path / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(path / EXPORT_FILE, f"cannot be read ({err}); export the model again.") from None
    if manifest.get("format") != "onnx" or manifest.get("format_version") not in FORMAT_VERSIONS:
        raise ModelFileError(path / EXPORT_FILE, f"is not an ONNX export this seqtag reads (format "
                                                 f"{manifest.get('format')!r}, version {manifest.get('format_version')!r}); "
                                                 "export the model again with this version.")
    missing = [name for name in manifest.get("files", []) if not (path / name).is_file()]
    if missing:
        raise ModelFileError(path, f"this exported folder is missing {', '.join(missing)}; copy the whole folder.")
    kinds = {"tagging": OnnxSequenceTagger, "classification": OnnxTextClassifier, "lm": OnnxLanguageModel}
    return kinds[manifest["task"]](path, manifest, threads)


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise SeqtagError("loading an exported model needs onnxruntime: pip install 'seqtag[onnx]'.") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the graph's shape-inference notes are not the user's
    return ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """What every exported model holds: the onnxruntime session, the export's manifest, the saved figures,
    and the reader settings (`data_config`) that `seqtag predict` reads input files with."""

    backend = "onnx"

    def __init__(self, path: Path, manifest: dict, threads: int | None = None):
        self.path, self.manifest = path, manifest
        self.config = manifest["model"]                     # the parent model's config.json
        self.recipe = self.config["recipe"]
        self.data_config = SimpleNamespace(**self.recipe["data"])  # the reader settings, as attributes
        metrics = path / "metrics.json"
        self.metrics = json.loads(metrics.read_text(encoding="utf-8")) if metrics.is_file() else {}
        self.graph = manifest["graph"]
        self._threads = threads
        self.session = _session(path, threads)

    # A session cannot be pickled: worker processes (`predict_stream(workers=...)`) open the file again.
    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "session"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.session = _session(self.path, self._threads)

    def threads(self) -> int:
        return self._threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count() or 1

    def set_threads(self, threads: int) -> None:
        self._threads = threads
        self.session = _session(self.path, threads)

    def _full_data_config(self):
        """The recipe's DataConfig, which the training readers (`evaluate`) take. config.py imports torch."""
        from .config import recipe_from_dict

        return recipe_from_dict(self.recipe, where=f"{self.path / EXPORT_FILE} (model)", saved=True).data


class OnnxPredictor(OnnxModel, StreamedPredictions):
    """A tagger's or classifier's network on onnxruntime, fed the featurizer's ids in length-sorted batches."""

    raw_text = False

    def __init__(self, path: Path, manifest: dict, threads: int | None = None):
        super().__init__(path, manifest, threads)
        inputs = self.graph["inputs"]
        chars = Tokenizer.from_file(str(path / "char_tokenizer.json")) if "char_ids" in inputs else None
        lm_chars = Tokenizer.from_file(str(path / LM_TOKENIZER)) if "lm_text" in inputs else None
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
        codec = LabelCodec(labels, self.config.get("file_scheme", "none"), self.config.get("train_scheme", "none"))
        data = self.recipe["data"]
        self.featurizer = Featurizer(Tokenizer.from_file(str(path / "word_tokenizer.json")), chars, codec,
                                     data["max_word_length"], raw_text=self.raw_text,
                                     max_length=data.get("max_length", 0) if self.raw_text else 0,
                                     lm_chars=lm_chars)
        # A fine-tuned model reads gold labels through its fine-tuning label map (families._with_label_map).
        self.label_map = dict((self.config.get("finetune") or {}).get("label_map") or {})
        self.decoder = None
        if self.graph.get("head") == "crf":
            crf = json.loads((path / "crf.json").read_text(encoding="utf-8"))
            self.decoder = CRFDecoder(crf["start"], crf["steps"], crf["end"], codec.labels, codec.train_scheme)

    def _feeds(self, features: dict[str, list], indices: list[int], lengths: list[int]) -> tuple[dict, np.ndarray]:
        """The graph's inputs for rows `indices`, padded with PAD_ID, and the mask (B, T)."""
        row_lengths = np.array([lengths[i] for i in indices], dtype=np.int64)
        mask = np.arange(row_lengths.max())[None, :] < row_lengths[:, None]              # (B, T)
        word_ids = np.full(mask.shape, PAD_ID, dtype=np.int64)
        word_ids[mask] = np.fromiter(chain.from_iterable(features["word_ids"][i] for i in indices), dtype=np.int64)
        feeds = {"word_ids": word_ids, "lengths": row_lengths}
        if "char_ids" in self.graph["inputs"]:
            words = [chars for i in indices for chars in features["char_ids"][i]]
            sizes = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
            widest = max(1, int(sizes.max()) if len(sizes) else 1)
            spelled = pad_ragged(np.fromiter(chain.from_iterable(words), dtype=np.int64), sizes, widest, PAD_ID)
            char_ids = np.full((*mask.shape, widest), PAD_ID, dtype=np.int64)
            char_ids[mask] = spelled
            feeds["char_ids"] = char_ids
        if "lm_text" in self.graph["inputs"]:
            feeds.update(line_layout([features[LM_CHAR_IDS][i] for i in indices], PAD_ID))
        return feeds, mask

    def _decoded(self, items: Sequence, batch_size: int | None, batch_tokens: int | None = None,
                 max_tokens: int | None = None, context: int = 0, index_offset: int = 0):
        """As `Predictor._decoded` (predict.py): (pieces, batches of (row indices, label ids, probabilities))."""
        batch_size = batch_size or self.recipe["data"]["eval_batch_size"]
        features, pieces = windowed_features(self.featurizer, items, max_tokens, context, index_offset)
        lengths = [len(ids) for ids in features["word_ids"]]
        order_by, budget = lengths, batch_tokens or MAX_BATCH_TOKENS
        if "lm_text" in self.graph["inputs"]:
            # The LM pair reads each line's characters, padded to the batch's longest line, and is most of the
            # time: batch rows of like line length (the budget counts characters), as many as the PyTorch
            # embedder's chunks.
            order_by = [sum(map(len, row)) for row in features[LM_CHAR_IDS]]
            batch_size = min(batch_size, LM_CHUNK_ROWS)

        def batches():
            for indices in length_batches(order_by, batch_size, budget):
                indices = [i for i in indices if lengths[i]]  # an empty sentence has nothing to tag
                if indices:
                    feeds, mask = self._feeds(features, indices, lengths)
                    (scores,) = self.session.run(None, feeds)
                    if self.decoder is not None:
                        label_ids, probabilities = self.decoder.decode(scores, mask)
                    else:
                        label_ids, probabilities = scores.argmax(-1), scores
                    yield indices, label_ids, probabilities

        return pieces, batches()

    torch_class = ""  # the PyTorch predictor in predict.py whose `evaluate` this one runs

    def evaluate(self, source, batch_size: int | None = None, **options) -> dict:
        """The PyTorch predictor's own `evaluate` (predict.py), run on this model's `tag`/`probabilities`, so
        the figures are computed by one piece of code. Reading a file takes the training readers, which
        import torch (config.py), and so does this."""
        from . import predict

        self.data_config = self._full_data_config()
        return getattr(predict, self.torch_class).evaluate(self, source, batch_size, **options)

    def __getattr__(self, name: str):
        """What `evaluate` reads of the PyTorch predictor besides `tag`/`probabilities` (its helpers and class
        settings), taken from that class. Only reached for names this class lacks, which prediction never
        uses, so prediction stays torch-free."""
        if name.startswith("__") or not type(self).torch_class:
            raise AttributeError(name)
        import inspect

        from . import predict

        value = inspect.getattr_static(getattr(predict, type(self).torch_class), name)  # AttributeError if absent
        return value.__get__(self, type(self)) if hasattr(value, "__get__") else value


class OnnxSequenceTagger(OnnxPredictor):
    """`predict.SequenceTagger` on onnxruntime: labels (in the files' scheme) with probabilities, and spans."""

    task = "tagging"
    torch_class = "SequenceTagger"
    outputs = ("jsonl", "conll")
    inputs = "strings or lists of token strings"

    def __init__(self, path: Path, manifest: dict, threads: int | None = None):
        super().__init__(path, manifest, threads)
        codec = self.featurizer.labels
        self._fold, self._fold_column = None, {}
        if codec.is_span and codec.file_scheme != codec.train_scheme:
            matrix, self._fold_column = fold_columns(codec.labels, self.labels, codec.file_scheme)
            self._fold = np.array(matrix, dtype=np.float32)

    @property
    def labels(self) -> list[str]:
        return self.featurizer.labels.file_labels()

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, batch_tokens: int | None = None,
            max_tokens: int | None = None, index_offset: int = 0) -> tuple[list[list[str]], list[list[float]]]:
        """As `SequenceTagger.tag`: labels and probabilities of pre-tokenized sentences, windows joined back."""
        pieces, batches = self._decoded(sentences, batch_size, batch_tokens, max_tokens, WINDOW_CONTEXT, index_offset)
        return join_windows(sentences, pieces, batches, self.featurizer.labels, self._fold, self._fold_column)

    def result_line(self, result: TaggedSentence, output: str = "jsonl") -> str:
        return result.conll() if output == "conll" else super().result_line(result)

    def predict(self, inputs, batch_size: int | None = None, batch_tokens: int | None = None,
                max_tokens: int | None = None, index_offset: int = 0) -> TaggedSentence | list[TaggedSentence]:
        """As `SequenceTagger.predict`: raw strings (split here, with offsets) or pre-tokenized lists."""
        return tagged_inputs(self.tag, self.featurizer.labels.is_span, inputs, batch_size, batch_tokens, max_tokens,
                             index_offset)



class OnnxTextClassifier(OnnxPredictor):
    """`predict.TextClassifier` on onnxruntime: a label per raw text, with every class's probability."""

    task = "classification"
    torch_class = "TextClassifier"
    raw_text = True

    @property
    def labels(self) -> list[str]:
        return list(self.featurizer.labels.labels)

    def probabilities(self, texts: Sequence[str], batch_size: int | None = None, batch_tokens: int | None = None,
                      max_tokens: int | None = None, index_offset: int = 0) -> np.ndarray:
        """As `TextClassifier.probabilities`: (N, L), windows of a long text averaged by their tokens."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        weights = np.zeros((len(texts), 1), dtype=np.float32)
        pieces, batches = self._decoded(texts, batch_size, batch_tokens, max_tokens, 0, index_offset)
        for indices, _, probabilities in batches:
            if pieces is None:
                out[indices] = probabilities
                continue
            for row, index in enumerate(indices):
                item, _, keep_start, keep_end = pieces[index]
                out[item] += probabilities[row] * (keep_end - keep_start)
                weights[item] += keep_end - keep_start
        return out if pieces is None else out / np.maximum(weights, 1)

    def predict(self, texts, top_k: int | None = None, batch_size: int | None = None, batch_tokens: int | None = None,
                max_tokens: int | None = None, index_offset: int = 0) -> Classification | list[Classification]:
        """As `TextClassifier.predict`."""
        single, items = classifier_inputs(texts, top_k)
        rows = self.probabilities(items, batch_size, batch_tokens, max_tokens, index_offset).tolist()
        results = classifications(self.labels, rows, top_k)
        return results[0] if single else results



class OnnxLanguageModel(OnnxModel):
    """`language_model.LanguageModel` on onnxruntime: `score`, `score_stream`, `generate` and `evaluate`,
    the recurrent state carried between runs of the graph."""

    task = "lm"

    def __init__(self, path: Path, manifest: dict, threads: int | None = None):
        super().__init__(path, manifest, threads)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.level = token_level(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, self.level, text)

    def _start(self) -> list[int]:
        return start_ids(self.tokenizer, self.level)

    def _zero_state(self, batch: int) -> list[np.ndarray]:
        shape = (self.graph["layers"], batch, self.graph["hidden_size"])
        return [np.zeros(shape, dtype=np.float32) for _ in self.graph["state"]]

    def _run(self, ids: np.ndarray, state: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits (B, T, V) of ids (B, T) and the state after them."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, np.shape(ids)[-1])
        state = state if state is not None else self._zero_state(ids.shape[0])
        logits, *state = self.session.run(None, {"word_ids": ids, **dict(zip(self.graph["state"], state))})
        return logits, state

    def score(self, text: str) -> dict:
        """As `LanguageModel.score`: log-probability of `text` following a line break, perplexity, tokens."""
        if not isinstance(text, str):
            raise SeqtagError(f"score() takes a string, got {type(text).__name__}.")
        ids = self.encode(text)
        context = self._start()
        if not context:
            context, ids = ids[:1], ids[1:]
        if not ids:
            raise SeqtagError(f"score(): {text!r} has no token to score.")
        log_probability, state = 0.0, None
        inputs = context + ids[:-1]
        for start in range(0, len(ids), SCORE_CHUNK):
            logits, state = self._run([inputs[start:start + SCORE_CHUNK]], state)
            targets = np.array(ids[start:start + SCORE_CHUNK])
            log_probability += float(_log_softmax(logits[0])[np.arange(len(targets)), targets].sum())
        return {"log_probability": log_probability, "perplexity": perplexity(-log_probability / len(ids)),
                "tokens": len(ids)}

    def score_texts(self, texts: Iterable[str], index_offset: int = 0) -> list[dict]:
        return [self.score(text) for text in texts]

    def score_stream(self, texts: Iterable[str], window: int | None = None, workers: int = 1,
                     progress: bool | Progress | None = None) -> Iterator[dict]:
        return stream_results(self, "score_texts", texts, window, workers, progress)

    def predict(self, *args, **kwargs):
        raise SeqtagError("A language model neither tags nor classifies: use score(), score_stream() or generate().")

    def generate(self, prompt: str = "", max_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, greedy: bool = False) -> str:
        """As `LanguageModel.generate`. Greedy decoding gives PyTorch's text; a seeded sample is repeatable but
        drawn by numpy, so it is not the text PyTorch draws for that seed."""
        context, ids = generation_context(self, prompt, max_tokens, temperature, top_k, top_p, seed)
        rng = np.random.default_rng(seed)
        new: list[int] = []
        logits, state = None, None
        for start in range(0, len(context), SCORE_CHUNK):
            logits, state = self._run([context[start:start + SCORE_CHUNK]], state)
        scores = logits[0, -1]
        for _ in range(max_tokens):
            token = sample_next_numpy(scores, temperature, top_k, top_p, greedy, rng, banned=(PAD_ID, UNK_ID))
            new.append(token)
            logits, state = self._run([[token]], state)
            scores = logits[0, -1]
        return generated_text(self.tokenizer, self.level, prompt, ids, new)

    def evaluate(self, source, batch_size: int | None = None) -> dict:
        """Perplexity, loss (nats per token), bits per character and tokens predicted, over the same
        truncated-BPTT windows as `LanguageModel.evaluate` (a file is read with the training readers, which
        import torch; a `TokenStream` is read as it is)."""
        data = self.recipe["data"]
        if hasattr(source, "slice") and hasattr(source, "pieces"):
            stream = source
        else:
            from .data.lm import read_stream  # datasets, and torch through the readers

            stream = read_stream(self._full_data_config(), self.tokenizer, str(source))
        if len(stream) < 2:
            raise InputError(str(source), None, "holds fewer than 2 tokens; there is nothing to predict")
        columns = batch_size or data["eval_batch_size"]
        column_length = math.ceil(len(stream) / columns)
        total, count, state = 0.0, 0, None
        for index in range(max(0, math.ceil((column_length - 1) / data["bptt"]))):
            rows = window_rows(stream, range(columns), column_length, index, data["bptt"])
            inputs, targets = np.maximum(rows[:, :-1], PAD_ID), rows[:, 1:]
            logits, state = self._run(inputs, state)
            known = targets >= 0
            picked = np.take_along_axis(_log_softmax(logits), np.maximum(targets, 0)[..., None], -1)[..., 0]
            total -= float(picked[known].sum())
            count += int(known.sum())
        return language_model_scores(total, count, len(stream), stream.chars, tokens_are_characters=self.level == CHAR,
                                     tokens_cover_text=self.level == BPE_PIECES)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64 (the sums it feeds run over many tokens)."""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
