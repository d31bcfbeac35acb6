"""A saved model is a directory of plain files: JSON, tokenizer JSON and safetensors.

    config.json            format version, task, network config, reader and scheme settings
    model.safetensors      the weights
    word_tokenizer.json    word vocabulary (HF tokenizers)
    char_tokenizer.json    character vocabulary (HF tokenizers); absent for a classifier without character encoder
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

FORMAT_VERSION = 1
FILES = ("config.json", "model.safetensors", "word_tokenizer.json", "char_tokenizer.json", "labels.json")
LM_FILES = ("config.json", "model.safetensors", "tokenizer.json")
CHARS = "char_tokenizer.json"


def required_files(config: dict | None) -> tuple[str, ...]:
    """The files a model directory must hold; a classifier reading no characters has no character vocabulary."""
    if config and config.get("task") == "lm":
        return LM_FILES
    if config and config.get("task") == "classification" and config.get("net", {}).get("char_encoder") == "none":
        return tuple(name for name in FILES if name != CHARS)
    return FILES


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


def read_model_files(directory: str | Path) -> dict:
    """Read and check a model directory; returns its parts without building the network."""
    path = Path(directory)
    if not path.is_dir():
        raise SeqtagError(f"{path}: no model directory here. Give the folder that `seqtag train` printed.")
    _check_files(path, ["config.json"])
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        _check_files(path, required_files(config))
        labels = json.loads((path / "labels.json").read_text(encoding="utf-8")) if "labels.json" in \
            required_files(config) else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SeqtagError(f"{path}: config.json or labels.json is not valid JSON ({err}).") from None
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise SeqtagError(f"{path / 'config.json'}: model format version {version!r}, but this seqtag reads "
                          f"version {FORMAT_VERSION}. Use the seqtag release that saved it, or train again.")
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    tokenizers = {name: Tokenizer.from_file(str(path / name))
                  for name in ("word_tokenizer.json", CHARS, "tokenizer.json") if (path / name).is_file()}
    return {
        "config": config,
        "labels": labels,
        "metrics": metrics,
        "state_dict": load_file(str(path / "model.safetensors")),
        "words": tokenizers.get("word_tokenizer.json"),
        "chars": tokenizers.get(CHARS),
        "tokenizer": tokenizers.get("tokenizer.json"),
    }
