"""Training a recipe end to end: data → Lightning fit → best weights → figures → saved model, the same way
for every task family. The one training loop: fine-tuning and `seqtag compare` call `train` too, with their own
start (`starts.py`) and callbacks.

    train(recipe, out, init=Scratch() | FromParent(...), callbacks=[...])

This is the training layer, the only one that imports Lightning (with `tasks.py`, `starts.py`, `progress.py`).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import random
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint, WeightAveraging
from pytorch_lightning.loggers import Logger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn, TrainerStatus
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.optim.swa_utils import get_ema_multi_avg_fn

from .artifact import replace_durably, save_model, write_durably
from .config import Recipe, load_recipe
from .curves import draw_curves
from .errors import SeqtagError
from .hardware import check_training_hardware
from .objectives import Objective, objective_of
from .progress import DEV_FIGURES, end_reason, has_progress_bar, progress_callbacks
from .runs import claim_run_folder, this_process_writes
from .starts import Scratch, Start
from .tasks import DataModule, Task, WaitsForFirstChange
from .version import __version__

log = logging.getLogger("seqtag")


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict          # {"dev": {...}, "test": {...}} as `evaluate` computes them
    interrupted: bool
    rank: int = 0          # in a multi-process run, only rank 0 evaluates, writes and has figures


class RunLog(Logger):
    """The run's log, out_dir/logs/metrics.csv: one row per logging step or dev check, with a column per figure
    (sorted) and "step". The file is rewritten whole and durably (`write_durably`: a crash leaves the previous
    version whole) when a checkpoint is written and when training ends: the rows a checkpoint counts are on disk
    with it (Lightning's own `save` after every logged row does nothing, so steps pay no fsync). A resumed run
    keeps the first `keep_rows` rows of the run it continues (None: all of them), those logged before its
    checkpoint, so no step is listed twice. Only the process that writes (`runs.this_process_writes`) writes."""

    def __init__(self, out_dir: Path, keep_rows: int | None = 0):
        super().__init__()
        self.path = out_dir / "logs" / "metrics.csv"
        self.rows: list[dict] = []
        if keep_rows != 0 and self.path.is_file():
            with self.path.open(newline="") as rows:
                self.rows = list(csv.DictReader(rows))[:keep_rows]
        self._saved = -1  # rows written by the last save (-1: none yet)

    @property
    def name(self) -> str:
        return "logs"

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str:
        return str(self.path.parent)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the recipe is saved whole in the model's config.json

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in metrics.items()}
        row["step"] = len(self.rows) if step is None else step
        self.rows.append(row)

    def save(self) -> None:
        pass  # see `flush`

    def flush(self) -> None:
        """Write metrics.csv with every row logged so far."""
        if not this_process_writes() or self._saved == len(self.rows):
            return
        keys = sorted({key for row in self.rows for key in row})
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, text.getvalue())
        self._saved = len(self.rows)

    def finalize(self, status: str) -> None:
        self.flush()


def logged_rows(checkpoint: Path) -> int | None:
    """How many rows metrics.csv held when `checkpoint` was written (None for a checkpoint that did not count)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return saved.get("seqtag", {}).get("csv_rows")


def random_states() -> dict:
    """The random number generators' states (Python, numpy, torch, CUDA), as plain data a checkpoint can hold."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [name, keys.tolist(), position, has_gauss, gauss],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its place as `.NAME.partial` and renames it into place, so that a run killed
    while saving keeps the previous checkpoint whole (runs.RUN_FILES knows these names)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        replace_durably(partial, path)


class StepBoundaryInterrupt(KeyboardInterrupt):
    """Ctrl+C acted on between two training steps, where the training state is whole and can be saved."""


class RunCheckpoints(ModelCheckpoint):
    """checkpoints/best.ckpt at each better dev score, and checkpoints/last.ckpt, the whole training state, after
    every dev check, at the end of every epoch, at Ctrl+C (once `fit` has stopped between two steps; in a
    single-process run) and when training ends for any other reason (early stopping, the time limit, max_steps).
    Lightning's own save_last rewrites last.ckpt only together with best.ckpt, so that --resume could go back
    many epochs.

    A resumed run goes on exactly as the interrupted one would have: each checkpoint holds the random number
    generators' states (for dropout), put back where the interrupted run stood (at the next epoch's start for a
    checkpoint taken at an epoch's end, else before the next step: the data loader draws its seed in between), and
    the dev figure the plateau learning-rate schedule steps on at an epoch's end, a step Lightning skips when it
    resumes there. Early stopping's decision to stop, which Lightning does not save, is taken again from its
    restored count. A checkpoint also holds the number of rows metrics.csv had, so that a resumed run drops the
    rows logged after it (see `RunLog`).
    """

    def __init__(self, folder: Path, monitor: str, mode: str):
        # The best checkpoint is saved at the dev check itself, before last.ckpt is written there: saved at the
        # epoch's end (Lightning's default when dev runs once an epoch), last.ckpt held the best of the check
        # before, and a run resumed from it kept a later epoch that only tied the best one.
        super().__init__(dirpath=folder, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                         enable_version_counter=False, save_on_train_epoch_end=False)
        self.last_path = Path(folder) / "last.ckpt"
        self.saved_step: int | None = None  # the training step last.ckpt holds
        self._resumed: dict | None = None   # what a resumed run still has to put back

    def write_last(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.saved_step == trainer.global_step:
            return
        self.last_model_path = str(self.last_path)  # part of the state, so set before saving
        trainer.save_checkpoint(self.last_path, weights_only=False)  # the whole training state
        self.saved_step = trainer.global_step

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)  # best.ckpt first: last.ckpt holds the updated best score
        self.write_last(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if self._resumed and not self._resumed["epoch_end"] and _early_stop_decided(trainer):
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._resumed and self._resumed["epoch_end"]:  # resumed at this epoch's end, Lightning ends it again,
            if _early_stop_decided(trainer):              # before the dev figures are back
                trainer.should_stop = True
        else:
            super().on_train_epoch_end(trainer, pl_module)
        self.write_last(trainer)  # an epoch whose last step was not followed by a dev check

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_last(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Any other exception may have struck within a step, or left weights that are not numbers: last.ckpt
        # keeps the previous state. So does a multi-process run: saving waits for every process, and one that
        # got a second Ctrl+C would never come.
        if isinstance(exception, StepBoundaryInterrupt) and trainer.world_size == 1:
            self.write_last(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        loop = trainer.fit_loop.epoch_loop
        plateau = {config.monitor: float(trainer.callback_metrics[config.monitor])
                   for config in trainer.lr_scheduler_configs
                   if config.reduce_on_plateau and config.monitor in trainer.callback_metrics}
        checkpoint["seqtag"] = {"random": random_states(), "csv_rows": _csv_rows(trainer), "plateau": plateau,
                                "epoch_end": loop.batch_progress.current.completed >= trainer.num_training_batches}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.saved_step = checkpoint.get("global_step")
        self._resumed = checkpoint.get("seqtag")
        if this_process_writes(trainer):
            log.info("%s", self.resuming_at(checkpoint))

    def resuming_at(self, checkpoint: dict) -> str:
        """Where a resumed run picks up, in the epoch lines' terms: the epoch it trains next (from 1), the steps
        already trained, and the best dev figure so far, so that a --resume on the wrong folder shows at once."""
        resumed = checkpoint.get("seqtag") or {}
        # A checkpoint taken once an epoch's last step was done continues with the next epoch.
        epoch = checkpoint.get("epoch", 0) + 1 + bool(resumed.get("epoch_end"))
        best = (checkpoint.get("callbacks", {}).get(self.state_key) or {}).get("best_model_score")
        figure = DEV_FIGURES.get(self.monitor, self.monitor)
        best_text = f" (best {figure} {float(best):.2f})" if best is not None and math.isfinite(float(best)) else ""
        return f"resuming at epoch {epoch}, step {checkpoint.get('global_step', 0)}{best_text}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        resumed, self._resumed = self._resumed, None
        if not resumed:
            return
        if not resumed["epoch_end"]:  # resumed within an epoch: the random state goes back before its next step
            self._resumed = resumed
            return
        for config in trainer.lr_scheduler_configs:
            if config.reduce_on_plateau and config.interval == "epoch" and config.monitor in resumed["plateau"]:
                config.scheduler.step(resumed["plateau"][config.monitor])
        set_random_states(resumed["random"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._resumed:
            set_random_states(self._resumed["random"])
            self._resumed = None


class EarlyStop(WaitsForFirstChange, EarlyStopping):
    """Lightning's early stopping, whose patience starts once the dev score has moved (see WaitsForFirstChange)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        self.waiting = getattr(pl_module, "waiting", False)
        super().on_validation_end(trainer, pl_module)

    def _evaluate_stopping_criteria(self, current: torch.Tensor):
        if self.still_at_start(float(current)):
            return False, None
        return super()._evaluate_stopping_criteria(current)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "first_score": self.first_score, "score_moved": self.score_moved}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.first_score = state_dict.get("first_score")
        self.score_moved = state_dict.get("score_moved", False)


