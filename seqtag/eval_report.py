"""What `seqtag evaluate` shows beyond its figures line: the per-label table as text, and with `--report DIR`
DIR/report.html (one self-contained page: figures, per-label table, confusion heatmap, reliability table for
classifiers, the worst sentences or texts) and the same pictures as DIR/confusion.png (and reliability.png).

It works on plain data: the metrics dict a predictor's `evaluate` returns and the per-item records that
`evaluate(..., details=True)` adds under "details". Standard library and matplotlib only (imported when a
figure is drawn): no torch, no `datasets`, no Lightning.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from .durable import write_durably

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_HTML, CONFUSION_PNG, RELIABILITY_PNG = "report.html", "confusion.png", "reliability.png"
WORST = 20               # items listed as the worst
ANNOTATED_LABELS = 25    # up to this many labels a heatmap cell shows its count

# The summary figures of each kind of model, in the order shown; the ones a model lacks are left out.
SUMMARY_KEYS = {
    "span": ["f1", "precision", "recall", "accuracy", "sentences", "tokens", "gold_spans", "predicted_spans",
             "correct_spans"],
    "tagging": ["accuracy", "macro_f1", "sentences", "tokens"],
    "classification": ["accuracy", "macro_f1", "ece", "texts"],
    "lm": ["perplexity", "loss", "bits_per_token", "bits_per_char", "tokens", "unknown_tokens", "unknown_rate"],
}
NAMES = {"f1": "F1", "macro_f1": "macro-F1", "ece": "ECE (expected calibration error)",
         "loss": "loss (nats/token)", "bits_per_token": "bits/token", "bits_per_char": "bits/char",
         "unknown_tokens": "unknown tokens (<unk>)", "unknown_rate": "unknown tokens (%)",
         "gold_spans": "gold spans", "predicted_spans": "predicted spans", "correct_spans": "correct spans"}


def kind_of(task: str, metrics: dict) -> str:
    """"span" (entity spans), "tagging" (a tag per token), "classification" or "lm"."""
    if task == "tagging":
        return "span" if "gold_spans" in metrics else "tagging"
    return task


def _number(key: str, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isinf(value):
        return "inf"
    return f"{value:.4f}" if key in ("loss", "bits_per_token", "bits_per_char") else f"{value:.2f}"


def summary(task: str, metrics: dict) -> list[tuple[str, str]]:
    """(name, value as shown) of the model kind's summary figures."""
    return [(NAMES.get(key, key), _number(key, metrics[key]))
            for key in SUMMARY_KEYS[kind_of(task, metrics)] if key in metrics]


# -- text ---------------------------------------------------------------


def text_table(task: str, metrics: dict) -> str:
    """What `seqtag evaluate` prints under the figures line: the per-label table (per tag, entity type or
    class) and the figures the line leaves out (calibration, unknown tokens)."""
    lines = []
    kind = kind_of(task, metrics)
    if kind == "lm":
        lines.append(f"bits/token {metrics['bits_per_token']:.4f}  unknown tokens {metrics['unknown_tokens']:,} "
                     f"({metrics['unknown_rate']:.2f}%)")
    if kind == "classification" and "ece" in metrics:
        lines.append(f"expected calibration error {metrics['ece']:.2f} (10 confidence bins)")
    per_label = metrics.get("per_label") or {}
    if per_label:
        width = max(12, *(len(label) for label in per_label))
        what = {"span": "type", "tagging": "tag", "classification": "class"}.get(kind, "label")
        lines.append(f"  {what:<{width}}  precision  recall      F1  support")
        for label, scores in per_label.items():
            lines.append(f"  {label:<{width}}  {scores['precision']:9.2f}  {scores['recall']:6.2f}  "
                         f"{scores['f1']:6.2f}  {scores['support']:7d}")
    return "\n".join(lines)


# -- the worst items ----------------------------------------------------


def worst_items(task: str, details: list[dict], count: int = WORST) -> list[dict]:
    """The `count` worst of `details`, each with its 1-based "number" in the input: taggers' sentences with the
    most token errors, classifiers' wrong texts with the highest confidence, language models' lines with the
    highest mean loss. Items with no error (no loss) are never listed; ties keep the input order."""
    numbered = [{**item, "number": item.get("line", index + 1)} for index, item in enumerate(details)]
    if task == "tagging":
        chosen = sorted((item for item in numbered if item["errors"]), key=lambda item: -item["errors"])
    elif task == "classification":
        chosen = sorted((item for item in numbered if item["gold"] != item["predicted"]),
                        key=lambda item: -item["confidence"])
    else:
        chosen = sorted((item for item in numbered if item.get("loss") is not None), key=lambda item: -item["loss"])
    return chosen[:count]


