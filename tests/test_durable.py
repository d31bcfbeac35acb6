"""Durable saves (issue 17): every file of a model or run folder is written under another name, flushed and
fsync'ed, renamed into place, and then its folder is fsync'ed, so a power cut never leaves an empty or missing
file behind a save that returned. `os.fsync` is replaced by a recorder that names the file or folder each
descriptor stands for at the moment of the call (Linux /proc/self/fd)."""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from seqtag import artifact
from seqtag.runs import LOCK_NAME, RunLock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names descriptors through /proc")


@pytest.fixture
def tmp_path(tmp_path) -> Path:
    """Resolved, as /proc names it."""
    return tmp_path.resolve()


@pytest.fixture
def events(monkeypatch) -> list[tuple]:
    """What the save does, in order: ("fsync", path) and ("replace", source, destination)."""
    seen: list[tuple] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recording_replace(source, destination):
        seen.append(("replace", str(source), str(destination)))
        return replace(source, destination)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return seen


def _fsynced(events: list[tuple]) -> list[str]:
    return [event[1] for event in events if event[0] == "fsync"]


def _index(events: list[tuple], event: tuple) -> int:
    assert event in events, f"{event} not in {events}"
    return events.index(event)


def _tiny_model() -> tuple:
    """The arguments of save_model for a model of a few small tensors (save_model checks only the keys)."""
    words = Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1, "ada": 2, "paris": 3}, unk_token="[UNK]"))
    config = {"task": "tagging", "sizes": {"words": 4, "chars": 0, "labels": 3}, "recipe": {"task": "tagging"}}
    state = {"embedding.weight": torch.randn(4, 3), "head.weight": torch.randn(3, 3), "head.bias": torch.zeros(3)}
    return config, state, {"word_tokenizer.json": words, "char_tokenizer.json": None}, ["O", "B-PER", "I-PER"], \
        {"dev_f1": 1.0}


MODEL_FILES = ["config.json", "model.safetensors", "word_tokenizer.json", "labels.json", "metrics.json"]


@pytest.mark.parametrize("replacing", [False, True], ids=["new", "replacing"])
def test_save_model_fsyncs_every_file_then_the_staging_folder_then_after_the_rename_the_parent(tmp_path, events,
                                                                                                  replacing):
    target = tmp_path / "run" / "model"
    if replacing:
        artifact.save_model(target, *_tiny_model())
        events.clear()
    artifact.save_model(target, *_tiny_model())
    staging = Path(next(event[1] for event in events
                        if event[0] == "replace" and Path(event[1]).name.startswith(".model.")))
    assert staging.parent == tmp_path / "run" and not staging.exists()
    fsynced = _fsynced(events)
    files = [str(staging / name) for name in MODEL_FILES]
    assert sorted(path for path in fsynced if path.startswith(f"{staging}/")) == sorted(files), \
        "every file written is fsync'ed, while it is in the staging folder"
    into_place = _index(events, ("replace", str(staging), str(target)))
    staging_synced = _index(events, ("fsync", str(staging)))
    assert all(_index(events, ("fsync", path)) < staging_synced for path in files)
    assert staging_synced < into_place, "the staging folder's entries are durable before it becomes the model"
    parent_synced = [i for i, event in enumerate(events) if event == ("fsync", str(target.parent))]
    assert parent_synced and parent_synced[-1] > into_place, "the rename is made durable in the parent folder"
    assert sorted(p.name for p in target.iterdir()) == sorted(MODEL_FILES)
    assert json.loads((target / "labels.json").read_text()) == ["O", "B-PER", "I-PER"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"], "no staging or retired folder is left"


def test_save_model_records_the_folders_it_makes_in_their_parents(tmp_path, events):
    artifact.save_model(tmp_path / "a" / "b" / "model", *_tiny_model())
    assert {str(tmp_path), str(tmp_path / "a")} <= set(_fsynced(events))


def test_a_save_model_whose_fsync_fails_leaves_the_previous_model_whole(tmp_path, monkeypatch):
    target = artifact.save_model(tmp_path / "model", *_tiny_model())
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:  # a file midway through the staging folder
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    config, state, tokenizers, labels, metrics = _tiny_model()
    with pytest.raises(OSError, match="Input/output error"):
        artifact.save_model(target, config, state, tokenizers, labels, {"dev_f1": 0.5})
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "the staging folder is removed"


@pytest.mark.parametrize("data, expected", [(b"\x00weights\xff", b"\x00weights\xff"),
                                            ("étiquette\n", "étiquette\n".encode("utf-8"))], ids=["bytes", "str"])
def test_write_durably_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, events, data, expected):
    path = tmp_path / "logs" / "metrics.csv"
    path.parent.mkdir()
    path.write_bytes(b"old")
    artifact.write_durably(path, data)
    partial = str(path.with_name(".metrics.csv.partial"))
    written = _index(events, ("fsync", partial))
    renamed = _index(events, ("replace", partial, str(path)))
    folder = _index(events, ("fsync", str(path.parent)))
    assert written < renamed < folder
    assert path.read_bytes() == expected
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]


def test_replace_durably_fsyncs_the_written_file_then_renames_then_fsyncs_the_folder(tmp_path, events):
    partial, final = tmp_path / ".best.ckpt.partial", tmp_path / "best.ckpt"
    final.write_bytes(b"previous")
    partial.write_bytes(b"checkpoint")
    events.clear()
    artifact.replace_durably(partial, final)
    assert events == [("fsync", str(partial)), ("replace", str(partial), str(final)), ("fsync", str(tmp_path))]
    assert final.read_bytes() == b"checkpoint" and not partial.exists()


def test_fsync_folder_fsyncs_the_folder_itself(tmp_path, events):
    artifact.fsync_folder(tmp_path)
    assert _fsynced(events) == [str(tmp_path)]


class _Failing:
    """A file handle whose write stops halfway, as a full disk does."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def write(self, data):
        self.handle.write(data[:len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)


def _fail_fsync(fd):
    raise OSError(errno.EIO, "Input/output error")


def _fail_rename(source, destination):
    raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_write_durably_that_fails_midway_leaves_no_partial_file_and_the_old_content(tmp_path, monkeypatch, where):
    path = tmp_path / "notes.json"
    path.write_text('{"version": 1}')
    if where == "write":
        real_open = open
        monkeypatch.setattr("builtins.open", lambda file, mode="r", *args, **kwargs: (
            _Failing(real_open(file, mode, *args, **kwargs)) if str(file).endswith(".partial")
            else real_open(file, mode, *args, **kwargs)))
    else:
        monkeypatch.setattr(os, "fsync" if where == "fsync" else "replace",
                            _fail_fsync if where == "fsync" else _fail_rename)
    with pytest.raises(OSError):
        artifact.write_durably(path, '{"version": 2, "padding": "' + "x" * 10_000 + '"}')
    assert path.read_text() == '{"version": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"], "no .notes.json.partial is left"


def test_the_run_lock_is_fsynced_with_its_folder(tmp_path, events):
    with RunLock(tmp_path):
        fsynced = _fsynced(events)
        assert fsynced.index(str(tmp_path / LOCK_NAME)) < fsynced.index(str(tmp_path))
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
