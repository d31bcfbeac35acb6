"""One featurizer for every family that reads words: items → the feature ids a network's embedders ask
for (word ids, character ids), and label strings ↔ label ids. Training and prediction both use it.

An item is a list of tokens (tagging) or a raw text (classification, split by the trained tokenizer).
No Lightning and no `datasets` import here, so prediction stays light.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from ..results import fold_label as _fold_label  # noqa: F401 - its old name, re-exported
from . import schemes
from .vocab import UNK, UNK_ID, _distinct, _lookup, char_index, spell

log = logging.getLogger("seqtag")

LM_CHAR_IDS = "lm_char_ids"  # the feature of the "lm" embedder (embedders.LM_FEATURE; not imported: torch)
LM_TOKENIZER = "lm_tokenizer.json"  # the character LMs' tokenizer in the model folder of a model that reads them
LM_LAYOUT = ("lm_text", "lm_lengths", "lm_last", "lm_first_reversed")  # `line_layout`: the ONNX graph's inputs
LM_CHUNK_ROWS = 16  # sentences the language models read together (embedders.LM_CHUNK_ROWS; not imported: torch)


class LabelCodec:
    """Label strings ↔ ids. Ids are append-only: `add` never renumbers a label already in the list.

    For span schemes the network works in `train_scheme` (e.g. BIOES) while the user's files are in
    `file_scheme` (e.g. IOB2); `to_train` and `to_file` convert whole sequences. A label never seen
    in training gets an id past the head's outputs (in memory only), so the loss skips it and every
    metric counts it as an error.
    """

    def __init__(self, labels: Sequence[str], file_scheme: str = "none", train_scheme: str = "none"):
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.file_scheme, self.train_scheme = file_scheme, train_scheme
        self._unseen_ids: dict[str, int] = {}  # label never seen in training → its in-memory id - len(labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_span(self) -> bool:
        return self.train_scheme != "none"

    def add(self, label: str) -> int:
        """The id of `label`, appended at the end when new."""
        if label not in self.index:
            self.index[label] = len(self.labels)
            self.labels.append(label)
        return self.index[label]

    def id(self, label: str) -> int:
        found = self.index.get(label)
        if found is not None:
            return found
        return len(self.labels) + self._unseen_ids.setdefault(label, len(self._unseen_ids))

    def name(self, label_id: int) -> str:
        if label_id < len(self.labels):
            return self.labels[label_id]
        return list(self._unseen_ids)[label_id - len(self.labels)]

    def to_train(self, labels: Sequence[str]) -> list[str]:
        if self.file_scheme == self.train_scheme or not self.is_span:
            return list(labels)
        return schemes.convert(labels, self.train_scheme)

    def to_file(self, labels: Sequence[str]) -> list[str]:
        if self.file_scheme == self.train_scheme or not self.is_span:
            return list(labels)
        return schemes.convert(labels, self.file_scheme)

    def file_labels(self) -> list[str]:
        """The labels the model can output, in the files' scheme."""
        if not self.is_span or self.file_scheme == self.train_scheme:
            return list(self.labels)
        types = sorted({label.split("-", 1)[1] for label in self.labels if "-" in label})
        return span_label_list(types, self.file_scheme)


def line_layout(rows: Sequence[Sequence[Sequence[int]]], pad_id: int) -> dict[str, np.ndarray]:
    """The "lm" embedder's sentences as the ONNX graph reads them (numpy; PyTorch's embedder lays its batch out
    the same way, `ContextualStrings._states`): per row of text pieces (`Featurizer.text_pieces`), the line
    they spell end to end closed by the first piece's separator ("lm_text", B × L, `pad_id` after the line),
    its length ("lm_lengths"), each word's last character in the line ("lm_last", B × T) and its first
    character as the backward model reads the line reversed ("lm_first_reversed", B × T; 0 on padding)."""
    piece_lengths = np.zeros((len(rows), max(len(row) for row in rows)), dtype=np.int64)
    for i, row in enumerate(rows):
        piece_lengths[i, :len(row)] = [len(piece) for piece in row]
    offsets = piece_lengths.cumsum(1) - piece_lengths
    lengths = piece_lengths.sum(1) + 1
    text = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        line = [c for piece in row for c in piece]
        text[i, :len(line)] = line
        text[i, len(line)] = row[0][0]
    first = np.minimum(offsets + 1, text.shape[1] - 1)
    return {"lm_text": text, "lm_lengths": lengths, "lm_last": np.maximum(offsets + piece_lengths - 1, 0),
            "lm_first_reversed": np.maximum(lengths[:, None] - 1 - first, 0)}


def reads_characters(embedders: Sequence[str]) -> bool:
    """Whether a network with these embedders spells words out, so it needs a character vocabulary."""
    # Imported here: the embedders import torch, which the rest of the featurizer (and the onnxruntime
    # predictors that use it) does without.
    from ..embedders import EMBEDDERS

    return any(EMBEDDERS[name].feature == "char_ids" for name in embedders)


def span_label_list(types: Sequence[str], scheme: str) -> list[str]:
    """All labels a span scheme can produce for these types, "O" first."""
    prefixes = "BIES" if scheme == "bioes" else "BI"
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


