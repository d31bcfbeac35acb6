"""The Lightning DataModule: the recipe's splits, read, checked, encoded and served in buckets."""
from __future__ import annotations

import logging

import pytorch_lightning as pl
from datasets import Dataset
from torch.utils.data import DataLoader

from ..config import DataConfig, ModelConfig
from ..errors import SeqtagError
from . import readers
from .batching import BucketBatchSampler, collate
from .corpus import Preprocessor, build_preprocessor, check_scheme, read_corpus, resolve_scheme, sentence_lengths

log = logging.getLogger("seqtag")


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
        sources = {split: getattr(self.config, split) for split in ("train", "dev", "test")}
        if self.config.format == "hub" and sources["train"] is None:
            sources["train"] = "train"
        if sources["train"] is None:
            raise SeqtagError("No training data: give --train FILE or set data.train in the recipe.")
        return {split: source for split, source in sources.items() if source is not None}

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

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        sampler = BucketBatchSampler(
            sentence_lengths(self.corpora[split]),
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
