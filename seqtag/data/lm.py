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

import bisect
import glob
import logging
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, Features, Sequence, Value
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE, WordLevel
from torch.utils.data import DataLoader

from ..config import DataConfig, Recipe
from ..errors import InputError, SeqtagError
from .batching import IGNORE_INDEX
from .splits import Prepared, split_sources
from .vectors import match_vectors, read_vectors
from .readers import _build, _file_key, _read_lines, _unwrap_errors, load_hub_split
from .vocab import PAD, PAD_ID, UNK, _word_level

log = logging.getLogger("seqtag")

EOS = "<eos>"
EOS_ID = 2  # word level: after <pad> and <unk>
LINES = Features({"text": Value("string")})
ENCODED = Features({"ids": Sequence(Value("int32")), "chars": Value("int32")})


# ---------------------------------------------------------------------------
# Reading


def text_files(spec: str) -> list[str]:
    """The files named by `spec`: comma-separated paths, each of which may be a glob pattern."""
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if glob.has_magic(part):
            matches = sorted(p for p in glob.glob(part) if Path(p).is_file())
            if not matches:
                raise SeqtagError(f"{part}: no file matches this pattern.")
            files.extend(matches)
        else:
            files.append(part)
    if not files:
        raise SeqtagError(f"{spec!r} names no file; give one or more text files, comma-separated or as a glob.")
    return files


def _line_rows(files: list[dict], keep_line_end: bool) -> Iterator[dict]:
    for key in files:
        for _, text in _read_lines(key["path"], key["shown_path"], keep_line_end):
            yield {"text": text}


def read_text(config: DataConfig, source: str, cache_dir: str | None = None) -> Dataset:
    """One row per line of the files (or hub split) in `source`, in order, with a "text" column.

    Character and BPE models keep each line's "\\n" (a line break is a token to predict); word
    models drop it and close the line with <eos> when encoding.
    """
    raw = config.tokenizer != "word"
    if config.format == "hub":
        field = config.text_column if isinstance(config.text_column, str) else "text"
        ds, source = load_hub_split(config.hub_name, source, config.hub_config, cache_dir, {"text_column": field})
        ds = ds.select_columns([field])
        if field != "text":
            ds = ds.rename_column(field, "text")
        # Hub text datasets differ on whether rows end with "\n"; make every row one line that does.
        end = "\n" if raw else ""
        ds = _unwrap_errors(ds.map, lambda b: {"text": [t.rstrip("\r\n") + end for t in b["text"]]},
                            batched=True, features=LINES, desc="Reading lines")
    else:
        files = [_file_key(path) for path in text_files(source)]
        if not any(key["size"] for key in files):
            raise InputError(source, None, "holds no text (it is empty); expected the text to model")
        ds = _build(_line_rows, {"files": files, "keep_line_end": raw}, cache_dir, LINES)
    if not any(pc.any(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0)).as_py()
               for chunk in ds.data.column("text").chunks):  # chunk by chunk: stops at the first real text
        raise InputError(source, None, "holds no text (it is empty or only whitespace); expected the text to model")
    return ds


# ---------------------------------------------------------------------------
# Tokenizers


def _char_pre_tokenizer():
    return pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character on its own


def _word_pre_tokenizer(format: str):
    # PTB/WikiText are tokenized already: split at whitespace only, so "<unk>" stays one token.
    return pre_tokenizers.WhitespaceSplit() if format == "wikitext" else pre_tokenizers.Whitespace()


