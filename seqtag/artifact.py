"""A saved model is a directory of plain files: JSON, tokenizer JSON and safetensors.

    config.json            format version, task, the recipe (network parts and reader settings), vocabulary
                           and label sizes, schemes
    model.safetensors      the weights
    word_tokenizer.json    word vocabulary (HF tokenizers)
    char_tokenizer.json    character vocabulary (HF tokenizers); only when a character embedder reads it
    lm_tokenizer.json      the character language models' vocabulary; only when the "lm" embedder reads it
    labels.json            the label list, in the network's output order
    tokenizer.json         a language model's tokenizer (word, character or BPE) instead of the three above
    metrics.json           the final dev/test figures

Nothing is pickled, so loading runs no code from the directory. Saving writes a sibling staging directory
and renames it into place, so a crash never leaves a half-written model where a good one was; each file, the
staging folder and, after the rename, the parent folder are fsync'ed, so the model a save returned survives a
power cut too (`write_durably` does the same for a single file). The files and folders get the modes the
user's umask gives any new file. Reading pins one version of the directory (see `read_model`), so a load
running while another process saves never mixes two versions, and every file read is checked against
config.json: whatever is wrong is a `ModelFileError` naming the file.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from tokenizers import Tokenizer

from .durable import fsync_folder, replace_durably, write_durably  # noqa: F401 - the save path's own, re-exported
from .errors import ModelFileError
from .runs import MODEL_FILES

FORMAT_VERSION = 2  # 2: networks composed from parts (embedders, cell, head); config.json holds the recipe

# Every key config.json may hold at its top level: those of every model, then those a family adds (its `load`
# names them, and refuses the other families' ones). Loading refuses any other key (an edited or foreign
# file), and saving refuses to write one, so a new entry must be declared here before a model holding it is
# saved.
REQUIRED_KEYS = ("format_version", "task", "sizes", "recipe")
COMMON_KEYS = frozenset({*REQUIRED_KEYS, "seqtag_version", "unseen_labels",
                         "finetune",               # a fine-tuned model: its parent, data and settings
                         "pretrained_coverage"})   # how much of the vocabulary found a pretrained vector
CONFIG_KEYS = COMMON_KEYS | {"file_scheme", "train_scheme",   # tagging
                             "split", "truncated"}            # classification and language models: seeded splits
SIZES = ("words", "chars", "labels")
OPTIONAL_SIZES = ("lm_chars",)  # the character LMs' vocabulary, in models with the "lm" embedder
TOKENIZER_SIZES = {"word_tokenizer.json": "words", "char_tokenizer.json": "chars", "tokenizer.json": "words",
                   "lm_tokenizer.json": "lm_chars"}
RETIRED = ".{}.old"        # where save_model moves the previous version while the new one takes its name
READ_ATTEMPTS = 10         # reads of a directory that saves keep replacing, before giving up

DAMAGED = "The model directory was edited or damaged; restore it from a copy, or train again."


# -- saving ------------------------------------------------------------------------------------------------

def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _staging_dir(target: Path) -> Path:
    """A new empty sibling of `target`, made by a plain mkdir so that it gets the mode the umask gives any new
    folder. (tempfile.mkdtemp makes it 0700, and the rename would carry that private mode to the model.)"""
    while True:
        staging = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue


def save_model(directory: str | Path, config: dict, state_dict: dict[str, torch.Tensor],
               tokenizers: dict[str, Tokenizer | None], labels: list[str] | None, metrics: dict) -> Path:
    """Write a model directory atomically and return its path.

    `tokenizers` maps file names to tokenizers (None entries, such as the character vocabulary of a
    model reading no characters, are not written); `labels` is None for a language model. Every file is
    written by `open`, so its mode is the one the umask gives (safetensors' own writer makes 0600 files)."""
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"config.json keys {unknown} are not declared in seqtag.artifact.CONFIG_KEYS; declare "
                         "them there, or loading the model would refuse them.")
    target = Path(directory).resolve()
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    for folder in reversed(made):  # a folder made here is durable only once its parent's entry is
        fsync_folder(folder.parent)
    files = {"config.json": _json_bytes({**config, "format_version": FORMAT_VERSION}),
             # The weights name their task too, so that a config.json edited to another family is caught even
             # when that family's network has the same tensors.
             "model.safetensors": save_tensors({k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
                                               metadata={"task": str(config.get("task"))})}
    files.update({name: tokenizer.to_str(pretty=True).encode("utf-8")
                  for name, tokenizer in tokenizers.items() if tokenizer is not None})
    if labels is not None:
        files["labels.json"] = _json_bytes(labels)
    files["metrics.json"] = _json_bytes(metrics)
    undeclared = sorted(set(files) - MODEL_FILES)
    if undeclared:
        raise ValueError(f"model files {undeclared} are not declared in seqtag.runs.MODEL_FILES; declare them there, "
                         "or a run folder holding them could not be overwritten.")
    staging = _staging_dir(target)
    try:
        for name, data in files.items():
            with open(staging / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # the data is on disk before any rename can make it the model
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, target)


def staging_folder(target: Path) -> Path:
    """A new empty sibling of `target` to write a folder's files into before `publish_folder` renames it."""
    return _staging_dir(Path(target))


def publish_folder(staging: Path, target: Path) -> Path:
    """Make the staging folder (its files written and fsync'ed) the folder `target`, durably, replacing an older
    one without a moment where a reader finds a half-written folder. The staging folder is removed on failure."""
    try:
        fsync_folder(staging)  # the staging folder's entries are on disk before the rename
        if target.exists():
            # Two renames: the old folder stays whole until the new one is complete. A reader that opens
            # the directory in between finds no `target` but the retired one, and tries again.
            retired = target.with_name(RETIRED.format(target.name))
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(staging, target)
            fsync_folder(target.parent)  # both renames are durable before the old version is deleted
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
            fsync_folder(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# -- reading one version -----------------------------------------------------------------------------------
#
# A save replaces the whole directory by renames, so a reader that opened files one by one by path could take
# config.json from one version and model.safetensors from the next. Instead the reader opens the directory
# once and opens every file relative to that descriptor (openat): the descriptor keeps naming the version it
# was opened on even after a save renames it away, and a file that is open keeps its whole content even when
# the retired version is deleted. So each read sees one version, complete, or finds a file gone (the retired
# version was deleted under it) and reads the new version again. Unlike digests recorded at save time this
# costs nothing per load, changes no file, and keeps a hand-edited file loadable when it passes the checks
# below. Where the platform cannot open files relative to a directory, files are read by path.

_PINS = os.open in os.supports_dir_fd


class _Replaced(Exception):
    """The directory being read was replaced by a save: read the new version."""


def _save_in_progress(path: Path) -> bool:
    """Whether a missing `path` is a save between its two renames (or already done)."""
    return path.exists() or path.with_name(RETIRED.format(path.name)).exists()


class _Version:
    """One version of a model directory, opened once; `read` gives a file's bytes (None when it is missing)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None
        try:
            if _PINS:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            elif not path.is_dir():
                raise NotADirectoryError(path) if path.exists() else FileNotFoundError(path)
        except FileNotFoundError:
            if _save_in_progress(path):
                raise _Replaced from None
            raise ModelFileError(path, "no model directory here. Give the folder that `seqtag train` printed "
                                       "(it holds config.json and model.safetensors).") from None
        except NotADirectoryError:
            raise ModelFileError(path, "is a file, not a model directory. Give the folder that `seqtag train` "
                                       "printed (it holds config.json and model.safetensors).") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def replaced(self) -> bool:
        if self.fd is None:
            return False
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        pinned = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) != (pinned.st_dev, pinned.st_ino)

    def read(self, name: str) -> bytes | None:
        try:
            if self.fd is None:
                return (self.path / name).read_bytes()
            # O_NONBLOCK: a pipe planted under a file's name reads as empty instead of waiting forever.
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
            with open(os.open(name, flags, dir_fd=self.fd), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            if self.replaced():
                raise _Replaced from None
            return None
        except OSError as err:  # a folder or a socket under a model file's name, no permission, an I/O error
            raise ModelFileError(self.path / name, f"cannot be read ({err.strerror or err}).") from None


def _json(path: Path, data: bytes, kind: type, what: str):
    """A JSON file's value, which must be a `kind`."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(path, f"is not valid JSON ({err}). {DAMAGED}") from None
    if not isinstance(value, kind):
        raise ModelFileError(path, f"holds {type(value).__name__} {_short(value)}; expected {what}. {DAMAGED}")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_config(path: Path, config: dict, tasks: Sequence[str]) -> None:
    """config.json's own entries: the version, the keys, a known task, the sizes, a recipe of that task."""
    where = path / "config.json"
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(where, f"model format version {version!r}, but this seqtag reads version "
                                    f"{FORMAT_VERSION}. Use the seqtag release that saved it, or train again.")
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ModelFileError(where, f"the key {key!r} is missing, so this format version {version} model "
                                        f"cannot be rebuilt; it was edited or damaged. Train again.")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ModelFileError(where, f"unknown key {unknown[0]!r}; a config.json holds only "
                                    f"{', '.join(sorted(CONFIG_KEYS))}. {DAMAGED}")
    task = config["task"]
    if task not in tasks:
        raise ModelFileError(where, f"task is {_short(task)}; expected one of {', '.join(map(repr, tasks))}. "
                                    f"{DAMAGED}")
    sizes = config["sizes"]
    if not (isinstance(sizes, dict) and set(SIZES) <= set(sizes) <= {*SIZES, *OPTIONAL_SIZES}
            and all(type(n) is int and n >= 0 for n in sizes.values())):
        raise ModelFileError(where, f"sizes is {_short(sizes)}; expected a count of each of {', '.join(SIZES)}. "
                                    f"{DAMAGED}")
    recipe = config["recipe"]
    if not isinstance(recipe, dict) or recipe.get("task") != task:
        found = recipe.get("task") if isinstance(recipe, dict) else recipe
        raise ModelFileError(where, f"task is {task!r} but the recipe it was trained with says task "
                                    f"{_short(found)}; one of them was edited. A model cannot change its task: "
                                    f"restore the file, or train a {task!r} model.")
    # The shapes the files a family reads depend on (see Family.required_files); the recipe itself is checked
    # when the network is rebuilt.
    for section in ("data", "model", "train"):
        if not isinstance(recipe.get(section, {}), dict):
            raise ModelFileError(where, f"recipe section {section!r} is {_short(recipe[section])}; expected a "
                                        f"mapping of settings. {DAMAGED}")
    embedders = recipe.get("model", {}).get("embedders", [])
    if not (isinstance(embedders, list) and all(isinstance(name, str) for name in embedders)):
        raise ModelFileError(where, f"model.embedders is {_short(embedders)}; a saved recipe lists them, such as "
                                    f"[\"word\", \"char_cnn\"]. {DAMAGED}")


def _tokenizer(path: Path, data: bytes, size: int) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    except Exception as err:  # tokenizers raises a bare Exception ("Model missing", serde's messages)
        raise ModelFileError(path, f"is not a tokenizer file that `tokenizers` can read ({err}). {DAMAGED}") from None
    if tokenizer.get_vocab_size() != size:
        raise ModelFileError(path, f"holds {tokenizer.get_vocab_size()} entries, but config.json says the network "
                                   f"was built for {size}; the file belongs to another model. {DAMAGED}")
    return tokenizer


def _labels(path: Path, data: bytes, size: int) -> list[str]:
    labels = _json(path, data, list, "the list of label names")
    if not all(isinstance(label, str) for label in labels) or len(set(labels)) != len(labels):
        raise ModelFileError(path, f"must list distinct label names (strings); it holds {_short(labels)}. {DAMAGED}")
    if len(labels) != size:
        raise ModelFileError(path, f"lists {len(labels)} labels, but config.json (sizes.labels) and the weights' "
                                   f"output layer have {size}; the file was edited or belongs to another model. "
                                   f"{DAMAGED}")
    return labels


def _weights(path: Path, data: bytes, task: str) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors, which must have been saved by a model of `task` when they say."""
    if not data:
        raise ModelFileError(path, f"is empty. {DAMAGED}")
    try:
        tensors = load_tensors(data)  # parses the header and the tensors only: no code runs, whatever the bytes
    except SafetensorError as err:
        raise ModelFileError(path, f"is not a complete safetensors file ({err}); it is truncated or damaged. "
                                   f"{DAMAGED}") from None
    # The header (a length, then JSON) is known good now; models saved before the weights named their task
    # have no metadata.
    (length,) = struct.unpack("<Q", data[:8])
    saved_by = (json.loads(data[8:8 + length]).get("__metadata__") or {}).get("task", task)
    if saved_by != task:
        raise ModelFileError(path.with_name("config.json"), f"task is {task!r}, but {path.name} holds the weights of "
                                                            f"a {saved_by!r} model; the task was edited. A model "
                                                            f"cannot change its task. {DAMAGED}")
    return tensors


def check_weights(path: Path, expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                  network: str) -> None:
    """Refuse weights whose names, shapes or kinds (floating point or not) differ from the state dict of the
    network config.json describes (`expected`), before `load_state_dict` would copy them."""
    problems = [f"{name} missing" for name in expected if name not in state]
    problems += [f"{name} unexpected" for name in state if name not in expected]
    problems += [f"{name} is {tuple(state[name].shape)} {state[name].dtype}, expected {tuple(t.shape)} {t.dtype}"
                 for name, t in expected.items() if name in state and (
                     state[name].shape != t.shape or state[name].dtype.is_floating_point != t.dtype.is_floating_point)]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelFileError(path, f"does not match config.json ({network}: {'; '.join(problems[:3])}{more}). "
                                   f"{DAMAGED}")


def _read_once(path: Path, required: Mapping[str, Callable[[dict], Sequence[str]]]) -> dict:
    version = _Version(path)
    try:
        config_bytes = version.read("config.json")
        if config_bytes is None:
            raise ModelFileError(path, "this model directory is missing config.json. Copy the whole folder, or "
                                       "train again.")
        config = _json(path / "config.json", config_bytes, dict, "a mapping of settings")
        _check_config(path, config, tuple(required))
        names = ("model.safetensors", *required[config["task"]](config))
        data = {name: version.read(name) for name in names}
        missing = [name for name in names if data[name] is None]
        if missing:
            raise ModelFileError(path, f"this model directory is missing {', '.join(missing)}; a {config['task']!r} "
                                       f"model (as config.json says) holds {', '.join(names)}. Copy the whole "
                                       f"folder, or train again.")
        metrics = version.read("metrics.json")
    finally:
        version.close()
    sizes = config["sizes"]
    if "lm_tokenizer.json" in data and "lm_chars" not in sizes:
        raise ModelFileError(path / "config.json", f"sizes lacks lm_chars, the size of lm_tokenizer.json. {DAMAGED}")
    tokenizers = {name: _tokenizer(path / name, data[name], sizes[key])
                  for name, key in TOKENIZER_SIZES.items() if name in data}
    return {
        "config": config,
        "labels": _labels(path / "labels.json", data["labels.json"], sizes["labels"]) if "labels.json" in data else None,
        "metrics": {} if metrics is None else _json(path / "metrics.json", metrics, dict, "a mapping of figures"),
        "state_dict": _weights(path / "model.safetensors", data["model.safetensors"], config["task"]),
        "words": tokenizers.get("word_tokenizer.json"),
        "chars": tokenizers.get("char_tokenizer.json"),
        "tokenizer": tokenizers.get("tokenizer.json"),
        "lm_tokenizer": tokenizers.get("lm_tokenizer.json"),
    }


def read_model(directory: str | Path, required: Mapping[str, Callable[[dict], Sequence[str]]]) -> dict:
    """The parts of a model directory, all from one version of it, each checked against config.json; the
    network is not built. `required` maps each task to the files (besides config.json and model.safetensors)
    its models hold, given the config. A directory that saves keep replacing while it is read is a
    ModelFileError after `READ_ATTEMPTS` reads."""
    path = Path(directory)
    for attempt in range(READ_ATTEMPTS):
        try:
            return _read_once(path, required)
        except _Replaced:
            if attempt + 1 < READ_ATTEMPTS:
                time.sleep(min(0.5, 0.01 * 2 ** attempt) * random.uniform(0.5, 1.5))
    retired = path.with_name(RETIRED.format(path.name))
    stuck = (f" If no save is running, one was stopped between its two renames: the previous model is in "
             f"{retired}; rename it back to {path.name}." if retired.exists() and not path.exists() else "")
    raise ModelFileError(path, f"the model is being written (or was changed) by another process: it was replaced "
                               f"while it was read, {READ_ATTEMPTS} times in a row. Load it again when the save "
                               f"has finished.{stuck}")
