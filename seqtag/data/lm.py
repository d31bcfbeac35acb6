"""Language-model data: text read into Arrow, tokenized, and served as contiguous token streams.

The path is: files (or a hub split) → a Dataset of lines → a tokenizer trained on the training
lines → a Dataset of token ids per line (Arrow, memory-mapped by `datasets`) → `TokenStream`,
a view of those ids end to end that never copies the corpus → `StreamWindows`, which cuts the
stream into `columns` side-by-side columns and serves truncated-BPTT windows of them.

Three token levels:
* "word": a closed vocabulary (the `vocab_size` most frequent words seen `min_freq` times or
  more; the rest become <unk>), with <eos> closing every line. With format "wikitext" words are
  split at whitespace only, so PTB/WikiText's own <unk> is the model's unknown token.
* "char": every character, line breaks included.
* "bpe": byte-level BPE trained on the training text; nothing is ever unknown.
"""
from __future__ import annotations

import glob
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, Features, Sequence, Value
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE, WordLevel

from ..config import DataConfig, Recipe
from ..errors import InputError, SeqtagError
from .growth import Growth
from .splits import DataRecord, Prepared, split_sources
from .vectors import added_words, counts_from_ids, match_vectors, read_pretrained, record_coverage
from .readers import _unwrap_errors
from .text_readers import WIKITEXT, _line_rows, lines_features, read_text, text_files  # noqa: F401 - re-exported
from .streams import EOS, StreamWindows, TokenStream, encode_lines
from .vocab import BPE_PIECES, CHAR, PAD, UNK, WORD, _word_level

log = logging.getLogger("seqtag")

LINES = lines_features()
ENCODED = Features({"ids": Sequence(Value("int32")), "chars": Value("int32")})


# ---------------------------------------------------------------------------
# Reading


# ---------------------------------------------------------------------------
# Tokenizers


def _char_pre_tokenizer():
    return pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character on its own


def _word_pre_tokenizer(format: str):
    # PTB/WikiText are tokenized already: split at whitespace only, so "<unk>" stays one token.
    return pre_tokenizers.WhitespaceSplit() if format == WIKITEXT else pre_tokenizers.Whitespace()


