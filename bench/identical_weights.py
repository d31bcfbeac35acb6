"""Same seed, same thread count: bit-identical weights before and after a refactor? (issue 17)

Trains three models through the command line (`python -m seqtag -q train ...`), each in a process of its own with
one thread (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1), for exactly 2 epochs with seed 1 (train.max_epochs=2,
train.patience=0, train.seed=1, train.progress_bar=false):

* tagger: the `demo` recipe on its bundled corpus, as shipped;
* classifier: the `mr` recipe on the first 1,000 lines of rt-polarity.pos and of rt-polarity.neg (the MR copy in
  the shared data folder, written to a temporary folder), shrunk to model.word_dim=32, model.hidden_size=32,
  model.num_layers=1 (dev: the recipe's seeded 10% split);
* char LM: the `char-lm` recipe on the first 200,000 characters of Tiny Shakespeare (a temporary file; dev: its
  last 10%), model.hidden_size=64, model.num_layers=1, data.bptt=64.

The process runs in the checkout given by --checkout (default: the repository this script lies in) with
PYTHONPATH set to it, so that it imports that checkout's seqtag and cli.py even when the python's environment
holds an editable install of another checkout; before training, the script checks this in a process with the
same settings (it imports every module of the checkout's seqtag and its cli.py and fails when one comes from
elsewhere).

Prints per model the SHA-256 of model/model.safetensors, the SHA-256 of the tensors' contents (each tensor's
name, dtype, shape and bytes, in key order: a change in the file's metadata alone shows as a file hash that
changes while this one does not), and the dev figures of model/metrics.json. --save FILE keeps all of it, with
a hash per tensor, as JSON; --compare FILE compares with such a file and exits 1 when a tensor differs, naming
the model and the first differing tensor (in key order). A file hash or dev figure that differs while every
tensor is the same is reported without failing. About a minute for the three (12-25 s each) on a 2-core CPU.

    .venv/bin/python bench/identical_weights.py [--checkout DIR] [--python PYTHON] [--out DIR] [--models tagger,classifier,lm] [--save FILE] [--compare FILE]

Issue 17's check, the baseline on the commit before the refactor, then the working tree against it:

    git worktree add --detach /tmp/identity-base 563a4e1
    .venv/bin/python bench/identical_weights.py --checkout /tmp/identity-base --python .venv/bin/python --save /tmp/identity-baseline.json
    .venv/bin/python bench/identical_weights.py --compare /tmp/identity-baseline.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

COMMON_SETS = ("train.max_epochs=2", "train.patience=0", "train.seed=1", "train.progress_bar=false")
MR_LINES = 1000            # the first lines of each MR file
SHAKESPEARE_CHARS = 200_000  # the first characters of Tiny Shakespeare


def prepare_data(folder: Path) -> dict[str, Path]:
    """The fixed subsets, written into `folder` (never into a repository); the same bytes on every run."""
    folder.mkdir(parents=True, exist_ok=True)
    mr = folder / "mr"
    mr.mkdir(exist_ok=True)
    for name in ("rt-polarity.pos", "rt-polarity.neg"):  # the label is the file's extension: keep the names
        with open(common.MR / name, encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(MR_LINES)]
        (mr / name).write_text("".join(lines), encoding="utf-8")
    text = common.SHAKESPEARE.read_text(encoding="utf-8")[:SHAKESPEARE_CHARS]
    shakespeare = folder / "tinyshakespeare-200k.txt"
    shakespeare.write_text(text, encoding="utf-8")
    return {"mr_pos": mr / "rt-polarity.pos", "mr_neg": mr / "rt-polarity.neg", "shakespeare": shakespeare}


def models(data: dict[str, Path]) -> dict[str, dict]:
    """Each model: the recipe, its data arguments, its --set overrides and the data files it reads."""
    return {
        "tagger": {"recipe": "demo", "data_args": [], "sets": [], "inputs": []},
        "classifier": {"recipe": "mr", "data_args": ["--train", f"{data['mr_pos']},{data['mr_neg']}"],
                       "sets": ["model.word_dim=32", "model.hidden_size=32", "model.num_layers=1"],
                       "inputs": [data["mr_pos"], data["mr_neg"]]},
        "lm": {"recipe": "char-lm", "data_args": ["--train", str(data["shakespeare"])],
               "sets": ["model.hidden_size=64", "model.num_layers=1", "data.bptt=64"],
               "inputs": [data["shakespeare"]]},
    }


def child_env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(checkout)}


CHECK_IMPORTS = r"""
import importlib, json, sys, torch
from pathlib import Path
checkout = Path(sys.argv[1]).resolve()
import seqtag, seqtag.__main__
cli = seqtag.__main__.load_cli()
for path in sorted((checkout / "seqtag").glob("*.py")):
    if path.stem not in ("__init__", "__main__"):
        importlib.import_module(f"seqtag.{path.stem}")