def build_lm_tokenizer(config: DataConfig, texts: Iterator[list[str]]) -> Tokenizer:
    """Train the tokenizer of `config.tokenizer` on batches of training lines."""
    if config.tokenizer == "bpe":
        tokenizer = Tokenizer(BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=[PAD, UNK], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(texts, trainer)
        return tokenizer
    counts: Counter = Counter()
    if config.tokenizer == "char":
        for batch in texts:
            for text in batch:
                counts.update(text)
        tokenizer = Tokenizer(WordLevel(_word_level(counts, 1), unk_token=UNK))
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


def token_level(tokenizer: Tokenizer) -> str:
    """"word", "char" or "bpe", read from the tokenizer itself."""
    if isinstance(tokenizer.model, BPE):
        return "bpe"
    return "word" if tokenizer.token_to_id(EOS) == EOS_ID else "char"


def encode_lines(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each line; word level closes every line with <eos>."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    if token_level(tokenizer) == "word":
        return [e.ids + [EOS_ID] for e in encodings]
    return [e.ids for e in encodings]


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Text from token ids: characters joined, words spaced with <eos> as a line break, BPE bytes decoded."""
    level = token_level(tokenizer)
    if level == "bpe":
        return tokenizer.decode(ids, skip_special_tokens=True)
    tokens = [tokenizer.id_to_token(i) for i in ids if i != PAD_ID]
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n")


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


# ---------------------------------------------------------------------------
# Streams and windows


class TokenStream:
    """The token ids of a range of encoded rows, end to end.

    The ids stay in the Arrow file that `datasets` memory-maps; the stream holds zero-copy
    numpy views of its record batches, so a corpus ten times larger costs address space,
    not ten times the memory.
    """

    def __init__(self, pieces: list[np.ndarray], chars: int):
        self.pieces = [p for p in pieces if len(p)]
        self.starts = [0]
        for piece in self.pieces:
            self.starts.append(self.starts[-1] + len(piece))
        self.chars = chars

    @classmethod
    def from_dataset(cls, encoded: Dataset, first_row: int = 0, stop_row: int | None = None) -> "TokenStream":
        if encoded._indices is not None:
            encoded = encoded.flatten_indices()
        stop_row = len(encoded) if stop_row is None else stop_row
        pieces, row = [], 0
        for chunk in encoded.data.column("ids").chunks:
            lo, hi = max(first_row, row), min(stop_row, row + len(chunk))
            if lo < hi:
                pieces.append(chunk.slice(lo - row, hi - lo).flatten().to_numpy(zero_copy_only=True))
            row += len(chunk)
        chars = pc.sum(encoded.data.column("chars").slice(first_row, stop_row - first_row)).as_py() or 0
        return cls(pieces, chars)

    def __len__(self) -> int:
        return self.starts[-1]

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Ids at positions [start, stop), copied out of the memory map (only this slice)."""
        start, stop = max(0, start), min(len(self), stop)
        if start >= stop:
            return np.zeros(0, dtype=np.int32)
        first = bisect.bisect_right(self.starts, start) - 1
        parts = []
        while start < stop:
            piece, base = self.pieces[first], self.starts[first]
            end = min(stop, base + len(piece))
            parts.append(piece[start - base:end - base])
            start, first = end, first + 1
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


class StreamWindows(torch.utils.data.Dataset):
    """Truncated-BPTT batches over a stream cut into `columns` contiguous columns.

    Column j holds positions [j·L, (j+1)·L); batch i holds window i of every column, so the
    hidden state after batch i is the right start for batch i+1. Training drops the last
    len % columns tokens (logged); evaluation keeps them, padding the last column, so every
    token but each column's first is predicted. With `backward`, each batch also holds the
    same windows of the reversed stream, for the right-to-left model of a bidirectional pair.
    """

    def __init__(self, stream: TokenStream, columns: int, bptt: int, pad: bool = False, backward: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.stream, self.bptt, self.backward = stream, bptt, backward
        n = len(stream)
        self.column_length = math.ceil(n / columns) if pad else n // columns
        self.dropped = n - self.column_length * columns if not pad else 0
        self.columns = list(range(rank, columns, world_size))  # a rank reads its share of the columns

    def __len__(self) -> int:
        return max(0, math.ceil((self.column_length - 1) / self.bptt))

    def _window(self, index: int, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n, length = len(self.stream), self.column_length
        offset = index * self.bptt
        width = min(self.bptt + 1, length - offset)
        rows = np.full((len(self.columns), width), IGNORE_INDEX, dtype=np.int64)
        for row, column in enumerate(self.columns):
            start = column * length + offset
            stop = min(start + width, (column + 1) * length, n)
            if reverse:  # position p of the reversed stream is n-1-p of the stream
                ids = self.stream.slice(n - stop, n - start)[::-1]
            else:
                ids = self.stream.slice(start, stop)
            rows[row, :len(ids)] = ids
        rows = torch.from_numpy(rows)
        inputs = rows[:, :-1].clamp(min=PAD_ID)  # padding reads as <pad>; its targets are ignored
        return inputs, rows[:, 1:]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inputs, targets = self._window(index, reverse=False)
        batch = {"inputs": inputs, "targets": targets}
        if self.backward:
            batch["backward_inputs"], batch["backward_targets"] = self._window(index, reverse=True)
        return batch


class WindowOrder(torch.utils.data.Sampler):
    """Window indices in stream order, starting where `first_window()` says (0 unless a run resumes mid-epoch)."""

    def __init__(self, count: int, first_window=lambda: 0):
        self.count = count
        self.first_window = first_window

    def __iter__(self):
        first = self.first_window()
        return iter(range(first if 0 < first < self.count else 0, self.count))

    def __len__(self) -> int:
        return self.count  # the whole epoch, so the resumed batch numbers line up with the windows


def window_loader(stream: TokenStream, columns: int, bptt: int, pad: bool, backward: bool = False,
                  rank: int = 0, world_size: int = 1, first_window=lambda: 0) -> DataLoader:
    """Windows in order (the carried hidden state needs it); each item is already a batch."""
    windows = StreamWindows(stream, columns, bptt, pad, backward, rank, world_size)
    return DataLoader(windows, batch_size=None, sampler=WindowOrder(len(windows), first_window))


def read_stream(config: DataConfig, tokenizer: Tokenizer, source: str, cache_dir: str | None = None
                ) -> TokenStream:
    """A file (or hub split) read and encoded with a trained model's tokenizer, as one stream."""
    return TokenStream.from_dataset(encode_text(read_text(config, source, cache_dir), tokenizer))


# ---------------------------------------------------------------------------
# Preparation


def prepare_lm(recipe: Recipe, cache_dir: str | None = None) -> Prepared:
    """Read the recipe's text, train the tokenizer on the training part and encode every split as a stream.

    Without a dev file, the last `data.dev_fraction` of the training text is the dev text.
    """
    config, sources = recipe.data, split_sources(recipe.data)
    lines = {split: read_text(config, source, cache_dir) for split, source in sources.items()}
    cut, record = None, {"split": None}
    if "dev" not in lines:
        cut = find_cut(lines["train"], config.dev_fraction, whole_lines=config.tokenizer == "word")
        record["split"] = {"dev_fraction": config.dev_fraction, "row": cut[0], "character": cut[1]}
        sources["dev"] = f"{sources['train']} (last {config.dev_fraction:.0%})"
    tokenizer = build_lm_tokenizer(config, training_text(lines["train"], cut))
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
        if config.tokenizer != "word":
            raise SeqtagError("model.pretrained_vectors needs data.tokenizer 'word' in a language model; characters "
                              "and BPE pieces have no pretrained word vectors.")
        # The vectors do not extend the vocabulary: every vocabulary word is also an output of the softmax.
        vectors = read_vectors(recipe.model.pretrained_vectors, recipe.model.word_dim,
                               recipe.model.pretrained_max_words)
        pretrained = match_vectors(vectors, tokenizer.get_vocab(), config.lowercase)
    record["train_tokens"] = len(streams["train"])
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
