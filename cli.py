"""The `seqtag` command: a thin typer layer over the library's functions.

Output: results (figures, the saved model's path, predictions) go to stdout; logs, progress and
errors to stderr. Nothing heavy is imported at module level, so `seqtag --help` is instant: each
command imports what it uses (torch, datasets and Lightning come in through seqtag's modules).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from itertools import islice
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from seqtag.paths import RECIPES_DIR
from seqtag.errors import SeqtagError


def recipe_descriptions() -> dict[str, str]:
    """Each bundled recipe with its description: the first sentence of the comment that opens its YAML file
    (read at import, a few small files; usage examples, indented in the comment, are left out)."""
    described = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        words = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                body = line.rstrip()[1:]
                if not line.startswith("#") or not body.strip() or body.startswith("   "):
                    break
                words.append(body.strip())
                if body.endswith((".", ":", ")")):
                    break
        described[path.stem] = " ".join(words).removesuffix(":")
    return described


def _recipe_list() -> str:
    from rich.markup import escape  # typer renders help as Rich markup: a [ in a description is text

    described = recipe_descriptions()
    width = max(map(len, described), default=0)
    rows = [f"  [bold]{name:<{width}}[/bold]  {escape(text)}" for name, text in described.items()]
    return "Recipes (or give a path to a YAML file):\n" + "\n".join(rows)


def _plain_flags(params: list) -> list:
    """The options with a flag's type left blank in --help: typer's rich help prints `--resume <bool>`, which reads
    as if the flag took a value (`--resume true`)."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _PlainFlagsGroup(TyperGroup):
    """The seqtag command group: every command's flags (and --help) show in --help as plain flags."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:  # its declared options and the --help option it adds (one cached object)
            _plain_flags([*command.params, command.get_help_option(ctx)])
        return command


app = typer.Typer(cls=_PlainFlagsGroup, add_completion=False, no_args_is_help=True,
                  help="Sequence labelling with masked BiLSTMs and LSTM language models: train, evaluate, predict and "
                       "generate. Results go to stdout; logs and progress to stderr.")


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is when a record is emitted (tests swap it per run)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _configure_output(quiet: bool, verbose: bool) -> None:
    """Logs to stderr: seqtag's at INFO (DEBUG with --verbose, WARNING with --quiet), other libraries' warnings.
    seqtag.progress reads the "seqtag" logger's level back to choose between a bar, epoch lines or silence."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CurrentStderr)]:
        root.removeHandler(handler)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("seqtag").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if not verbose:
        # The readers log one line per file; datasets' own bars would only repeat it. An environment
        # variable rather than datasets.disable_progress_bars(), so that datasets is not imported here.
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _print_version(value: bool) -> None:
    if value:
        from seqtag import __version__  # seqtag/__init__.py imports nothing heavy

        typer.echo(f"seqtag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors (no logs, no progress).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print debug logs, library messages and warnings too.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print seqtag's version and exit.")] = False,
):
    """Options given before the command: seqtag --quiet train demo."""
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other; give one of them.")
    _configure_output(quiet, verbose)


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


def _figures(task: str, metrics: dict) -> str:
    from seqtag.outputs import outputs_of

    return outputs_of(task).figures_line(metrics)


@app.command(epilog=_recipe_list())
@user_errors
def train(
    recipe: Annotated[str, typer.Argument(help="A recipe name (listed below) or a path to a YAML recipe.")],
    train: Annotated[Optional[Path], typer.Option("--train", help="Training file.")] = None,
    dev: Annotated[Optional[Path], typer.Option("--dev", help="Development file (early stopping).")] = None,
    test: Annotated[Optional[Path], typer.Option("--test", help="Test file, scored at the end.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default runs/RECIPE, with --smoke runs/RECIPE-smoke).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key: section.key=value.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the model and run already in --out (only files seqtag wrote are removed).")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="One training step and one dev batch, to check the setup; never replaces a trained model.")] = False,
):
    """Train a tagger, classifier or language model from a recipe; prints the saved model's path and figures.

    Results go to stdout. Progress goes to stderr: a bar on a terminal, one line per epoch elsewhere.
    Exit status: 0 when training ran to its end, 2 for an error in the input or settings (printed as one
    paragraph), 130 after Ctrl+C (the best weights so far are saved once training had started)."""
    from seqtag.config import load_recipe
    from seqtag.progress import quiet_libraries
    from seqtag.training import train as run_training

    quiet_libraries()
    loaded = load_recipe(recipe, set_ or [], train=train, dev=dev, test=test)
    folder = out or Path("runs") / (f"{loaded.name}-smoke" if smoke else loaded.name)
    _run_and_report(lambda: run_training(loaded, folder, resume=resume, smoke=smoke, overwrite=overwrite))


