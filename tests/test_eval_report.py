"""`seqtag evaluate` for every family: the per-label table, --json with the confusion matrix (and calibration),
--report DIR (report.html and its PNGs), the metrics behind them on hand-made labels, and the page rendered by
headless Chromium."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import seqtag
from cli import app
from conftest import CONLLU, CONLLU_DEV, CONLLU_TEST, write_ner_splits
from seqtag.config import load_recipe
from seqtag.eval_report import CONFUSION_PNG, RELIABILITY_PNG, REPORT_HTML, worst_items, write_report
from seqtag.metrics import MISSED, SPURIOUS, calibration, span_confusion, tag_scores
from seqtag.training import train

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.num_layers=1"]


def labels(text: str) -> list[str]:
    return text.split()


# -- metrics on hand-made labels -----------------------------------------------


def test_span_confusion_counts_same_extent_type_errors_missed_and_spurious():
    gold = [labels("B-PER I-PER O B-LOC"),   # PER(0,2) found; LOC(3,4) predicted as ORG
            labels("B-ORG O O"),             # ORG missed ...
            labels("B-PER I-PER")]           # PER(0,2): only PER(0,1) predicted, another extent
    predicted = [labels("B-PER I-PER O B-ORG"),
                 labels("O O B-MISC"),       # ... and a spurious MISC
                 labels("B-PER O")]          # PER(0,1): spurious; gold PER(0,2): missed
    confusion = span_confusion(gold, predicted)
    kinds = ["LOC", "MISC", "ORG", "PER"]
    assert list(confusion) == [*kinds, SPURIOUS]
    assert all(list(row) == [*kinds, MISSED] for row in confusion.values())
    cells = {(g, p): n for g, row in confusion.items() for p, n in row.items() if n}
    assert cells == {("PER", "PER"): 1, ("LOC", "ORG"): 1, ("ORG", MISSED): 1, ("PER", MISSED): 1,
                     (SPURIOUS, "MISC"): 1, (SPURIOUS, "PER"): 1}


def test_tag_scores_per_tag_and_confusion():
    scores = tag_scores([labels("NN VB DT"), labels("NN")], [labels("NN NN DT"), labels("VB")])
    assert scores["per_label"]["NN"] == pytest.approx({"precision": 50.0, "recall": 50.0, "f1": 50.0,
                                                       "support": 2, "predicted": 2, "correct": 1})
    assert scores["per_label"]["VB"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 1, "predicted": 1, "correct": 0}
    assert scores["per_label"]["DT"]["f1"] == 100.0
    assert scores["confusion"] == {"DT": {"DT": 1, "NN": 0, "VB": 0}, "NN": {"DT": 0, "NN": 1, "VB": 1},
                                   "VB": {"DT": 0, "NN": 1, "VB": 0}}
    assert scores["macro_f1"] == pytest.approx(50.0)


def test_expected_calibration_error_on_hand_made_probabilities():
    # bin 9: 0.9 and 1.0 (1.0 belongs to the last bin), one right: confidence 95, accuracy 50, gap 45
    # bin 6: four at 0.6, three right: confidence 60, accuracy 75, gap 15
    # bin 3: 0.35, wrong: confidence 35, accuracy 0, gap 35          ECE = (2·45 + 4·15 + 1·35) / 7
    figures = calibration([0.9, 1.0, 0.6, 0.6, 0.6, 0.6, 0.35], [True, False, True, True, True, False, False])
    assert figures["ece"] == pytest.approx(185 / 7)
    table = figures["reliability"]
    assert len(table) == 10 and (table[0]["low"], table[-1]["high"]) == (0.0, 100.0)
    assert [b["count"] for b in table] == [0, 0, 0, 1, 0, 0, 4, 0, 0, 2]
    assert table[9]["confidence"] == pytest.approx(95.0) and table[9]["accuracy"] == 50.0
    assert table[6]["confidence"] == pytest.approx(60.0) and table[6]["accuracy"] == 75.0
    assert table[0]["confidence"] is None and table[0]["accuracy"] is None
    assert calibration([0.8, 0.8], [True, False])["ece"] == pytest.approx(30.0)
    assert calibration([], [])["ece"] == 0.0


def test_worst_items_per_family():
    sentences = [{"tokens": ["a"], "gold": ["X"], "predicted": ["X"], "errors": 0},
                 {"tokens": ["b", "c"], "gold": ["X", "Y"], "predicted": ["Y", "X"], "errors": 2},
                 {"tokens": ["d"], "gold": ["X"], "predicted": ["Y"], "errors": 1}]
    assert [s["number"] for s in worst_items("tagging", sentences)] == [2, 3]
    texts = [{"text": "t1", "gold": "a", "predicted": "b", "confidence": 0.6},
             {"text": "t2", "gold": "a", "predicted": "a", "confidence": 0.99},
             {"text": "t3", "gold": "b", "predicted": "a", "confidence": 0.9}]
    assert [t["number"] for t in worst_items("classification", texts)] == [3, 1]
    lines = [{"line": 1, "text": "x", "tokens": 2, "loss": 1.0}, {"line": 2, "text": "", "tokens": 0, "loss": None},
             {"line": 3, "text": "y", "tokens": 4, "loss": 3.0}]
    assert [line["number"] for line in worst_items("lm", lines)] == [3, 1]
    assert len(worst_items("tagging", sentences * 20)) == 20


def test_report_escapes_the_data_and_marks_errors(tmp_path):
    metrics = {"accuracy": 50.0, "macro_f1": 33.3, "sentences": 1, "tokens": 2,
               "per_label": {"<X>": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1,
                                     "correct": 0}},
               "confusion": {"<X>": {"<X>": 0, "$Y$": 1}, "$Y$": {"<X>": 1, "$Y$": 0}}}
    details = [{"tokens": ["<b>bold</b>", "&amp"], "gold": ["<X>", "$Y$"], "predicted": ["$Y$", "$Y$"], "errors": 1}]
    page = write_report(tmp_path, "tagging", metrics, details, title="model <1> on a&b").read_text()
    assert "<b>bold" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page and "&amp;amp" in page
    assert "model &lt;1&gt; on a&amp;b" in page and "<td>&lt;X&gt;</td>" in page
    assert '<td class="error">&lt;X&gt;</td>' in page, "the wrong label is highlighted"
    assert '<td class="error">$Y$</td>' in page and "<td>$Y$</td>" in page, "the right one is not"
    assert (tmp_path / CONFUSION_PNG).read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / RELIABILITY_PNG).exists(), "only classifiers have a reliability diagram"


def test_the_report_module_imports_neither_torch_datasets_nor_lightning(tmp_path):
    metrics = {"accuracy": 100.0, "confusion": {"a": {"a": 1}},
               "reliability": [{"low": 0.0, "high": 100.0, "count": 1, "confidence": 90.0, "accuracy": 100.0}]}
    code = (f"import sys; from seqtag.eval_report import write_report; "
            f"write_report({str(tmp_path)!r}, 'classification', {metrics!r}, []); "
            f"print(sorted(m for m in ('torch', 'datasets', 'pytorch_lightning', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / RELIABILITY_PNG).read_bytes().startswith(PNG_SIGNATURE)


# -- trained models (one smoke step each: the figures only need a model, not a good one) ------------------------


@pytest.fixture(scope="module")
def pos_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pos")
    files = {}
    for split, text in (("train", CONLLU), ("dev", CONLLU_DEV), ("test", CONLLU_TEST)):
        files[split] = tmp / f"{split}.conllu"
        files[split].write_text(text, encoding="utf-8")
    recipe = load_recipe("ud-pos", [*TINY, "model.char_hidden=4", "model.char_dim=4"], **files)
    return train(recipe, tmp / "run", smoke=True).model_dir, files["test"]


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner")
    files = write_ner_splits(tmp)
    recipe = load_recipe("conll-ner", [*TINY, "model.embedders=[word]"], **files)
    return train(recipe, tmp / "run", smoke=True).model_dir, files["test"]


CLASSIFIER_TRAIN = [("a good and fun film", "pos"), ("great acting , good story", "pos"),
                    ("a bad and boring film", "neg"), ("awful acting , bad story", "neg")]
# The last text's class is one training never saw: always wrong, so always among the worst (and escaped there).
CLASSIFIER_TEST = [("good and moving", "pos"), ("a great and fun story", "pos"), ("a dull and boring film", "neg"),
                   ("awful , bad and boring", "neg"), ("a <b>bad</b> & odd film", "neutral")]


def _csv(path, rows):
    path.write_text("\n".join(["text,label"] + [f'"{t}",{l}' for t, l in rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    files = {"train": _csv(tmp / "train.csv", CLASSIFIER_TRAIN), "test": _csv(tmp / "test.csv", CLASSIFIER_TEST)}
    recipe = load_recipe("sentiment", [*TINY, "model.embedders=[word]"], **files)
    return train(recipe, tmp / "run", smoke=True).model_dir, files["test"]


VERSE = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
         "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n")


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    path = tmp / "verse.txt"
    path.write_text(VERSE * 8, encoding="utf-8")
    recipe = load_recipe("char-lm", [*TINY, "data.bptt=8", "data.batch_size=4", "data.eval_batch_size=3"],
                         train=str(path))
    return train(recipe, tmp / "run", smoke=True).model_dir


def _evaluate(*args):
    result = runner.invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _table_rows(output: str) -> dict[str, list[float]]:
    """The per-label table's rows: label → precision, recall, F1, support."""
    rows = {}
    for line in output.splitlines():
        match = re.fullmatch(r"  (\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)", line)
        if match:
            rows[match[1]] = [float(match[i]) for i in range(2, 6)]
    return rows


