"""The Ray Data path (`seqtag.distributed.predict_with_ray`): parts that, joined in name order, are line for line
what a single process writes for the same files in sorted order; the model reaching the actors by its path or
through the object store; a local instance started and stopped, or a running one joined and left running; and
what is refused before Ray starts.

Ray starts at most twice here (a local instance for one job, then one instance shared by the other tests)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import seqtag
from seqtag.distributed import _model_files, _PartPredictor, part_name, predict_with_ray

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["Ada", "Lovelace", "visited", "Paris", "met", "Grace", "Hopper", "in", "Boston", ".", "Zoë", "Müller",
         "Łódź", "東京", "naïve", "Globex", "hired"]


def _sentences(seed: int, count: int) -> list[str]:
    """`count` lines of known words and non-ASCII ones, a few of them empty or only spaces."""
    import random

    chooser = random.Random(seed)
    lines = [" ".join(chooser.choice(WORDS) for _ in range(chooser.randint(1, 9))) for _ in range(count)]
    for position in chooser.sample(range(count), 3):
        lines[position] = chooser.choice(["", "   "])
    return lines


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tagger") / "run"
    return Path(seqtag.train("demo", out=str(out), smoke=True, **{"train.progress_bar": False}).model_dir)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Four files whose sorted order differs from the order they are given in: one with Windows line ends and a
    byte-order mark, one whose last line has no line end, one empty, one of exactly three 8-line parts; a line
    also holds U+2028, which str.splitlines would wrongly take for a line end."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = {"c.txt": _sentences(1, 37), "a.txt": _sentences(2, 21), "empty.txt": [], "b.txt": _sentences(3, 24)}
    lines["a.txt"][4] = "Ada\u2028Lovelace visited Łódź"
    (folder / "c.txt").write_bytes("\ufeff".encode() + "".join(f"{line}\r\n" for line in lines["c.txt"]).encode())
    (folder / "a.txt").write_text("\n".join(lines["a.txt"]), encoding="utf-8")  # no line end after the last
    (folder / "empty.txt").write_bytes(b"")
    (folder / "b.txt").write_text("".join(f"{line}\n" for line in lines["b.txt"]), encoding="utf-8")
    return {name: folder / name for name in ("c.txt", "a.txt", "empty.txt", "b.txt")}


def _lines_of(path: Path) -> list[str]:
    """A text file's lines as `seqtag predict` takes them, written out independently of seqtag's reader."""
    text = path.read_bytes().decode("utf-8-sig")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the line end of the last line starts no new line
    return [line.removesuffix("\r") for line in lines]


@pytest.fixture(scope="module")
def expected(tagger, corpus) -> str:
    """What one process writes for the files in sorted order: `seqtag predict`'s JSON line per input line."""
    model = seqtag.load(tagger)
    lines = [line for path in sorted(corpus.values()) for line in _lines_of(path)]
    assert len(lines) == 37 + 21 + 24
    return "".join(json.dumps(sentence.to_dict(), ensure_ascii=False) + "\n" for sentence in model.predict(lines))


def _joined_parts(out: Path) -> str:
    return "".join(path.read_text(encoding="utf-8") for path in sorted(out.iterdir()))


def _same_output(written: str, expected: str) -> bool:
    """The same sentences, tokens, labels, offsets and spans in the same order, and the same probabilities to
    1e-5: a part's batches hold other sentences than one process's, and a matrix product over another batch size
    may round the last digits otherwise."""
    def parsed(text):
        return [json.loads(line) for line in text.splitlines()]

    def rounded(result):
        return {**result, "probabilities": None, "spans": [{**span, "probability": None} for span in result["spans"]]}

    ours, theirs = parsed(written), parsed(expected)
    assert [rounded(r) for r in ours] == [rounded(r) for r in theirs]
    for mine, reference in zip(ours, theirs):
        values = list(zip(mine["probabilities"], reference["probabilities"]))
        values += [(a["probability"], b["probability"]) for a, b in zip(mine["spans"], reference["spans"])]
        assert all(abs(a - b) <= 1e-5 for a, b in values), (mine, reference)
    return True