class _SaidBelow(logging.Filter):
    """Drops the training log's "training ended: interrupted ..." line: the last line `_run_and_report` prints
    says it, with what was saved, and says it once (also with --quiet)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "seqtag_interrupted", False)


def _run_and_report(run) -> None:
    """Run a training (or fine-tuning) and print the saved model's path and figures; Ctrl+C exits with 130."""
    seqtag_log = logging.getLogger("seqtag")
    said_below = _SaidBelow()
    seqtag_log.addFilter(said_below)
    try:
        # Whatever a library prints while training is progress, not a result: keep it off stdout.
        with contextlib.redirect_stdout(sys.stderr):
            result = run()
    except KeyboardInterrupt:  # a Ctrl+C before training started or while the model was being saved
        typer.echo("Interrupted (Ctrl+C); no model was saved.", err=True)
        raise typer.Exit(130) from None
    finally:
        seqtag_log.removeFilter(said_below)
    if result.rank:  # a second process of a multi-process run: rank 0 reports
        return
    if result.interrupted:
        typer.echo("Training was interrupted; the best weights so far were saved. Continue with --resume.", err=True)
    typer.echo(f"model: {result.model_dir}")
    task = json.loads((Path(result.model_dir) / "config.json").read_text())["task"]
    for split in ("dev", "test"):
        if split in result.metrics:
            typer.echo(f"{split}: {_figures(task, result.metrics[split])}")
    if result.interrupted:
        raise typer.Exit(130)  # 128 + SIGINT, as a shell reports a program Ctrl+C ended: scripts can tell


@app.command()
@user_errors
def finetune(
    model: Annotated[Path, typer.Argument(help="The saved model directory to start from (never changed).")],
    train: Annotated[Optional[Path], typer.Option("--train", help="Fine-tuning data, read with the model's reader settings.")] = None,
    dev: Annotated[Optional[Path], typer.Option("--dev", help="Development file (early stopping).")] = None,
    test: Annotated[Optional[Path], typer.Option("--test", help="Test file, scored at the end.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default runs/NAME-finetuned).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="finetune.KEY=VALUE (new_labels, label_map, extend_vocab, freeze, unfreeze_after, start_new_labels, keep_old, distill_weight, distill_temperature, distill_swaps, replay, replay_fraction, lr_factor, head_lr_factor, anchor), train.*, data.* reader settings.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the fine-tuning run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the model and run already in --out.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="One training step and one dev batch, to check the setup.")] = False,
):
    """Fine-tune a saved model on your own data: new labels and words are appended, the parent is never changed.

    Prints the new model's path and figures. Without --set train.lr the learning rate is the parent's times
    finetune.lr_factor (1)."""
    from seqtag.finetuning import finetune as run_finetune
    from seqtag.progress import quiet_libraries

    quiet_libraries()
    _run_and_report(lambda: run_finetune(model, train, dev, test, out, set_ or [], resume=resume, overwrite=overwrite,
                                         smoke=smoke))


