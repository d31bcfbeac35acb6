"""What the command line does with each task's predictions and figures: the `seqtag predict` options a model
of the task accepts, the lines it prints for a chunk of input, and the figures line of `seqtag evaluate`.

These live apart from `families.py` (which builds networks, so imports torch) because they serve a folder
written by `seqtag export` too: `seqtag predict` on an ONNX folder starts without importing torch (one sentence,
the exported demo tagger: 0.67 s and 95 MB of RSS, against 4.24 s and 292 MB while it imported torch). Every
family in `families.FAMILIES` has its entry in `OUTPUTS`; a test checks it.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import SeqtagError
from .registry import Registry

OUTPUTS = Registry("task", "task output")  # task name → its outputs (an instance; see the end)


class Outputs:
    """Options, printed lines and figures for one task; the base holds what every task shares."""

    def check_prediction_options(self, model_dir, pretokenized: bool, output: str) -> None:
        """Refuse `seqtag predict` options this task's models cannot honour, before any input is read."""
        if output not in ("jsonl", "conll"):
            raise SeqtagError(f"--output is {output!r}; expected jsonl or conll.")

    def prediction_options(self, top_k: int | None) -> dict:
        """The keyword options of its predictor's `predict` that `seqtag predict`'s options set."""
        return {}

    def prediction_lines(self, model, lines: list[str], pretokenized: bool, output: str, top_k: int | None,
                         batch_size: int) -> Iterator[str]:
        """What `seqtag predict` prints for a chunk of input lines."""
        raise NotImplementedError

    def figures_line(self, metrics: dict) -> str:
        """One line of the figures `evaluate` computed."""
        raise NotImplementedError


class TaggingOutputs(Outputs):
    def prediction_options(self, top_k):
        if top_k is not None:  # a silently ignored option would look like a tagger that ranks nothing
            raise SeqtagError(f"--top-k is {top_k}: --top-k lists a classifier's ranked classes; a tagger gives one "
                              "label per token (with its probability). Drop --top-k.")
        return {}

    def prediction_lines(self, model, lines, pretokenized, output, top_k, batch_size):
        items = [line.split() for line in lines] if pretokenized else lines
        for sentence in model.predict(items, batch_size=batch_size):
            yield model.result_line(sentence, output)

    def figures_line(self, metrics):
        counts = f"({metrics['sentences']} sentences, {metrics['tokens']} tokens)"
        if "f1" in metrics:
            return f"F1 {metrics['f1']:.2f}  P {metrics['precision']:.2f}  R {metrics['recall']:.2f}  {counts}"
        return f"accuracy {metrics['accuracy']:.2f}  {counts}"


class ClassificationOutputs(Outputs):
    def check_prediction_options(self, model_dir, pretokenized, output):
        super().check_prediction_options(model_dir, pretokenized, output)
        if pretokenized or output != "jsonl":
            raise SeqtagError(f"{model_dir} is a text classifier: it reads one raw text per line and writes JSON "
                              "lines; drop --pretokenized and --output conll.")

    def prediction_options(self, top_k):
        return {"top_k": top_k}

    def prediction_lines(self, model, lines, pretokenized, output, top_k, batch_size):
        for result in model.predict(lines, top_k=top_k, batch_size=batch_size):
            yield model.result_line(result, output)

    def figures_line(self, metrics):
        return f"accuracy {metrics['accuracy']:.2f}  macro-F1 {metrics['macro_f1']:.2f}  ({metrics['texts']} texts)"


class LanguageModelOutputs(Outputs):
    def check_prediction_options(self, model_dir, pretokenized, output):
        raise SeqtagError(f"{model_dir} is a language model; use `seqtag generate` (or `seqtag evaluate` for "
                          "perplexity).")

    def figures_line(self, metrics):
        bits = f"  bits/char {metrics['bits_per_char']:.4f}" if "bits_per_char" in metrics else ""
        return (f"perplexity {metrics['perplexity']:.2f}  loss {metrics['loss']:.4f} nats/token{bits}  "
                f"({metrics['tokens']} tokens)")


OUTPUTS.register("tagging", TaggingOutputs())
OUTPUTS.register("classification", ClassificationOutputs())
OUTPUTS.register("lm", LanguageModelOutputs())


def outputs_of(task: str, path: Path | None = None) -> Outputs:
    """The outputs of a model's task (`path`: its folder, named in the error for a task no family has)."""
    if task not in OUTPUTS:
        where = f"{Path(path) / 'config.json'}: " if path is not None else ""
        raise SeqtagError(f"{where}task is {task!r}; expected one of {', '.join(map(repr, OUTPUTS))}.")
    return OUTPUTS[task]
