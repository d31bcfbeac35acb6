"""Training a recipe end to end: data → Lightning fit → best weights → figures → saved model, the same way
for every task family."""
from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from . import __version__
from .artifact import save_model
from .config import Recipe
from .errors import SeqtagError
from .families import family_of
from .hardware import check_training_hardware
from .progress import end_reason, has_progress_bar, progress_callbacks
from .tasks import DataModule, Task

log = logging.getLogger("seqtag")


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict          # {"dev": {...}, "test": {...}} as `evaluate` computes them
    interrupted: bool
    rank: int = 0          # in a multi-process run, only rank 0 evaluates, writes and has figures


def csv_logger(out_dir: Path, keep_rows: bool) -> CSVLogger:
    """CSV log in out_dir/logs/metrics.csv; a resumed run keeps the rows of the run it continues."""
    path = out_dir / "logs" / "metrics.csv"
    old_rows = list(csv.DictReader(path.open(newline=""))) if keep_rows and path.is_file() else []
    logger = CSVLogger(str(out_dir), name="logs", version="")
    if old_rows:
        # Lightning's writer starts a new file; hand it the old rows so they are written back first.
        writer = logger.experiment
        writer.metrics = old_rows + writer.metrics
        writer.metrics_keys = sorted(old_rows[0].keys())
    return logger


def make_trainer(recipe: Recipe, out_dir: Path, smoke: bool = False,
                 resume: bool = False) -> tuple[pl.Trainer, ModelCheckpoint]:
    cfg = recipe.train
    family = family_of(recipe.task)
    monitor, mode = family.monitor, family.mode  # e.g. highest dev F1, or lowest dev perplexity
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks = [checkpoint]
    if cfg.patience > 0:
        # Not strict: a run stopped by max_steps or max_time before its first dev check has no score yet.
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience, strict=False))
    callbacks += progress_callbacks(cfg)  # a bar on a terminal, one line per epoch elsewhere (stderr)
    limits = (dict(limit_train_batches=1, max_epochs=1, limit_val_batches=1) if smoke
              else dict(max_epochs=cfg.max_epochs, max_steps=cfg.max_steps or -1,
                   val_check_interval=cfg.val_check_interval))
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip or None, callbacks=callbacks,
        logger=csv_logger(out_dir, keep_rows=resume), log_every_n_steps=10,
        enable_progress_bar=has_progress_bar(callbacks), enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our bucketing sampler shards by rank itself
        max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
        **limits)
    return trainer, checkpoint


def fit(trainer: pl.Trainer, task: pl.LightningModule, data: pl.LightningDataModule, ckpt_path: str | None) -> None:
    """`trainer.fit`, except that Ctrl+C ends training instead of the program.

    Lightning answers Ctrl+C by shutting down, ignoring further Ctrl+C and exiting; here the run
    goes on to save the best weights so far (and can be resumed), and Ctrl+C works again.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        log.warning("training interrupted; saving the best weights so far (continue with --resume)")
    except MisconfigurationException as err:
        # Lightning's word for settings that cannot work together, such as resuming past train.max_epochs.
        raise SeqtagError(f"Lightning refused these settings: {err}") from None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, handler)


def prepare_data(recipe: Recipe, cache_dir: str | None = None) -> DataModule:
    """The recipe's data, read and featurized by its family (the recipe with the family's defaults is
    `data.recipe`)."""
    family = family_of(recipe.task)
    data = DataModule(family, family.resolve(recipe), cache_dir)
    data.setup("fit")
    return data


def new_task(data: DataModule) -> Task:
    """A freshly started network for prepared data, inside the Lightning task that trains it."""
    family, recipe, prepared = data.family, data.recipe, data.prepared
    net = family.build_network(recipe.model, prepared.sizes)
    family.start_network(net, recipe, prepared)
    if "pretrained_rows" in prepared.record:
        log.info("pretrained vectors set for %d of %d words", prepared.record["pretrained_rows"],
                 prepared.sizes["words"])
    return Task(family, net, recipe, prepared.featurizer.labels if prepared.featurizer else None)


def is_relaunched_rank() -> bool:
    """True in the processes Lightning starts for ranks above 0 (they run this same program again)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def train(recipe: Recipe, out_dir: str | Path, resume: bool = False, smoke: bool = False,
          cache_dir: str | None = None) -> TrainResult:
    """Train, keep the best dev checkpoint, evaluate dev/test with it and save the model directory.

    The recipe's task family (`families.py`) says how; nothing here depends on which family it is.
    `smoke` runs one training step and one dev batch: the whole path, in seconds.
    With `resume`, training continues from `out_dir/checkpoints/last.ckpt`.
    In a multi-process run only rank 0 evaluates and writes the model directory.
    """
    family = family_of(recipe.task)
    recipe = family.resolve(recipe)
    check_training_hardware(recipe.train)  # before any data is read: settings this machine cannot run
    out_dir = Path(out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise SeqtagError(f"--resume: no checkpoint at {last}. Start without --resume, or give the --out of the "
                          f"interrupted run.")
    if not resume and not is_relaunched_rank():
        # A relaunched rank must not delete what rank 0 has started writing.
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(out_dir / "logs", ignore_errors=True)

    pl.seed_everything(recipe.train.seed, workers=True, verbose=False)
    data = prepare_data(recipe, cache_dir)
    task = new_task(data)
    prepared = data.prepared
    trainer, checkpoint = make_trainer(recipe, out_dir, smoke, resume)
    with warnings.catch_warnings():
        if family.causal:  # its loader picks up mid-epoch itself (WindowOrder), so this warning is wrong
            warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
        fit(trainer, task, data, str(last) if resume else None)

    trainer.strategy.barrier()  # every rank has finished training before rank 0 reads the best checkpoint
    if trainer.global_rank != 0:
        return TrainResult(out_dir / "model", {}, trainer.interrupted, trainer.global_rank)
    log.info("training ended: %s", end_reason(trainer))
    if checkpoint.best_model_path:
        # Restore the best dev epoch; weights_only keeps torch.load from running pickled code.
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        task.load_state_dict(best["state_dict"])

    # The final figures come from the predictor, exactly as `seqtag evaluate` computes them, on the training
    # device.
    device = task.device if trainer.world_size == 1 else torch.device("cpu")
    predictor = family.predictor(task.net, prepared, recipe, device=device)
    metrics = {split: predictor.evaluate(rows) for split, rows in family.evaluation_splits(prepared).items()}
    if "train_tokens" in prepared.record:
        metrics["train_tokens"] = prepared.record["train_tokens"]
    metrics["epochs"] = trainer.current_epoch
    metrics["interrupted"] = trainer.interrupted
    tokenizers, labels, entries = family.save_parts(prepared)
    config = {
        "seqtag_version": __version__,
        "task": family.name,
        "sizes": prepared.sizes,
        "recipe": recipe.to_dict(),
        "unseen_labels": prepared.record.get("unseen_labels", {}),
        **entries,
    }
    model_dir = save_model(out_dir / "model", config, task.net.state_dict(), tokenizers, labels, metrics)
    return TrainResult(model_dir, metrics, trainer.interrupted)
