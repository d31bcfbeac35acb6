"""A saved model is a directory of plain files: JSON, tokenizer JSON and safetensors.

    config.json            format version, task, the recipe (network parts and reader settings), vocabulary
                           and label sizes, schemes
    model.safetensors      the weights
    word_tokenizer.json    word vocabulary (HF tokenizers)
    char_tokenizer.json    character vocabulary (HF tokenizers); only when a character embedder reads it
    labels.json            the label list, in the network's output order
    tokenizer.json         a language model's tokenizer (word, character or BPE) instead of the three above
    metrics.json           the final dev/test figures

Nothing is pickled, so loading runs no code from the directory. Saving writes a
sibling temporary directory and renames it into place, so a crash never leaves a
half-written model where a good one was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from .errors import SeqtagError

FORMAT_VERSION = 2  # 2: networks composed from parts (embedders, cell, head); config.json holds the recipe


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_model(directory: str | Path, config: dict, state_dict: dict[str, torch.Tensor],
               tokenizers: dict[str, Tokenizer | None], labels: list[str] | None, metrics: dict) -> Path:
    """Write a model directory atomically and return its path.

    `tokenizers` maps file names to tokenizers (None entries, such as the character vocabulary of a
    model reading no characters, are not written); `labels` is None for a language model."""
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_json(staging / "config.json", {"format_version": FORMAT_VERSION, **config})
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(staging / "model.safetensors"))
        for name, tokenizer in tokenizers.items():
            if tokenizer is not None:
                tokenizer.save(str(staging / name))
        if labels is not None:
            _write_json(staging / "labels.json", labels)
        _write_json(staging / "metrics.json", metrics)
        if target.exists():
            # Two renames: the old model stays whole until the new one is complete.
            retired = target.with_name(f".{target.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_files(path: Path, expected) -> None:
    missing = [name for name in expected if not (path / name).is_file()]
    if missing:
        raise SeqtagError(f"{path}: this model directory is missing {', '.join(missing)}; expected "
                          f"{', '.join(expected)}. Copy the whole folder, or train again.")


def read_config(directory: str | Path) -> dict:
    """A model directory's config.json, checked to be one this seqtag reads."""
    path = Path(directory)
    if not path.is_dir():
        raise SeqtagError(f"{path}: no model directory here. Give the folder that `seqtag train` printed.")
    _check_files(path, ["config.json"])
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SeqtagError(f"{path / 'config.json'} is not valid JSON ({err}).") from None
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise SeqtagError(f"{path / 'config.json'}: model format version {version!r}, but this seqtag reads "
                          f"version {FORMAT_VERSION}. Use the seqtag release that saved it, or train again.")
    for key in ("task", "sizes", "recipe"):
        if key not in config:
            raise SeqtagError(f"{path / 'config.json'}: the key {key!r} is missing, so this format version "
                              f"{version} model cannot be rebuilt; it was edited or damaged. Train again.")
    return config


def read_model_files(directory: str | Path, config: dict, required: tuple[str, ...]) -> dict:
    """Read and check the files of a model directory whose config.json is `config`; returns its parts
    without building the network."""
    path = Path(directory)
    _check_files(path, ("model.safetensors", *required))
    try:
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8")) if "labels.json" in required else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SeqtagError(f"{path / 'labels.json'} is not valid JSON ({err}).") from None
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    tokenizers = {name: Tokenizer.from_file(str(path / name))
                  for name in ("word_tokenizer.json", "char_tokenizer.json", "tokenizer.json") if name in required}
    return {
        "config": config,
        "labels": labels,
        "metrics": metrics,
        "state_dict": load_file(str(path / "model.safetensors")),
        "words": tokenizers.get("word_tokenizer.json"),
        "chars": tokenizers.get("char_tokenizer.json"),
        "tokenizer": tokenizers.get("tokenizer.json"),
    }
