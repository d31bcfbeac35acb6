"""What a training run tells the person watching it, on stderr.

On a terminal: Lightning's progress bar. Anywhere else (a log file, CI, nohup): one line per epoch
(per dev check when `train.val_check_interval` < 1), such as

    epoch 3/15  train loss 0.7500  dev score 63.05  lr 0.005  11,672 tokens/s  0:00:01

and at the end one sentence from `end_reason` saying why training stopped. `quiet_libraries` keeps
Lightning's banners and tips, its GPU/TPU lines and libraries' deprecation warnings out of that output.
From Python (`seqtag.train`, `seqtag.finetune`), `python_api_output` does the same for the call only, and the
epoch lines become records of the "seqtag" logger unless the call asks for `verbose=True`.

The training loop wires these in:

    callbacks += progress_callbacks(recipe.train)
    pl.Trainer(..., callbacks=callbacks, enable_progress_bar=has_progress_bar(callbacks))
    log.info("training ended: %s", end_reason(trainer))

This is a training module: it imports Lightning, so prediction never imports it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import timedelta

import pytorch_lightning as pl  # imported before quiet_libraries runs: the import sets its loggers' levels
from pytorch_lightning.callbacks import Callback, EarlyStopping, ProgressBar, RichProgressBar, Timer

from .data.batching import IGNORE_INDEX

# The dev figure each task family logs, in the order they are looked for.
DEV_FIGURES = {"dev_score": "dev score", "dev_perplexity": "dev perplexity"}
# Every name Lightning's own loggers go by, in the pytorch_lightning package and in the unified lightning one.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "lightning")

log = logging.getLogger("seqtag")

# Inside `python_api_output`: the Python API's verbose flag (None: the CLI, whose flags `output_flags` reads).
_PYTHON_API_VERBOSE: ContextVar[bool | None] = ContextVar("seqtag_python_api_verbose", default=None)


@contextlib.contextmanager
def python_api_output(verbose: bool = False) -> Iterator[None]:
    """What `seqtag.train` and `seqtag.finetune` print: by default nothing of the libraries' (Lightning's banners,
    tips and GPU/TPU lines, deprecation and future warnings, `datasets`' progress bars) and no progress bar;
    the epoch lines and the end of training go to the "seqtag" logger, for the caller's logging configuration
    to show or not. With `verbose`, all of it, and progress on stderr as the CLI prints it.

    Run inside `kept_process_state()` (which puts the warnings filters back); Lightning's loggers' levels and
    `datasets`' progress-bar switch are put back here."""
    from datasets.utils import logging as datasets_logging

    loggers = {name: logging.getLogger(name) for name in LIGHTNING_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    bars = datasets_logging.is_progress_bar_enabled()
    token = _PYTHON_API_VERBOSE.set(verbose)
    try:
        for logger in loggers.values():
            # Lightning logs its banners at info level; its own handler (or the caller's) shows them.
            logger.setLevel(logging.INFO if verbose else logging.WARNING)
        if not verbose:  # verbose leaves the bars as the caller has them (HF_DATASETS_DISABLE_PROGRESS_BARS)
            datasets_logging.disable_progress_bar()
            from lightning_fabric.utilities.warnings import PossibleUserWarning

            for category in (DeprecationWarning, FutureWarning, PossibleUserWarning):
                warnings.filterwarnings("ignore", category=category)
        yield
    finally:
        _PYTHON_API_VERBOSE.reset(token)
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
        (datasets_logging.enable_progress_bar if bars else datasets_logging.disable_progress_bar)()


def quiet_libraries(verbose: bool | None = None) -> None:
    """Keep library chatter out of the CLI's output.

    Lightning's info lines (GPU/TPU availability, "💡 Tip" advertisements, "`Trainer.fit` stopped")
    are dropped; its warnings pass on to the handlers the CLI set up, so they land on stderr. Library
    deprecation and future warnings, Lightning's "possible user warning" hints (such as the logging
    interval being longer than a smoke run) and its warnings that a resumed run's folders are not empty
    are ignored; `datasets` draws no bars of its own (the readers log one line per file). With `verbose`
    (by default the CLI's --verbose, see `output_flags`) all of it stays, and Lightning logs at info level.
    """
    import datasets
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    verbose = output_flags()[1] if verbose is None else verbose
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        # Lightning gives its logger a handler bound to the stderr of the moment it was imported;
        # propagating instead reaches whatever the CLI configured on the root logger.
        logger.handlers.clear()
        logger.propagate = True
    if verbose:
        return
    datasets.disable_progress_bars()
    for category in (DeprecationWarning, FutureWarning, PossibleUserWarning):
        warnings.filterwarnings("ignore", category=category)
    # --resume reuses the run's folders on purpose (and seqtag.train keeps the old CSV rows itself).
    warnings.filterwarnings("ignore", message="(Checkpoint|Experiment logs) directory .* exists and is not empty")


def output_flags() -> tuple[bool, bool]:
    """(quiet, verbose) as the CLI set them: --quiet raises the "seqtag" logger to WARNING, --verbose lowers it
    to DEBUG. A program that never configured that logger gets neither."""
    level = logging.getLogger("seqtag").level
    return level >= logging.WARNING, logging.NOTSET < level <= logging.DEBUG


def progress_callbacks(train_config, quiet: bool | None = None, verbose: bool | None = None) -> list[Callback]:
    """The callbacks that report a run's progress: none when quiet; Lightning's bar (on stderr) when stderr is a
    terminal and `train.progress_bar` is on; otherwise an `EpochLine`. `quiet` and `verbose` default to the
    CLI's --quiet/--verbose (see `output_flags`). Give the Trainer `enable_progress_bar=has_progress_bar(...)`.
    """
    if _PYTHON_API_VERBOSE.get() is False and quiet is None and verbose is None:
        return [EpochLine(to_log=True)]  # seqtag.train() by default: its epoch lines are log records
    default_quiet, default_verbose = output_flags()
    quiet = default_quiet if quiet is None else quiet
    verbose = default_verbose if verbose is None else verbose
    if quiet:
        return []
    if train_config.progress_bar and sys.stderr.isatty() and not verbose:
        # Rich draws on stdout unless told otherwise; stdout is for results. leave=True keeps each epoch's bar.
        return [RichProgressBar(leave=True, console_kwargs={"stderr": True})]
    return [EpochLine()]


def has_progress_bar(callbacks) -> bool:
    """Whether `callbacks` hold a progress bar: Lightning adds its own (drawn on stdout) unless the Trainer is
    built with `enable_progress_bar` equal to this."""
    return any(isinstance(callback, ProgressBar) for callback in callbacks)


def count_tokens(batch):
    """Real tokens in a training batch, as a tensor (summed lazily, so a GPU is not synchronised every step);
    None when the batch has no notion of tokens."""
    mask = getattr(batch, "mask", None)             # taggers and classifiers: Batch(mask=(B, T) bool)
    if mask is not None:
        return mask.sum()
    if isinstance(batch, dict) and "targets" in batch:  # language models: {"inputs", "targets"}, padding ignored
        return (batch["targets"] != IGNORE_INDEX).sum()
    return None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class EpochLine(Callback):
    """One plain line on stderr per epoch (per dev check when the dev set is checked within epochs): epoch,
    mean train loss, dev figure, learning rate, training speed in tokens/s (batches/s when batches carry no
    tokens) and time since the start of training. Only the first process of a multi-process run writes.
    `to_log`: each line is an info record of the "seqtag" logger instead (the Python API's default)."""

    def __init__(self, stream=None, to_log: bool = False):
        self.stream = stream   # None: whatever sys.stderr is when a line is written
        self.to_log = to_log
        self._checked = False
        self._started = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self._since = time.monotonic()
        self._validating = 0.0         # seconds spent on the dev set since the last line
        self._batches = 0
        self._tokens = 0
        self._loss_sum = 0.0
        self._loss_weight = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()
        self._reset()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._checked = False   # batches after the epoch's last dev check count towards the next line

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tokens = count_tokens(batch)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        weight = tokens if tokens is not None else 1
        if loss is not None:
            # Weighted by tokens, so the mean is the per-token loss of the whole stretch.
            self._loss_sum = self._loss_sum + loss.detach() * weight
            self._loss_weight = self._loss_weight + weight
        self._batches += 1
        if tokens is not None:
            self._tokens = self._tokens + tokens

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._validating += time.monotonic() - self._validation_start
        self._checked = True
        self._write(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._checked and self._batches:  # an epoch without a dev check still gets its line
            self._write(trainer)

    def _write(self, trainer: pl.Trainer) -> None:
        if trainer.is_global_zero:
            if self.to_log:
                log.info("%s", self.line(trainer))
            else:
                print(self.line(trainer), file=self.stream or sys.stderr, flush=True)
        self._reset()

    def line(self, trainer: pl.Trainer) -> str:
        parts = [self._epoch(trainer)]
        if self._loss_weight:
            parts.append(f"train loss {float(self._loss_sum / self._loss_weight):.4f}")
        metrics = trainer.callback_metrics
        for name, label in DEV_FIGURES.items():
            if name in metrics:
                parts.append(f"{label} {float(metrics[name]):.2f}")
                break
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        seconds = max(time.monotonic() - self._since - self._validating, 1e-9)
        # Every process trains on its own share of the batches; this one's pace times their number.
        if isinstance(self._tokens, int) and self._tokens == 0:
            parts.append(f"{self._batches * trainer.world_size / seconds:.2f} batches/s")
        else:
            parts.append(f"{float(self._tokens) * trainer.world_size / seconds:,.0f} tokens/s")
        parts.append(_clock(time.monotonic() - self._started))
        return "  ".join(parts)

    @staticmethod
    def _epoch(trainer: pl.Trainer) -> str:
        text = f"epoch {trainer.current_epoch + 1}"
        if trainer.max_epochs and trainer.max_epochs > 0:
            text += f"/{trainer.max_epochs}"
        batches = trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if isinstance(batches, int) and 0 < done < batches:
            text += f" ({100 * done // batches}%)"
        return text


def end_reason(trainer: pl.Trainer, early_stopping: EarlyStopping | None = None) -> str:
    """Why `trainer.fit` returned, in words: interrupted, early stopping, the time limit, max_steps or max_epochs.
    `early_stopping` defaults to the trainer's own EarlyStopping callback, if it has one."""
    early_stopping = early_stopping or trainer.early_stopping_callback
    if trainer.interrupted:
        return "interrupted (Ctrl+C); the best weights so far are kept, and --resume continues the run"
    epochs = trainer.current_epoch
    ran = f"after {_count(epochs, 'epoch')}"
    if early_stopping is not None and _early_stopped(early_stopping):
        figure = DEV_FIGURES.get(early_stopping.monitor, early_stopping.monitor)
        if getattr(getattr(early_stopping, "stopping_reason", None), "name", "") == "NON_FINITE_METRIC":
            return f"early stopping {ran}: the {figure} was not a finite number"
        checks = _count(early_stopping.wait_count, "epoch" if trainer.val_check_interval == 1.0 else "dev check")
        best = float(early_stopping.best_score)
        best_text = f" (best {best:.2f})" if math.isfinite(best) else ""
        return f"early stopping {ran}: {checks} without a better {figure}{best_text}"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:
        return f"the time limit was reached ({_clock(timer.time_elapsed('train'))} of training)"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return f"max_steps ({trainer.max_steps}) reached"
    if trainer.max_epochs not in (None, -1) and epochs >= trainer.max_epochs:
        return f"max_epochs ({trainer.max_epochs}) reached"
    if trainer.should_stop:
        return f"a callback stopped training {ran}"
    return f"training ended {ran}"


def _early_stopped(early_stopping: EarlyStopping) -> bool:
    reason = getattr(early_stopping, "stopping_reason", None)
    if reason is not None:
        return reason.name != "NOT_STOPPED"
    return early_stopping.wait_count >= early_stopping.patience  # Lightning before 2.5 keeps no reason
