"""ONNX export (`seqtag export`, seqtag/export.py) and the onnxruntime predictors (seqtag/onnx_predict.py):
the exported folder gives the PyTorch model's results — identical labels and classes, probabilities and
perplexities within 1e-4, the same greedy text — for every family, cell and embedder, on batches padded
from 1 to 100 tokens; it predicts in a process where torch cannot be imported; and int8 runs on both paths."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import seqtag
from seqtag.config import load_recipe
from seqtag.errors import SeqtagError
from seqtag.export import export_onnx
from seqtag.paths import RECIPES_DIR
from seqtag.training import train

from test_pipeline import SHAPE, SMALL, _recipe_files

ROOT = Path(__file__).resolve().parent.parent

onnxruntime = pytest.importorskip("onnxruntime")

LM_SETTINGS = [*SHAPE, "data.bptt=8", "data.batch_size=4"]
WORDS = ("Ada Lovelace visited Paris . Alan met Grace Hopper in Boston Globex hired Marie Curie It rained Oslo "
         "zebra Zanzibar unseen").split()
TOLERANCE = 1e-4


def _model(root: Path, name: str, settings: list[str]) -> Path:
    """A model trained for one smoke step (enough to have weights that are not the initial ones)."""
    folder = root / "-".join([name, *(s.split("=")[-1].strip("[]").replace(",", "+") for s in settings)] or [name])
    base = LM_SETTINGS if name == "char-lm" else SMALL
    folder.mkdir(parents=True)
    recipe = load_recipe(name, [*base, *settings], **_recipe_files(name, folder))
    return train(recipe, folder / "run", smoke=True).model_dir


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def exported(root):
    """name → (PyTorch model dir, exported folder), built on first use."""
    models, folders = {}, {}

    def get(name: str, *settings: str, int8: bool = False) -> tuple[Path, Path]:
        if (name, settings) not in models:
            models[name, settings] = _model(root, name, list(settings))
        model = models[name, settings]
        if (model, int8) not in folders:
            folders[model, int8] = export_onnx(model, model.with_name("onnx-int8" if int8 else "onnx"), int8=int8)
        return model, folders[model, int8]

    return get


def _padded_sentences(seed: int = 0) -> list[list[str]]:
    """One sentence of every length from 1 to 100 tokens, shuffled: one batch holds them all."""
    rng = random.Random(seed)
    sentences = [[rng.choice(WORDS) for _ in range(length)] for length in range(1, 101)]
    rng.shuffle(sentences)
    return sentences


def _assert_same_tagging(torch_model, onnx_model, inputs, **options):
    ours, theirs = torch_model.predict(inputs, **options), onnx_model.predict(inputs, **options)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.words == b.words and a.offsets == b.offsets
        assert a.labels == b.labels
        assert a.probabilities == pytest.approx(b.probabilities, abs=TOLERANCE)
        assert [(s.label, s.text, s.token_start, s.token_end, s.start, s.end) for s in a.spans] == \
               [(s.label, s.text, s.token_start, s.token_end, s.start, s.end) for s in b.spans]
        for x, y in zip(a.spans, b.spans):
            assert x.probability == pytest.approx(y.probability, abs=TOLERANCE)
        assert json.loads(json.dumps(a.to_dict())).keys() == b.to_dict().keys()


# ---------------------------------------------------------------------------
# Equality per family


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_tagger_gives_the_same_labels_and_probabilities_on_heavily_padded_batches(exported, head):
    model, folder = exported("demo", f"model.head={head}")
    torch_model, onnx_model = seqtag.load(model), seqtag.load(folder)
    assert onnx_model.backend == "onnx" and onnx_model.labels == torch_model.labels
    sentences = _padded_sentences()
    _assert_same_tagging(torch_model, onnx_model, sentences, batch_size=128)        # lengths 1..100 in one batch
    raw = ["Ada Lovelace visited Paris on Monday.", "", "Grace  Hopper met\tAlan in Oslo !"]
    _assert_same_tagging(torch_model, onnx_model, raw)                             # offsets, spans, empty input
    _assert_same_tagging(torch_model, onnx_model, [sentences[0] * 3], max_tokens=64)  # windows joined back
    single = onnx_model.predict("Ada visited Boston.")
    assert single.to_dict()["tokens"] == ["Ada", "visited", "Boston", "."]


def test_classifier_gives_the_same_classes_and_probabilities(exported):
    model, folder = exported("sentiment")
    torch_model, onnx_model = seqtag.load(model), seqtag.load(folder)
    texts = [" ".join(words) for words in _padded_sentences(1)] + ["", "good film", "dull plot"]
    ours, theirs = torch_model.predict(texts, top_k=2, batch_size=128), onnx_model.predict(texts, top_k=2, batch_size=128)
    assert [r.label for r in ours] == [r.label for r in theirs]
    for a, b in zip(ours, theirs):
        assert a.probabilities == pytest.approx(b.probabilities, abs=TOLERANCE)
        assert [label for label, _ in a.top_k] == [label for label, _ in b.top_k]
    assert onnx_model.predict("good film", top_k=1).to_dict().keys() == ours[0].to_dict().keys()
    table = Path(model).parent.parent / "train.csv"
    figures, exported_figures = torch_model.evaluate(table), onnx_model.evaluate(table)  # its numpy probabilities
    assert exported_figures["confusion"] == figures["confusion"]
    assert exported_figures["ece"] == pytest.approx(figures["ece"], abs=1e-2)


def test_character_language_model_scores_and_generates_the_same(exported, root):
    model, folder = exported("char-lm")
    torch_model, onnx_model = seqtag.load(model), seqtag.load(folder)
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler"
    ours, theirs = torch_model.score(text), onnx_model.score(text)
    assert ours["tokens"] == theirs["tokens"]
    assert ours["perplexity"] == pytest.approx(theirs["perplexity"], abs=TOLERANCE)
    corpus = Path(model).parent.parent / "verse.txt"
    figures = torch_model.evaluate(corpus), onnx_model.evaluate(corpus)
    assert figures[0]["tokens"] == figures[1]["tokens"]
    assert figures[0]["perplexity"] == pytest.approx(figures[1]["perplexity"], abs=TOLERANCE)
    greedy = torch_model.generate("To be", max_tokens=200, greedy=True)
    assert onnx_model.generate("To be", max_tokens=200, greedy=True) == greedy
    sampled = onnx_model.generate("To", max_tokens=20, temperature=0.8, top_k=5, top_p=0.9, seed=3)
    assert sampled == onnx_model.generate("To", max_tokens=20, temperature=0.8, top_k=5, top_p=0.9, seed=3)
    assert len(sampled) == 22
    with pytest.raises(SeqtagError, match="temperature is 0"):
        onnx_model.generate("To", temperature=0)
    assert [r["tokens"] for r in onnx_model.score_stream(["To be", "or not"])] == [5, 6]


# ---------------------------------------------------------------------------
# Every cell and embedder


@pytest.mark.parametrize("settings", [
    ("model.cell=gru",), ("model.cell=rnn",), ("model.cell=peephole",), ("model.cell=coupled", "model.head=crf"),
    ("model.embedders=[word,char_lstm]",), ("model.embedders=[word]", "model.num_layers=1"),
])
def test_every_cell_and_embedder_exports_faithfully(exported, settings):
    model, folder = exported("demo", *settings)
    _assert_same_tagging(seqtag.load(model), seqtag.load(folder), _padded_sentences(2)[:40], batch_size=64)


@pytest.mark.parametrize("cell", ["gru", "peephole"])
def test_language_models_of_other_cells_carry_their_state(exported, cell):
    model, folder = exported("char-lm", f"model.cell={cell}")
    torch_model, onnx_model = seqtag.load(model), seqtag.load(folder)
    assert torch_model.score("To be, or not")["perplexity"] == pytest.approx(
        onnx_model.score("To be, or not")["perplexity"], abs=TOLERANCE)
    assert onnx_model.generate("To", max_tokens=60, greedy=True) == torch_model.generate("To", max_tokens=60, greedy=True)


def test_pretrained_vectors_and_a_pooled_classifier_of_a_scripted_cell(exported, root):
    vectors = root / "vectors.txt"
    vectors.write_text("good " + " ".join(["0.5"] * 8) + "\nfilm " + " ".join(["-1"] * 8) + "\n", encoding="utf-8")
    model, folder = exported("sentiment", f"model.pretrained_vectors={vectors}", "model.cell=coupled",
                             "model.pooling=last")
    texts = ["good film", "dull plot and a good film", "film"]
    ours, theirs = seqtag.load(model).predict(texts), seqtag.load(folder).predict(texts)
    assert [r.label for r in ours] == [r.label for r in theirs]
    assert [r.probability for r in ours] == pytest.approx([r.probability for r in theirs], abs=TOLERANCE)


# ---------------------------------------------------------------------------
# The folder, loading and its errors


def test_the_folder_is_self_contained_and_names_its_parent(exported):
    model, folder = exported("demo", "model.head=crf")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["char_tokenizer.json", "crf.json", "export.json", "labels.json", "metrics.json", "model.onnx",
                     "word_tokenizer.json"]
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["seqtag_version"] == seqtag.__version__ and manifest["task"] == "tagging"
    assert manifest["parent"]["path"] == str(model.resolve())
    assert len(manifest["parent"]["model_sha256"]) == 64
    assert manifest["checked_difference"] < TOLERANCE
    import onnx

    graph = onnx.load(str(folder / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["word_ids"] == ["batch", "time"] and dims["char_ids"][:2] == ["batch", "time"]


def test_loading_chooses_the_backend_and_refuses_what_cannot_be(exported, root):
    model, folder = exported("demo")
    assert seqtag.load(folder, backend="onnx").backend == "onnx"
    with pytest.raises(SeqtagError, match="make its ONNX folder first"):
        seqtag.load(model, backend="onnx")
    with pytest.raises(SeqtagError, match="is an ONNX export"):
        seqtag.load(folder, backend="torch")
    with pytest.raises(SeqtagError, match="backend is 'tf'"):
        seqtag.load(model, backend="tf")
    with pytest.raises(SeqtagError, match="already an export"):
        export_onnx(folder)
    with pytest.raises(SeqtagError, match="opset 14 or newer"):
        export_onnx(model, root / "old", opset=9)
    with pytest.raises(SeqtagError, match="exists and is not an export"):
        export_onnx(model, model)
    peephole, _ = exported("demo", "model.cell=peephole")
    with pytest.raises(SeqtagError, match="needs opset 16 or newer"):
        export_onnx(peephole, root / "old-loop", opset=15)


def test_onnx_prediction_never_imports_torch(exported, tmp_path):
    tagger_dir, tagger = exported("demo", "model.head=crf")
    classifier = exported("sentiment")[1]
    lm_dir, lm = exported("char-lm")
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed here")
        sys.meta_path.insert(0, NoTorch())
        import seqtag
        tagger = seqtag.load({str(tagger)!r})
        out = {{"tagged": tagger.predict("Ada Lovelace visited Paris .").to_dict(),
                "classes": seqtag.load({str(classifier)!r}).predict(["good film"], top_k=1)[0].to_dict(),
                "text": seqtag.load({str(lm)!r}).generate("To", max_tokens=30, greedy=True)}}
        tagger.predict_file({str(tmp_path / "in.txt")!r}, {str(tmp_path / "out.jsonl")!r})
        # `seqtag predict` too: its option checks and printed lines (outputs.py) need no torch either
        sys.path.insert(0, {str(ROOT)!r})
        import cli
        from typer.testing import CliRunner
        runner = CliRunner()
        printed = runner.invoke(cli.app, ["--quiet", "predict", {str(tagger)!r}, {str(tmp_path / "in.txt")!r}])
        assert printed.exit_code == 0, printed.output
        refused = runner.invoke(cli.app, ["predict", {str(tagger)!r}, {str(tmp_path / "in.txt")!r}, "--top-k", "2"])
        assert refused.exit_code == 2 and "tagger gives one label per token" in refused.output, refused.output
        out["cli"] = [json.loads(line)["labels"] for line in printed.stdout.splitlines()]
        assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
        print(json.dumps(out))
    """)
    (tmp_path / "in.txt").write_text("Alan met Grace .\nIt rained in Oslo .\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["cli"] == [s.labels for s in seqtag.load(tagger_dir).predict(["Alan met Grace .", "It rained in Oslo ."])]
    expected = seqtag.load(tagger_dir).predict("Ada Lovelace visited Paris .").to_dict()
    assert out["tagged"]["labels"] == expected["labels"]
    assert out["text"] == seqtag.load(lm_dir).generate("To", max_tokens=30, greedy=True)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------------------
# int8 and the CLI


def test_int8_on_both_paths(exported):
    model, folder = exported("demo", int8=True)
    sentences = _padded_sentences(3)[:30]
    for quantized in (seqtag.load(folder), seqtag.load(model, quantize="int8")):
        results = quantized.predict(sentences)
        assert [len(r.labels) for r in results] == [len(s) for s in sentences]
        assert all(0 <= p <= 1 for r in results for p in r.probabilities)
    assert json.loads((folder / "export.json").read_text())["int8"] is True
    import onnx

    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul"}, ops
    torch_int8 = seqtag.load(model, quantize="int8")
    assert torch_int8.quantized["int8"], "the LSTM and the head's Linear are quantized"
    with pytest.raises(SeqtagError, match="quantize is 'int4'"):
        seqtag.load(model, quantize="int4")
    with pytest.raises(SeqtagError, match="quantize= is for the PyTorch backend"):
        seqtag.load(folder, quantize="int8")


def test_cli_export_predict_and_evaluate(exported, root):
    from cli import app

    model, _ = exported("demo")
    runner = CliRunner()
    out = root / "cli-onnx"
    done = runner.invoke(app, ["export", str(model), "--format", "onnx", "--out", str(out), "--opset", "17"])
    assert done.exit_code == 0, done.output
    assert (out / "model.onnx").is_file()
    predicted = runner.invoke(app, ["predict", str(out), "-"], input="Ada visited Paris .\n")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout.splitlines()[0])["tokens"] == ["Ada", "visited", "Paris", "."]
    test_file = RECIPES_DIR / "data" / "demo.test.conll"
    ours = json.loads(runner.invoke(app, ["evaluate", str(model), str(test_file), "--json"]).stdout)
    theirs = runner.invoke(app, ["evaluate", str(out), str(test_file), "--json"])
    assert theirs.exit_code == 0, theirs.output
    assert json.loads(theirs.stdout)["f1"] == pytest.approx(ours["f1"], abs=1e-6)
    int8 = runner.invoke(app, ["evaluate", str(model), str(test_file), "--json", "--int8"])
    assert int8.exit_code == 0, int8.output
    change = json.loads(int8.stdout)["int8"]["f1"]
    assert change["int8"] == pytest.approx(ours["f1"] + change["change"])
    bad = runner.invoke(app, ["export", str(model), "--format", "tflite"])
    assert bad.exit_code == 2 and "--format is 'tflite'" in bad.output
