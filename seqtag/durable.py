"""Durable writes: a file replaced so that after a crash or a power cut it holds either its old content or all
of the new one, never an empty or torn file. Standard library only, so any layer can use it.

A rename is atomic but not durable: after a power cut the folder may hold the old entry, or the new entry
naming a file whose data never reached the disk (ext4's delayed allocation leaves it empty). So a file is
fsync'ed before it is renamed into place, and the folder holding the new entry is fsync'ed after.
"""
from __future__ import annotations

import os
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` (files created, renamed or removed in it) durable."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if os.name == "nt":  # Windows cannot open a folder; NTFS journals its renames itself
            return
        raise
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _rename_durably(partial: Path, final: Path) -> None:
    """Rename the fsync'ed `partial` onto `final` and fsync their folder."""
    os.replace(partial, final)
    fsync_folder(final.parent)


def replace_durably(partial: Path, final: Path) -> None:
    """Rename the already written file `partial` onto `final` so that after a crash `final` holds either its
    previous content or all of `partial`'s: fsync `partial`, rename it, fsync the folder."""
    # Windows flushes a file only through a handle that may write to it; POSIX fsyncs any descriptor.
    descriptor = os.open(partial, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _rename_durably(partial, final)


def write_durably(path: Path, data: bytes | str) -> None:
    """Write `data` (str as UTF-8) to `path` in one step a crash cannot split: into the sibling `.NAME.partial`,
    flushed and fsync'ed, then renamed onto `path` and the folder fsync'ed. On an error the partial file is
    removed and `path` keeps its previous content. The file gets the mode the umask gives."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        _rename_durably(partial, path)  # replace_durably without its second fsync of the same file
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
