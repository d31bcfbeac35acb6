"""Word and character vocabularies as HF `tokenizers` objects, and the one encode function.

Both vocabularies are WordLevel tokenizers saved as JSON beside the model. Input is
always pre-tokenized (a sentence is a list of words), so no pre-tokenizer is set:
each word is looked up whole, and each character of a word is looked up whole.
Ids 0 and 1 are padding and unknown in both.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, normalizers
from tokenizers.models import WordLevel

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def _word_level(counts: Counter, min_freq: int, extra: Iterable[str] = ()) -> dict[str, int]:
    # Sorting by (-count, text) keeps ids identical from run to run, so a resumed run matches.
    vocab = {PAD: PAD_ID, UNK: UNK_ID}
    for item, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_freq and item not in vocab:
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


class Encoder:
    """Turns token lists into the id lists the network reads; shared by training and prediction."""

    def __init__(self, words: Tokenizer, chars: Tokenizer, max_word_length: int):
        self.words = words
        self.chars = chars
        self.max_word_length = max_word_length

    def _lookup(self, tokenizer: Tokenizer, items: list[str]) -> list[int]:
        """One id per item: a WordLevel model without pre-tokenizer looks each pre-tokenized item up whole."""
        ids = tokenizer.encode([item or PAD for item in items], is_pretokenized=True).ids if items else []
        assert len(ids) == len(items), "a word-level vocabulary must give exactly one id per item"
        return ids

    def encode(self, sentences: Sequence[Sequence[str]]) -> dict[str, list]:
        """{"word_ids": [[...]], "char_ids": [[[...], ...]]} for a batch of sentences."""
        # Words repeat a lot (Zipf), so each distinct word is looked up and spelled out once,
        # in one tokenizer call for all words and one for all their characters.
        distinct: dict[str, int] = {}
        for sentence in sentences:
            for word in sentence:
                distinct.setdefault(word, len(distinct))
        words = list(distinct)
        distinct_word_ids = self._lookup(self.words, words)
        spellings = [word[: self.max_word_length] or PAD for word in words]
        flat_char_ids = self._lookup(self.chars, [char for spelling in spellings for char in spelling])
        distinct_char_ids, start = [], 0
        for spelling in spellings:
            distinct_char_ids.append(flat_char_ids[start:start + len(spelling)])
            start += len(spelling)
        word_ids = [[distinct_word_ids[distinct[word]] for word in sentence] for sentence in sentences]
        char_ids = [[distinct_char_ids[distinct[word]] for word in sentence] for sentence in sentences]
        return {"word_ids": word_ids, "char_ids": char_ids}