def _early_stop_decided(trainer: pl.Trainer) -> bool:
    """Whether early stopping, as restored from a checkpoint, had decided to stop (Lightning does not save the
    decision itself, so a run killed between that dev check and its end would otherwise train on)."""
    early = trainer.early_stopping_callback
    return early is not None and early.wait_count >= early.patience


def _csv_rows(trainer: pl.Trainer) -> int | None:
    """The rows of metrics.csv, every row logged so far written out first; None outside the first process."""
    logger = trainer.logger
    if not isinstance(logger, RunLog) or not this_process_writes(trainer):
        return None
    logger.flush()
    return len(logger.rows)


class TrainingGuard(Callback):
    """Stops training clearly: at a Ctrl+C (`interrupt`, the SIGINT handler `fit` installs) between two training
    steps, and at a training loss that is not a finite number, with a SeqtagError naming the step and the checkpoint
    to resume from. In a multi-process run every process takes both decisions at the same step."""

    def __init__(self, train_config, out_dir: Path):
        self.config = train_config
        self.out_dir = out_dir
        self.stop_requested = False  # Ctrl+C was pressed
        self._stop_now = False       # every process agreed to stop before the next step

    def interrupt(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt  # a second Ctrl+C: stop at once
        self.stop_requested = True
        # What is saved is said once, when it is: by the run's last line (the CLI's) or its "training ended" log.
        log.warning("Ctrl+C: training stops after this step; press Ctrl+C again to stop at once.")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._stop_now or (self.stop_requested and trainer.world_size == 1):
            raise StepBoundaryInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        flags = torch.tensor([loss is not None and not bool(torch.isfinite(loss.detach()).all()),
                              self.stop_requested], dtype=torch.float32)
        if trainer.world_size > 1:
            flags = trainer.strategy.reduce(flags.to(pl_module.device), reduce_op="sum").cpu()
        if flags[0]:
            raise SeqtagError(self._non_finite(trainer, float(loss.detach().float().mean())))
        self._stop_now = bool(flags[1])

    def _non_finite(self, trainer: pl.Trainer, loss: float) -> str:
        checkpoints = trainer.checkpoint_callback
        last = getattr(checkpoints, "last_path", None)
        if last is not None and last.is_file():
            at = f" (step {checkpoints.saved_step})" if getattr(checkpoints, "saved_step", None) is not None else ""
            resume = (f"The last checkpoint before it is {last}{at}: --resume continues from there, with the "
                      f"settings it was saved with.")
        else:
            resume = "No checkpoint had been written yet."
        value = "nan" if math.isnan(loss) else f"{loss:g}" if math.isinf(loss) else "not a number in another process"
        return (f"Training stopped at step {trainer.global_step} (epoch {trainer.current_epoch + 1}): the training "
                f"loss is {value}. The model was not saved ({self.out_dir / 'model'} is as it was). {resume} A loss "
                f"that is not a number usually comes from a learning rate too high for the data (train.lr is "
                f"{self.config.lr:g}) or from unclipped gradients (train.gradient_clip is "
                f"{self.config.gradient_clip:g}): lower the one or set the other, and train again (--overwrite "
                f"replaces this run).")


def make_trainer(recipe: Recipe, out_dir: Path, smoke: bool = False, resume: bool = False,
                 extra_callbacks: list[Callback] = ()) -> tuple[pl.Trainer, ModelCheckpoint]:
    cfg = recipe.train
    objective = objective_of(recipe.task)
    monitor, mode = objective.monitor, objective.mode  # e.g. highest dev F1, or lowest dev perplexity
    checkpoint = RunCheckpoints(out_dir / "checkpoints", monitor, mode)
    callbacks = [checkpoint, TrainingGuard(cfg, out_dir)]
    if cfg.patience > 0:
        # Not strict: a run stopped by max_steps or max_time before its first dev check has no score yet.
        # Checked at the dev check itself, so that the checkpoint written there holds this check's count (by
        # default, Lightning would count at the epoch's end, and a run resumed there would miss one).
        callbacks.append(EarlyStop(monitor=monitor, mode=mode, patience=cfg.patience, strict=False,
                                   check_on_train_epoch_end=False))
    if cfg.ema_decay > 0:
        # Swaps the average in for each dev check and puts it in every checkpoint's weights (the training
        # weights ride along for --resume), so best.ckpt and the saved model hold the average. One fused update
        # for all tensors: 4.8 ms a step against 98 ms tensor by tensor for wnut-ner with 100,000 pretrained rows
        # (bench/ema_cost.py).
        # The buffers (the CRF's allowed transitions) are constants, copied rather than averaged.
        callbacks.append(WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False))
    callbacks += list(extra_callbacks)
    callbacks += progress_callbacks(cfg)  # a bar on a terminal, one line per epoch elsewhere (stderr)
    limits = (dict(limit_train_batches=1, max_epochs=1, limit_val_batches=1) if smoke
              else dict(max_epochs=cfg.max_epochs, max_steps=cfg.max_steps or -1,
                   val_check_interval=cfg.val_check_interval))
    kept_rows = logged_rows(checkpoint.last_path) if resume else 0
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip or None, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=RunLog(out_dir, keep_rows=kept_rows), log_every_n_steps=10,
        enable_progress_bar=has_progress_bar(callbacks), enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our bucketing sampler shards by rank itself
        max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
        **limits)
    return trainer, checkpoint


