"""Tagging data: reading with the recipe's settings, tag-scheme checks, vocabularies, labels, encoding."""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import replace

import pyarrow.compute as pc
from datasets import Dataset

from ..config import DataConfig, Recipe
from ..errors import InputError, SeqtagError
from . import readers, schemes
from .contextual import pair_inputs
from .featurizer import Featurizer, LabelCodec, reads_characters, span_label_list
from .growth import Growth, training_places
from .splits import DataRecord, Prepared, split_sources
from .vectors import added_words, first_words, match_vectors, read_pretrained, record_coverage
from .vocab import build_char_tokenizer, build_word_tokenizer

log = logging.getLogger("seqtag")


def read_corpus(config: DataConfig, source: str, cache_dir: str | None = None) -> Dataset:
    """Rows {"tokens", "labels", "lines"} from a file (or hub split) with the recipe's reader settings."""
    return readers.read_rows("tagging", config, source, cache_dir)


def sentence_lengths(dataset: Dataset) -> list[int]:
    """Token count per row, read from Arrow without materialising the rows."""
    return pc.list_value_length(dataset.data.column("tokens")).to_pylist()


_POSITION = re.compile(r"\(sentence (\d+), token (\d+)\)")


def _positions_as_lines(message: str, lines: list[list[int]]) -> tuple[str, int | None]:
    """`message` with each "(sentence S, token T)" of schemes.detect_scheme written as the file's "(line N)",
    and the first such line."""
    found: list[int] = []

    def as_line(match: re.Match) -> str:
        found.append(lines[int(match[1])][int(match[2])])
        return f"(line {found[-1]})"

    return _POSITION.sub(as_line, message), (found[0] if found else None)


def resolve_scheme(declared: str, dataset: Dataset, source: str) -> str:
    """The declared scheme, or the one the training labels show when it is "auto"."""
    if declared != "auto":
        return declared
    try:
        return schemes.detect_scheme(dataset["labels"])
    except ValueError as err:
        message, line = _positions_as_lines(str(err), dataset["lines"])
        raise InputError(source, line, f"{message}: set it with --set data.scheme=iob1|iob2|bioes.") from None


def _has_prefixes(dataset: Dataset) -> bool:
    return any(schemes._has_span_prefix(label) for labels in dataset["labels"] for label in labels)


def check_scheme(dataset: Dataset, scheme: str, source: str, training: tuple[Dataset, str] | None = None) -> None:
    """Every label sequence must follow the scheme; the error points at the offending line.

    `training` (the training rows and their file) names the file the scheme comes from, and with scheme
    "none" finds the mismatch that scores nothing: plain training labels (DRUG) beside prefixed ones (B-DRUG)
    in this file, which could never be predicted."""
    if scheme == "none":
        if training is not None and training[1] != source and not _has_prefixes(training[0]):
            for labels, lines in zip(dataset["labels"], dataset["lines"]):
                for label, line in zip(labels, lines):
                    if schemes._has_span_prefix(label):
                        raise InputError(source, line, f"label {label!r} has a span prefix, but the labels of "
                                         f"the training file {training[1]} have none (they are plain, scheme "
                                         "none), so this label can never be predicted; give both files the same "
                                         "scheme: B-/I- prefixes in both, or in neither")
        return
    origin = f" of the training file {training[1]}" if training is not None and training[1] != source else ""
    for labels, lines in zip(dataset["labels"], dataset["lines"]):
        problem = schemes.find_violation(labels, scheme)
        if problem is not None:
            index, reason = problem
            raise InputError(source, lines[index], f"label {labels[index]!r} breaks the {scheme.upper()} scheme"
                             f"{origin}: {reason}. Fix the label, or declare the file's scheme with --set "
                             "data.scheme=...")


