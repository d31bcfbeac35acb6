"""A run folder (`seqtag train --out`): what seqtag writes there, when it may write, and one run at a time.

    OUT/model/                   the saved model (replaced as a whole when a run saves, see artifact.save_model)
    OUT/checkpoints/best.ckpt    the best dev check so far
    OUT/checkpoints/last.ckpt    the training state at the last dev check, Ctrl+C or stop (what --resume reads)
    OUT/logs/metrics.csv         the logged figures (and logs/hparams.yaml when Lightning writes one)
    OUT/curves.png               the learning curves drawn from metrics.csv when the run ends (`seqtag report`)
    OUT/.seqtag.lock             while a run is going: its process, host and start time

`claim_run_folder` checks a folder before training writes anything into it: a folder that already holds a
model or a run is only trained into again with `overwrite` (or continued with `resume`), and then only the files
above are removed, never a file seqtag did not write. A model directory given as the run folder is refused, and
so is a `model/` holding files of the user's (saving would delete them). `RunLock` keeps a second run out of a
folder in use; a lock left by a killed run is recognised as stale (its process is gone) and replaced.

This module reads and writes files only: it imports neither torch nor Lightning.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import uuid
from pathlib import Path

from .durable import fsync_folder
from .errors import SeqtagError

try:  # serialises the check-and-take of a lock between processes of this host; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".seqtag.lock"
MODEL_DIR = "model"
# The files a model directory may hold: what artifact.save_model writes (it refuses to write any other name, so a
# new file is declared here, or --overwrite would take the model it is in for a folder of someone else's files).
MODEL_FILES = frozenset({"config.json", "model.safetensors", "word_tokenizer.json", "char_tokenizer.json",
                         "tokenizer.json", "lm_tokenizer.json", "labels.json", "metrics.json"})
# What a run writes besides the model, relative to the run folder. Checkpoints are renamed into place from a
# ".NAME.partial" file beside them (see train.AtomicCheckpointIO), which a killed run can leave behind.
RUN_FILES = ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "checkpoints/.best.ckpt.partial",
             "checkpoints/.last.ckpt.partial", "logs/metrics.csv", "logs/hparams.yaml",
             "curves.png", ".curves.png.partial")  # curves.png: drawn from metrics.csv (curves.py)


def claim_run_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False, smoke: bool = False,
                     command: str = "train") -> "RunLock":
    """Check that a `command` run may write into `out`, lock it, and clear what an earlier run left when
    `overwrite` says so. Returns the held lock (release it, or use it as a context manager, when the run ends).

    Refused with a SeqtagError: `out` is a model directory; `resume` and `overwrite` together; `resume` without
    `out/checkpoints/last.ckpt`; `out/model` holding files seqtag did not write; without `resume` or `overwrite`,
    a folder that holds a model or a run; with `smoke`, a folder holding a model of a full run (a one-step model
    never replaces a trained one); a folder another run is using.
    """
    out = Path(out)
    if resume and overwrite:
        raise SeqtagError("--resume continues the run in --out and --overwrite replaces it; give one of them.")
    _refuse_model_directory(out)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise SeqtagError(f"--resume: no checkpoint at {last}. Start without --resume, or give the --out of the "
                          f"interrupted run.")
    if out.exists() and not out.is_dir():
        raise SeqtagError(f"--out {out} is a file; give a folder (it is created if missing).")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, command, remove_empty_folder=created)
    lock.acquire()
    try:  # the folder is looked at only while no other run can change it
        _refuse_foreign_model_files(out)
        if smoke and trained_model(out):
            raise SeqtagError(
                f"{out / MODEL_DIR} holds a trained model, and a --smoke run (one training step) never replaces "
                f"one, not even with --overwrite. Give the smoke run its own --out (without --out it writes to "
                f"runs/RECIPE-smoke).")
        if not resume:
            found = run_files(out)
            if found and not overwrite:
                raise SeqtagError(
                    f"{out} already holds a run ({', '.join(found)}). Add --overwrite to train a new one in its place "
                    f"(seqtag removes only the files it wrote), --resume to continue it, or give another --out.")
            if found:
                clear_run(out)
    except BaseException:
        lock.release()
        raise
    return lock


def run_files(out: Path) -> list[str]:
    """What in `out` an earlier run wrote, as paths relative to `out` (the model directory as "model/")."""
    found = [MODEL_DIR + "/"] if (out / MODEL_DIR).is_dir() and any((out / MODEL_DIR).iterdir()) else []
    return found + [name for name in RUN_FILES if (out / name).is_file()]


def clear_run(out: Path) -> list[Path]:
    """Remove the checkpoints and logs an earlier run wrote in `out`; every other file stays. The model
    directory stays too, until the new run's model replaces it as a whole. Returns what was removed."""
    removed = [out / name for name in RUN_FILES if (out / name).is_file()]
    for path in removed:
        path.unlink()
    return removed


