"""Training a recipe end to end: data → Lightning fit → best weights → figures → saved model."""
from __future__ import annotations

import csv
import logging
import shutil
import signal
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from . import __version__
from .artifact import save_model
from .config import Recipe
from .data.lm import LanguageModelData
from .data.vectors import read_vectors
from .data.module import ClassificationData, TaggingData
from .errors import SeqtagError
from .language_model import LanguageModel
from .nn import ClassifierNet, LanguageModelConfig, LanguageModelNet, NetConfig, TaggerNet, set_rows
from .predict import SequenceTagger, TextClassifier
from .tasks import (DEV_PERPLEXITY, DEV_SCORE, ClassificationTask, LanguageModelTask, TaggingTask,
                    balanced_class_weights)

log = logging.getLogger("seqtag")


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict          # {"dev": {...}, "test": {...}} as `evaluate` computes them
    interrupted: bool


def build_data(recipe: Recipe, cache_dir: str | None = None
               ) -> TaggingData | ClassificationData | LanguageModelData:
    if recipe.task == "lm":
        return LanguageModelData(recipe.data, backward=recipe.model.lm_directions == "both", cache_dir=cache_dir)
    data_class = ClassificationData if recipe.task == "classification" else TaggingData
    return data_class(recipe.data, recipe.model, seed=recipe.train.seed, cache_dir=cache_dir)


def build_task(recipe: Recipe, data) -> TaggingTask | ClassificationTask | LanguageModelTask:
    if recipe.task == "lm":
        config = LanguageModelConfig.from_model_config(recipe.model, data.tokenizer.get_vocab_size())
        net = LanguageModelNet(config)
        if recipe.model.pretrained_vectors:
            count = set_rows(net.embedding, lm_pretrained_rows(recipe, data.tokenizer))
            log.info("pretrained vectors set for %d of %d words", count, config.vocab_size)
        return LanguageModelTask(net, recipe.train)
    prep = data.preprocessor
    chars = prep.encoder.chars
    net_config = NetConfig.from_model_config(recipe.model, prep.encoder.words.get_vocab_size(),
                                             chars.get_vocab_size() if chars else 0, len(prep.labels))
    if recipe.task == "classification":
        weights = None
        if recipe.train.class_weights == "balanced":
            weights = balanced_class_weights(data.encoded["train"]["label_id"], len(prep.labels))
            log.info("class weights: %s", dict(zip(prep.labels, weights.tolist())))
        return ClassificationTask(ClassifierNet(net_config), recipe.train, prep.labels, weights)
    net = TaggerNet(net_config)
    if data.pretrained:
        count = net.encoder.load_pretrained(data.pretrained)
        log.info("pretrained vectors set for %d of %d words", count, net_config.num_words)
    return TaggingTask(net, recipe.train, prep.labels, prep.train_scheme)


def lm_pretrained_rows(recipe: Recipe, tokenizer) -> dict[int, torch.Tensor]:
    """Pretrained vectors by id for the words of a word-level LM's vocabulary (which the vectors do not extend:
    every vocabulary word is also an output of the softmax)."""
    if recipe.data.tokenizer != "word":
        raise SeqtagError("model.pretrained_vectors needs data.tokenizer 'word' in a language model; characters "
                          "and BPE pieces have no pretrained word vectors.")
    vectors = read_vectors(recipe.model.pretrained_vectors, recipe.model.word_dim, recipe.model.pretrained_max_words)
    vocab = tokenizer.get_vocab()
    fold = str.lower if recipe.data.lowercase else str
    return {vocab[fold(word)]: vector for word, vector in vectors.items() if fold(word) in vocab}


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
    # Language models are chosen by lowest dev perplexity, the others by highest dev score.
    monitor, mode = (DEV_PERPLEXITY, "min") if recipe.task == "lm" else (DEV_SCORE, "max")
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks = [checkpoint]
    if cfg.patience > 0:
        # Not strict: a run stopped by max_steps or max_time before its first dev check has no score yet.
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience, strict=False))
    limits = (dict(limit_train_batches=1, max_epochs=1, limit_val_batches=1) if smoke
              else dict(max_epochs=cfg.max_epochs, max_steps=cfg.max_steps or -1,
                   val_check_interval=cfg.val_check_interval))
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy, precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip or None, callbacks=callbacks,
        logger=csv_logger(out_dir, keep_rows=resume), log_every_n_steps=10,
        enable_progress_bar=cfg.progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
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


def train(recipe: Recipe, out_dir: str | Path, resume: bool = False, smoke: bool = False,
          cache_dir: str | None = None) -> TrainResult:
    """Train, keep the best dev checkpoint, evaluate dev/test with it and save the model directory.

    `smoke` runs one training step and one dev batch: the whole path, in seconds.
    With `resume`, training continues from `out_dir/checkpoints/last.ckpt`.
    """
    out_dir = Path(out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise SeqtagError(f"--resume: no checkpoint at {last}. Start without --resume, or give the --out of the "
                          f"interrupted run.")
    if not resume:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(out_dir / "logs", ignore_errors=True)

    pl.seed_everything(recipe.train.seed, workers=True, verbose=False)
    data = build_data(recipe, cache_dir)
    data.setup("fit")
    task = build_task(recipe, data)
    trainer, checkpoint = make_trainer(recipe, out_dir, smoke, resume)
    with warnings.catch_warnings():
        if recipe.task == "lm":  # its loader picks up mid-epoch itself (WindowOrder), so this warning is wrong
            warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
        fit(trainer, task, data, str(last) if resume else None)

    if checkpoint.best_model_path:
        # Restore the best dev epoch; weights_only keeps torch.load from running pickled code.
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        task.load_state_dict(best["state_dict"])

    if recipe.task == "lm":
        model = LanguageModel(task.net.cpu(), data.tokenizer, recipe.data)
        metrics = {split: model.evaluate(data.streams[split]) for split in ("dev", "test") if split in data.streams}
        metrics["train_tokens"] = len(data.streams["train"])
    else:
        prep = data.preprocessor
        model_class = TextClassifier if recipe.task == "classification" else SequenceTagger
        model = model_class(task.net.cpu(), prep, recipe.data)
        metrics = {split: model.evaluate(data.corpora[split]) for split in ("dev", "test") if split in data.corpora}
    metrics["epochs"] = trainer.current_epoch
    metrics["interrupted"] = trainer.interrupted
    config = {
        "seqtag_version": __version__,
        "task": recipe.task,
        "net": asdict(task.net.config),
        "data": asdict(recipe.data),
        "recipe": recipe.to_dict(),
    }
    if recipe.task == "lm":
        config["split"] = data.split  # where the dev text was cut (None when a dev file was given)
        model_dir = save_model(out_dir / "model", config, task.net.state_dict(), {"tokenizer.json": data.tokenizer},
                               None, metrics)
        return TrainResult(model_dir, metrics, trainer.interrupted)
    if recipe.task == "classification":
        # The seeded dev split (None when a dev file was given), so the run can be repeated exactly.
        config["split"] = data.split
        config["truncated"] = data.truncated
    else:
        config.update(file_scheme=prep.file_scheme, train_scheme=prep.train_scheme)
    model_dir = save_model(out_dir / "model", config, task.net.state_dict(),
                           {"word_tokenizer.json": prep.encoder.words, "char_tokenizer.json": prep.encoder.chars},
                           prep.labels, metrics)
    return TrainResult(model_dir, metrics, trainer.interrupted)
