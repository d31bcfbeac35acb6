"""The `seqtag` command: a thin typer layer over the library's functions."""
from __future__ import annotations

import functools
import json
import logging
import sys
from itertools import islice
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqtag.data.readers import decode_lines
from seqtag.errors import SeqtagError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Sequence labelling with masked BiLSTMs and LSTM language models: train, evaluate, predict and generate.")


def user_errors(command):
    """Print a SeqtagError as one paragraph and exit 2; other exceptions keep their traceback (they are bugs)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SeqtagError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _log_to_stderr() -> None:
    import datasets

    # The readers say what they read in one line each; datasets' own bars would only repeat it.
    datasets.disable_progress_bars()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def _figures(metrics: dict) -> str:
    if "perplexity" in metrics:
        bits = f"  bits/char {metrics['bits_per_char']:.4f}" if "bits_per_char" in metrics else ""
        return (f"perplexity {metrics['perplexity']:.2f}  loss {metrics['loss']:.4f} nats/token{bits}  "
                f"({metrics['tokens']} tokens)")
    if "macro_f1" in metrics:
        return f"accuracy {metrics['accuracy']:.2f}  macro-F1 {metrics['macro_f1']:.2f}  ({metrics['texts']} texts)"
    if "f1" in metrics:
        return (f"F1 {metrics['f1']:.2f}  P {metrics['precision']:.2f}  R {metrics['recall']:.2f}  "
                f"({metrics['sentences']} sentences, {metrics['tokens']} tokens)")
    return f"accuracy {metrics['accuracy']:.2f}  ({metrics['sentences']} sentences, {metrics['tokens']} tokens)"


@app.command()
@user_errors
def train(
    recipe: Annotated[str, typer.Argument(help="A recipe name from recipes/ (e.g. demo, ud-pos, mr, sst2, imdb, sentiment, char-lm, word-lm, bpe-lm) or a YAML path.")],
    train: Annotated[Optional[Path], typer.Option("--train", help="Training file.")] = None,
    dev: Annotated[Optional[Path], typer.Option("--dev", help="Development file (early stopping).")] = None,
    test: Annotated[Optional[Path], typer.Option("--test", help="Test file, scored at the end.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default runs/RECIPE).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: section.key=value.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="One training step and one dev batch, to check the setup.")] = False,
):
    """Train a tagger, classifier or language model from a recipe; prints the saved model's path and its
    dev/test figures."""
    from seqtag.config import load_recipe
    from seqtag.train import train as run_training

    _log_to_stderr()
    loaded = load_recipe(recipe, set_ or [], train=train, dev=dev, test=test)
    result = run_training(loaded, out or Path("runs") / loaded.name, resume=resume, smoke=smoke)
    if result.interrupted:
        typer.echo("Training was interrupted; the best weights so far were saved. Continue with --resume.")
    typer.echo(f"model: {result.model_dir}")
    for split in ("dev", "test"):
        if split in result.metrics:
            typer.echo(f"{split}: {_figures(result.metrics[split])}")


@app.command()
@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A saved model directory.")],
    file: Annotated[Path, typer.Argument(help="A labelled file in the model's training format (class_files: a.pos,a.neg; language models: text).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Score a model on a labelled file (a language model: on text), read with the model's own reader settings."""
    import seqtag

    _log_to_stderr()
    metrics = seqtag.load(model).evaluate(file)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    typer.echo(_figures(metrics))
    for label, scores in metrics.get("per_label", {}).items():
        typer.echo(f"  {label:<20} P {scores['precision']:6.2f}  R {scores['recall']:6.2f}  "
                   f"F1 {scores['f1']:6.2f}  support {scores['support']}")


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Argument(help="A saved model directory.")],
    file: Annotated[str, typer.Argument(help="Input file, one sentence (or text) per line; '-' reads standard input.")] = "-",
    pretokenized: Annotated[bool, typer.Option("--pretokenized", help="Lines hold tokens separated by spaces.")] = False,
    output: Annotated[str, typer.Option("--output", help="jsonl or conll (taggers only).")] = "jsonl",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sentences per forward pass.")] = 256,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Classifiers: how many ranked labels to list (default all).")] = None,
):
    """Tag raw text (or pre-tokenized lines), or classify one text per line; writes JSON lines (or CoNLL) to standard output."""
    import seqtag
    from seqtag.language_model import LanguageModel
    from seqtag.predict import TextClassifier

    if output not in ("jsonl", "conll"):
        raise SeqtagError(f"--output is {output!r}; expected jsonl or conll.")
    tagger = seqtag.load(model)
    if isinstance(tagger, LanguageModel):
        raise SeqtagError(f"{model} is a language model; use `seqtag generate` (or `seqtag evaluate` for perplexity).")
    classify = isinstance(tagger, TextClassifier)
    if classify and (pretokenized or output != "jsonl"):
        raise SeqtagError(f"{model} is a text classifier: it reads one raw text per line and writes JSON lines; "
                          "drop --pretokenized and --output conll.")
    if file != "-" and not Path(file).is_file():
        raise SeqtagError(f"{file}: file not found; give a text file with one sentence per line, or - for stdin.")
    with (sys.stdin.buffer if file == "-" else open(file, "rb")) as stream:
        lines = (text for _, text in decode_lines(stream, "<stdin>" if file == "-" else file))
        # Read and tag in chunks so arbitrarily long inputs stream through in bounded memory.
        while chunk := list(islice(lines, 4096)):
            if classify:
                for result in tagger.predict(chunk, top_k=top_k, batch_size=batch_size):
                    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
                continue
            items = [line.split() for line in chunk] if pretokenized else chunk
            for sentence in tagger.predict(items, batch_size=batch_size):
                if output == "jsonl":
                    typer.echo(json.dumps(sentence.to_dict(), ensure_ascii=False))
                else:
                    typer.echo("".join(f"{w}\t{l}\n" for w, l in zip(sentence.words, sentence.labels)))


@app.command()
@user_errors
def generate(
    model: Annotated[Path, typer.Argument(help="A saved language model directory.")],
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue (default: start a new line).")] = "",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature, > 0 (lower is safer).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample only from the K most likely tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Sample only from the nucleus of probability P, in (0, 1].")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for repeatable samples.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token (no sampling).")] = False,
):
    """Continue a prompt with a language model; prints the prompt and the generated text."""
    import seqtag
    from seqtag.language_model import LanguageModel

    lm = seqtag.load(model)
    if not isinstance(lm, LanguageModel):
        raise SeqtagError(f"{model} is not a language model; `seqtag generate` needs a model trained with task: lm.")
    typer.echo(lm.generate(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           seed=seed, greedy=greedy))


if __name__ == "__main__":
    app()
