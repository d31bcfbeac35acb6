"""Shared pieces of the benchmarks: where the real corpora are, timing and memory helpers."""
from __future__ import annotations

import os
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SEQTAG_DATA", ROOT.parent / "shared" / "data"))
EWT = DATA / "ud_english_ewt"
WNUT = DATA / "wnut17"
MR = DATA / "mr"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
WIKITEXT = DATA / "wikitext2"


def ewt_files() -> dict[str, str]:
    return {split: str(EWT / f"en_ewt-ud-{split}.conllu") for split in ("train", "dev", "test")}


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def raw_sentences(conllu_path: Path | str) -> list[str]:
    """The original text of every sentence (the `# text = ...` comments of a CoNLL-U file)."""
    prefix = "# text = "
    with open(conllu_path, encoding="utf-8") as handle:
        return [line[len(prefix):].rstrip("\n") for line in handle if line.startswith(prefix)]


def toolkit_run(data, initial_state: dict, batches: int, out: str) -> float:
    """Seconds for `batches` training steps through seqtag's Trainer set-up (make_trainer, the task, its
    logging and checkpoint callbacks), from the given initial weights; Trainer start-up is not counted."""
    import time

    import pytorch_lightning as pl

    from seqtag.training import make_trainer, new_task

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds = time.perf_counter() - self.start

    task = new_task(data)
    task.load_state_dict(initial_state)
    trainer, _ = make_trainer(data.recipe, ROOT / out)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit_loop.max_epochs = 1
    trainer.limit_train_batches = batches
    trainer.limit_val_batches = 0
    trainer.fit(task, datamodule=data)
    return timer.seconds


def plain_step(net, optimizer, loss, clip: float) -> None:
    """One optimiser step as a hand-written loop does it: zero, backward, clip the gradient norm, step."""
    import torch

    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimizer.step()


def epoch_clock():
    """A Lightning callback that records the wall time of each training epoch, its dev check included
    (`.seconds`, a list)."""
    import time

    import pytorch_lightning as pl

    class EpochClock(pl.Callback):
        def __init__(self):
            self.starts: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self.starts.append(time.perf_counter())

        @property
        def seconds(self) -> list[float]:
            return [b - a for a, b in zip(self.starts, self.starts[1:])]

    return EpochClock()

