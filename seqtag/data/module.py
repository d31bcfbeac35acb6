"""The Lightning DataModule: the recipe's splits, read, checked, encoded and served in buckets."""
from __future__ import annotations

import logging

import pyarrow.compute as pc
import pytorch_lightning as pl
from datasets import Dataset
from torch.utils.data import DataLoader

from ..config import DataConfig, ModelConfig
from ..errors import SeqtagError
from . import readers
from .batching import BucketBatchSampler, collate
from .classification import TextPreprocessor, build_text_preprocessor, check_labels, hold_out, label_list, read_texts
from .corpus import Preprocessor, build_preprocessor, check_scheme, read_corpus, resolve_scheme, sentence_lengths

log = logging.getLogger("seqtag")


def split_sources(config: DataConfig) -> dict[str, str]:
    """The recipe's files (or hub split names) by split; a hub dataset trains on "train" unless told otherwise."""
    sources = {split: getattr(config, split) for split in ("train", "dev", "test")}
    if config.format == "hub" and sources["train"] is None:
        sources["train"] = "train"
    if sources["train"] is None:
        raise SeqtagError("No training data: give --train FILE or set data.train in the recipe.")
    return {split: source for split, source in sources.items() if source is not None}


class TaggingData(pl.LightningDataModule):
    """Reads the recipe's splits, builds the vocabularies and serves length-bucketed batches."""

    def __init__(self, data: DataConfig, model: ModelConfig, seed: int = 0, cache_dir: str | None = None):
        super().__init__()
        self.config = data
        self.model_config = model
        self.seed = seed
        self.cache_dir = cache_dir
        self.corpora: dict[str, Dataset] = {}
        self.encoded: dict[str, Dataset] = {}
        self.preprocessor: Preprocessor | None = None
        self.pretrained: dict = {}

    def sources(self) -> dict[str, str]:
        return split_sources(self.config)

    def setup(self, stage: str | None = None) -> None:
        if self.preprocessor is not None:
            return  # already set up (train() does it before Lightning asks)
        for split, source in self.sources().items():
            self.corpora[split] = read_corpus(self.config, source, self.cache_dir)
            log.info("%s: %s from %s", split, readers.describe(self.corpora[split]), source)
        file_scheme = resolve_scheme(self.config.scheme, self.corpora["train"], self.sources()["train"])
        for split, source in self.sources().items():
            check_scheme(self.corpora[split], file_scheme, source)
        self.preprocessor, self.pretrained = build_preprocessor(self.config, self.model_config, self.corpora,
                                                                file_scheme)
        self.encoded = {split: self.preprocessor.encode_dataset(ds) for split, ds in self.corpora.items()}

    def lengths(self, split: str) -> list[int]:
        """Tokens per row of a split, for length bucketing."""
        return sentence_lengths(self.corpora[split])

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        sampler = BucketBatchSampler(
            self.lengths(split),
            self.config.batch_size if shuffle else self.config.eval_batch_size,
            shuffle=shuffle, seed=self.seed,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)
        return DataLoader(self.encoded[split], batch_sampler=sampler, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev" if "dev" in self.encoded else "train", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ClassificationData(TaggingData):
    """Reads labelled texts, holds out seeded dev (and, if asked, test) splits where no file is given,
    and serves length-bucketed batches of texts with one label each."""

    def __init__(self, data: DataConfig, model: ModelConfig, seed: int = 0, cache_dir: str | None = None):
        super().__init__(data, model, seed, cache_dir)
        self.preprocessor: TextPreprocessor | None = None
        self.split: dict | None = None  # the seeded held-out splits' seed and sizes, when any were made
        self.truncated: dict[str, int] = {}  # texts cut at data.max_length, per split

    def setup(self, stage: str | None = None) -> None:
        if self.preprocessor is not None:
            return
        sources = self.sources()
        for split, source in sources.items():
            self.corpora[split] = read_texts(self.config, source, self.cache_dir)
            log.info("%s: read %d texts from %s", split, len(self.corpora[split]), source)
        labels = label_list(self.corpora["train"]["label"])
        if len(labels) < 2:
            raise SeqtagError(f"{sources['train']}: every training text has the label {labels[0]!r}; a classifier "
                              "needs at least two labels.")
        fractions = {"test": self.config.test_fraction, "dev": self.config.dev_fraction}
        held = [split for split, fraction in fractions.items() if split not in self.corpora and fraction > 0]
        if held:
            # Test first, then dev from the rest, both seeded; the record goes into config.json.
            total, seed = len(self.corpora["train"]), self.config.split_seed
            for split in held:
                size = max(1, round(fractions[split] * total))
                self.corpora["train"], self.corpora[split] = hold_out(self.corpora["train"], size, seed, split)
                sources[split] = f"{sources['train']} (held-out {split})"
            self.split = {"seed": seed, **{f"{s}_fraction": fractions[s] for s in held},
                          **{s: len(self.corpora[s]) for s in ("train", *held)}}
            log.info("held out of the training texts (seed %d): %s", seed,
                     ", ".join(f"{s} {len(self.corpora[s])}" for s in held))
        for split in ("dev", "test"):
            if split in self.corpora:
                check_labels(self.corpora[split], labels, sources[split])
        self.preprocessor = build_text_preprocessor(self.config, self.model_config, self.corpora["train"], labels)
        for split, ds in self.corpora.items():
            self.encoded[split], self.truncated[split] = self.preprocessor.encode_dataset(ds, sources[split])

    def lengths(self, split: str) -> list[int]:
        return pc.list_value_length(self.encoded[split].data.column("word_ids")).to_pylist()
