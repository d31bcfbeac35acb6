"""Checks of the training settings that depend on this machine: is the accelerator there, are there as many
devices (or CPU cores) as asked for, does Lightning know the precision and strategy names.

`check_training_hardware` runs before any data is read, so a setting that cannot work stops the run with one
clear paragraph instead of a Lightning traceback (MisconfigurationException, or gloo's "Connection closed by
peer" when more CPU processes are started than the machine has cores). The checks that need no torch (value
ranges) live in `config.TrainConfig`.
"""
from __future__ import annotations

import importlib.util
import os
import typing

import torch

from .config import TrainConfig
from .errors import SeqtagError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
GPU_NAMES = ("gpu", "cuda")


def precision_names() -> tuple[str, ...]:
    """The precision values the installed Lightning accepts (its own list, so a new Lightning's names work)."""
    try:
        from lightning_fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    except ImportError:  # a Lightning that moved them: the names of Lightning 2.x
        return ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
                "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16")
    return typing.get_args(_PRECISION_INPUT_STR) + typing.get_args(_PRECISION_INPUT_STR_ALIAS)


def strategy_names() -> tuple[str, ...]:
    from pytorch_lightning.strategies import StrategyRegistry

    return ("auto", *StrategyRegistry.available_strategies())


def cpu_cores() -> int:
    """The cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chosen_accelerator(name: str) -> str:
    """"cpu", "cuda", "mps" or "tpu": what `name` comes to on this machine (Lightning's order for "auto")."""
    if name in GPU_NAMES:
        return "cuda"
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def _accelerator_missing(kind: str) -> str | None:
    """Why the accelerator `kind` cannot run here, or None if it can."""
    if kind == "cuda" and not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + (" built without CUDA" if torch.version.cuda is None else "")
        return f"this machine has no GPU that torch can use ({build}; torch.cuda.is_available() is False)"
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "Apple's MPS backend is not available on this machine"
    if kind == "tpu" and importlib.util.find_spec("torch_xla") is None:
        return "TPUs need the torch_xla package, which is not installed"
    return None


def _device_count(cfg: TrainConfig, kind: str) -> None:
    """Refuse a device count (or list) the accelerator `kind` cannot give."""
    devices = cfg.devices
    if devices == "auto":
        return
    text = str(devices).strip()
    if kind == "cpu":
        if not text.isdigit() or int(text) < 1:
            raise SeqtagError(f"train.devices is {devices!r}; on a CPU it is the number of processes to train "
                              f"with, 1 to {cpu_cores()} here (or auto).")
        if int(text) > cpu_cores():
            raise SeqtagError(f"train.devices is {devices!r}, but this machine has {cpu_cores()} CPU core"
                              f"{'' if cpu_cores() == 1 else 's'}; a CPU run starts one process per device, so "
                              f"use at most train.devices={cpu_cores()} (or auto).")
        return
    if kind != "cuda":
        return  # MPS and TPU device counts are Lightning's to check
    available = torch.cuda.device_count()
    if text.lstrip("-").isdigit():
        count = int(text)
        if count == -1 or 1 <= count <= available:
            return
        raise SeqtagError(f"train.devices is {devices!r}, but torch sees {available} GPU"
                          f"{'' if available == 1 else 's'}; use 1 to {available}, -1 for all of them, or auto.")
    indices = [part.strip() for part in text.split(",") if part.strip()]
    if not indices or not all(i.isdigit() and int(i) < available for i in indices):
        raise SeqtagError(f"train.devices is {devices!r}; expected a count or GPU indices such as 0,1 among the "
                          f"{available} GPU{'' if available == 1 else 's'} torch sees (0 to {available - 1}).")


def check_training_hardware(cfg: TrainConfig) -> None:
    """Raise a SeqtagError for accelerator, devices, precision or strategy settings this machine cannot run."""
    if cfg.accelerator not in ACCELERATORS:
        raise SeqtagError(f"train.accelerator is {cfg.accelerator!r}; expected one of "
                          f"{', '.join(map(repr, ACCELERATORS))}.")
    kind = chosen_accelerator(cfg.accelerator)
    missing = _accelerator_missing(kind)
    if missing:
        raise SeqtagError(f"train.accelerator is {cfg.accelerator!r}, but {missing}. Train on the CPU with "
                          "--set train.accelerator=cpu (or auto, which picks what the machine has).")
    _device_count(cfg, kind)
    names = precision_names()
    if cfg.precision not in names:
        raise SeqtagError(f"train.precision is {cfg.precision!r}; expected one of {', '.join(map(repr, names))} "
                          "(32-true is full precision; bf16-mixed is the mixed precision that CPUs support).")
    if cfg.precision.startswith("transformer-engine") and importlib.util.find_spec("transformer_engine") is None:
        raise SeqtagError(f"train.precision is {cfg.precision!r}, which needs NVIDIA's transformer_engine "
                          "package (not installed); use 16-mixed or bf16-mixed.")
    strategies = strategy_names()
    if cfg.strategy not in strategies:
        raise SeqtagError(f"train.strategy is {cfg.strategy!r}; expected one of {', '.join(map(repr, strategies))}.")
    _strategy_runs_here(cfg.strategy, kind)


def _strategy_runs_here(strategy: str, kind: str) -> None:
    """Refuse the strategies whose package or device this machine lacks (Lightning would raise on building the
    Trainer, after the data is read)."""
    needs = {"deepspeed": ("deepspeed", "the deepspeed package"), "xla": ("torch_xla", "the torch_xla package")}
    for part, (package, what) in needs.items():
        if part in strategy and importlib.util.find_spec(package) is None:
            raise SeqtagError(f"train.strategy is {strategy!r}, which needs {what} (not installed); use auto or "
                              "ddp.")
    if strategy.startswith("fsdp") and kind != "cuda":
        raise SeqtagError(f"train.strategy is {strategy!r}, which shards the model over GPUs, and this run is on "
                          f"{kind}; use auto or ddp.")