def fit(trainer: pl.Trainer, task: pl.LightningModule, data: pl.LightningDataModule, ckpt_path: str | None) -> None:
    """`trainer.fit`, except that Ctrl+C ends training instead of the program.

    The first Ctrl+C stops training once the step under way is done, where the training state is whole:
    last.ckpt is written there, so that --resume goes on with the next step. A second Ctrl+C stops at once
    (--resume then goes back to the last dev check). Either way the run goes on to save the best weights so
    far, and Ctrl+C works as usual again afterwards.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    guard = next((callback for callback in trainer.callbacks if isinstance(callback, TrainingGuard)), None)
    if main_thread and guard is not None:
        signal.signal(signal.SIGINT, guard.interrupt)
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Not said here as well: the CLI's last line says what was saved and how to continue.
    except MisconfigurationException as err:
        # Lightning's word for settings that cannot work together, such as resuming past train.max_epochs.
        raise SeqtagError(f"Lightning refused these settings: {err}") from None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, handler)
    if guard is not None and (guard.stop_requested or guard._stop_now) and not trainer.interrupted:
        # Ctrl+C during the last step or the last dev check: no step was left to stop at, and `fit` ended as if
        # nothing had been pressed. The run still counts as interrupted (exit 130), as one stopped earlier does.
        trainer.state.status = TrainerStatus.INTERRUPTED


def prepare_data(recipe: Recipe, cache_dir: str | None = None, start: Start | None = None) -> DataModule:
    """The recipe's data, read and featurized by its objective (the recipe with the family's defaults is
    `data.recipe`); a fine-tuning start prepares it from the parent's vocabularies."""
    objective = objective_of(recipe.task)
    data = DataModule(objective, objective.family.resolve(recipe), cache_dir)
    data.prepared = (start or Scratch()).prepare(objective, data.recipe, cache_dir)
    return data


