"""Classification data: labelled texts read with the recipe's settings, the seeded dev split, tokenizers,
classes and encoding."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset

from ..config import DataConfig, Recipe
from ..errors import SeqtagError
from . import text_readers
from .featurizer import Featurizer, LabelCodec, reads_characters
from .splits import Prepared, split_sources
from .vectors import match_vectors, read_vectors
from .vocab import build_char_tokenizer, build_text_tokenizer

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


def label_list(labels: Sequence[str]) -> list[str]:
    """Sorted, numerically when every label is an integer ("2" before "10")."""
    distinct = set(labels)
    numeric = all(label.lstrip("-").isdigit() for label in distinct)
    return sorted(distinct, key=(lambda s: (int(s), s)) if numeric else None)


def prepare_classification(recipe: Recipe, cache_dir: str | None = None) -> Prepared:
    """Read labelled texts, hold out seeded dev (and, if asked, test) splits where no file is given, build the
    tokenizers and the class list from the training texts only, and encode every split. A dev or test class
    never seen in training is counted, reported and scored as an error."""
    data, model = recipe.data, recipe.model
    sources = split_sources(data)
    rows = {}
    for split, source in sources.items():
        rows[split] = read_texts(data, source, cache_dir)
        log.info("%s: read %d texts from %s", split, len(rows[split]), source)
    labels = label_list(rows["train"]["label"])
    if len(labels) < 2:
        raise SeqtagError(f"{sources['train']}: every training text has the label {labels[0]!r}; a classifier "
                          "needs at least two labels.")
    record: dict = {"split": None}
    fractions = {"test": data.test_fraction, "dev": data.dev_fraction}
    held = [split for split, fraction in fractions.items() if split not in rows and fraction > 0]
    if held:
        # Test first, then dev from the rest, both seeded; the record goes into config.json.
        total, seed = len(rows["train"]), data.split_seed
        for split in held:
            size = max(1, round(fractions[split] * total))
            rows["train"], rows[split] = hold_out(rows["train"], size, seed, split)
            sources[split] = f"{sources['train']} (held-out {split})"
        record["split"] = {"seed": seed, **{f"{s}_fraction": fractions[s] for s in held},
                           **{s: len(rows[s]) for s in ("train", *held)}}
        log.info("held out of the training texts (seed %d): %s", seed,
                 ", ".join(f"{s} {len(rows[s])}" for s in held))
        # The held-out texts' classes come from the training file; the list is rebuilt from what is left.
        labels = label_list(rows["train"]["label"])
    texts = rows["train"]["text"]
    words = build_text_tokenizer(texts, data.tokenizer, data.vocab_size, data.min_freq, data.lowercase,
                                 data.normalization)
    chars = None
    if reads_characters(model.embedders):
        chars = build_char_tokenizer(Featurizer(words, None, None, data.max_word_length, raw_text=True).tokens(texts))
    featurizer = Featurizer(words, chars, LabelCodec(labels), data.max_word_length, raw_text=True,
                            max_length=data.max_length)
    encoded, record["truncated"], record["unseen_labels"] = {}, {}, {}
    for split, dataset in rows.items():
        encoded[split], report = featurizer.encode_dataset(dataset, sources[split])
        record["truncated"][split] = report["truncated"]
        if report["unseen_labels"]:
            record["unseen_labels"][split] = report["unseen_labels"]
    pretrained = {}
    if model.pretrained_vectors:
        if data.tokenizer != "word":
            raise SeqtagError(f"model.pretrained_vectors needs data.tokenizer 'word'; {data.tokenizer!r} pieces "
                              "have no pretrained word vectors.")
        vectors = read_vectors(model.pretrained_vectors, model.word_dim, model.pretrained_max_words)
        pretrained = match_vectors(vectors, words.get_vocab(), data.lowercase)
    sizes = {"words": words.get_vocab_size(), "chars": chars.get_vocab_size() if chars else 0, "labels": len(labels)}
    return Prepared(sources, rows, encoded, sizes, featurizer=featurizer, pretrained=pretrained, record=record)
