"""What a task family's data preparation hands to training: the splits read, encoded and described."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..errors import SeqtagError


def split_sources(config: DataConfig) -> dict[str, str]:
    """The recipe's files (or hub split names) by split; a hub dataset trains on "train" unless told otherwise."""
    sources = {split: getattr(config, split) for split in ("train", "dev", "test")}
    if config.format == "hub" and sources["train"] is None:
        sources["train"] = "train"
    if sources["train"] is None:
        raise SeqtagError("No training data: give --train FILE or set data.train in the recipe.")
    return {split: source for split, source in sources.items() if source is not None}


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
    record: dict = field(default_factory=dict)
    """Facts about the data saved in config.json: seeded splits, truncations, unseen labels."""