from seqtag.config import RECIPES_DIR
files = {name: getattr(module, "__file__", None) for name, module in sorted(sys.modules.items())
         if name == "cli" or name == "seqtag" or name.startswith("seqtag.")}
foreign = {name: file for name, file in files.items()
           if file is not None and not Path(file).resolve().is_relative_to(checkout)}
print(json.dumps({"seqtag": seqtag.__file__, "cli": cli.__file__, "recipes": str(RECIPES_DIR),
                  "foreign": foreign, "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""


def check_imports(python: str, checkout: Path) -> dict:
    """Where the training processes' seqtag, cli.py and recipes come from; stops when any is not the checkout's."""
    done = subprocess.run([python, "-c", CHECK_IMPORTS, str(checkout)], cwd=checkout, env=child_env(checkout),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"importing seqtag from {checkout} failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"seqtag: {found['seqtag']}")
    print(f"cli:    {found['cli']}")
    print(f"recipes: {found['recipes']}")
    print(f"torch {found['torch']}, {found['threads']} thread(s), python {python}")
    outside = [str(path) for path in (found["seqtag"], found["cli"], found["recipes"])
               if not Path(path).resolve().is_relative_to(checkout)]
    if outside or found["foreign"]:
        raise SystemExit(f"the training process would not use {checkout}'s code only: "
                         f"{outside + [f'{k} from {v}' for k, v in found['foreign'].items()]}")
    return found


def train(python: str, checkout: Path, out: Path, model: dict) -> float:
    """Trains one model into `out` (replacing a run there); returns the wall time in seconds."""
    command = [python, "-m", "seqtag", "-q", "train", model["recipe"], *model["data_args"], "--out", str(out),
               "--overwrite", *[part for setting in (*COMMON_SETS, *model["sets"]) for part in ("--set", setting)]]
    started = time.monotonic()
    done = subprocess.run(command, cwd=checkout, env=child_env(checkout), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"seqtag exited with {done.returncode}: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights(path: Path) -> dict:
    """The file's hash, the hash of the tensors' contents (name, dtype, shape, bytes in key order), and one per tensor."""
    import torch
    from safetensors import safe_open

    overall = hashlib.sha256()
    tensors = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        for key in sorted(handle.keys()):
            tensor = handle.get_tensor(key).contiguous()
            raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
            dtype, shape = str(tensor.dtype).removeprefix("torch."), list(tensor.shape)
            overall.update(f"{key}\0{dtype}\0{shape}\0{len(raw)}\0".encode())
            overall.update(raw)
            tensors[key] = {"dtype": dtype, "shape": shape, "sha256": hashlib.sha256(raw).hexdigest()}
    return {"file_sha256": sha256_file(path), "tensors_sha256": overall.hexdigest(), "metadata": metadata,
            "tensors": tensors}


def dev_figures(model_dir: Path) -> dict:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    return {"dev": metrics.get("dev"), "epochs": metrics.get("epochs")}


def short(figures: dict | None) -> str:
    if not isinstance(figures, dict):
        return str(figures)
    return ", ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in figures.items() if not isinstance(value, (dict, list)))


def compare(reference: dict, current: dict) -> bool:
    """Prints what differs; True when every tensor of every model compared is the same."""
    for name, settings in current["settings"].items():
        if name in reference["settings"] and reference["settings"][name] != settings:
            raise SystemExit(f"{name}: the reference file was made with other settings (recipe, --set, data subset); "
                             f"no like-for-like comparison:\nreference: {json.dumps(reference['settings'][name])}\n"
                             f"now:       {json.dumps(settings)}")
    for key in ("torch", "threads"):
        if reference["environment"].get(key) != current["environment"].get(key):
            print(f"note: {key} differs: reference {reference['environment'].get(key)}, "
                  f"now {current['environment'].get(key)}")
    identical = True
    for name, result in current["models"].items():
        if name not in reference["models"]:
            print(f"{name}: not in the reference file; not compared")
            continue
        old, new = reference["models"][name]["weights"], result["weights"]
        old_tensors, new_tensors = old["tensors"], new["tensors"]
        differing = [key for key in sorted(set(old_tensors) | set(new_tensors))
                     if old_tensors.get(key) != new_tensors.get(key)]
        if differing:
            identical = False
            first = differing[0]
            if first not in new_tensors:
                why = "missing now"
                renamed = [key for key, value in new_tensors.items()
                           if key not in old_tensors and value == old_tensors[first]]
                if renamed:
                    why += f"; the same tensor is now under {renamed[0]!r}"
            elif first not in old_tensors:
                why = "not in the reference"
            elif old_tensors[first]["shape"] != new_tensors[first]["shape"] or \
                    old_tensors[first]["dtype"] != new_tensors[first]["dtype"]:
                why = (f"{old_tensors[first]['dtype']}{old_tensors[first]['shape']} then, "
                       f"{new_tensors[first]['dtype']}{new_tensors[first]['shape']} now")
            else:
                why = "other values"
            print(f"{name}: DIFFERENT weights: first differing tensor {first!r} ({why}); "
                  f"{len(differing)} of {len(set(old_tensors) | set(new_tensors))} tensors differ")
        else:
            file_note = ("same file" if old["file_sha256"] == new["file_sha256"]
                         else f"the file differs (metadata {old['metadata']} then, {new['metadata']} now)")
            print(f"{name}: identical weights ({len(new_tensors)} tensors; {file_note})")
        if reference["models"][name]["figures"] != result["figures"]:
            print(f"{name}: dev figures differ: reference {short(reference['models'][name]['figures']['dev'])}; "
                  f"now {short(result['figures']['dev'])}")
    return identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=common.ROOT,
                        help="The seqtag source checkout to train with (default: this script's repository).")
    parser.add_argument("--python", default=sys.executable,
                        help="The python that runs seqtag (default: the one running this script).")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the runs (default: a temporary one).")
    parser.add_argument("--models", default="tagger,classifier,lm",
                        help="Which models to train, comma-separated (default: tagger,classifier,lm).")
    parser.add_argument("--save", type=Path, default=None, help="Write the hashes and figures to this JSON file.")
    parser.add_argument("--compare", type=Path, default=None,
                        help="Compare with a JSON file written by --save; exit 1 when a tensor differs.")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    if not (checkout / "seqtag" / "__init__.py").is_file():
        raise SystemExit(f"{checkout} is not a seqtag checkout (no seqtag/__init__.py)")
    reference = json.loads(args.compare.read_text()) if args.compare else None
    root = (args.out or Path(tempfile.mkdtemp(prefix="seqtag-identical-"))).resolve()
    for repository in {checkout, common.ROOT.resolve()}:
        if root.is_relative_to(repository):
            raise SystemExit(f"--out {root} lies inside {repository}: the data subsets are not to be written into "
                             "a repository; give a folder elsewhere")
    all_models = models(prepare_data(root / "data"))
    chosen = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in all_models]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(all_models)}")

    found = check_imports(args.python, checkout)
    git = ["git", "--no-optional-locks", "-C", str(checkout)]  # read only: not even the index's stat cache
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    head = commit.stdout.strip() or "unknown"
    print(f"checkout {checkout} at {head}{' with uncommitted changes' if dirty.stdout.strip() else ''}; runs in {root}")
    print()
    result = {
        "checkout": str(checkout), "commit": head, "uncommitted_changes": bool(dirty.stdout.strip()),
        "environment": {"torch": found["torch"], "threads": found["threads"], "python": platform.python_version(),
                        "machine": platform.machine()},
        "settings": {name: {"recipe": all_models[name]["recipe"], "sets": [*COMMON_SETS, *all_models[name]["sets"]],
                            "data_sha256": [sha256_file(path) for path in all_models[name]["inputs"]]}
                     for name in chosen},
        "models": {},
    }
    for name in chosen:
        model = all_models[name]
        out = root / name
        seconds = train(args.python, checkout, out, model)
        model_dir = out / "model"
        entry = {"seconds": round(seconds, 1), "weights": weights(model_dir / "model.safetensors"),
                 "figures": dev_figures(model_dir)}
        result["models"][name] = entry
        print(f"{name} ({model['recipe']}{', ' + ', '.join(model['sets']) if model['sets'] else ''}): "
              f"{seconds:.1f} s, {entry['figures']['epochs']} epochs")
        print(f"  model.safetensors sha256: {entry['weights']['file_sha256']}")
        print(f"  tensors sha256:           {entry['weights']['tensors_sha256']} "
              f"({len(entry['weights']['tensors'])} tensors)")
        print(f"  dev: {short(entry['figures']['dev'])}")
    if args.save:
        args.save.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nsaved to {args.save}")
    print(f"runs kept in {root}")
    if reference is not None:
        print(f"\ncompared with {args.compare} ({reference['checkout']} at {reference['commit']}"
              f"{' with uncommitted changes' if reference.get('uncommitted_changes') else ''}):")
        if not compare(reference, result):
            return 1
        print("every tensor identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