class Featurizer:
    """Turns items into the id lists a network reads, and labels into label ids.

    `words` looks tokens up whole (tagging, pre-tokenized input) or, with `raw_text`, splits raw texts
    into word or sub-word tokens (classification; at most `max_length` tokens, 0 keeps all). `chars`,
    when the network spells words, gives character ids per token. `lm_chars`, the character language models'
    tokenizer when the network has the "lm" embedder, gives each token's piece of its sentence's text.
    """

    def __init__(self, words: Tokenizer, chars: Tokenizer | None, labels: LabelCodec | None,
                 max_word_length: int, raw_text: bool = False, max_length: int = 0,
                 lm_chars: Tokenizer | None = None):
        self.words = words
        self.chars = chars
        self.labels = labels
        self.char_ids = char_index(chars) if chars is not None else None
        self.lm_chars = lm_chars
        self.lm_char_ids = char_index(lm_chars) if lm_chars is not None else None
        self.max_word_length = max_word_length
        self.raw_text = raw_text
        self.max_length = max_length

    @property
    def item_column(self) -> str:
        return "text" if self.raw_text else "tokens"

    @property
    def label_column(self) -> str:
        return "label" if self.raw_text else "labels"

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """The token strings of raw texts (what the character encoder spells)."""
        return [e.tokens for e in self.words.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, items: Sequence) -> dict[str, list]:
        """{"word_ids", ["char_ids",] "truncated"} for a batch of items."""
        if self.raw_text:
            encodings = self.words.encode_batch(list(items), add_special_tokens=False)
            limit = self.max_length or None
            out = {"word_ids": [e.ids[:limit] or [UNK_ID] for e in encodings],   # an empty text reads as <unk>
                   "truncated": [limit is not None and len(e.ids) > limit for e in encodings]}
            tokens = [e.tokens[:limit] or [UNK] for e in encodings]
            distinct = None
            if self.lm_chars is not None:  # the words as written (tokens may be lowercased or byte-level)
                written = [[text[start:end] for start, end in e.offsets[:limit]] or [""]
                           for text, e in zip(items, encodings)]
        else:
            # Words repeat a lot (Zipf): each distinct word is looked up and spelled out once.
            tokens, distinct = items, _distinct(items)
            distinct_ids = _lookup(self.words, list(distinct))
            out = {"word_ids": [[distinct_ids[distinct[word]] for word in sentence] for sentence in items],
                   "truncated": [False] * len(items)}
        if self.chars is not None:
            out["char_ids"] = spell(self.char_ids, tokens, self.max_word_length, distinct)
        if self.lm_chars is not None:
            out[LM_CHAR_IDS] = self.text_pieces(written if self.raw_text else items)
        return out

    def text_pieces(self, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """Per sentence, per word: the language models' character ids of its separator ("\\n" before the first
        word, one space before the others) and of the word, whole. End to end they spell the sentence as one
        line with single spaces between the words."""
        ids = self.lm_char_ids
        spelled: dict[str, list[int]] = {}
        line_start, space = ids.get("\n", UNK_ID), ids.get(" ", UNK_ID)
        out = []
        for sentence in sentences:
            pieces = []
            for position, word in enumerate(sentence):
                characters = spelled.get(word)
                if characters is None:
                    characters = spelled[word] = [ids.get(c, UNK_ID) for c in word]
                pieces.append([line_start if position == 0 else space, *characters])
            out.append(pieces)
        return out

    def encode_labels(self, labels: Sequence) -> list:
        """Label ids per token (a list per sentence) or per text."""
        if self.raw_text:
            return [self.labels.id(label) for label in labels]
        return [[self.labels.id(label) for label in self.labels.to_train(sequence)] for sequence in labels]

    @property
    def columns(self) -> list[str]:
        """The encoded columns training keeps."""
        return ["word_ids", "label_ids" if not self.raw_text else "label_id"] + (
            ["char_ids"] if self.chars is not None else []) + ([LM_CHAR_IDS] if self.lm_chars is not None else [])

    def encode_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """`datasets.map(batched=True)` function: items (and labels) to ids."""
        encoded = self.encode(batch[self.item_column])
        if self.label_column in batch:
            encoded["label_id" if self.raw_text else "label_ids"] = self.encode_labels(batch[self.label_column])
        return encoded

    def unseen_labels(self, dataset) -> dict[str, int]:
        """Labels of `dataset` the codec does not have (in the training scheme), with their counts. They get
        their in-memory ids here, in the order met, before encoding: so ids do not depend on the encoding cache."""
        if self.labels is None or self.label_column not in dataset.column_names:
            return {}
        counts: dict[str, int] = {}
        for value in dataset[self.label_column]:
            for label in ([value] if self.raw_text else self.labels.to_train(value)):
                if label not in self.labels.index:
                    counts[label] = counts.get(label, 0) + 1
        for label in counts:
            self.labels.id(label)
        return counts

    def encode_dataset(self, dataset, source: str = "") -> tuple:
        """The encoded rows (a `datasets.Dataset`) and a report: how many texts were cut at max_length and the
        labels never seen in training with their counts (both logged too)."""
        report = {"unseen_labels": self.unseen_labels(dataset)}
        encoded = dataset.map(self.encode_rows, batched=True, batch_size=1000, desc="encoding")
        report["truncated"] = sum(encoded["truncated"])
        if report["truncated"]:
            log.info("%s: %d of %d texts cut to data.max_length=%d tokens", source, report["truncated"],
                     len(encoded), self.max_length)
        if report["unseen_labels"]:
            log.warning("%s: labels never seen in training, scored as errors: %s", source, ", ".join(
                f"{label} ×{count}" for label, count in report["unseen_labels"].items()))
        return encoded.select_columns(self.columns), report