def test_pos_tagger_prints_a_per_tag_table_and_json_has_the_tag_confusion(pos_model):
    model, test = pos_model
    printed = _evaluate(model, test).stdout
    assert re.search(r"^  tag\s+precision\s+recall\s+F1\s+support$", printed, re.M)
    figures = json.loads(_evaluate(model, test, "--json").stdout)
    rows = _table_rows(printed)
    assert set(rows) == set(figures["per_label"])
    gold_counts = {"PRON": 1, "VERB": 2, "PUNCT": 2, "NOUN": 1}   # CONLLU_TEST's UPOS tags
    for tag, count in gold_counts.items():
        assert rows[tag][3] == count and figures["per_label"][tag]["support"] == count
        assert rows[tag][2] == pytest.approx(figures["per_label"][tag]["f1"], abs=0.01)
    confusion = figures["confusion"]
    assert sum(n for row in confusion.values() for n in row.values()) == figures["tokens"] == 6
    assert sum(confusion[tag][tag] for tag in confusion) == figures["correct"]
    assert {tag: sum(row.values()) for tag, row in confusion.items() if sum(row.values())} == gold_counts
    assert {"accuracy", "tokens", "sentences", "unseen_labels"} <= set(figures), "the old keys stay"


def test_span_tagger_prints_a_per_type_table_and_json_has_the_span_confusion(ner_model):
    model, test = ner_model
    printed = _evaluate(model, test).stdout
    assert re.search(r"^  type\s+precision\s+recall\s+F1\s+support$", printed, re.M)
    rows = _table_rows(printed)
    assert {kind: rows[kind][3] for kind in ("PER", "LOC", "ORG")} == {"PER": 7, "LOC": 5, "ORG": 1}  # NER_TEST
    figures = json.loads(_evaluate(model, test, "--json").stdout)
    confusion = figures["confusion"]
    assert list(confusion)[-1] == SPURIOUS and all(list(row)[-1] == MISSED for row in confusion.values())
    for kind, scores in figures["per_label"].items():
        # Each gold span is counted once in its row; each predicted one once in its column.
        assert sum(confusion[kind].values()) == scores["support"]
        assert sum(row.get(kind, 0) for row in confusion.values()) == scores["predicted"]
        assert confusion[kind][kind] == scores["correct"]
    assert {"precision", "recall", "f1", "per_label", "gold_spans"} <= set(figures)


