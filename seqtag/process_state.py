"""Leave the caller's process as it was: `with kept_process_state(): ...` around the library's entry points.

Why: seqtag is a library as well as a command. A program that imports it, loads a model, predicts or trains
from Python owns its process: its logging configuration, its warnings filters and its signal handlers are its
own decisions. The libraries seqtag builds on do not all see it that way: the first import of numpy, torch,
sympy or Lightning adds warnings filters (numpy's "size changed" ignores and RankWarning "always", torch's
TracerWarning ignore, Lightning's LightningDeprecationWarning "default", ...), Lightning also sets its own
loggers, and its Trainer installs SIGINT/SIGTERM handlers in some strategies. So `seqtag.load`, `seqtag.train`
and `seqtag.finetune` run inside `kept_process_state()`, which puts back, when the call returns or raises
(KeyboardInterrupt included):

- the root logger's level and its list of handlers, and the `logging.disable` level;
- `warnings.filters` (the same list object, with its contents as they were) and `warnings.showwarning`;
- the handlers of SIGINT, SIGTERM, SIGUSR1 and SIGHUP (those this platform has), when called from the main
  thread (only the main thread may set them; elsewhere they are left alone).

Filters a library adds on its first import inside the block go too: the caller's filters decide. Named loggers
(Lightning's, `datasets`') and `datasets`' progress-bar switch are those libraries' own settings, not restored.
The CLI may set all of this for its own process (it owns it), and does so outside this context manager
(`progress.quiet_libraries`).
`process_state()` is the same state as plain values, which compare equal when nothing changed; the tests use it.

Imports only the standard library, so that `import seqtag` stays quick.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import warnings
from collections.abc import Iterator

__all__ = ["kept_process_state", "process_state"]

# The signals whose handlers a library (or the libraries it uses) may install; only those this platform has.
KEPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP")
                     if hasattr(signal, name))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _signal_handlers() -> dict:
    """{signal name: handler} for KEPT_SIGNALS; empty outside the main thread (handlers can only be set there)."""
    if not _in_main_thread():
        return {}
    return {signal.Signals(number).name: signal.getsignal(number) for number in KEPT_SIGNALS}


def process_state() -> dict:
    """The process-wide state `kept_process_state` keeps, as plain values: two snapshots compare equal when
    nothing changed, and a test can print the entries that differ."""
    root = logging.getLogger()
    return {
        "root_level": root.level,
        "root_handlers": tuple(id(handler) for handler in root.handlers),
        "logging_disable": logging.root.manager.disable,
        "warnings_filters": tuple(warnings.filters),
        "showwarning": warnings.showwarning,
        "signal_handlers": _signal_handlers(),
    }


def _restore_warnings(filters_list: list, filters: list, showwarning) -> None:
    # The list object the caller had (code may hold a reference to it, as catch_warnings does), with its contents.
    warnings.filters = filters_list
    warnings.filters[:] = filters
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is None:   # Python 3.13+ keeps it as _filters_mutated_lock_held, under a lock
        mutated = getattr(warnings, "_filters_mutated_lock_held", None)
        lock = getattr(warnings, "_lock", None)
        if mutated is not None and lock is not None:
            with lock:
                mutated()
            mutated = None
    if mutated is not None:
        mutated()   # the "already warned" caches were built for the filters in force; let them reset
    warnings.showwarning = showwarning


@contextlib.contextmanager
def kept_process_state() -> Iterator[None]:
    """Run the block, then put back the root logger's level and handlers, the `logging.disable` level, the
    warnings filters and `showwarning`, and (in the main thread) the SIGINT/SIGTERM/SIGUSR1/SIGHUP handlers,
    as they were when the block started; also when it raises, KeyboardInterrupt included. Nests.

    Named loggers (such as Lightning's) are the library's own business and are not restored: the process's
    own configuration lives on the root logger."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    disabled = logging.root.manager.disable
    filters_list, filters, showwarning = warnings.filters, list(warnings.filters), warnings.showwarning
    main_thread = _in_main_thread()
    handlers_by_signal = {number: signal.getsignal(number) for number in KEPT_SIGNALS} if main_thread else {}
    try:
        yield
    finally:
        if main_thread:
            for number, handler in handlers_by_signal.items():
                # getsignal gives None for a handler not installed from Python; it cannot be put back that way.
                if handler is not None and signal.getsignal(number) != handler:
                    signal.signal(number, handler)
        _restore_warnings(filters_list, filters, showwarning)
        logging.disable(disabled)
        # The handler list is changed in place under logging's lock, as addHandler/removeHandler do.
        with getattr(logging, "_lock", None) or contextlib.nullcontext():
            root.handlers[:] = handlers
        root.setLevel(level)   # also clears the loggers' cached levels