def test_an_actor_loads_the_model_from_its_files_bytes_alone(tagger, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the actor writes the files, then removes them
    copy = Path(shutil.copytree(tagger, tmp_path / "model"))
    files = _model_files(copy)
    shutil.rmtree(copy)  # the actor must not need the folder, only the bytes
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        actor = _PartPredictor([files], task="tagging", pretokenized=False, output="jsonl", top_k=None,
                               batch_size=4, threads=2)
        assert torch.get_num_threads() == 2, "each actor uses the threads it reserved CPUs for"
    finally:
        torch.set_num_threads(threads)
    assert not actor.error
    lines = ["Ada Lovelace visited Paris .", "", "Grace met Zoë in 東京"]
    result = actor({"file_index": [0], "part_index": [0], "text": ["\n".join(lines)]})
    sentences = seqtag.load(tagger).predict(lines)
    assert result["output"][0] == "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in sentences)
    assert not list(scratch.iterdir()), "the actor removes the folder it loaded from"


def test_an_actor_writes_pretokenized_conll_as_seqtag_predict_echoes_it(tagger):
    actor = _PartPredictor([str(tagger)], task="tagging", pretokenized=True, output="conll", top_k=None,
                           batch_size=4, threads=torch.get_num_threads())
    result = actor({"file_index": [3], "part_index": [1], "text": ["Ada  Lovelace\tvisited Paris\nBoston"]})
    first, second = seqtag.load(tagger).predict([["Ada", "Lovelace", "visited", "Paris"], ["Boston"]])
    # Each sentence's CoNLL block, then the blank line `seqtag predict` ends it with.
    assert result["output"][0] == ("".join(f"{w}\t{l}\n" for w, l in zip(first.words, first.labels)) + "\n"
                                   + f"Boston\t{second.labels[0]}\n\n")
    assert (result["file_index"][0], result["part_index"][0]) == (3, 1)


def test_an_actor_that_cannot_load_the_model_reports_it_as_the_rows_error(tmp_path):
    actor = _PartPredictor([str(tmp_path / "gone")], task="tagging", pretokenized=False, output="jsonl", top_k=None,
                           batch_size=4, threads=torch.get_num_threads())
    result = actor({"file_index": [0], "part_index": [0], "text": ["Ada"]})
    assert "on the Ray worker at" in result["error"][0] and "no model directory here" in result["error"][0]


def test_part_names_sort_by_file_then_by_place_in_the_file():
    names = [part_name(0, 2), part_name(0, 10), part_name(2, 0), part_name(10, 0), part_name(10, 1, "conll")]
    assert sorted(names) == names
    assert part_name(3, 7) == "part-00003-000007.jsonl"
    wide = (6, 6)  # more than 99,999 files: the job pads every name to the widest
    assert sorted([part_name(100_000, 0, digits=wide), part_name(99_999, 0, digits=wide)])[0].startswith("part-099999")


def test_a_language_model_is_refused_before_ray_starts(tmp_path):
    verse = tmp_path / "verse.txt"
    verse.write_text("To be, or not to be, that is the question.\n" * 20, encoding="utf-8")
    lm = seqtag.train("char-lm", train=str(verse), out=str(tmp_path / "lm"), smoke=True,
                      **{"train.progress_bar": False, "model.hidden_size": 16, "model.word_dim": 8,
                         "model.num_layers": 1, "data.bptt": 8, "data.batch_size": 4, "data.eval_batch_size": 3})
    with pytest.raises(seqtag.SeqtagError, match=r"lm[/\\]model is a language model; use `seqtag generate`"):
        predict_with_ray(lm.model_dir, str(verse), tmp_path / "out")
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_an_out_dir_holding_parts_is_refused(tagger, corpus, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / part_name(0, 0)).write_text("{}\n", encoding="utf-8")
    (tmp_path / "out" / "notes.md").write_text("kept\n", encoding="utf-8")
    with pytest.raises(seqtag.SeqtagError, match=r"out_dir .*out already holds 1 part\(s\) \(part-00000-000000.jsonl, "
                                                 r"\.\.\.\) from an earlier run; give an empty folder"):
        predict_with_ray(tagger, str(corpus["a.txt"]), tmp_path / "out")
    assert (tmp_path / "out" / part_name(0, 0)).read_text(encoding="utf-8") == "{}\n"


def test_inputs_that_name_no_text_file_are_refused(tagger, corpus, tmp_path):
    with pytest.raises(seqtag.SeqtagError, match=r"nothing-\*\.txt: no file matches; give text files"):
        predict_with_ray(tagger, [str(corpus["a.txt"]), str(tmp_path / "nothing-*.txt")], tmp_path / "out")
    with pytest.raises(seqtag.SeqtagError, match=r"is a folder; give the files in it, e.g. '.*\*\.txt'"):
        predict_with_ray(tagger, str(tmp_path), tmp_path / "out")
    table = tmp_path / "reviews.csv"
    table.write_text("text\nfine\n", encoding="utf-8")
    with pytest.raises(seqtag.SeqtagError, match=r"reviews.csv: a .csv file holds csv data, but the Ray path reads"):
        predict_with_ray(tagger, str(table), tmp_path / "out")


def test_without_ray_installed_the_error_says_how_to_install_it(tagger, corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(seqtag.SeqtagError,
                       match=r'needs Ray Data, which is not installed .*; install it with pip install "seqtag\[ray\]"'):
        predict_with_ray(tagger, str(corpus["a.txt"]), tmp_path / "out")


# Ray runs below, last: the instance the fixture starts stays up until the module ends.

@pytest.mark.slow
def test_a_local_instance_is_started_for_the_job_and_its_parts_join_into_the_single_process_output(
        tagger, corpus, expected, tmp_path):
    assert not ray.is_initialized()
    sources = [str(corpus["c.txt"]), str(corpus["empty.txt"].parent / "[ab].txt"), str(corpus["empty.txt"])]
    summary = predict_with_ray(tagger, sources, tmp_path / "out", num_actors=2, lines_per_part=8)
    assert not ray.is_initialized(), "the instance started for the job is shut down after it"
    assert _same_output(_joined_parts(tmp_path / "out"), expected)
    # a.txt: 21 lines in 3 parts, b.txt: 24 in 3, c.txt: 37 in 5, the empty file none.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        *(part_name(0, i) for i in range(3)), *(part_name(1, i) for i in range(3)),
        *(part_name(2, i) for i in range(5))]
    assert {k: summary[k] for k in ("inputs", "rows", "parts", "actors")} == {
        "inputs": 4, "rows": 82, "parts": 11, "actors": 2}


@pytest.fixture(scope="module")
def ray_instance():
    """One local two-CPU instance for the tests below, as a program that called ray.init itself would have."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.slow
def test_the_object_store_route_gives_the_same_parts_and_leaves_a_connected_instance_running(
        ray_instance, tagger, corpus, expected, tmp_path):
    from ray.data import DataContext

    summary = predict_with_ray(tagger, str(corpus["a.txt"].parent / "*.txt"), tmp_path / "out", lines_per_part=8,
                               model_in_object_store=True)
    assert _same_output(_joined_parts(tmp_path / "out"), expected)
    assert DataContext.get_current().enable_progress_bars, "the caller's Ray Data settings are as they were"
    assert summary["actors"] == 2, "one actor per CPU of the instance by default"
    assert ray.is_initialized() and ray.get(ray.put("still up")) == "still up"


@pytest.mark.slow
def test_a_job_given_an_address_joins_that_cluster_and_leaves_it_running(ray_instance, tagger, corpus, expected,
                                                                        tmp_path):
    out = tmp_path / "out"
    script = ("import json, sys\nfrom seqtag.distributed import predict_with_ray\n"
              "print(json.dumps(predict_with_ray(sys.argv[1], sys.argv[2], sys.argv[3], address=sys.argv[4], "
              "num_actors=1, lines_per_part=30)))")
    done = subprocess.run([sys.executable, "-c", script, str(tagger), str(corpus["a.txt"].parent / "*.txt"), str(out),
                           ray_instance], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "Progress bars disabled" not in done.stderr and " INFO " not in done.stderr, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["parts"] == 4  # c.txt's 37 lines in 2 parts, a and b 1 each
    assert _same_output(_joined_parts(out), expected)
    assert ray.get(ray.put("still up")) == "still up", "the joined cluster keeps running"


@pytest.mark.slow
def test_seqtag_predict_with_engine_ray_joins_a_cluster_and_writes_the_parts(ray_instance, tagger, corpus, expected,
                                                                             tmp_path):
    from typer.testing import CliRunner

    import cli

    out = tmp_path / "out"
    done = CliRunner().invoke(cli.app, ["--quiet", "predict", str(tagger), str(corpus["a.txt"].parent / "*.txt"),
                                        "--engine", "ray", "--address", ray_instance, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.splitlines()[-1])["rows"] == 82
    assert _same_output(_joined_parts(out), expected)


def test_the_ray_options_are_checked_before_anything_runs(tagger, corpus, tmp_path):
    from typer.testing import CliRunner

    import cli

    runner = CliRunner()
    cases = [(["--engine", "ray"], "--engine ray writes JSONL parts into a folder: give --out DIR"),
             (["--engine", "spark"], "--engine is 'spark'; give local"),
             (["--out", str(tmp_path / "o")], "--out and --address are for --engine ray")]
    for options, message in cases:
        done = runner.invoke(cli.app, ["predict", str(tagger), str(corpus["b.txt"]), *options])
        assert done.exit_code == 2 and message in done.output, done.output