def test_classifier_prints_a_per_class_table_and_json_has_confusion_and_calibration(classifier):
    model, test = classifier
    printed = _evaluate(model, test).stdout
    rows = _table_rows(printed)
    assert {label: row[3] for label, row in rows.items()} == {"neg": 2, "pos": 2, "neutral": 1}
    figures = json.loads(_evaluate(model, test, "--json").stdout)
    assert f"expected calibration error {figures['ece']:.2f}" in printed
    assert {"accuracy", "macro_f1", "per_label", "confusion", "texts", "unseen_labels"} <= set(figures)
    assert sum(n for row in figures["confusion"].values() for n in row.values()) == 5
    assert figures["unseen_labels"] == {"neutral": 1}
    predictions = seqtag.load(model).predict([text for text, _ in CLASSIFIER_TEST])
    expected = calibration([p.probability for p in predictions],
                           [p.label == gold for p, (_, gold) in zip(predictions, CLASSIFIER_TEST)])
    assert figures["ece"] == pytest.approx(expected["ece"])
    assert [b["count"] for b in figures["reliability"]] == [b["count"] for b in expected["reliability"]]


def test_language_model_counts_unknown_tokens_and_scores_each_line(char_lm, tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("To be, or not to be\nΩЖ☃ to be Ж\nthe question\n", encoding="utf-8")  # 4 unseen characters
    lm = seqtag.load(char_lm)
    figures = lm.evaluate(heldout)
    text_tokens = len(heldout.read_text(encoding="utf-8"))
    assert figures["unknown_tokens"] == 4
    assert figures["unknown_rate"] == pytest.approx(100 * 4 / text_tokens)
    assert figures["bits_per_token"] == pytest.approx(figures["loss"] / math.log(2))
    assert "details" not in figures, "details only when asked for"
    detailed = lm.evaluate(heldout, details=True)
    lines = detailed.pop("details")
    assert detailed == pytest.approx(figures), "details change no figure"
    assert [line["text"] for line in lines] == ["To be, or not to be", "ΩЖ☃ to be Ж", "the question"]
    # Every predicted token belongs to one line, and the lines' losses add up to the whole.
    assert sum(line["tokens"] for line in lines) == figures["tokens"]
    total = sum(line["loss"] * line["tokens"] for line in lines if line["tokens"])
    assert total == pytest.approx(figures["loss"] * figures["tokens"], rel=1e-4)
    printed = _evaluate(char_lm, heldout).stdout
    assert "perplexity" in printed and "bits/token" in printed and "unknown tokens 4 " in printed
    shown = json.loads(_evaluate(char_lm, heldout, "--json").stdout)
    assert shown["unknown_tokens"] == 4 and "details" not in shown


# -- --report ------------------------------------------------------------------


def test_report_for_each_family_writes_the_page_and_pngs(pos_model, ner_model, classifier, char_lm, tmp_path):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text(VERSE, encoding="utf-8")
    cases = {"pos": (*pos_model, ["tag"]), "ner": (*ner_model, ["entity type", "missed"]),
             "cls": (*classifier, ["class", 'id="reliability"']), "lm": (char_lm, heldout, ["highest loss"])}
    for name, (model, data, needles) in cases.items():
        folder = tmp_path / name
        result = _evaluate(model, data, "--report", folder, "--json")
        assert "details" not in json.loads(result.stdout), "the JSON object stays the figures"
        assert f"report: {folder / REPORT_HTML}" in result.stderr
        page = (folder / REPORT_HTML).read_text(encoding="utf-8")
        assert 'id="summary"' in page, name
        assert 'id="worst"' in page or (name == "pos" and "No errors." in page), name
        for needle in needles:
            assert needle in page, (name, needle)
        if name != "lm":
            assert (folder / CONFUSION_PNG).read_bytes().startswith(PNG_SIGNATURE), name
            assert 'id="per-label"' in page and "data:image/png;base64," in page, name
        assert (folder / RELIABILITY_PNG).exists() == (name == "cls"), name
    page = (tmp_path / "cls" / REPORT_HTML).read_text(encoding="utf-8")
    assert "<b>bad" not in page and "a &lt;b&gt;bad&lt;/b&gt; &amp; odd film" in page, "texts are escaped"
    text_mode = _evaluate(ner_model[0], ner_model[1], "--report", tmp_path / "again")
    assert f"report: {tmp_path / 'again' / REPORT_HTML}" in text_mode.stdout


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0)).length;
  const marker = document.createElement("p");
  marker.id = "image-check";
  marker.textContent = `images ${images.length} broken ${broken}`;
  document.body.appendChild(marker);
});
</script>"""


def _rendered_dom(page, tmp_path) -> str:
    """The DOM of `page` after Chromium has loaded it, with a marker saying how many images are broken."""
    checked = page.with_name("checked.html")
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"),
                       encoding="utf-8")
    done = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
                           "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium), so the report "
                                             "cannot be rendered")
def test_chromium_renders_the_report_with_its_images_and_tables(classifier, tmp_path):
    model, test = classifier
    folder = tmp_path / "report"
    _evaluate(model, test, "--report", folder)
    dom = _rendered_dom(folder / REPORT_HTML, tmp_path)
    assert "images 2 broken 0" in dom, dom[-500:]
    for table in ("summary", "per-label", "reliability", "worst"):
        assert f'<table id="{table}"' in dom, table
    # The check itself: a damaged picture is reported as broken.
    page = (folder / REPORT_HTML).read_text(encoding="utf-8")
    (folder / "damaged.html").write_text(page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1),
                                         encoding="utf-8")
    assert "images 2 broken 1" in _rendered_dom(folder / "damaged.html", tmp_path)