@app.command()
@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="A saved model directory.")],
    file: Annotated[Path, typer.Argument(help="A labelled file in the model's training format (class_files: a.pos,a.neg; language models: text).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    encoding: Annotated[str, typer.Option("--encoding", help="The file's text encoding; evaluation reads UTF-8 only, so another one is an error saying how to convert the file.")] = "utf-8",
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Also write DIR/report.html (tables, confusion heatmap, the 20 worst sentences or texts) and the pictures as PNG files.")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also score the model with int8 weights (PyTorch dynamic quantization, CPU) and print the change in its figures (JSON: under \"int8\").")] = False,
):
    """Score a model on a labelled file (a language model: on text), read with the model's own reader settings.

    Prints the figures and a table per tag, entity type or class (classifiers: also the expected calibration
    error; language models: bits per token and unknown tokens). --json prints them as one JSON object, with the
    confusion matrix (and a classifier's reliability table)."""
    import codecs

    import seqtag
    from seqtag.data.lines import check_line_encoding
    from seqtag.eval_report import text_table, write_report

    # The training readers `evaluate` shares decode UTF-8 into a cached dataset; they cannot honour another one.
    if codecs.lookup(check_line_encoding(encoding)).name != "utf-8":
        raise SeqtagError(f"--encoding is {encoding!r}, but `seqtag evaluate` reads files as UTF-8 only (the readers "
                          f"training uses); convert the file first: iconv -f {encoding} -t utf-8 {file} > "
                          f"{Path(file).stem}.utf8{Path(file).suffix}")
    loaded = seqtag.load(model)
    # Per-item details only for the report: they hold every sentence of the file.
    metrics = loaded.evaluate(file, details=True) if report_dir is not None else loaded.evaluate(file)
    if int8:
        metrics["int8"] = _int8_change(model, file, metrics)
    details = metrics.pop("details", None)
    written = None
    if report_dir is not None:
        written = write_report(report_dir, loaded.task, metrics, details, title=f"{model} on {file}")
    if as_json:
        typer.echo(json.dumps(metrics))
        if written is not None:  # stdout holds the JSON object only
            typer.echo(f"report: {written}", err=True)
        return
    typer.echo(_figures(loaded.task, metrics))
    if int8:
        typer.echo("int8: " + "  ".join(f"{key} {value['int8']:.4f} ({value['change']:+.4f})"
                                        for key, value in metrics["int8"].items()))
    if metrics.get("label_map"):  # a fine-tuned model reads a file in its fine-tuning data's labels as training did
        typer.echo("gold labels mapped as at fine-tuning: "
                   + ", ".join(f"{theirs}→{ours}" for theirs, ours in metrics["label_map"].items()))
    table = text_table(loaded.task, metrics)
    if table:
        typer.echo(table)
    if written is not None:
        typer.echo(f"report: {written}")


