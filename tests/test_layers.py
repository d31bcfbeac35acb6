"""The layers of seqtag, declared once, and the imports between them: no circle, and nothing imports upwards.

Every import counts, those inside functions too (they are read from the source, not from sys.modules), but for
those under `if TYPE_CHECKING:`, which only a type checker reads. A module
may import its own layer or any layer below; the import graph must hold no circle; and the design's "nevers" hold
for what each module reaches, directly or through others.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seqtag"

# Lowest first. A new module goes into the layer of what it is; the test fails until it is listed.
LAYERS = {
    "foundations": ["errors", "version", "paths", "registry", "process_state", "durable", "text", "artifact", "runs", "metrics",
                    "data", "data.lines", "data.schemes", "data.vectors", "results"],
    "parts": ["cells", "heads", "crf", "crf_numpy", "embedders", "data.vocab", "data.readers", "data.text_readers",
              "data.lengths", "data.tokens", "sampling"],
    "configuration": ["config"],
    "networks and featurizers": ["networks", "data.featurizer", "data.batching", "data.streams", "data.growth",
                                 "data.splits", "data.corpus", "data.classification", "data.lm",
                                 "data.contextual"],
    "predictors and loading": ["streaming", "outputs", "predict", "language_model", "families", "loading", "eval_report",
                               "onnx_predict", "quantize"],
    "serving and streaming": ["serve", "distributed"],
    "training": ["objectives", "tasks", "starts", "progress", "hardware", "curves", "training"],
    "fine-tuning and compare": ["finetuning", "compare", "compare_report", "export"],
    "Python API": ["__init__", "__main__"],
}
LEVEL = {module: level for level, modules in enumerate(LAYERS.values()) for module in modules}
NAME = {level: name for level, name in enumerate(LAYERS)}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return "__init__" if parts == ("__init__",) else ".".join(p for p in parts if p != "__init__") or "__init__"


def _imports(path: Path, name: str) -> tuple[set[str], set[str]]:
    """(seqtag modules, other top-level packages) that `path` imports anywhere in its source."""
    package = name.rsplit(".", 1)[0] if "." in name and path.name != "__init__.py" else (
        name if path.name == "__init__.py" and name != "__init__" else "")
    own, other = set(), set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                   for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "seqtag" or alias.name.startswith("seqtag."):
                    own.add(alias.name.removeprefix("seqtag").lstrip(".") or "__init__")
                else:
                    other.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == "seqtag" or (node.module or "").startswith("seqtag."):
                target = node.module.removeprefix("seqtag").lstrip(".")
            else:
                other.add((node.module or "").split(".")[0])
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}" if target else alias.name
                own.add(full if full in LEVEL else (target or "__init__"))
    own.discard(name)
    return own, other


GRAPH = {}
EXTERNAL = {}
for _path in sorted(PACKAGE.rglob("*.py")):
    _name = _module_name(_path)
    GRAPH[_name], EXTERNAL[_name] = _imports(_path, _name)


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_module_belongs_to_a_layer():
    unlisted = sorted(set(GRAPH) - set(LEVEL))
    assert not unlisted, f"add these modules to a layer in tests/test_layers.py: {unlisted}"


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} ({NAME[LEVEL[module]]}) imports {target} ({NAME[LEVEL[target]]})"
              for module, targets in GRAPH.items() for target in targets
              if module in LEVEL and target in LEVEL and LEVEL[target] > LEVEL[module]]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_circle():
    circles = sorted({" → ".join(sorted(_reach(m) & {t for t in GRAPH if m in _reach(t)} | {m}))
                      for m in GRAPH if m in _reach(m)})
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("module", ["networks", "cells", "heads", "crf", "embedders"])
def test_networks_never_reach_tokenizers_or_readers(module):
    reached = _reach(module) | {module}
    assert not reached & {"data.vocab", "data.readers", "data.text_readers", "data.corpus", "data.lm"}, reached
    assert not any("tokenizers" in EXTERNAL[m] or "datasets" in EXTERNAL[m] for m in reached)


@pytest.mark.parametrize("module", ["data.readers", "data.text_readers"])
def test_readers_never_reach_networks(module):
    assert not (_reach(module) | {module}) & {"networks", "cells", "heads", "crf", "embedders"}


@pytest.mark.parametrize("module", ["predict", "language_model", "families", "loading"])
def test_prediction_never_reaches_training_or_lightning(module):
    reached = _reach(module) | {module}
    training = {m for m in reached if LEVEL.get(m, 0) >= LEVEL["objectives"]}
    assert not training, training
    assert not any({"pytorch_lightning", "lightning", "lightning_fabric"} & EXTERNAL[m] for m in reached)


def test_only_the_training_layer_imports_lightning():
    importers = {m for m, packages in EXTERNAL.items() if {"pytorch_lightning", "lightning", "lightning_fabric"} & packages}
    assert all(LEVEL[m] >= LEVEL["objectives"] for m in importers), importers
