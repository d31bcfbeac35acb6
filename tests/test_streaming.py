"""Prediction at any size: streamed in input order, in one or several processes, long inputs read in windows,
file to file, with progress on stderr; bad input to predict() is a clear error."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqtag
from seqtag.streaming import Progress

ROOT = Path(__file__).resolve().parent.parent
DEMO_TEST = ROOT / "recipes" / "data" / "demo.test.conll"
SMALL = {"model.hidden_size": 16, "model.word_dim": 16}


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    out = tmp_path_factory.mktemp("tagger")
    return seqtag.load(seqtag.train("demo", out=out, smoke=True, **SMALL).model_dir)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from test_classification import _csv, _labelled

    folder = tmp_path_factory.mktemp("classifier")
    train = _csv(folder / "train.csv", _labelled())
    return seqtag.load(seqtag.train("sentiment", train=train, out=folder / "run", smoke=True, **SMALL).model_dir)


def _sentences() -> list[str]:
    blocks = DEMO_TEST.read_text(encoding="utf-8").strip().split("\n\n")
    return [" ".join(line.split()[0] for line in block.splitlines()) for block in blocks]


class Counted:
    """An iterator that counts how many items were taken from it."""

    def __init__(self, items):
        self.items, self.taken = iter(items), 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.items)
        self.taken += 1
        return item


def test_predict_stream_reads_lazily_and_gives_predict_results_in_input_order(tagger):
    sentences = _sentences() * 3                      # 180 sentences of varied lengths
    whole = [result.to_dict() for result in tagger.predict(sentences)]
    source = Counted(sentences)
    stream = tagger.predict_stream(source, window=16, batch_size=4)
    first = next(stream)
    assert source.taken == 16, "only the first window was read"
    streamed = [first.to_dict()] + [result.to_dict() for result in stream]
    # Batches hold other sentences than in one call over the list, so the float sums may differ in the last bits.
    assert [(r["tokens"], r["labels"], r["offsets"]) for r in streamed] == \
        [(r["tokens"], r["labels"], r["offsets"]) for r in whole]
    flat = [p for r in streamed for p in r["probabilities"]]
    assert flat == pytest.approx([p for r in whole for p in r["probabilities"]], abs=1e-5)


def test_a_classifier_and_a_language_model_stream_too(classifier, tmp_path):
    texts = ["a gorgeous , witty film", "dull", "", "the plot is a mess"] * 5
    streamed = list(classifier.predict_stream(iter(texts), window=3, top_k=1))
    whole = classifier.predict(texts, top_k=1)
    assert [r.label for r in streamed] == [r.label for r in whole]
    assert [r.probability for r in streamed] == pytest.approx([r.probability for r in whole], abs=1e-5)
    from test_lm import FAST, VERSE, _write

    corpus = _write(tmp_path / "verse.txt", VERSE * 4)
    lm = seqtag.load(seqtag.train("char-lm", train=corpus, out=tmp_path / "lm", smoke=True,
                                  **dict(setting.split("=") for setting in FAST)).model_dir)
    lines = VERSE.splitlines()
    assert list(lm.score_stream(iter(lines), window=2)) == [lm.score(line) for line in lines]


def test_two_workers_give_exactly_the_output_of_one(tagger, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(_sentences() * 2) + "\n", encoding="utf-8")
    one = tagger.predict_file(source, tmp_path / "one.jsonl", window=8)
    two = tagger.predict_file(source, tmp_path / "two.jsonl", window=8, workers=2)
    assert one == two == 120
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_predict_file_writes_what_the_cli_prints_and_leaves_nothing_half_written(tagger, tmp_path):
    from typer.testing import CliRunner

    import cli

    for output in ("jsonl", "conll"):
        target = tmp_path / f"out.{output}"
        tagger.predict_file(DEMO_TEST, target, output=output)
        printed = CliRunner().invoke(cli.app, ["--quiet", "predict", str(tagger.path), str(DEMO_TEST), "--output",
                                               output])
        assert printed.exit_code == 0, printed.output
        assert target.read_text(encoding="utf-8") == printed.stdout
    assert not list(tmp_path.glob(".*.partial"))
    with pytest.raises(seqtag.SeqtagError, match="output is 'xml'; this model \\(tagging\\) writes jsonl or conll"):
        tagger.predict_file(DEMO_TEST, tmp_path / "x", output="xml")


def test_a_sentence_over_max_tokens_is_tagged_in_windows_with_one_warning(tagger, caplog):
    words = [word for sentence in _sentences() * 2 for word in sentence.split()][:700]
    text = "  ".join(words)                            # double spaces: offsets must still land on each word
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        result = tagger.predict([text, "Ada visited Paris ."], max_tokens=100, index_offset=41)
    windowed = [record.getMessage() for record in caplog.records if "max_tokens" in record.getMessage()]
    assert windowed == ["input 42: 700 tokens, more than max_tokens=100: read in 14 windows of at most 100 tokens"]
    sentence = result[0]
    assert sentence.words == words and len(sentence.labels) == len(words) == len(sentence.probabilities)
    assert all(text[start:end] == word for word, (start, end) in zip(sentence.words, sentence.offsets))
    assert set(sentence.labels) <= set(tagger.labels)
    alone = tagger.predict("Ada visited Paris .")
    assert result[1].labels == alone.labels and result[1].probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    # Each window keeps 50 tokens and reads 25 more on either side: tokens 150-199 are read as tokens 125-224
    # are when they are a sentence of their own.
    middle = tagger.predict(" ".join(words[125:225]))
    assert sentence.labels[150:200] == middle.labels[25:75]


def test_a_text_over_max_tokens_is_classified_from_its_windows(classifier, caplog):
    text = " ".join(["a gorgeous , witty film"] * 60)
    with caplog.at_level(logging.WARNING, logger="seqtag"):
        windowed = classifier.predict(text, max_tokens=50)
    assert any("more than max_tokens=50" in record.getMessage() for record in caplog.records)
    assert sum(windowed.probabilities.values()) == pytest.approx(1.0)
    assert windowed.label in classifier.labels


@pytest.mark.slow
def test_a_one_megabyte_line_finishes_in_bounded_memory_with_offsets_on_the_text(tagger, tmp_path):
    line = tmp_path / "long.txt"
    words = [word for sentence in _sentences() for word in sentence.split()]
    text = " ".join(words * (1_000_000 // (len(" ".join(words)) + 1) + 1))[:1_000_000].rsplit(" ", 1)[0]
    line.write_text(text + "\n", encoding="utf-8")
    script = (
        "import json, resource, sys, seqtag\n"
        f"model = seqtag.load({str(tagger.path)!r})\n"
        f"text = open({str(line)!r}, encoding='utf-8').read().rstrip('\\n')\n"
        "result = model.predict(text)\n"
        "ok = all(text[s:e] == w for w, (s, e) in zip(result.words, result.offsets))\n"
        "print(json.dumps({'tokens': len(result.words), 'offsets_ok': ok,\n"
        "                  'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["offsets_ok"] and figures["tokens"] > 150_000
    assert figures["peak_mib"] < 1200, figures           # 2.2 GB before windows (issue 18)
    assert "more than max_tokens=4096" in done.stderr


def test_progress_writes_a_line_every_interval_and_a_last_one_off_a_terminal():
    stream = io.StringIO()
    meter = Progress(total=10, unit="sentences", interval=0.0, stream=stream)
    meter.advance(4)
    meter.advance(6)
    meter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("predicted 4/10 sentences") and "ETA" in lines[0]
    assert lines[-1].startswith("predicted 10/10 sentences") and "ETA" not in lines[-1]
    quiet = io.StringIO()
    short = Progress(stream=quiet, interval=60.0)
    short.advance(3)
    short.close()
    assert quiet.getvalue() == "", "a short run off a terminal prints nothing"


def test_cli_predict_reports_progress_on_stderr_and_keeps_stdout_clean(tagger, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(_sentences()) + "\n", encoding="utf-8")
    script = ("import sys, seqtag.streaming as s\n"
              "s.Progress.__init__.__defaults__ = (None, 'inputs', 0.0, None)\n"   # a line at every chunk
              "sys.argv = ['seqtag', 'predict', sys.argv[1], sys.argv[2], '--workers', '1']\n"
              "from seqtag.__main__ import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tagger.path), str(source)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stdout.splitlines()) == 60 and all(line.startswith("{") for line in done.stdout.splitlines())
    assert "predicted 60/60 inputs" in done.stderr


@pytest.mark.parametrize("bad", [None, b"bytes", 5])
def test_predict_of_what_is_no_text_is_a_clear_error(tagger, classifier, bad):
    with pytest.raises(seqtag.SeqtagError, match=r"predict\(\) takes a string or a list of"):
        tagger.predict(bad)
    with pytest.raises(seqtag.SeqtagError, match=r"predict\(\) takes a string or a list of strings"):
        classifier.predict(bad)