def prepare_tagging(recipe: Recipe, cache_dir: str | None = None, growth: Growth | None = None) -> Prepared:
    """Read every split, check the tag scheme, and build the vocabularies and the label list from the
    training split only (dev and test labels never seen in training are counted, reported and scored as
    errors); then encode every split."""
    data, model = recipe.data, recipe.model
    sources = split_sources(data)
    if growth is not None and growth.replay:
        sources["replay"] = growth.replay
    rows = {}
    for split, source in sources.items():
        rows[split] = read_corpus(data, source, cache_dir)
        log.info("%s: %s from %s", split, readers.describe(rows[split]), source)
        if growth is not None:
            rows[split] = growth.rename(rows[split], "labels")
    if growth is not None:
        growth.check_map(sources.values())
    file_scheme = resolve_scheme(data.scheme, rows["train"], sources["train"])
    for split, source in sources.items():
        check_scheme(rows[split], file_scheme, source, training=(rows["train"], sources["train"]))
    vectors, record = {}, DataRecord()
    lm_chars, language_models = pair_inputs(model, growth)
    if growth is not None:
        featurizer = _grown_featurizer(growth, rows, sources, file_scheme, data, lm_chars)
        if model.pretrained_vectors:  # fine-tuning: rows for the words the run adds (finetune.py keeps only those)
            vectors = read_pretrained(model, added_words(featurizer.words, growth.featurizer.words), 0)
    else:
        train_tokens = rows["train"]["tokens"]
        if model.pretrained_vectors:
            # One pass over the vector file: the training words must be known first, so only their vectors
            # (and the file's first words, which join the vocabulary) are kept.
            fold = str.lower if data.lowercase else str
            counts = Counter(fold(word) for sentence in train_tokens for word in sentence)
            vectors = read_pretrained(model, [w for w, c in counts.items() if c >= data.min_freq],
                                      model.pretrained_max_words)
        words = build_word_tokenizer(train_tokens, data.min_freq, data.lowercase,
                                     extra_words=first_words(vectors, model.pretrained_max_words))
        if model.pretrained_vectors:
            vocab = words.get_vocab()
            known = {word: count for word, count in counts.items() if word in vocab}
            record.pretrained_coverage = record_coverage(vectors, known, data.lowercase,
                                                         counts.total() - sum(known.values()))
        chars = build_char_tokenizer(train_tokens) if reads_characters(model.embedders) else None
        train_labels = rows["train"]["labels"]
        if file_scheme == "none":
            codec = LabelCodec(sorted({label for labels in train_labels for label in labels}))
        else:
            types = {span[0] for labels in train_labels for span in schemes.spans(labels)}
            codec = LabelCodec(span_label_list(types, data.train_scheme), file_scheme, data.train_scheme)
        featurizer = Featurizer(words, chars, codec, data.max_word_length, lm_chars=lm_chars)
    words, chars, codec = featurizer.words, featurizer.chars, featurizer.labels
    encoded, unseen = {}, {}
    for split, dataset in rows.items():
        encoded[split], report = featurizer.encode_dataset(dataset, sources[split])
        if report["unseen_labels"]:
            unseen[split] = report["unseen_labels"]
    sizes = {"words": words.get_vocab_size(), "chars": chars.get_vocab_size() if chars else 0, "labels": len(codec)}
    if featurizer.lm_chars is not None:
        sizes["lm_chars"] = featurizer.lm_chars.get_vocab_size()
    return Prepared(sources, rows, encoded, sizes, featurizer=featurizer,
                    pretrained=match_vectors(vectors, words.get_vocab(), data.lowercase),
                    record=replace(record, unseen_labels=unseen), language_models=language_models)


def _grown_featurizer(growth: Growth, rows: dict, sources: dict, file_scheme: str, data: DataConfig,
                      lm_chars) -> Featurizer:
    """The parent's featurizer grown by the training (and replay) rows: new words, characters and labels appended."""
    parent = growth.featurizer.labels
    if (file_scheme == "none") != (parent.train_scheme == "none"):
        kind = "plain tags (scheme none)" if parent.train_scheme == "none" else f"spans ({parent.file_scheme})"
        raise SeqtagError(f"{sources['train']}: the labels are in scheme {file_scheme}, but the model predicts "
                          f"{kind}; give data of the model's kind, or declare the scheme with --set data.scheme=...")
    training, places = training_places(rows, sources, "labels", "lines", span_types=file_scheme != "none")
    words = [word for split in training for sentence in rows[split]["tokens"] for word in sentence]
    codec = growth.labels(places, span_types=file_scheme != "none")
    codec.file_scheme = file_scheme
    return Featurizer(growth.words(words, whole=True, min_freq=data.min_freq), growth.chars(words), codec,
                      data.max_word_length, lm_chars=lm_chars)