def new_task(data: DataModule, start: Start | None = None) -> Task:
    """A freshly started network for prepared data (or, fine-tuning, the parent's grown network), inside the
    Lightning task that trains it."""
    start = start or Scratch()
    objective, recipe, prepared = data.objective, data.recipe, data.prepared
    net = objective.family.build_network(recipe.model, prepared.sizes)
    start.start_network(objective, net, recipe, prepared)
    if prepared.record.pretrained_rows is not None:
        log.info("pretrained vectors set for %d of %d words", prepared.record.pretrained_rows,
                 prepared.sizes["words"])
    return Task(objective, net, recipe, prepared.featurizer.labels if prepared.featurizer else None,
                head_lr=start.head_lr(recipe), keep=start.distillation(objective, recipe, prepared),
                anchor=start.anchor(), first_new=start.first_new_label())


def train(recipe: Recipe, out_dir: str | Path, resume: bool = False, smoke: bool = False,
          cache_dir: str | None = None, overwrite: bool = False, *, init: Start | None = None,
          callbacks: list[Callback] = ()) -> TrainResult:
    """Train, keep the best dev checkpoint, evaluate dev/test with it and save the model directory.

    The recipe's objective (`objectives.py`) says how; nothing here depends on which family it is.
    `init` says what the run starts from (`starts.Scratch()` by default, `starts.FromParent` when fine-tuning);
    `callbacks` are Lightning callbacks that watch the run (what `seqtag compare` measures).
    `smoke` runs one training step and one dev batch: the whole path, in seconds.
    With `resume`, training continues from `out_dir/checkpoints/last.ckpt`.
    A folder that already holds a model or a run is refused unless `overwrite` (or `resume`) says what to do with
    it, and so is a folder another run is using; see `runs.claim_run_folder`. A `smoke` run never replaces a
    trained model. Files seqtag did not write are never removed.
    In a multi-process run only rank 0 evaluates and writes the model directory.
    """
    objective = objective_of(recipe.task)
    recipe = objective.family.resolve(recipe)
    check_training_hardware(recipe.train)  # before any data is read: settings this machine cannot run
    out_dir = Path(out_dir)
    # Rank 0 checks, locks and clears the folder; another rank (relaunched by Lightning, or started by torchrun or
    # SLURM on this or another node) must not touch what rank 0 has started writing.
    lock = None if not this_process_writes() else claim_run_folder(out_dir, resume=resume, overwrite=overwrite,
                                                                smoke=smoke)
    try:
        return _train_in(out_dir, objective, recipe, resume, smoke, cache_dir, init or Scratch(), list(callbacks))
    finally:
        if lock is not None:
            lock.release()


