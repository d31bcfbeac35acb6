"""What a task family's data preparation hands to training: the splits read, encoded and described."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..errors import SeqtagError
from .readers import FORMATS


def split_sources(config: DataConfig) -> dict[str, str]:
    """The recipe's files (or hub split names) by split; a hub dataset trains on "train" unless told otherwise."""
    sources = {split: getattr(config, split) for split in ("train", "dev", "test")}
    if FORMATS[config.format].sources == "split" and sources["train"] is None:
        sources["train"] = "train"
    if sources["train"] is None:
        raise SeqtagError("No training data: give --train FILE or set data.train in the recipe.")
    return {split: source for split, source in sources.items() if source is not None}


@dataclass
class DataRecord:
    """Facts about a run's data that config.json, metrics.json and the log keep. `None`: not part of this run."""

    unseen_labels: dict = field(default_factory=dict)
    """Per split, the dev/test labels never seen in training and how often each occurs (scored as errors)."""
    split: dict | None = None
    """A seeded split (classification) or a cut of the training text (language models) made without a dev file."""
    truncated: dict | None = None
    """Classification: per split, how many texts data.max_length cut."""
    pretrained_coverage: dict | None = None
    """How much of the training vocabulary found a pretrained vector (model.pretrained_vectors)."""
    train_tokens: int | None = None
    """Language models: the tokens of the training stream."""
    pretrained_rows: int | None = None
    """How many embedding rows the pretrained vectors set when the network was started."""
    class_weights: dict | None = None
    """Classification with train.class_weights=balanced: each class's weight in the loss."""
    replay_per_epoch: int = 0
    """Fine-tuning with finetune.replay: how many of the original training rows join each epoch."""


@dataclass
class Prepared:
    """A recipe's data, ready to train on. Everything the model learns from (vocabularies, labels, sizes)
    comes from the training split only."""

    sources: dict[str, str]
    """Where each split came from, as shown to the user."""
    rows: dict[str, Any]
    """The rows read per split (a `datasets.Dataset`; a language model's: its token stream), for evaluation."""
    encoded: dict[str, Any]
    """What batches are cut from, per split: encoded rows or token streams."""
    sizes: dict[str, int]
    """Vocabulary and label sizes the network is built with: "words", "chars", "labels"."""
    featurizer: Any = None
    """The `Featurizer` (taggers and classifiers), saved with the model."""
    tokenizer: Any = None
    """A language model's tokenizer, saved with the model."""
    pretrained: dict = field(default_factory=dict)
    """Pretrained word vectors by word id."""
    language_models: dict | None = None
    """The "lm" embedder's character language models' weights (a contextual-lm network's state dict), copied in
    when a new network starts; None when the network has no such embedder or starts from a parent's weights."""
    record: DataRecord = field(default_factory=DataRecord)
    """Facts about the data saved in config.json: seeded splits, truncations, unseen labels."""
