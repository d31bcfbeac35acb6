"""No process-wide side effects from the library (issue 17, item 8).

Importing seqtag, `seqtag.load`, predicting, evaluating, `seqtag.train` and `seqtag.finetune` called from Python
must leave the root logger (level, handlers), `logging.disable`, the warnings filters and `showwarning`, and the
SIGINT/SIGTERM/SIGUSR1/SIGHUP handlers as they were. Each check runs in a fresh interpreter, so that the first
imports of torch, numpy, datasets and Lightning (which add warnings filters and set loggers at import time)
happen inside the measured calls, as they do in a user's program.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from seqtag.process_state import kept_process_state, process_state

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "recipes" / "data" / "demo.dev.conll"
TRAIN = ROOT / "recipes" / "data" / "demo.train.conll"
REPORT = "PROCESS-STATE-REPORT:"

# Run first in every subprocess: the caller's own settings (so that a library resetting them to a default shows),
# then the snapshot, then `check(step)` after each step, which records what differs from the snapshot.
PRELUDE = """
import json, logging, signal, sys, warnings
from seqtag.process_state import process_state

logging.getLogger().setLevel(13)                       # no root handler: a logging.basicConfig() would show
warnings.filterwarnings("ignore", message="the caller's own filter")
def callers_sigint(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, callers_sigint)
before = process_state()
changes = []

def _filters_diff(old, new):
    return {"added": [repr(f) for f in new if f not in old], "removed": [repr(f) for f in old if f not in new],
            "count": [len(old), len(new)]}

def check(step):
    after = process_state()
    for key, value in before.items():
        if after[key] != value:
            detail = (_filters_diff(value, after[key]) if key == "warnings_filters"
                      else {"before": repr(value), "after": repr(after[key])})
            changes.append({"step": step, "state": key, **detail})

def report():
    print("%s" + json.dumps(changes), flush=True)
""" % REPORT


def run_checked(body: str, timeout: float = 900) -> list[dict]:
    """Run PRELUDE + `body` + report() in a fresh interpreter at the repository root; the recorded changes."""
    code = PRELUDE + textwrap.dedent(body) + "\nreport()\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith(REPORT)]
    assert done.returncode == 0 and lines, (
        f"the subprocess failed (exit {done.returncode})\n--- stdout\n{done.stdout[-4000:]}\n"
        f"--- stderr\n{done.stderr[-6000:]}")
    return json.loads(lines[-1][len(REPORT):])


def explain(changes: list[dict]) -> str:
    """One paragraph per changed part of the state, naming the step that changed it."""
    parts = []
    for change in changes:
        head = f"after {change['step']}: {change['state']} changed"
        if "added" in change:
            parts.append(f"{head} ({change['count'][0]} -> {change['count'][1]} filters)\n"
                         f"  added:   {change['added']}\n  removed: {change['removed']}")
        else:
            parts.append(f"{head}\n  before: {change['before']}\n  after:  {change['after']}")
    return "the library changed process-wide state:\n" + "\n".join(parts)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A demo tagger from a smoke run (trained in this interpreter: the checks run in fresh ones)."""
    import seqtag

    return Path(seqtag.train("demo", out=tmp_path_factory.mktemp("process-state") / "run", smoke=True).model_dir)


# ---------------------------------------------------------------------------
# The library's entry points, each in a fresh interpreter


def test_importing_seqtag_leaves_the_process_as_it_was():
    changes = run_checked("""
        import seqtag
        check("import seqtag")
    """)
    assert not changes, explain(changes)


def test_load_predict_and_evaluate_leave_the_process_as_they_were(model_dir):
    changes = run_checked(f"""
        import seqtag
        check("import seqtag")
        model = seqtag.load({str(model_dir)!r})
        check("seqtag.load")
        assert model.predict("Ada visited Paris .")
        check("model.predict")
        scores = model.evaluate({str(DEV)!r})   # reads a file, which imports `datasets` the first time
        assert scores["tokens"] > 0
        check("model.evaluate")
    """)
    assert not changes, explain(changes)


def test_evaluate_first_thing_after_load_leaves_the_process_as_it_was(model_dir):
    """`datasets` (and pandas, pyarrow) imported by evaluate in a process where load imported torch."""
    changes = run_checked(f"""
        import seqtag
        model = seqtag.load({str(model_dir)!r})
        before = process_state()   # measure evaluate alone
        model.evaluate({str(DEV)!r})
        check("model.evaluate (first datasets import)")
    """)
    assert not changes, explain(changes)


def test_train_leaves_the_process_as_it_was(tmp_path):
    changes = run_checked(f"""
        import seqtag
        result = seqtag.train("demo", out={str(tmp_path / "run")!r}, smoke=True)
        check("seqtag.train")
        assert result.model_dir.is_dir()
    """)
    assert not changes, explain(changes)


def test_finetune_leaves_the_process_as_it_was(model_dir, tmp_path):
    changes = run_checked(f"""
        import seqtag
        result = seqtag.finetune({str(model_dir)!r}, train={str(TRAIN)!r}, dev={str(DEV)!r},
                                 out={str(tmp_path / "ft")!r}, smoke=True)
        check("seqtag.finetune")
        assert result.model_dir.is_dir()
    """)
    assert not changes, explain(changes)


# ---------------------------------------------------------------------------
# kept_process_state itself, in this interpreter


def _disturb() -> None:
    """What libraries do at import time or in a Trainer."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(logging.NullHandler())
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.simplefilter("always")
    warnings.showwarning = lambda *args, **kwargs: None
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@pytest.fixture
def own_settings():
    """Settings of the test's own, put back afterwards whatever happens."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.root.manager.disable, warnings.filters, list(warnings.filters),
             warnings.showwarning, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    root.setLevel(13)
    warnings.filterwarnings("ignore", message="the test's own filter")
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.disable(saved[2])
    warnings.filters = saved[3]
    warnings.filters[:] = saved[4]
    warnings.showwarning = saved[5]
    signal.signal(signal.SIGINT, saved[6])
    signal.signal(signal.SIGTERM, saved[7])


def test_kept_process_state_restores_everything(own_settings):
    before, filters = process_state(), warnings.filters
    with kept_process_state():
        _disturb()
        assert process_state() != before
    assert process_state() == before
    assert warnings.filters is filters


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_kept_process_state_restores_on_errors_and_ctrl_c(own_settings, error):
    before = process_state()
    with pytest.raises(error):
        with kept_process_state():
            _disturb()
            raise error()
    assert process_state() == before


def test_kept_process_state_restores_a_replaced_filters_list_and_nests(own_settings):
    before, filters = process_state(), warnings.filters
    with kept_process_state():
        with kept_process_state():
            warnings.filters = [("ignore", None, Warning, None, 0)]
        assert warnings.filters is filters and process_state() == before
        _disturb()
    assert process_state() == before
    assert warnings.filters is filters


def test_warnings_are_filtered_again_after_restoring():
    """The "already warned" caches are reset: a warning ignored inside shows again outside."""
    def warn():
        warnings.warn("seqtag process-state probe", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with kept_process_state():
            warnings.simplefilter("ignore")
            warn()
        warn()
    assert [str(w.message) for w in seen] == ["seqtag process-state probe"]