def trained_model(out: Path) -> bool:
    """Whether `out/model` holds a model from a full run (its metrics.json does not say `"smoke": true`)."""
    model = out / MODEL_DIR
    if not (model / "config.json").is_file():
        return False
    try:
        return json.loads((model / "metrics.json").read_text(encoding="utf-8")).get("smoke") is not True
    except (OSError, ValueError, AttributeError):
        return True  # unreadable figures: count it as trained, the safe side


def _refuse_model_directory(out: Path) -> None:
    found = [name for name in ("config.json", "model.safetensors") if (out / name).is_file()]
    if found:
        hint = (f" To continue or replace the run that saved it, give --out {out.parent}."
                if out.name == MODEL_DIR else "")
        raise SeqtagError(f"--out {out} is a model directory (it holds {' and '.join(found)}), not a run folder: a "
                          f"run writes its model into OUT/{MODEL_DIR}/ beside OUT/checkpoints/ and OUT/logs/.{hint}")


def _refuse_foreign_model_files(out: Path) -> None:
    model = out / MODEL_DIR
    foreign = sorted(p.name for p in model.iterdir() if p.name not in MODEL_FILES) if model.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SeqtagError(f"{model} holds files seqtag did not write ({shown}); saving a model there replaces the "
                          f"whole folder and would delete them. Move them elsewhere, or give another --out.")


class RunLock:
    """`folder/.seqtag.lock`: one run at a time per folder.

    The file is created with O_EXCL and holds the owner's process id, host, start time and command. A lock whose
    process is no longer alive on this host (a run killed with kill -9, a machine restarted) is stale and is
    replaced; the check-and-take runs under an flock on the folder, so two processes of one host never both take
    it. A lock held by another host cannot be checked from here: the error says which host, and how to remove
    the lock by hand if that run is gone.
    """

    def __init__(self, folder: str | Path, command: str = "train", remove_empty_folder: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.remove_empty_folder = remove_empty_folder  # the folder was made for this run: a run that wrote
                                                        # nothing (it failed early) leaves no trace
        self.token = uuid.uuid4().hex  # tells this lock from a later one at the same path
        self.held = False

    def acquire(self) -> None:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
                 "boot": _boot_id(), "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                 "command": self.command, "argv": " ".join(sys.argv), "token": self.token}
        with self._serialised():
            try:
                self._create(owner)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and not _is_stale(holder):
                    raise SeqtagError(self._in_use_message(holder)) from None
                self.path.unlink(missing_ok=True)  # a killed run's lock, or one it did not finish writing
                self._create(owner)
        self.held = True

    def release(self) -> None:
        """Remove the lock file if it is still this lock's (nobody replaced it as stale)."""
        if not self.held:
            return
        with self._serialised():
            holder = self.holder()
            if holder is not None and holder.get("token") == self.token:
                self.path.unlink(missing_ok=True)
        self.held = False
        if self.remove_empty_folder:
            with contextlib.suppress(OSError):  # not empty, or gone: either way nothing to do
                self.folder.rmdir()

    def holder(self) -> dict | None:
        """Who holds the lock, as written in the file; None when there is no lock or it cannot be read."""
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def __enter__(self) -> "RunLock":
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _create(self, owner: dict) -> None:
        descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(owner, handle)
            # On disk with its folder entry, like every file of a run folder: after a crash the lock still
            # names the run that was stopped (an empty or missing one says nothing; both count as stale).
            handle.flush()
            os.fsync(handle.fileno())
        fsync_folder(self.folder)

    @contextlib.contextmanager
    def _serialised(self):
        if fcntl is None:
            yield
            return
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the flock

    def _in_use_message(self, holder: dict) -> str:
        command = holder.get("argv") or f"seqtag {holder.get('command', 'train')}"
        return (f"{self.folder} is in use by another run: process {holder.get('pid')} on host {holder.get('host')}, "
                f"started {holder.get('started')} ({command}). Wait for it to end, or give another --out. If that "
                f"process is gone (for example on another machine that was switched off), delete {self.path}.")


def _is_stale(holder: dict) -> bool:
    """Whether the run that wrote `holder` is gone. Only a lock of this host can be checked."""
    if holder.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if boot and holder.get("boot") and holder["boot"] != boot:
        return True  # written before the machine restarted
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    start = _process_start(pid)
    # The same number given to a new process since (after a container restart, say): not the run that locked.
    return bool(start and holder.get("process_start") and start != holder["process_start"])


def _process_start(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (Linux /proc); None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


# ---------------------------------------------------------------------------
# Who writes in a multi-process run


def is_relaunched_rank() -> bool:
    """True in the processes Lightning starts for ranks above 0 (they run this same program again)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def this_process_writes(trainer=None) -> bool:
    """The one rule for who writes models, reports, logs and run records: the first process of a multi-process
    run (global rank 0), or the only one. `trainer` (once training has started) knows its rank; before that the
    launcher's environment tells."""
    if trainer is not None:
        return bool(trainer.is_global_zero)
    return not is_relaunched_rank() and int(os.environ.get("RANK", "0")) == 0
