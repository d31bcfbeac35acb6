"""Tests for seqtag.text.split_words."""
from __future__ import annotations

import random
import time

import pytest

from seqtag.text import split_words


def tokens(text: str) -> list[str]:
    return [token for token, _, _ in split_words(text)]


def assert_offsets(text: str) -> None:
    """Every token slices back out of the text, in order and without overlap."""
    previous_end = 0
    for token, start, end in split_words(text):
        assert text[start:end] == token
        assert token and not token.isspace()
        assert start >= previous_end
        previous_end = end


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I don't know.", ["I", "do", "n't", "know", "."]),
        ("I'm here", ["I", "'m", "here"]),
        ("John's car", ["John", "'s", "car"]),
        ("we're they've", ["we", "'re", "they", "'ve"]),
        ("she'll, he'd", ["she", "'ll", ",", "he", "'d"]),
        ("can't won't", ["ca", "n't", "wo", "n't"]),
        ("shouldn't've", ["should", "n't", "'ve"]),
        ("Don’t", ["Do", "n’t"]),
        ("it’s", ["it", "’s"]),
        ("DON'T", ["DO", "N'T"]),
        ("O'Brien rock'n'roll", ["O'Brien", "rock'n'roll"]),
        ("the Joneses' house", ["the", "Joneses", "'", "house"]),
        ("'quoted'", ["'", "quoted", "'"]),
    ],
)
def test_clitics(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It costs 3.5 or 1,000.", ["It", "costs", "3.5", "or", "1,000", "."]),
        ("at 10:30, on 12/25/2020", ["at", "10:30", ",", "on", "12/25/2020"]),
        ("$5 and 20%", ["$", "5", "and", "20", "%"]),
        ("a 3.5-inch disk", ["a", "3.5-inch", "disk"]),
        ("rates fell .5 points", ["rates", "fell", ".5", "points"]),
        ("the 1990s and 2nd", ["the", "1990s", "and", "2nd"]),
        ("(1,2)", ["(", "1,2", ")"]),
    ],
)
def test_numbers(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("see https://example.com/a?b=c.", ["see", "https://example.com/a?b=c", "."]),
        ("(http://en.wikipedia.org/wiki/NER)", ["(", "http://en.wikipedia.org/wiki/NER", ")"]),
        ("www.foo.org, or Amazon.com!", ["www.foo.org", ",", "or", "Amazon.com", "!"]),
        ("mail john.doe+x@mail.co.uk now", ["mail", "john.doe+x@mail.co.uk", "now"]),
        ("@jdoe loves #NLP2024!", ["@jdoe", "loves", "#NLP2024", "!"]),
    ],
)
def test_web_tokens(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The U.S. army", ["The", "U.S.", "army"]),
        ("e.g. this, i.e. that", ["e.g.", "this", ",", "i.e.", "that"]),
        ("a Ph.D. student", ["a", "Ph.D.", "student"]),
        ("Mr. Smith of AT&T", ["Mr.", "Smith", "of", "AT&T"]),
        ("state-of-the-art COVID-19", ["state-of-the-art", "COVID-19"]),
    ],
)
def test_abbreviations_and_hyphens(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Wait... what -- really?!", ["Wait", "...", "what", "--", "really", "?", "!"]),
        ("end.Next", ["end", ".", "Next"]),
        ('"Hi," she said;', ['"', "Hi", ",", '"', "she", "said", ";"]),
        ("pre- and post-war", ["pre", "-", "and", "post-war"]),
        ("ok 😀👍", ["ok", "😀", "👍"]),
        ("a\u2013b", ["a", "\u2013", "b"]),
    ],
)
def test_punctuation_and_symbols(text, expected):
    assert tokens(text) == expected


def test_unicode_letters_and_combining_marks():
    text = "naïve café Ångström हिन्दी 東京 cafe\u0301"
    expected = ["naïve", "café", "Ångström", "हिन्दी", "東京", "cafe\u0301"]
    assert tokens(text) == expected


def test_offsets_are_exact():
    text = "  Don’t  panic:\tU.S. stocks fell 3.5% at 10:30 (see http://x.com).\n"
    result = split_words(text)
    assert result[0] == ("Do", 2, 4)
    assert result[1] == ("n’t", 4, 7)
    assert ("U.S.", 16, 20) in result
    assert_offsets(text)


@pytest.mark.parametrize("text", ["", " ", " \t\n \u00a0\u3000", "\u200b\ufeff "])
def test_empty_or_blank_text(text):
    assert split_words(text) == []


def test_offsets_on_random_text():
    alphabet = "ab'’.,:-/@#$%()\"  \t\n1234567890éÅ東\u0301\u200bhttpswww"
    rng = random.Random(0)
    for _ in range(500):
        assert_offsets("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))


def test_long_space_runs_stay_fast():
    text = "x" + " \u200b" * 20000 + " y" + "\u200b " * 20000
    started = time.perf_counter()
    assert tokens(text) == ["x", "y"]
    assert time.perf_counter() - started < 1.0
