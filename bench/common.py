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