def _int8_change(model: Path, file: Path, metrics: dict) -> dict:
    """The headline figures of `model` quantized to int8 on `file`, each with its change from float32."""
    import seqtag
    from seqtag.onnx_predict import is_export

    if is_export(model):
        raise SeqtagError(f"--int8 quantizes a PyTorch model; {model} is an ONNX export. Export with --int8 "
                          "(seqtag export PARENT --format onnx --int8) and evaluate both folders.")
    quantized = seqtag.load(model, quantize="int8").evaluate(file)
    keys = ("accuracy", "f1", "precision", "recall", "macro_f1", "perplexity", "loss")
    return {key: {"int8": quantized[key], "change": quantized[key] - metrics[key]}
            for key in keys if isinstance(metrics.get(key), (int, float)) and key in quantized}


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder: the --out of train or finetune, finished or interrupted.")],
):
    """Draw a run's learning curves again, RUN_DIR/curves.png, from its logs/metrics.csv (train loss, dev figure
    with its best check marked, learning rate); prints the picture's path. Works on an interrupted run too."""
    from seqtag.curves import draw_curves  # matplotlib only: no torch, no Lightning

    typer.echo(f"curves: {draw_curves(run_dir)}")


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Argument(help="A saved model directory.")],
    file: Annotated[str, typer.Argument(help="Input file: .txt (one sentence or text per line), .csv, .tsv or .jsonl (classifiers: the model's text column), .conll or .conllu (taggers: the tokens); '-' reads standard input as text.")] = "-",
    pretokenized: Annotated[bool, typer.Option("--pretokenized", help="Lines hold tokens separated by spaces.")] = False,
    output: Annotated[str, typer.Option("--output", help="jsonl or conll (taggers only: token and predicted label; token, gold, predicted for a labelled CoNLL file, as conlleval reads).")] = "jsonl",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sentences per forward pass.")] = 256,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Classifiers: how many ranked labels to list (default all).")] = None,
    format_: Annotated[Optional[str], typer.Option("--format", help="How to read FILE: text, csv, tsv, jsonl, conll or conllu (default: by its extension).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes to predict with, each with its own copy of the network; output as with one.")] = 1,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Tokens per network row; a longer input is read in windows (default 4096).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local, or ray: a Ray Data job over text files (FILE may be a glob), one JSONL part per input block into --out.")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="--engine ray: the Ray cluster to join (default: start a local instance).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="--engine ray: the folder the JSONL parts are written to.")] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="The input's text encoding (text and CoNLL input, and standard input; csv, tsv and jsonl are read as UTF-8).")] = "utf-8",
):
    """Tag raw text, pre-tokenized lines or a CoNLL file's tokens, or classify texts (one per line, or a table's
    text column); writes one JSON line (or a CoNLL block) per input to standard output, streamed: any input
    size runs in bounded memory. Progress (inputs/s, and an ETA for text files) goes to stderr unless --quiet."""
    import seqtag
    from seqtag.outputs import outputs_of
    from seqtag.streaming import Progress, count_lines, input_format, read_items
    from seqtag.data.text_readers import TEXT

    if batch_size < 1:
        raise SeqtagError(f"--batch-size is {batch_size}; it must be 1 or more (sentences per forward pass).")
    if max_tokens is not None and max_tokens < 8:
        raise SeqtagError(f"--max-tokens is {max_tokens}; it must be 8 or more (tokens per network row).")
    if engine not in ("local", "ray"):
        raise SeqtagError(f"--engine is {engine!r}; give local (this machine, --workers processes) or ray.")
    if engine == "ray":
        if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):  # Ray Data reads its text files as UTF-8
            raise SeqtagError(f"--encoding is {encoding!r}, but --engine ray reads text files as UTF-8 only; convert "
                              f"them (iconv -f {encoding} -t utf-8) or use --engine local.")
        _predict_with_ray(model, file, out, address, pretokenized, output, batch_size, top_k, workers)
        return
    if out is not None or address is not None:
        raise SeqtagError("--out and --address are for --engine ray; the local engine writes to standard output.")
    loaded = seqtag.load(model)
    outputs = outputs_of(loaded.task, model)
    outputs.check_prediction_options(model, pretokenized, output)
    options = outputs.prediction_options(top_k)  # before any input is read: a tagger refuses --top-k
    fmt = input_format(file, format_, loaded.task)
    items = read_items(file, fmt, loaded.data_config, pretokenized, encoding)
    quiet = logging.getLogger("seqtag").level >= logging.WARNING
    progress = None if quiet else Progress(count_lines(file) if fmt == TEXT else None)
    results = loaded.predict_stream(items, batch_size=batch_size, max_tokens=max_tokens, workers=workers,
                                    progress=progress, **options)
    written = 0
    for result in results:
        typer.echo(loaded.result_line(result, output))
        written += 1
    if not written:  # exit 0 with nothing at all would look like a silent failure
        shown = "standard input" if file == "-" else file
        typer.echo(f"no input: {shown} holds no lines, so there is nothing to predict and no output.", err=True)


def _predict_with_ray(model: Path, sources: str, out: Optional[Path], address: Optional[str], pretokenized: bool,
                      output: str, batch_size: int, top_k: Optional[int], workers: int) -> None:
    from seqtag.distributed import predict_with_ray

    if out is None:
        raise SeqtagError("--engine ray writes JSONL parts into a folder: give --out DIR.")
    if output != "jsonl":
        raise SeqtagError("--engine ray writes JSON lines; drop --output conll.")
    summary = predict_with_ray(model, [part for part in sources.split(",") if part], out, address=address,
                               num_actors=workers if workers > 1 else None, batch_size=batch_size,
                               pretokenized=pretokenized, top_k=top_k)
    typer.echo(json.dumps(summary))


@app.command()
@user_errors
def export(
    model: Annotated[Path, typer.Argument(help="A saved model directory (a tagger, a classifier or a language model).")],
    format_: Annotated[str, typer.Option("--format", help="onnx: a folder that predicts with onnxruntime, without PyTorch.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", help="The folder to write (default MODEL-onnx, with --int8 MODEL-onnx-int8); an earlier export there is replaced.")] = None,
    opset: Annotated[int, typer.Option("--opset", help="The ONNX opset to write (14 or newer).")] = 17,
    int8: Annotated[bool, typer.Option("--int8", help="Quantize the graph's weights to int8 (onnxruntime dynamic quantization).")] = False,
):
    """Export a model to a self-contained folder: model.onnx, its tokenizer and label files, and export.json
    (seqtag's version, the parent model and its weight hash). seqtag.load, predict and evaluate take the folder."""
    if format_ != "onnx":
        raise SeqtagError(f"--format is {format_!r}; the format there is is onnx (TorchScript is not offered: see "
                          "README, Exporting to ONNX).")
    from seqtag.export import export_onnx

    typer.echo(f"exported: {export_onnx(model, out, opset=opset, int8=int8)}")


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

    lm = seqtag.load(model)
    if not hasattr(lm, "generate"):
        raise SeqtagError(f"{model} is not a language model; `seqtag generate` needs a model trained with task: lm.")
    typer.echo(lm.generate(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           seed=seed, greedy=greedy))