# -- figures ------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed, no pyplot state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def confusion_figure(confusion: dict[str, dict[str, int]], title: str = "") -> Figure:
    """A heatmap of {gold: {predicted: count}}: each cell coloured by its share of the gold row (so rare labels
    show as clearly as frequent ones), with its count written in when there are few labels."""
    rows = list(confusion)
    columns = list(dict.fromkeys(column for row in confusion.values() for column in row))
    counts = [[confusion[row].get(column, 0) for column in columns] for row in rows]
    shares = [[count / (sum(line) or 1) for count in line] for line in counts]
    size = max(len(rows), len(columns))
    side = min(max(4.5, 0.32 * size + 2.5), 30.0)
    figure = _figure(side + 1.0, side)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    # parse_math=False: a label with "$" in it is text, not a formula.
    axes.set_xticks(range(len(columns)), columns, rotation=90, parse_math=False)
    axes.set_yticks(range(len(rows)), rows, parse_math=False)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    if size <= ANNOTATED_LABELS:
        for r, line in enumerate(counts):
            for c, count in enumerate(line):
                if count:
                    axes.text(c, r, str(count), ha="center", va="center", fontsize=8,
                              color="white" if shares[r][c] > 0.5 else "black")
    figure.colorbar(image, ax=axes, label="share of the gold row")
    axes.set_title(title or "confusion (rows: gold, columns: predicted)", fontsize=10)
    return figure


