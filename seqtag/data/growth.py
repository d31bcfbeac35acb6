"""How a fine-tuning run's vocabularies and labels grow out of its parent model's.

Everything here appends: a word, character or label the parent had keeps its id, so the parent's
weight rows stay where they are and new rows are added after them. The data preparation of each
family (`prepare_tagging`, `prepare_classification`, `prepare_lm`) calls a `Growth` where it would
otherwise build vocabularies and labels from scratch.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from ..config import FinetuneConfig
from ..errors import InputError, SeqtagError
from . import schemes
from .featurizer import Featurizer, LabelCodec, span_label_list
from .vocab import UNK

log = logging.getLogger("seqtag")


def parse_label_map(spec: str) -> dict[str, str]:
    """finetune.label_map: a file of "theirs=ours" (or theirs<TAB>ours) lines, or inline "a=B,c=D"."""
    path = Path(spec)
    if path.is_file():
        pairs, where = [], str(path)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            theirs, sep, ours = line.partition("\t") if "\t" in line else line.partition("=")
            if not sep or not theirs.strip() or not ours.strip():
                raise InputError(path, number, f"expected 'their_label=model_label' (or a tab between them), "
                                 f"found {line!r}")
            pairs.append((theirs.strip(), ours.strip(), number))
    else:
        if "=" not in spec:
            raise SeqtagError(f"finetune.label_map is {spec!r}: no such file, and not an inline map such as "
                              "person=PER,location=LOC.")
        where, pairs = "finetune.label_map", []
        for part in spec.split(","):
            theirs, sep, ours = part.partition("=")
            if not sep or not theirs.strip() or not ours.strip():
                raise SeqtagError(f"finetune.label_map: {part!r} is not 'their_label=model_label'.")
            pairs.append((theirs.strip(), ours.strip(), None))
    mapping = {}
    for theirs, ours, number in pairs:
        if theirs in mapping and mapping[theirs] != ours:
            at = f"{where}, line {number}" if number else where
            raise SeqtagError(f"{at}: {theirs!r} is mapped twice ({mapping[theirs]!r} and {ours!r}).")
        mapping[theirs] = ours
    return mapping


def label_names(labels: Iterable[str]) -> list[str]:
    """The names a label map uses for `labels`, sorted: a span label's entity type (B-PER → PER), any other label
    whole (NNP, positive, O)."""
    names = set()
    for label in labels:
        prefix, sep, kind = label.partition("-")
        names.add(kind if sep and len(prefix) == 1 and kind else label)
    return sorted(names)


class LabelMap:
    """Renames the data's labels: a whole label ("pos" → "positive", "NNP" → "PROPN"), or for span labels the
    entity type after the prefix ("B-person" → "B-PER"). Remembers which names it met, so that a map naming a
    label the data does not have is caught."""

    def __init__(self, mapping: dict[str, str], spec: str):
        self.mapping = mapping
        self.spec = spec
        self.met: set[str] = set()
        self.seen: set[str] = set()  # every label the data has, as it is in the files

    def label(self, label: str) -> str:
        if label in self.mapping:
            self.met.add(label)
            return self.mapping[label]
        prefix, sep, kind = label.partition("-")
        if sep and len(prefix) == 1 and kind in self.mapping:
            self.met.add(kind)
            return f"{prefix}-{self.mapping[kind]}"
        return label

    def rows(self, dataset, column: str):
        """`dataset` with `column` (a label, or a list of labels per row) renamed."""
        def rename(batch: dict) -> dict:
            values = batch[column]
            for value in values:
                self.seen.update(value if isinstance(value, list) else [value])
            batch[column] = [[self.label(v) for v in value] if isinstance(value, list) else self.label(value)
                             for value in values]
            return batch

        return dataset.map(rename, batched=True, desc="label map", load_from_cache_file=False)

    def check_all_met(self, sources: Iterable[str]) -> None:
        missing = [label for label in self.mapping if label not in self.met]
        if missing:
            raise SeqtagError(f"finetune.label_map ({self.spec}) names {', '.join(map(repr, missing))}, which the "
                              f"data ({', '.join(sources)}) does not have (its labels: "
                              f"{', '.join(label_names(self.seen))}); check the names (labels are case-sensitive) "
                              "or drop them from the map.")

    def check_targets(self, model_labels: Iterable[str], sources: Iterable[str]) -> None:
        """Each label the map renames to is one the model or the data has: a misspelt target would otherwise
        become a new label without a word."""
        model_labels = list(model_labels)
        known = {*model_labels, *label_names(model_labels), *self.seen, *label_names(self.seen)}
        for theirs, ours in self.mapping.items():
            if ours not in known:
                raise SeqtagError(f"finetune.label_map ({self.spec}) maps {theirs!r} to {ours!r}, which is neither "
                                  f"a label of the model ({', '.join(label_names(model_labels))}) nor of the data "
                                  f"({', '.join(sources)}: {', '.join(label_names(self.seen))}); map it onto one "
                                  "of these (labels are case-sensitive).")


def _pieces(tokenizer: Tokenizer, items: Iterable[str], whole: bool) -> Counter:
    """How often each vocabulary entry the tokenizer would look up occurs in `items`: each item normalized as the
    tokenizer does, then whole (`whole`: a pre-tokenized word) or split by its pre-tokenizer (raw text)."""
    normalizer, pre = tokenizer.normalizer, tokenizer.pre_tokenizer
    counts: Counter = Counter()
    for item in items:
        text = normalizer.normalize_str(item) if normalizer is not None else item
        if whole or pre is None:
            counts[text] += 1
        else:
            counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return counts


def grow_tokenizer(tokenizer: Tokenizer, counts: Counter, min_freq: int = 1, max_added: int | None = None
                   ) -> tuple[Tokenizer, list[str]]:
    """A word-level tokenizer with the entries of `counts` it lacks (seen at least `min_freq` times) appended,
    most frequent first, at most `max_added` of them; its normalizer, pre-tokenizer and decoder are kept.
    Returns it and what was added."""
    vocab = tokenizer.get_vocab()
    added = [entry for entry, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if count >= min_freq and entry not in vocab and entry]
    if max_added is not None and len(added) > max_added:
        log.info("%d new entries were seen %d times or more; the %d most frequent are added (data.vocab_size)",
                 len(added), min_freq, max_added)
        added = added[:max_added]
    if not added:
        return tokenizer, []
    for entry in added:
        vocab[entry] = len(vocab)
    grown = Tokenizer(WordLevel(vocab, unk_token=UNK))
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        if getattr(tokenizer, part) is not None:
            setattr(grown, part, getattr(tokenizer, part))
    return grown, added


def can_grow(tokenizer: Tokenizer) -> bool:
    return isinstance(tokenizer.model, WordLevel)


class Growth:
    """What a fine-tuning run starts from: the parent's featurizer (taggers, classifiers) or tokenizer (language
    models), the `finetune.*` settings, and the label map. `added` records what grew, for config.json."""

    def __init__(self, settings: FinetuneConfig, featurizer: Featurizer | None = None,
                 tokenizer: Tokenizer | None = None):
        self.settings = settings
        self.featurizer = featurizer
        self.tokenizer = tokenizer
        self.label_map = LabelMap(parse_label_map(settings.label_map), settings.label_map) \
            if settings.label_map else None
        self.added: dict[str, list[str]] = {}
        self.replay = settings.replay
        self.adds_language_models = False  # the run adds the "lm" embedder: its pair is read from model.lm

    # -- labels ---------------------------------------------------------------

    def check_map(self, sources: Iterable[str]) -> None:
        """After every split was renamed: each label the map names was in the data, and each it renames to is
        the model's or the data's."""
        if self.label_map is not None:
            sources = list(sources)
            self.label_map.check_all_met(sources)
            if self.featurizer is not None and self.featurizer.labels is not None:
                self.label_map.check_targets(self.featurizer.labels.labels, sources)

    def rename(self, dataset, column: str):
        return self.label_map.rows(dataset, column) if self.label_map is not None else dataset

    def labels(self, seen: dict[str, tuple[str, int | None]], span_types: bool) -> LabelCodec:
        """The parent's label codec, with the labels of the training data it lacks appended (or, with
        finetune.new_labels=error, an error naming the first one's file and line). `seen` maps each training
        label — an entity type for span schemes — to (file, line) of its first occurrence."""
        codec: LabelCodec = self.featurizer.labels
        grown = LabelCodec(codec.labels, codec.file_scheme, codec.train_scheme)
        known = {label.split("-", 1)[1] for label in codec.labels if "-" in label} if span_types else set(codec.labels)
        new = [label for label in seen if label not in known]
        if new and self.settings.new_labels == "error":
            label = new[0]
            source, line = seen[label]
            what = "entity type" if span_types else "label"
            raise InputError(source, line, f"{what} {label!r} is not one of the model's ({', '.join(sorted(known))}) "
                             "and finetune.new_labels is 'error'; map it onto one of them with finetune.label_map, "
                             "or let the model learn it with finetune.new_labels=append.")
        appended = span_label_list(sorted(new), codec.train_scheme)[1:] if span_types else sorted(new)
        for label in appended:
            grown.add(label)
        if appended:
            log.info("new labels appended to the model's %d: %s", len(codec), ", ".join(appended))
            self.added["labels"] = appended
        return grown

    # -- vocabularies -----------------------------------------------------------

    def words(self, items: Iterable[str], whole: bool, min_freq: int, max_added: int | None = None) -> Tokenizer:
        """The parent's word tokenizer, grown by the words (pieces of raw text, unless `whole`) of `items`."""
        return self._grow("words", self.featurizer.words, items, whole, min_freq, max_added)

    def chars(self, words: Iterable[str]) -> Tokenizer | None:
        """The parent's character vocabulary, grown by the characters of `words`."""
        chars = self.featurizer.chars
        if chars is None:
            return None
        return self._grow("chars", chars, (char for word in words for char in word), True, 1)

    def lm_tokenizer(self, texts: Iterable[str], min_freq: int, max_added: int) -> Tokenizer:
        return self._grow("tokens", self.tokenizer, texts, False, min_freq, max_added)

    def _grow(self, kind: str, tokenizer: Tokenizer, items: Iterable[str], whole: bool, min_freq: int,
              max_added: int | None = None) -> Tokenizer:
        if not self.settings.extend_vocab:
            return tokenizer
        if not can_grow(tokenizer):
            log.info("the model's %s tokenizer is a fixed sub-word vocabulary: it is kept as it is (new words are "
                     "spelled with its pieces)", type(tokenizer.model).__name__)
            return tokenizer
        grown, added = grow_tokenizer(tokenizer, _pieces(tokenizer, items, whole), min_freq, max_added)
        if added:
            log.info("%d new %s added to the model's %d (finetune.extend_vocab)", len(added), kind,
                     tokenizer.get_vocab_size())
            self.added[kind] = added
        return grown


def first_places(label_rows: Sequence, line_rows: Sequence | None, source: str, span_types: bool
                 ) -> dict[str, tuple[str, int | None]]:
    """Each label (or entity type) of some rows with the file and line where it first occurs."""
    places: dict[str, tuple[str, int | None]] = {}
    for index, labels in enumerate(label_rows):
        lines = line_rows[index] if line_rows is not None else None
        if not isinstance(labels, list):
            places.setdefault(labels, (source, lines))
            continue
        if span_types:
            for kind, start, _ in schemes.spans(labels):
                places.setdefault(kind, (source, lines[start] if lines else None))
        else:
            for position, label in enumerate(labels):
                places.setdefault(label, (source, lines[position] if lines else None))
    return places


def training_places(rows: dict, sources: dict, label_column: str, line_column: str, span_types: bool
                    ) -> tuple[list[str], dict[str, tuple[str, int | None]]]:
    """The training splits (train, and replay when given) and where each of their labels first occurs."""
    training = [split for split in ("train", "replay") if split in rows]
    places: dict[str, tuple[str, int | None]] = {}
    for split in training:
        found = first_places(rows[split][label_column], rows[split][line_column], sources[split], span_types)
        places.update({label: place for label, place in found.items() if label not in places})
    return training, places