@app.command()
@user_errors
def serve(
    model: Annotated[Path, typer.Argument(help="A saved model directory.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="Server processes, each loading the model with cores // N torch threads.")] = 1,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", help="How long a request waits for others to share its batch; 0 runs each request alone.")] = 5.0,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", help="The most tokens one batch holds (also the most /generate makes per request).")] = 8192,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="The largest request body (413 above it).")] = 1_000_000,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", help="The longest text, sentence or prompt (413 above it).")] = 100_000,
    max_items: Annotated[int, typer.Option("--max-items", help="The most texts or sentences per request (413 above it).")] = 1000,
):
    """Serve a model over HTTP (JSON): POST /predict (taggers, classifiers), /score and /generate (language
    models), GET /health and /metadata; the API is described at /docs.

    Needs the serve extra (FastAPI and uvicorn); logs go to stderr.
    SIGTERM or Ctrl+C stops accepting connections, finishes the requests under way and exits with status 0."""
    from seqtag.serve import serve as run_server

    run_server(model, host=host, port=port, workers=workers, batch_wait_ms=batch_wait_ms, batch_tokens=batch_tokens,
               max_body_bytes=max_body_bytes, max_text_chars=max_text_chars, max_items=max_items)


def _names(option: Optional[str]) -> Optional[list[str]]:
    """A comma-separated option (--cells rnn,gru) as a list; None when not given."""
    return [name.strip() for name in option.split(",") if name.strip()] if option else None


@app.command()
@user_errors
def compare(
    recipe: Annotated[str, typer.Argument(help="A recipe name or a path to a YAML recipe.")],
    cells: Annotated[Optional[str], typer.Option("--cells", help="Recurrent cells to compare, comma-separated (default: every cell).")] = None,
    heads: Annotated[Optional[str], typer.Option("--heads", help="Output heads to compare, comma-separated (default: the recipe's).")] = None,
    train: Annotated[Optional[Path], typer.Option("--train", help="Training file.")] = None,
    dev: Annotated[Optional[Path], typer.Option("--dev", help="Development file (model selection).")] = None,
    test: Annotated[Optional[Path], typer.Option("--test", help="Test file.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key for every run: section.key=value.")] = None,
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", help="Minutes of training each run gets.")] = 5.0,
    budget_clock: Annotated[str, typer.Option("--budget-clock", help="wall: elapsed minutes (train.max_time_minutes); cpu: minutes of the training process's CPU time, the same compute per run on a busy machine.")] = "wall",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per configuration (train.seed and the next ones).")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default runs/compare-RECIPE).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted comparison: finished runs are kept.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the comparison already in --out.")] = False,
):
    """Train a recipe with each cell (and head) under the same time budget; prints the comparison table.

    Writes OUT/compare.md (table, settings, machine), OUT/compare.png and one run folder per cell, head and
    seed. Ctrl+C stops after the run under way has saved; --resume continues."""
    from seqtag.compare import compare as run_compare
    from seqtag.compare import compare_recipe
    from seqtag.progress import quiet_libraries

    quiet_libraries()
    loaded = compare_recipe(recipe, set_ or [], train=train, dev=dev, test=test)
    folder = out or Path("runs") / f"compare-{loaded.name}"
    try:
        with contextlib.redirect_stdout(sys.stderr):  # results only on stdout
            comparison = run_compare(loaded, _names(cells), _names(heads), budget_minutes, seeds, folder,
                                     overwrite=overwrite, resume=resume, clock=budget_clock)
    except KeyboardInterrupt:
        typer.echo(f"Interrupted (Ctrl+C); finished runs are kept. Continue with --resume --out {folder}.", err=True)
        raise typer.Exit(130) from None
    if comparison is None:  # another process of a multi-process comparison: the first one reports
        return
    typer.echo(comparison.table())
    typer.echo(f"\n{folder / 'compare.md'}\n{folder / 'compare.png'}")


if __name__ == "__main__":
    app()
