"""Word and character vocabularies as HF `tokenizers` objects, and the one encode function.

Both vocabularies are WordLevel tokenizers saved as JSON beside the model. Input is
always pre-tokenized (a sentence is a list of words), so no pre-tokenizer is set:
each word is looked up whole, and each character of a word is looked up whole.
Ids 0 and 1 are padding and unknown in both.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from dataclasses import dataclass

from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE, WordLevel, WordPiece

from ..registry import Registry

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1



@dataclass(frozen=True)
class TokenizerKind:
    """A data.tokenizer value: the task families that train one, and for raw-text classification the
    `tokenizers` model and trainer it is built from."""

    families: tuple[str, ...]
    text_model: tuple | None = None


TOKENIZERS = Registry("data.tokenizer", "tokenizer")
WORD, BPE_PIECES, WORDPIECE, CHAR = "word", "bpe", "wordpiece", "char"
TOKENIZERS.register(WORD, TokenizerKind(("classification", "lm"), (WordLevel, trainers.WordLevelTrainer)))
TOKENIZERS.register(BPE_PIECES, TokenizerKind(("classification", "lm"), (BPE, trainers.BpeTrainer)))
TOKENIZERS.register(WORDPIECE, TokenizerKind(("classification",), (WordPiece, trainers.WordPieceTrainer)))
TOKENIZERS.register(CHAR, TokenizerKind(("lm",)))


def tokenizers_of(family: str) -> list[str]:
    """The data.tokenizer values a task family trains (empty: it reads the files' own tokens)."""
    return [name for name, kind in TOKENIZERS.items() if family in kind.families]


def _word_level(counts: Counter, min_freq: int, extra: Iterable[str] = (), max_size: int | None = None,
                first: Iterable[str] = ()) -> dict[str, int]:
    """<pad>, <unk>, then `first`, then items by falling count (at most `max_size` entries in all), then `extra`."""
    # Sorting by (-count, text) keeps ids identical from run to run, so a resumed run matches.
    vocab = {PAD: PAD_ID, UNK: UNK_ID}
    for item in first:
        vocab.setdefault(item, len(vocab))
    for item, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < min_freq or (max_size and len(vocab) >= max_size):
            break
        if item not in vocab:
            vocab[item] = len(vocab)
    for item in extra:
        if item not in vocab:
            vocab[item] = len(vocab)
    return vocab


def build_word_tokenizer(sentences: Iterable[Sequence[str]], min_freq: int = 1, lowercase: bool = True,
                         extra_words: Iterable[str] = ()) -> Tokenizer:
    """Word vocabulary from training sentences; `extra_words` (e.g. from pretrained vectors) join it."""
    fold = str.lower if lowercase else str
    counts = Counter(fold(word) for sentence in sentences for word in sentence)
    tokenizer = Tokenizer(WordLevel(_word_level(counts, min_freq, map(fold, extra_words)), unk_token=UNK))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer


def build_char_tokenizer(sentences: Iterable[Sequence[str]], min_freq: int = 1) -> Tokenizer:
    """Character vocabulary, case kept: the character encoder is where capitalisation is seen."""
    counts = Counter(char for sentence in sentences for word in sentence for char in word)
    return Tokenizer(WordLevel(_word_level(counts, min_freq), unk_token=UNK))


def build_label_list(sentences: Iterable[Sequence[str]]) -> list[str]:
    """Sorted labels, with "O" first when present so id 0 is 'outside' for span tasks."""
    labels = sorted({label for sentence in sentences for label in sentence})
    if "O" in labels:
        labels.remove("O")
        labels.insert(0, "O")
    return labels


def build_text_tokenizer(texts: Sequence[str], kind: str = WORD, vocab_size: int = 30_000, min_freq: int = 1,
                         lowercase: bool = True, normalization: str = "none") -> Tokenizer:
    """A tokenizer for raw text, trained on the training texts: whole words, BPE or WordPiece.

    Text is normalized (optional NFC/NFKC, then optional lowercasing) and split at spaces
    and punctuation before the model sees it; ids 0 and 1 are padding and unknown.
    """
    model, trainer = TOKENIZERS[kind].text_model
    tokenizer = Tokenizer(model(unk_token=UNK))
    steps = {"nfc": [normalizers.NFC()], "nfkc": [normalizers.NFKC()]}.get(normalization, [])
    steps += [normalizers.Lowercase()] if lowercase else []
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainer(vocab_size=vocab_size, min_frequency=min_freq,
                                                 special_tokens=[PAD, UNK], show_progress=False), length=len(texts))
    return tokenizer  # the trainer puts the special tokens first, in order: PAD_ID, UNK_ID


def _distinct(sentences: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each distinct word with its index in first-seen order (words repeat a lot: Zipf)."""
    distinct: dict[str, int] = {}
    for sentence in sentences:
        for word in sentence:
            distinct.setdefault(word, len(distinct))
    return distinct


def _lookup(tokenizer: Tokenizer, items: list[str]) -> list[int]:
    """One id per item: a WordLevel model without pre-tokenizer looks each pre-tokenized item up whole."""
    return tokenizer.encode([item or PAD for item in items], is_pretokenized=True).ids if items else []


def char_index(chars: Tokenizer) -> dict[str, int]:
    """The character vocabulary as a dict, for `spell`.

    The character tokenizer is WordLevel with no normalizer, so its id for one character is
    exactly a look-up in its vocabulary (unknown → <unk>); a dict does that without building
    an Encoding for every character, which matters on the prediction path.
    """
    return chars.get_vocab()


def spell(char_ids: dict[str, int], sentences: Sequence[Sequence[str]], max_word_length: int,
          distinct: dict[str, int] | None = None) -> list[list[list[int]]]:
    """Character ids per word per sentence (from `char_index`), each distinct word spelled out once.

    `distinct` is `_distinct(sentences)` when the caller has it already.
    """
    distinct = _distinct(sentences) if distinct is None else distinct
    get = char_ids.get
    spelled = [[get(char, UNK_ID) for char in word[:max_word_length]] or [UNK_ID] for word in distinct]
    return [[spelled[distinct[word]] for word in sentence] for sentence in sentences]
