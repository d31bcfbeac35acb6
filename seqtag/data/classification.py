"""From labelled texts to ids for classification: reading with the recipe's settings,
the seeded dev split, label checks, tokenizers and encoding.

The counterpart of `corpus.py` for a label per text; no Lightning here either.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from ..config import DataConfig, ModelConfig
from ..errors import InputError, SeqtagError
from . import text_readers
from .vocab import TextEncoder, build_char_tokenizer, build_text_tokenizer

log = logging.getLogger("seqtag")

AUTO_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def text_format(config: DataConfig, source: str) -> str:
    """The reader for `source`: data.format, or for "auto" the one its extension names."""
    if config.format != "auto":
        return config.format
    suffix = Path(source).suffix.lower()
    if suffix not in AUTO_FORMATS:
        raise SeqtagError(f"{source}: data.format is 'auto' but the extension {suffix or '(none)'!r} names no "
                          f"format; use {', '.join(AUTO_FORMATS)} or set data.format=csv|tsv|jsonl.")
    return AUTO_FORMATS[suffix]


def read_texts(config: DataConfig, source: str, cache_dir: str | None = None) -> Dataset:
    """Rows {"text", "label", "line"} from a file, files, folder or hub split; skipped rows are logged."""
    fmt, skip = text_format(config, source), config.skip_bad_rows
    if fmt in ("csv", "tsv"):
        ds = text_readers.read_table(source, "," if fmt == "csv" else "\t", config.text_column, config.label_column,
                                     config.header, config.quoting, skip, cache_dir)
    elif fmt == "jsonl":
        ds = text_readers.read_jsonl(source, config.text_column, config.label_column, skip, cache_dir)
    elif fmt == "class_files":
        ds = text_readers.read_class_files([p.strip() for p in source.split(",") if p.strip()], skip, cache_dir)
    elif fmt == "class_folders":
        ds = text_readers.read_class_folders(source, skip, cache_dir)
    else:
        if not config.hub_name:
            raise SeqtagError("data.format is 'hub' but data.hub_name is not set; name the dataset, e.g. "
                              "--set data.hub_name=imdb.")
        ds = text_readers.read_text_hub(config.hub_name, source, str(config.text_column), str(config.label_column),
                                        config.hub_config, skip, cache_dir)
    return text_readers.drop_problems(ds, source)


def hold_out(train: Dataset, size: int, seed: int, split: str) -> tuple[Dataset, Dataset]:
    """Split `size` seeded random training texts off as `split` ("dev" or "test")."""
    if len(train) <= size:
        raise SeqtagError(f"cannot hold out {size} {split} text(s) from {len(train)} training text(s); give "
                          f"--{split} FILE.")
    parts = train.train_test_split(test_size=size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def check_labels(dataset: Dataset, labels: Sequence[str], source: str) -> None:
    """Every label of a dev/test split must have been seen in training; the error names the line."""
    known = set(labels)
    for label, line in zip(dataset["label"], dataset["line"]):
        if label not in known:
            raise InputError(source, line or None, f"label {label!r} does not occur in the training data, so the "
                                                   f"model cannot predict it; training labels: {', '.join(labels)}")


def label_list(labels: Sequence[str]) -> list[str]:
    """Sorted, numerically when every label is an integer ("2" before "10")."""
    distinct = set(labels)
    numeric = all(label.lstrip("-").isdigit() for label in distinct)
    return sorted(distinct, key=(lambda s: (int(s), s)) if numeric else None)


@dataclass
class TextPreprocessor:
    """Everything that turns texts into ids and ids back into labels; saved with the model."""

    encoder: TextEncoder
    labels: list[str]

    def __post_init__(self) -> None:
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    @property
    def columns(self) -> list[str]:
        return ["word_ids", "label_id"] + (["char_ids"] if self.encoder.chars is not None else [])

    def encode_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """`datasets.map(batched=True)` function: texts (and labels) to ids."""
        encoded = self.encoder.encode(batch["text"])
        if "label" in batch:
            encoded["label_id"] = [self.label_index[label] for label in batch["label"]]
        return encoded

    def encode_dataset(self, dataset: Dataset, source: str = "") -> tuple[Dataset, int]:
        """The encoded rows, and how many texts were cut at max_length (logged too)."""
        encoded = dataset.map(self.encode_rows, batched=True, batch_size=1000, desc="encoding")
        truncated = sum(encoded["truncated"])
        if truncated:
            log.info("%s: %d of %d texts cut to data.max_length=%d tokens", source, truncated, len(encoded),
                     self.encoder.max_length)
        return encoded.select_columns(self.columns), truncated


def build_text_preprocessor(data: DataConfig, model: ModelConfig, train: Dataset,
                            labels: list[str]) -> TextPreprocessor:
    """Tokenizer (and character vocabulary) from the training texts."""
    texts = train["text"]
    words = build_text_tokenizer(texts, data.tokenizer, data.vocab_size, data.min_freq, data.lowercase,
                                 data.normalization)
    chars = None
    if model.char_encoder != "none":
        chars = build_char_tokenizer(TextEncoder(words, None, data.max_word_length).tokens(texts))
    encoder = TextEncoder(words, chars, data.max_word_length, data.max_length)
    return TextPreprocessor(encoder, labels)