def check_resumable(last: Path, task: Task) -> None:
    """A checkpoint whose weights do not fit the network these settings build (another head, cell, size or
    vocabulary) is an error naming the first difference, before Lightning fails inside its load."""
    saved = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    built = task.state_dict()
    for name in sorted(set(saved) | set(built)):
        if name not in saved or name not in built or saved[name].shape != built[name].shape:
            found = f"{tuple(saved[name].shape)}" if name in saved else "nothing"
            wanted = f"{tuple(built[name].shape)}" if name in built else "nothing"
            raise SeqtagError(f"--resume: {last} was trained with other network settings than these: it holds {found} "
                              f"for {name.removeprefix('net.')}, where these settings build {wanted}. Resume with the "
                              f"recipe and --set options the run was started with (its model/config.json, once saved, "
                              f"lists them), or start again with --overwrite.")


def _train_in(out_dir: Path, objective: Objective, recipe: Recipe, resume: bool, smoke: bool, cache_dir: str | None,
              start: Start, callbacks: list[Callback]) -> TrainResult:
    """`train` once the folder is claimed."""
    last = out_dir / "checkpoints" / "last.ckpt"
    pl.seed_everything(recipe.train.seed, workers=True, verbose=False)
    data = prepare_data(recipe, cache_dir, start)
    task = new_task(data, start)
    prepared = data.prepared
    if resume:
        check_resumable(last, task)
    trainer, checkpoint = make_trainer(recipe, out_dir, smoke, resume, [*start.callbacks(), *callbacks])
    with warnings.catch_warnings():
        # The loaders pick up a resumed epoch at its first untrained batch themselves, so this warning is wrong.
        warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
        fit(trainer, task, data, str(last) if resume else None)

    if not trainer.interrupted:  # after Ctrl+C, Lightning's first process has stopped the others itself
        trainer.strategy.barrier()  # every rank has finished training before rank 0 reads the best checkpoint
    if not this_process_writes(trainer):
        return TrainResult(out_dir / "model", {}, trainer.interrupted, trainer.global_rank)
    # Marked, so that a caller that reports an interrupted run itself (the CLI) can leave this line out.
    log.info("training ended: %s", end_reason(trainer), extra={"seqtag_interrupted": trainer.interrupted})
    if checkpoint.best_model_path:
        # Restore the best dev epoch; weights_only keeps torch.load from running pickled code.
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        task.load_state_dict(best["state_dict"])

    # The final figures come from the predictor, exactly as `seqtag evaluate` computes them, on the training
    # device.
    device = task.device if trainer.world_size == 1 else torch.device("cpu")
    predictor = objective.predictor(task.net, prepared, recipe, device=device)
    metrics = {split: predictor.evaluate(rows) for split, rows in objective.evaluation_splits(prepared).items()}
    if prepared.record.train_tokens is not None:
        metrics["train_tokens"] = prepared.record.train_tokens
    metrics["epochs"] = trainer.current_epoch
    metrics["interrupted"] = trainer.interrupted
    metrics["smoke"] = smoke  # a smoke run's model may be replaced; see runs.trained_model
    tokenizers, labels, entries = objective.save_parts(prepared)
    config = {
        "seqtag_version": __version__,
        "task": objective.family.name,
        "sizes": prepared.sizes,
        "recipe": recipe.to_dict(),
        "unseen_labels": prepared.record.unseen_labels,
        **({"pretrained_coverage": prepared.record.pretrained_coverage}
           if prepared.record.pretrained_coverage is not None else {}),
        **entries,
        **start.config_entries(prepared),
    }
    model_dir = save_model(out_dir / "model", config, task.net.state_dict(), tokenizers, labels, metrics)
    _draw_learning_curves(trainer, out_dir)
    return TrainResult(model_dir, metrics, trainer.interrupted)


