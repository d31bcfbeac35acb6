"""From files to ids: reading with the recipe's settings, tag-scheme checks, vocabularies, encoding.

No Lightning here, so prediction imports stay light."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.compute as pc
from datasets import Dataset

from ..config import DataConfig, ModelConfig
from ..errors import InputError, SeqtagError
from . import readers, schemes
from .vectors import read_vectors
from .vocab import Encoder, build_char_tokenizer, build_word_tokenizer

log = logging.getLogger("seqtag")

ENCODED_COLUMNS = ["word_ids", "char_ids", "label_ids"]


def read_corpus(config: DataConfig, source: str, cache_dir: str | None = None) -> Dataset:
    """Rows {"tokens", "labels", "lines"} from a file (or hub split) with the recipe's reader settings."""
    if config.format == "conll":
        return readers.read_conll(source, config.token_column, int(config.label_column), cache_dir=cache_dir)
    if config.format == "conllu":
        return readers.read_conllu(source, config.label_column, cache_dir=cache_dir)
    if not config.hub_name:
        raise SeqtagError("data.format is 'hub' but data.hub_name is not set; name the dataset, e.g. "
                          "--set data.hub_name=conll2003.")
    return readers.read_hub(config.hub_name, source, config.tokens_field, config.labels_field,
                            config.hub_config, cache_dir=cache_dir)


def sentence_lengths(dataset: Dataset) -> list[int]:
    """Token count per row, read from Arrow without materialising the rows."""
    return pc.list_value_length(dataset.data.column("tokens")).to_pylist()


def resolve_scheme(declared: str, dataset: Dataset, source: str) -> str:
    """The declared scheme, or the one the training labels show when it is "auto"."""
    if declared != "auto":
        return declared
    try:
        return schemes.detect_scheme(dataset["labels"])
    except ValueError as err:
        raise SeqtagError(f"{source}: {err} Set it with --set data.scheme=iob1|iob2|bioes.") from None


def check_scheme(dataset: Dataset, scheme: str, source: str) -> None:
    """Every label sequence must follow the scheme; the error points at the offending line."""
    if scheme == "none":
        return
    for labels, lines in zip(dataset["labels"], dataset["lines"]):
        problem = schemes.find_violation(labels, scheme)
        if problem is not None:
            index, reason = problem
            raise InputError(source, lines[index], f"label {labels[index]!r} breaks the {scheme.upper()} scheme: "
                             f"{reason}. Fix the label, or declare the file's scheme with --set data.scheme=...")


def span_label_list(types: Sequence[str], scheme: str) -> list[str]:
    """All labels a span scheme can produce for these types, "O" first."""
    prefixes = "BIES" if scheme == "bioes" else "BI"
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in prefixes]


@dataclass
class Preprocessor:
    """Everything that turns tokens into ids and ids back into labels; saved with the model."""

    encoder: Encoder
    labels: list[str]
    file_scheme: str    # the scheme of the user's files ("none" for plain tags)
    train_scheme: str   # the scheme the network predicts in ("none" for plain tags)

    def __post_init__(self) -> None:
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    def to_train_scheme(self, labels: Sequence[str]) -> list[str]:
        if self.file_scheme == "none" or self.file_scheme == self.train_scheme:
            return list(labels)
        return schemes.convert(labels, self.train_scheme)

    def to_file_scheme(self, labels: Sequence[str]) -> list[str]:
        if self.file_scheme == "none" or self.file_scheme == self.train_scheme:
            return list(labels)
        return schemes.convert(labels, self.file_scheme)

    def encode_rows(self, batch: dict[str, list]) -> dict[str, list]:
        """`datasets.map(batched=True)` function: tokens (and labels) to ids."""
        encoded = self.encoder.encode(batch["tokens"])
        if "labels" in batch:
            encoded["label_ids"] = [[self.label_index[label] for label in self.to_train_scheme(labels)]
                                    for labels in batch["labels"]]
        return encoded

    def encode_dataset(self, dataset: Dataset) -> Dataset:
        return dataset.map(self.encode_rows, batched=True, batch_size=1000,
                           desc="encoding").select_columns(ENCODED_COLUMNS)


def build_preprocessor(data: DataConfig, model: ModelConfig, corpora: dict[str, Dataset],
                       file_scheme: str) -> tuple[Preprocessor, dict[str, "torch.Tensor"]]:  # noqa: F821
    """Vocabularies from the training split, labels from every split; pretrained vectors by word id."""
    vectors = {}
    if model.pretrained_vectors:
        vectors = read_vectors(model.pretrained_vectors, model.word_dim, model.pretrained_max_words)
    words = build_word_tokenizer(corpora["train"]["tokens"], data.min_freq, data.lowercase, extra_words=vectors)
    chars = build_char_tokenizer(corpora["train"]["tokens"])
    all_labels = [labels for ds in corpora.values() for labels in ds["labels"]]
    if file_scheme == "none":
        train_scheme, labels = "none", sorted({label for seq in all_labels for label in seq})
    else:
        train_scheme = data.train_scheme
        labels = span_label_list({span[0] for seq in all_labels for span in schemes.spans(seq)}, train_scheme)
    vocab = words.get_vocab()
    fold = str.lower if data.lowercase else str
    by_id = {vocab[fold(word)]: vector for word, vector in vectors.items() if fold(word) in vocab}
    return Preprocessor(Encoder(words, chars, data.max_word_length), labels, file_scheme, train_scheme), by_id


