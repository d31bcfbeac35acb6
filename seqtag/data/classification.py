"""Classification data: labelled texts read with the recipe's settings, the seeded dev split, tokenizers,
classes and encoding."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from ..config import DataConfig, Recipe
from ..errors import SeqtagError
from . import text_readers
from .readers import read_rows
from .contextual import pair_inputs
from .featurizer import Featurizer, LabelCodec, reads_characters
from .growth import Growth, training_places
from .splits import DataRecord, Prepared, split_sources
from .vectors import added_words, counts_from_ids, first_words, match_vectors, read_pretrained, record_coverage
from .vocab import PAD, UNK, WORD, build_char_tokenizer, build_text_tokenizer

log = logging.getLogger("seqtag")

FAMILY = "classification"  # the task family these rows are read for

def read_texts(config: DataConfig, source: str, cache_dir: str | None = None) -> Dataset:
    """Rows {"text", "label", "line"} from a file, files, folder or hub split; skipped rows are logged."""
    return text_readers.drop_problems(read_rows(FAMILY, config, source, cache_dir), source)


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


def prepare_classification(recipe: Recipe, cache_dir: str | None = None, growth: Growth | None = None) -> Prepared:
    """Read labelled texts, hold out seeded dev (and, if asked, test) splits where no file is given, build the
    tokenizers and the class list from the training texts only, and encode every split. A dev or test class
    never seen in training is counted, reported and scored as an error. A fine-tuning run's `growth` starts from
    the parent model's tokenizers and classes instead, grown by its training (and replay) texts."""
    data, model = recipe.data, recipe.model
    if model.pretrained_vectors and data.tokenizer != WORD:
        raise SeqtagError(f"model.pretrained_vectors needs data.tokenizer 'word'; {data.tokenizer!r} pieces "
                          "have no pretrained word vectors.")
    sources = split_sources(data)
    if growth is not None and growth.replay:
        sources["replay"] = growth.replay
    rows = {}
    for split, source in sources.items():
        rows[split] = read_texts(data, source, cache_dir)
        log.info("%s: read %d texts from %s", split, len(rows[split]), source)
        if growth is not None:
            rows[split] = growth.rename(rows[split], "label")
    if growth is not None:
        growth.check_map(sources.values())
    labels = label_list(rows["train"]["label"])
    if len(labels) < 2 and growth is None:
        raise SeqtagError(f"{sources['train']}: every training text has the label {labels[0]!r}; a classifier "
                          "needs at least two labels.")
    record = DataRecord()
    fractions = {"test": data.test_fraction, "dev": data.dev_fraction}
    held = [split for split, fraction in fractions.items() if split not in rows and fraction > 0]
    if held:
        # Test first, then dev from the rest, both seeded; the record goes into config.json.
        total, seed = len(rows["train"]), data.split_seed
        for split in held:
            size = max(1, round(fractions[split] * total))
            rows["train"], rows[split] = hold_out(rows["train"], size, seed, split)
            sources[split] = f"{sources['train']} (held-out {split})"
        record.split = {"seed": seed, **{f"{s}_fraction": fractions[s] for s in held},
                           **{s: len(rows[s]) for s in ("train", *held)}}
        log.info("held out of the training texts (seed %d): %s", seed,
                 ", ".join(f"{s} {len(rows[s])}" for s in held))
        # The held-out texts' classes come from the training file; the list is rebuilt from what is left.
        labels = label_list(rows["train"]["label"])
    vectors: dict = {}
    lm_chars, language_models = pair_inputs(model, growth)
    if growth is not None:
        featurizer = _grown_featurizer(growth, rows, sources, data, lm_chars)
        if model.pretrained_vectors:  # fine-tuning: rows for the words the run adds (finetune.py keeps only those)
            vectors = read_pretrained(model, added_words(featurizer.words, growth.featurizer.words), 0)
    else:
        texts = rows["train"]["text"]
        words = build_text_tokenizer(texts, data.tokenizer, data.vocab_size, data.min_freq, data.lowercase,
                                     data.normalization)
        if model.pretrained_vectors:
            # The trained vocabulary is the training words: read their vectors (one pass), then the file's
            # first words join it.
            vectors = read_pretrained(model, set(words.get_vocab()) - {PAD, UNK}, model.pretrained_max_words)
            add_words(words, first_words(vectors, model.pretrained_max_words))
        chars = None
        if reads_characters(model.embedders):
            chars = build_char_tokenizer(Featurizer(words, None, None, data.max_word_length, raw_text=True).tokens(texts))
        featurizer = Featurizer(words, chars, LabelCodec(labels), data.max_word_length, raw_text=True,
                                max_length=data.max_length, lm_chars=lm_chars)
    words, chars, labels = featurizer.words, featurizer.chars, featurizer.labels.labels
    encoded, record.truncated = {}, {}
    for split, dataset in rows.items():
        encoded[split], report = featurizer.encode_dataset(dataset, sources[split])
        record.truncated[split] = report["truncated"]
        if report["unseen_labels"]:
            record.unseen_labels[split] = report["unseen_labels"]
    pretrained = {}
    if model.pretrained_vectors:
        vocab = words.get_vocab()
        pretrained = match_vectors(vectors, vocab, data.lowercase)
        if growth is None:
            ids = encoded["train"].data.column("word_ids").combine_chunks().flatten().to_numpy()
            counts, unknown = counts_from_ids([ids], vocab, skip=[PAD], unknown=UNK)
            record.pretrained_coverage = record_coverage(vectors, counts, data.lowercase, unknown)
    sizes = {"words": words.get_vocab_size(), "chars": chars.get_vocab_size() if chars else 0, "labels": len(labels)}
    if featurizer.lm_chars is not None:
        sizes["lm_chars"] = featurizer.lm_chars.get_vocab_size()
    return Prepared(sources, rows, encoded, sizes, featurizer=featurizer, pretrained=pretrained, record=record,
                    language_models=language_models)


def _grown_featurizer(growth: Growth, rows: dict, sources: dict, data: DataConfig, lm_chars) -> Featurizer:
    """The parent's featurizer grown by the training (and replay) texts: new words, characters and classes."""
    training, places = training_places(rows, sources, "label", "line", span_types=False)
    texts = [text for split in training for text in rows[split]["text"]]
    words = growth.words(texts, whole=False, min_freq=data.min_freq, max_added=data.vocab_size)
    parent = growth.featurizer
    chars = growth.chars(word for tokens in Featurizer(words, None, None, 1, raw_text=True).tokens(texts)
                         for word in tokens) if parent.chars is not None else None
    return Featurizer(words, chars, growth.labels(places, span_types=False), data.max_word_length, raw_text=True,
                      max_length=data.max_length, lm_chars=lm_chars)


def add_words(tokenizer: Tokenizer, extra: list[str]) -> None:
    """Append `extra` words (pretrained vectors' first words) to a trained word-level tokenizer's vocabulary,
    normalized as it normalizes text; a word its pre-tokenizer would split ("don't") could never be looked up."""
    vocab = tokenizer.get_vocab()
    normalize = tokenizer.normalizer.normalize_str if tokenizer.normalizer else str
    for word in extra:
        word = normalize(word)
        if word not in vocab and [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(word)] == [word]:
            vocab[word] = len(vocab)
    tokenizer.model = WordLevel(vocab, unk_token=UNK)