def _draw_learning_curves(trainer: pl.Trainer, out_dir: Path) -> None:
    """out_dir/curves.png from the run's metrics.csv. The model is saved already: a picture that cannot be drawn
    is a warning, never a lost run."""
    try:
        if isinstance(trainer.logger, RunLog):
            trainer.logger.flush()  # every row logged is in metrics.csv before it is read
        draw_curves(out_dir)
    except Exception as err:  # noqa: BLE001 - any failure to draw, matplotlib's included
        log.warning("curves.png was not drawn (%s: %s); the model is saved. Draw it with: seqtag report %s",
                    type(err).__name__, err, out_dir)


# ---------------------------------------------------------------------------
# The Python API (`seqtag.train`)


def settings_as_overrides(settings: dict) -> list[str]:
    """Python keyword settings as `--set` assignments: {"model.hidden_size": 64} or model__hidden_size=64."""
    from .config import _as_setting

    return [f"{key.replace('__', '.')}={_as_setting(value)}" for key, value in settings.items()]


def train_recipe(recipe: str | Path | Recipe, files: dict[str, str | Path | None], out: str | Path | None = None,
                 resume: bool = False, overwrite: bool = False, smoke: bool = False,
                 settings: dict | None = None) -> TrainResult:
    """`seqtag train` from Python: a recipe name or YAML path (or a loaded `Recipe`) with its `files` (train, dev,
    test) and `--set` settings."""
    if isinstance(recipe, Recipe):
        if settings or any(path is not None for path in files.values()):
            raise SeqtagError("seqtag.train(): a loaded Recipe already holds its files and settings; pass the recipe "
                              "name or path to give --train/--dev/--test or settings.")
        loaded = recipe
    else:
        loaded = load_recipe(str(recipe), settings_as_overrides(settings or {}),
                             **{split: None if path is None else str(path) for split, path in files.items()})
    folder = Path(out) if out is not None else Path("runs") / (f"{loaded.name}-smoke" if smoke else loaded.name)
    return train(loaded, folder, resume=resume, smoke=smoke, overwrite=overwrite)