def reliability_figure(reliability: list[dict], ece: float | None = None) -> Figure:
    """The reliability diagram: accuracy per confidence bin (bars) against the diagonal of perfect calibration,
    with the bins' mean confidence marked."""
    figure = _figure(5.5, 5.0)
    axes = figure.subplots()
    filled = [b for b in reliability if b["count"]]
    axes.bar([(b["low"] + b["high"]) / 2 for b in filled], [b["accuracy"] for b in filled],
             width=[b["high"] - b["low"] for b in filled], edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o", color="darkred",
              label="mean confidence", clip_on=False)  # a dot at 100% stays whole
    axes.plot([0, 100], [0, 100], "--", color="grey", label="perfect calibration")
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 100)
    axes.set_xlabel("confidence (%)")
    axes.set_ylabel("accuracy (%)")
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title("reliability" + (f" (ECE {ece:.2f})" if ece is not None else ""), fontsize=10)
    return figure


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# -- the page -----------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.error { background: #fdd; color: #900; font-weight: bold; }
.sentence { overflow-x: auto; margin-bottom: 1em; }
.sentence table { margin: 0.2em 0; }
.sentence th { background: #f4f4f4; }
img { max-width: 100%; }
"""


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], table_id: str, numeric_from: int = 1) -> str:
    """An HTML table of already escaped cells; cells from column `numeric_from` on are right-aligned."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f'<td class="number">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(data: bytes, name: str, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img id="{name}" src="data:image/png;base64,{encoded}" alt="{_escape(alt)}">'


def _per_label_html(kind: str, per_label: dict) -> str:
    what = {"span": "entity type", "tagging": "tag", "classification": "class"}.get(kind, "label")
    rows = [[_escape(label), f"{s['precision']:.2f}", f"{s['recall']:.2f}", f"{s['f1']:.2f}", f"{s['support']:,}",
             f"{s['predicted']:,}"] for label, s in per_label.items()]
    return _table([what, "precision", "recall", "F1", "support", "predicted"], rows, "per-label")


def _reliability_html(reliability: list[dict]) -> str:
    rows = [[f"{b['low']:.0f}–{b['high']:.0f}%", f"{b['count']:,}",
             "" if b["confidence"] is None else f"{b['confidence']:.2f}",
             "" if b["accuracy"] is None else f"{b['accuracy']:.2f}"] for b in reliability]
    return _table(["confidence bin", "count", "mean confidence (%)", "accuracy (%)"], rows, "reliability")


def _label_cell(label: str, wrong: bool) -> str:
    return f'<td class="error">{_escape(label)}</td>' if wrong else f"<td>{_escape(label)}</td>"


def _worst_html(kind: str, items: list[dict]) -> str:
    if not items:
        return "<p>No errors.</p>" if kind != "lm" else "<p>No line was scored.</p>"
    if kind in ("span", "tagging"):
        blocks = []
        for item in items:
            wrong = [g != p for g, p in zip(item["gold"], item["predicted"])]
            tokens = "".join(f"<td>{_escape(token)}</td>" for token in item["tokens"])
            gold = "".join(_label_cell(label, bad) for label, bad in zip(item["gold"], wrong))
            predicted = "".join(_label_cell(label, bad) for label, bad in zip(item["predicted"], wrong))
            blocks.append(f'<div class="sentence"><p>sentence {item["number"]:,}: {item["errors"]} of '
                          f'{len(item["tokens"])} tokens wrong</p><table class="worst">'
                          f"<tr><th>token</th>{tokens}</tr><tr><th>gold</th>{gold}</tr>"
                          f"<tr><th>predicted</th>{predicted}</tr></table></div>")
        return '<div id="worst">' + "".join(blocks) + "</div>"
    if kind == "classification":
        rows = [[f"{item['number']:,}", _escape(item["text"]), _escape(item["gold"]),
                 f'<span class="error">{_escape(item["predicted"])}</span>', f"{100 * item['confidence']:.2f}"]
                for item in items]
        return _table(["number", "text", "gold", "predicted", "confidence (%)"], rows, "worst", numeric_from=4)
    rows = [[f"{item['number']:,}", f"{item['loss']:.4f}", f"{item['tokens']:,}", _escape(item["text"])]
            for item in items]
    return _table(["line", "loss (nats/token)", "tokens", "text"], rows, "worst", numeric_from=1)


WORST_TITLES = {"span": "Sentences with the most token errors", "tagging": "Sentences with the most token errors",
                "classification": "The most confidently wrong texts", "lm": "Lines with the highest loss"}


def write_report(folder: str | Path, task: str, metrics: dict, details: list[dict] | None = None,
                 title: str = "") -> Path:
    """Write `folder`/report.html and its pictures (confusion.png; reliability.png for classifiers) for the
    metrics of a model's `evaluate` and its per-item `details`; returns the page's path. All text from the
    data is HTML-escaped; the pictures are embedded in the page, so it shows on its own from disk."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = kind_of(task, metrics)
    parts = [f"<h1>Evaluation{': ' + _escape(title) if title else ''}</h1>", "<h2>Figures</h2>",
             _table(["figure", "value"], [[_escape(name), _escape(value)] for name, value in summary(task, metrics)],
                    "summary")]
    if metrics.get("unseen_labels"):
        unseen = ", ".join(f"{_escape(label)} ×{count}" for label, count in metrics["unseen_labels"].items())
        parts.append(f"<p>Gold labels the model never saw in training (scored as errors): {unseen}</p>")
    if metrics.get("per_label"):
        parts += ["<h2>Per label</h2>", _per_label_html(kind, metrics["per_label"])]
    if metrics.get("confusion"):
        picture = png_bytes(confusion_figure(metrics["confusion"]))
        write_durably(folder / CONFUSION_PNG, picture)
        note = (" A gold span whose extent no prediction has is <em>missed</em>; a predicted span whose extent no "
                "gold span has is <em>spurious</em>." if kind == "span" else "")
        parts += ["<h2>Confusion</h2>", f"<p>Rows: gold, columns: predicted; colour: share of the row.{note}</p>",
                  _image(picture, "confusion", "confusion matrix")]
    if metrics.get("reliability"):
        picture = png_bytes(reliability_figure(metrics["reliability"], metrics.get("ece")))
        write_durably(folder / RELIABILITY_PNG, picture)
        parts += ["<h2>Calibration</h2>", _reliability_html(metrics["reliability"]),
                  _image(picture, "reliability-diagram", "reliability diagram")]
    if details is not None:
        parts += [f"<h2>{WORST_TITLES[kind]} (at most {WORST})</h2>",
                  _worst_html(kind, worst_items(task, details))]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>seqtag evaluation{': ' + _escape(title) if title else ''}</title><style>{STYLE}</style>"
            "</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = folder / REPORT_HTML
    write_durably(path, page)
    return path