def build_lm_tokenizer(config: DataConfig, texts: Iterator[list[str]]) -> Tokenizer:
    """Train the tokenizer of `config.tokenizer` on batches of training lines."""
    if config.tokenizer == BPE_PIECES:
        tokenizer = Tokenizer(BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=[PAD, UNK], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(texts, trainer)
        return tokenizer
    counts: Counter = Counter()
    if config.tokenizer == CHAR:
        for batch in texts:
            for text in batch:
                counts.update(text)
        # A large text holds a long tail of characters seen a handful of times (Wikipedia: 1,500 of them); each
        # is a row of the output layer that costs every step and is barely learnt, so min_freq cuts them too.
        tokenizer = Tokenizer(WordLevel(_word_level(counts, config.min_freq), unk_token=UNK))
        tokenizer.pre_tokenizer = _char_pre_tokenizer()
        return tokenizer
    pre_tokenizer = _word_pre_tokenizer(config.format)
    fold = str.lower if config.lowercase else str
    for batch in texts:
        for text in batch:
            counts.update(fold(piece) for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    counts.pop(EOS, None)
    vocab = _word_level(counts, config.min_freq, max_size=config.vocab_size, first=[EOS])
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizer
    if config.lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer  # <eos> is first after <pad> and <unk>: EOS_ID


# ---------------------------------------------------------------------------
# Splitting and encoding


def find_cut(lines: Dataset, fraction: float, whole_lines: bool) -> tuple[int, int]:
    """(row, character) where the last `fraction` of the text begins.

    Raw text is cut at the exact character, inside a line if need be; word-level text at the
    nearest line boundary (a word must not be split).
    """
    lengths = pc.utf8_length(lines.data.column("text")).to_numpy()
    ends = np.cumsum(lengths)
    target = int(ends[-1] * (1 - fraction))
    row = int(np.searchsorted(ends, target, side="right"))  # first row ending after the cut
    start = int(ends[row - 1]) if row else 0
    if whole_lines:
        return (row + 1, 0) if target - start > int(ends[row]) - target and row + 1 < len(ends) else (row, 0)
    return row, target - start


def training_text(lines: Dataset, cut: tuple[int, int] | None, batch_size: int = 1000) -> Iterator[list[str]]:
    """Batches of the lines before `cut` (all lines without one): what the tokenizer is trained on."""
    stop_row, stop_char = cut if cut else (len(lines), 0)
    for first in range(0, stop_row, batch_size):
        yield lines[first:min(first + batch_size, stop_row)]["text"]
    if stop_char:
        yield [lines[stop_row]["text"][:stop_char]]


def encode_text(lines: Dataset, tokenizer: Tokenizer, cut: tuple[int, int] | None = None) -> Dataset:
    """Token ids and character count per line (Arrow, cached); the line at `cut` becomes two rows."""

    def encode(batch: dict, indices: list[int]) -> dict:
        texts = batch["text"]
        if cut and cut[1] and cut[0] in indices:
            at = indices.index(cut[0])
            texts = texts[:at] + [texts[at][:cut[1]], texts[at][cut[1]:]] + texts[at + 1:]
        return {"ids": encode_lines(tokenizer, texts), "chars": [len(t) for t in texts]}

    return _unwrap_errors(lines.map, encode, batched=True, with_indices=True, remove_columns=["text"],
                          features=ENCODED, desc="Tokenizing")


def read_stream(config: DataConfig, tokenizer: Tokenizer, source: str, cache_dir: str | None = None
                ) -> TokenStream:
    """A file (or hub split) read and encoded with a trained model's tokenizer, as one stream."""
    return TokenStream.from_dataset(encode_text(read_text(config, source, cache_dir), tokenizer))


# ---------------------------------------------------------------------------
# Preparation


def prepare_lm(recipe: Recipe, cache_dir: str | None = None, growth: Growth | None = None) -> Prepared:
    """Read the recipe's text, train the tokenizer on the training part and encode every split as a stream.

    Without a dev file, the last `data.dev_fraction` of the training text is the dev text. A fine-tuning run's
    `growth` starts from the parent model's tokenizer, grown by the new training text.
    """
    config, sources = recipe.data, split_sources(recipe.data)
    if recipe.model.pretrained_vectors and config.tokenizer != WORD:
        raise SeqtagError("model.pretrained_vectors needs data.tokenizer 'word' in a language model; characters "
                          "and BPE pieces have no pretrained word vectors.")
    lines = {split: read_text(config, source, cache_dir) for split, source in sources.items()}
    cut, record = None, DataRecord()
    if "dev" not in lines:
        cut = find_cut(lines["train"], config.dev_fraction, whole_lines=config.tokenizer == WORD)
        record.split = {"dev_fraction": config.dev_fraction, "row": cut[0], "character": cut[1]}
        sources["dev"] = f"{sources['train']} (last {config.dev_fraction:.0%})"
    if growth is None:
        tokenizer = build_lm_tokenizer(config, training_text(lines["train"], cut))
    else:
        texts = (text for batch in training_text(lines["train"], cut) for text in batch)
        # The same data.min_freq and data.vocab_size as a new model's vocabulary: each new entry is an output row
        # that costs every step (fine-tuning the contextual-lm pair on 100 MB of text once added 2,810 characters
        # to its 548; a word LM would add every word of a large text). At most vocab_size new ones per run.
        tokenizer = growth.lm_tokenizer(texts, config.min_freq, config.vocab_size)
    log.info("tokenizer: %s, %d tokens", config.tokenizer, tokenizer.get_vocab_size())
    streams: dict[str, TokenStream] = {}
    for split, ds in lines.items():
        encoded = encode_text(ds, tokenizer, cut if split == "train" else None)
        if split == "train" and cut:
            boundary = cut[0] + (1 if cut[1] else 0)  # the cut line's head is the last training row
            streams["train"] = TokenStream.from_dataset(encoded, 0, boundary)
            streams["dev"] = TokenStream.from_dataset(encoded, boundary)
        else:
            streams[split] = TokenStream.from_dataset(encoded)
    for split, stream in streams.items():
        log.info("%s: %d tokens, %d characters from %s", split, len(stream), stream.chars, sources[split])
    check_lengths(config, streams, sources)
    pretrained = {}
    if recipe.model.pretrained_vectors:
        # The vectors do not extend the vocabulary: every vocabulary word is also an output of the softmax.
        # Fine-tuning wants rows for the words the run adds only (finetune.py keeps those).
        vocab = tokenizer.get_vocab()
        words = set(vocab) - {PAD, UNK, EOS} if growth is None else added_words(tokenizer, growth.tokenizer)
        vectors = read_pretrained(recipe.model, words, 0)
        pretrained = match_vectors(vectors, vocab, config.lowercase)
        if growth is None:
            counts, unknown = counts_from_ids(streams["train"].pieces, vocab, skip=[PAD, EOS], unknown=UNK)
            record.pretrained_coverage = record_coverage(vectors, counts, config.lowercase, unknown)
    record.train_tokens = len(streams["train"])
    return Prepared(sources, streams, streams, {"words": tokenizer.get_vocab_size(), "chars": 0, "labels": 0},
                    tokenizer=tokenizer, pretrained=pretrained, record=record)


def check_lengths(config: DataConfig, streams: dict[str, TokenStream], sources: dict[str, str]) -> None:
    """Clear errors for text too short to train on, and notes on what the columns leave out."""
    train = streams["train"]
    if len(train) < config.bptt + 1:
        raise InputError(sources["train"], None,
                         f"the training text has {len(train)} tokens, fewer than one BPTT window "
                         f"(data.bptt + 1 = {config.bptt + 1}); give more text or lower data.bptt")
    if len(train) // config.batch_size < 2:
        raise InputError(sources["train"], None,
                         f"the training text has {len(train)} tokens, too few to cut into data.batch_size="
                         f"{config.batch_size} columns of at least 2; lower data.batch_size")
    if len(streams["dev"]) < 2:
        raise InputError(sources["dev"], None, "the dev text has fewer than 2 tokens; give a longer dev file "
                         "or raise data.dev_fraction")
    windows = StreamWindows(train, config.batch_size, config.bptt)
    if windows.column_length < config.bptt + 1:
        log.warning("training columns hold %d tokens, less than one BPTT window of %d: lower data.batch_size "
                    "for full windows", windows.column_length, config.bptt + 1)
    if windows.dropped:
        log.info("train: the last %d tokens do not fill the %d columns and are left out of training",
                 windows.dropped, config.batch_size)
