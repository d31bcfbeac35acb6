"""A recipe whose data comes from `load_dataset` by name; offline, the name is a local folder."""
from __future__ import annotations

from datasets import ClassLabel, Dataset, Features, Sequence, Value

import seqtag
from seqtag.config import load_recipe
from seqtag.training import train


def test_hub_format_trains_with_class_label_tags_and_splits(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    features = Features({"tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]))})
    splits = {"train": {"tokens": [["Ada", "Lovelace", "visited", "Paris"], ["Alan", "slept"]],
                        "ner_tags": [[1, 2, 0, 3], [1, 0]]},
              "validation": {"tokens": [["Alan", "visited", "Paris", "."]], "ner_tags": [[1, 0, 3, 0]]},
              "test": {"tokens": [["Ada", "slept"], ["Paris"], ["Alan", "Lovelace", "slept", "."]],
                       "ner_tags": [[1, 0], [3], [1, 2, 0, 0]]}}
    for split, rows in splits.items():
        Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    recipe = load_recipe("conll-ner", ["data.format=hub", f"data.hub_name={folder}", "train.progress_bar=false",
                                       "data.scheme=auto"], train="train", dev="validation", test="test")
    result = train(recipe, tmp_path / "run", smoke=True)
    tagger = seqtag.load(result.model_dir)
    assert tagger.featurizer.labels.file_scheme == "iob2"
    assert set(tagger.labels) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    # Each split is read from its own file: the figures count its sentences and tokens, not the training ones.
    assert (result.metrics["dev"]["sentences"], result.metrics["dev"]["tokens"]) == (1, 4)
    assert (result.metrics["test"]["sentences"], result.metrics["test"]["tokens"]) == (3, 7)
