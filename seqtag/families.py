"""Task families, each declared once: how its data is read and featurized, which network it builds, its
training step and dev figures, the files it saves, its predictor and how its figures are printed.

`train`, saving, `seqtag.load`, evaluation and the CLI read these declarations; none of them branches on
the task name. Adding a family is one class here plus one line in `FAMILIES`.

Nothing here imports Lightning: the training loop (`tasks.py`) calls these plain functions, and
`seqtag.load` only needs the predictor side. Data preparation imports its readers when it runs.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from .config import FORMATS, TOKENIZERS, ModelConfig, Recipe
from .data.featurizer import Featurizer, LabelCodec
from .errors import SeqtagError
from .language_model import LanguageModel, window_nats
from .metrics import confusion_scores, perplexity, span_scores
from .networks import Network, State
from .predict import Predictor, SequenceTagger, TextClassifier

DEV_SCORE = "dev_score"            # accuracy or span F1 (tagging), accuracy or macro-F1 (classification)
DEV_PERPLEXITY = "dev_perplexity"  # language models; lower is better


class Family:
    """The declaration every family fills in. Class attributes say what the family is; the methods are the
    steps that differ between families."""

    name: str
    formats: tuple[str, ...]           # data.format values its readers take (config.FORMATS)
    tokenizers: tuple[str, ...] = ()   # data.tokenizer values (config.TOKENIZERS; empty: the files' words)
    embedders: tuple[str, ...]         # the default token embedders
    heads: tuple[str, ...]             # heads it can use, the default first
    causal = False                     # a left-to-right network that carries its state (language models)
    monitor, mode = DEV_SCORE, "max"   # the dev figure that early stopping and model selection watch
    files: tuple[str, ...]             # what its model directory holds besides config/weights/metrics

    # -- the recipe -----------------------------------------------------------

    def resolve(self, recipe: Recipe) -> Recipe:
        """The recipe with this family's defaults filled in (so config.json records what was built) and its
        choices checked."""
        model = recipe.model  # data.format and data.tokenizer were checked by the Recipe itself
        head = model.head or self.heads[0]
        if head not in self.heads:
            raise SeqtagError(f"model.head is {head!r}, which task {self.name!r} cannot use; expected one of "
                              f"{', '.join(map(repr, self.heads))}.")
        embedders = list(model.embedders) or list(self.embedders)
        return replace(recipe, model=replace(model, head=head, embedders=embedders))

    # -- data and network -----------------------------------------------------

    def prepare(self, recipe: Recipe, cache_dir: str | None = None, growth=None):
        """Read, check and featurize every split (a `seqtag.data.splits.Prepared`); a fine-tuning run's `growth`
        (`seqtag.data.growth.Growth`) starts from the parent's vocabularies and labels."""
        raise NotImplementedError

    def build_network(self, model: ModelConfig, sizes: dict[str, int]) -> Network:
        return Network(model, sizes, model.embedders, model.head, causal=self.causal)

    def start_network(self, net: Network, recipe: Recipe, prepared) -> None:
        """Set what training starts from beyond random weights: pretrained word vectors."""
        if prepared.pretrained:
            count = net.word_embedder().set_rows(prepared.pretrained, recipe.model.freeze_embeddings)
            prepared.record["pretrained_rows"] = count

    # -- training ---------------------------------------------------------------

    def train_loss(self, net: Network, batch, state: State | None) -> tuple[torch.Tensor, State | None, int]:
        """The loss of one training batch, the state to carry to the next batch, and the batch's size."""
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        return net.head.loss(scores, batch.labels, batch.mask), None, int(batch.mask.sum())

    def dev_counts(self, net: Network, batch, state: State | None, labels: LabelCodec | None
                   ) -> tuple[torch.Tensor, State | None]:
        """Summable counts for one dev batch (summed over batches and ranks), and the state to carry."""
        raise NotImplementedError

    def dev_figures(self, counts: torch.Tensor, labels: LabelCodec | None, recipe: Recipe) -> dict[str, float]:
        """The dev figures from the summed counts; holds `self.monitor`."""
        raise NotImplementedError

    # -- saving and loading -----------------------------------------------------

    def save_parts(self, prepared) -> tuple[dict, list[str] | None, dict]:
        """(tokenizer files, label list, config.json entries) to save beside the weights."""
        featurizer: Featurizer = prepared.featurizer
        tokenizers = {"word_tokenizer.json": featurizer.words, "char_tokenizer.json": featurizer.chars}
        return tokenizers, featurizer.labels.labels, {}

    def required_files(self, config: dict) -> tuple[str, ...]:
        model = config.get("recipe", {}).get("model", {})
        reads_chars = any(name.startswith("char_") for name in model.get("embedders", ()))
        return tuple(name for name in self.files if name != "char_tokenizer.json" or reads_chars)

    def predictor(self, net: Network, prepared, recipe: Recipe, device="cpu") -> Predictor:
        """The predictor for a network just trained (final evaluation uses it, as `seqtag.load` would)."""
        raise NotImplementedError

    def load(self, parts: dict, path: Path, device="cpu"):
        """A predictor from a model directory's parts (see `artifact.read_model`)."""
        raise NotImplementedError

    def check_prediction_options(self, model_dir, pretokenized: bool, output: str) -> None:
        """Refuse `seqtag predict` options this family's models cannot honour, before any input is read."""
        if output not in ("jsonl", "conll"):
            raise SeqtagError(f"--output is {output!r}; expected jsonl or conll.")

    def prediction_lines(self, model, lines: list[str], pretokenized: bool, output: str, top_k: int | None,
                         batch_size: int) -> Iterator[str]:
        """What `seqtag predict` prints for a chunk of input lines."""
        raise NotImplementedError

    def evaluation_splits(self, prepared) -> dict:
        return {split: prepared.rows[split] for split in ("dev", "test") if split in prepared.rows}

    def figures_line(self, metrics: dict) -> str:
        """One line of the figures `evaluate` computed."""
        raise NotImplementedError


def _network(parts: dict, path: Path, family: Family, entries: dict[str, tuple] | None = None
             ) -> tuple[Network, Recipe]:
    """Rebuild the network a model directory's config.json describes and load its weights. `entries` are the
    config.json keys this family's models hold besides those of every model, each with the values it may take
    (None: any). Whatever does not fit (a key missing or of another family, a recipe setting missing, unknown
    or out of range, a part the family cannot use, weights of another shape) is a ModelFileError naming the
    file; `artifact.read_model` has checked the rest."""
    from dataclasses import fields

    from .artifact import COMMON_KEYS, check_weights
    from .artifact import DAMAGED as damaged
    from .config import ADDED_KEYS, SECTIONS, recipe_from_dict
    from .errors import ModelFileError

    config, where, entries = parts["config"], path / "config.json", entries or {}
    foreign = sorted(set(config) - COMMON_KEYS - set(entries))
    if foreign:
        raise ModelFileError(where, f"{foreign[0]!r} is not a key of a {family.name!r} model (task), but of another "
                                    f"family's; the task was edited. A model cannot change its task. {damaged}")
    for key, allowed in entries.items():
        if key not in config:
            raise ModelFileError(where, f"the key {key!r} is missing. {damaged}")
        if allowed is not None and config[key] not in allowed:
            raise ModelFileError(where, f"{key} is {config[key]!r}; expected one of {', '.join(map(repr, allowed))}. "
                                        f"{damaged}")
    # A saved recipe holds every setting; the data and model ones rebuild the network and its preprocessing, so
    # a default standing in for a missing one could give other results than the model was trained to give.
    for section in ("data", "model"):
        settings = config["recipe"].get(section)
        if isinstance(settings, dict):  # keys newer than the model: the value it was trained with
            for key, value in ADDED_KEYS.items():
                if key.startswith(f"{section}.") and key.split(".", 1)[1] not in settings:
                    settings[key.split(".", 1)[1]] = value
        missing = [f.name for f in fields(SECTIONS[section]) if not isinstance(settings, dict) or f.name not in settings]
        if missing:
            raise ModelFileError(where, f"the saved recipe lacks {', '.join(f'{section}.{key}' for key in missing)}, "
                                        f"so the model cannot be rebuilt as it was trained. {damaged}")
    try:
        recipe = family.resolve(recipe_from_dict(config["recipe"], where="the saved recipe", saved=True))
    except SeqtagError as err:
        raise ModelFileError(where, f"{err} {damaged}") from None
    net = family.build_network(recipe.model, config["sizes"])
    check_weights(path / "model.safetensors", net.state_dict(), parts["state_dict"], f"a {family.name!r} network")
    net.load_state_dict(parts["state_dict"])
    return net, recipe


class Tagging(Family):
    """A label per token: POS tags, entities, chunks. Dev figure: accuracy, or span F1 for span schemes."""

    name = "tagging"
    formats = FORMATS["tagging"]
    embedders = ("word", "char_cnn")
    heads = ("softmax", "crf")
    files = ("word_tokenizer.json", "char_tokenizer.json", "labels.json")

    def prepare(self, recipe: Recipe, cache_dir: str | None = None, growth=None):
        from .data.corpus import prepare_tagging

        return prepare_tagging(recipe, cache_dir, growth)

    @staticmethod
    def _constrain(net: Network, codec: LabelCodec) -> None:
        """Tell a head that rules out transitions (the CRF) which ones the training scheme forbids. They come
        from the label names, not the weights, so this runs when training starts and when a model is loaded."""
        constrain = getattr(net.head, "constrain", None)
        if constrain is not None:
            constrain(codec.labels, codec.train_scheme)

    def start_network(self, net, recipe, prepared):
        super().start_network(net, recipe, prepared)
        self._constrain(net, prepared.featurizer.labels)

    def dev_counts(self, net, batch, state, labels):
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        predicted, _ = net.head.decode(scores, batch.mask)
        tokens = batch.mask.sum()
        loss = net.head.loss(scores, batch.labels, batch.mask).detach() * tokens
        if not labels.is_span:
            correct = ((predicted == batch.labels) & batch.mask).sum()
            return torch.stack([correct.float(), tokens.float(), loss, tokens.float()]).cpu(), None
        gold_seqs, predicted_seqs = [], []
        for gold_row, pred_row, n in zip(batch.labels.tolist(), predicted.tolist(), batch.lengths.tolist()):
            gold_seqs.append([labels.name(i) for i in gold_row[:n]])
            predicted_seqs.append([labels.labels[i] for i in pred_row[:n]])
        scores = span_scores(gold_seqs, predicted_seqs)
        return torch.tensor([scores["correct_spans"], scores["gold_spans"], scores["predicted_spans"],
                             float(loss), float(tokens)]), None

    def dev_figures(self, counts, labels, recipe):
        *counts, loss, tokens = counts.tolist()
        if not labels.is_span:
            correct, total = counts
            score = 100.0 * correct / total if total else 0.0
        else:
            correct, gold, predicted = counts
            precision = correct / predicted if predicted else 0.0
            recall = correct / gold if gold else 0.0
            score = 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {DEV_SCORE: score, "dev_loss": loss / tokens if tokens else 0.0}

    def save_parts(self, prepared):
        tokenizers, labels, extra = super().save_parts(prepared)
        codec = prepared.featurizer.labels
        return tokenizers, labels, {"file_scheme": codec.file_scheme, "train_scheme": codec.train_scheme}

    def predictor(self, net, prepared, recipe, device="cpu"):
        return SequenceTagger(net, prepared.featurizer, recipe.data, device=device)

    def load(self, parts, path, device="cpu"):
        from .data.schemes import SCHEMES

        net, recipe = _network(parts, path, self, {"file_scheme": SCHEMES, "train_scheme": SCHEMES})
        config = parts["config"]
        codec = LabelCodec(parts["labels"], config["file_scheme"], config["train_scheme"])
        featurizer = Featurizer(parts["words"], parts["chars"], codec, recipe.data.max_word_length)
        self._constrain(net, codec)
        return SequenceTagger(net, featurizer, recipe.data, parts["metrics"], path, device)

    def prediction_lines(self, model, lines, pretokenized, output, top_k, batch_size):
        items = [line.split() for line in lines] if pretokenized else lines
        for sentence in model.predict(items, batch_size=batch_size):
            if output == "jsonl":
                yield json.dumps(sentence.to_dict(), ensure_ascii=False)
            else:  # CoNLL: token and label per line, a blank line after each sentence
                yield "".join(f"{w}\t{l}\n" for w, l in zip(sentence.words, sentence.labels))

    def figures_line(self, metrics):
        counts = f"({metrics['sentences']} sentences, {metrics['tokens']} tokens)"
        if "f1" in metrics:
            return f"F1 {metrics['f1']:.2f}  P {metrics['precision']:.2f}  R {metrics['recall']:.2f}  {counts}"
        return f"accuracy {metrics['accuracy']:.2f}  {counts}"


class Classification(Family):
    """A label per text: sentiment, topics. Dev figure: accuracy or macro-F1 (train.dev_metric)."""

    name = "classification"
    formats = FORMATS["classification"]
    tokenizers = TOKENIZERS["classification"]
    embedders = ("word", "char_cnn")
    heads = ("pooled",)
    files = ("word_tokenizer.json", "char_tokenizer.json", "labels.json")

    def prepare(self, recipe: Recipe, cache_dir: str | None = None, growth=None):
        from .data.classification import prepare_classification

        return prepare_classification(recipe, cache_dir, growth)

    def start_network(self, net, recipe, prepared):
        super().start_network(net, recipe, prepared)
        if recipe.train.class_weights == "balanced":
            # n / (k · count) per class, so every class weighs as much in the loss as the others.
            ids = torch.as_tensor(prepared.encoded["train"]["label_id"], dtype=torch.long)
            size = prepared.sizes["labels"]
            counts = torch.bincount(ids, minlength=size).float()
            net.head.class_weights = len(ids) / (size * counts.clamp(min=1))
            prepared.record["class_weights"] = dict(zip(prepared.featurizer.labels.labels,
                                                        net.head.class_weights.tolist()))

    def dev_counts(self, net, batch, state, labels):
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        predicted, _ = net.head.decode(scores, batch.mask)
        size = len(labels)
        # A gold class never seen in training goes to an extra last row: always an error.
        cells = batch.labels.clamp(max=size) * size + predicted                           # (B,)
        return torch.bincount(cells, minlength=(size + 1) * size).view(size + 1, size).cpu(), None

    def dev_figures(self, counts, labels, recipe):
        size = len(labels)
        scores = confusion_scores(counts[:size].tolist(), labels.labels)
        unseen = int(counts[size].sum())
        accuracy = 100.0 * sum(int(counts[i, i]) for i in range(size)) / max(1, int(counts.sum()))
        figure = scores["macro_f1"] if recipe.train.dev_metric == "macro_f1" else accuracy
        return {DEV_SCORE: figure, "dev_unseen": float(unseen)}

    def save_parts(self, prepared):
        tokenizers, labels, _ = super().save_parts(prepared)
        return tokenizers, labels, {"split": prepared.record.get("split"),
                                    "truncated": prepared.record.get("truncated")}

    def predictor(self, net, prepared, recipe, device="cpu"):
        return TextClassifier(net, prepared.featurizer, recipe.data, device=device)

    def load(self, parts, path, device="cpu"):
        net, recipe = _network(parts, path, self, {"split": None, "truncated": None})
        data = recipe.data
        featurizer = Featurizer(parts["words"], parts["chars"], LabelCodec(parts["labels"]), data.max_word_length,
                                raw_text=True, max_length=data.max_length)
        return TextClassifier(net, featurizer, data, parts["metrics"], path, device)

    def check_prediction_options(self, model_dir, pretokenized, output):
        super().check_prediction_options(model_dir, pretokenized, output)
        if pretokenized or output != "jsonl":
            raise SeqtagError(f"{model_dir} is a text classifier: it reads one raw text per line and writes JSON "
                              "lines; drop --pretokenized and --output conll.")

    def prediction_lines(self, model, lines, pretokenized, output, top_k, batch_size):
        for result in model.predict(lines, top_k=top_k, batch_size=batch_size):
            yield json.dumps(result.to_dict(), ensure_ascii=False)

    def figures_line(self, metrics):
        return f"accuracy {metrics['accuracy']:.2f}  macro-F1 {metrics['macro_f1']:.2f}  ({metrics['texts']} texts)"


class LanguageModelling(Family):
    """The next token of a text stream, left to right (optionally with a right-to-left twin). Dev figure:
    perplexity of the forward model over every dev token."""

    name = "lm"
    formats = FORMATS["lm"]
    tokenizers = TOKENIZERS["lm"]
    embedders = ("word",)
    heads = ("next_token",)
    causal = True
    monitor, mode = DEV_PERPLEXITY, "min"
    files = ("tokenizer.json",)

    def resolve(self, recipe: Recipe) -> Recipe:
        recipe = super().resolve(recipe)
        if recipe.model.embedders != ["word"]:
            raise SeqtagError(f"model.embedders is {recipe.model.embedders!r}; a language model reads token ids "
                              "only: use [word].")
        return recipe

    def prepare(self, recipe: Recipe, cache_dir: str | None = None, growth=None):
        from .data.lm import prepare_lm

        return prepare_lm(recipe, cache_dir, growth)

    @staticmethod
    def _directions(net: Network) -> list[bool]:
        return [False, True] if net.backward_encoder is not None else [False]

    def _windows(self, net, batch, state) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list]:
        """(nats, tokens) per direction for one BPTT window, and the states to carry (one per direction)."""
        state = state or [None] * len(self._directions(net))
        sums, carried = [], []
        for backward, direction_state in zip(self._directions(net), state):
            nats, count, direction_state = window_nats(net, batch, direction_state, backward)
            sums.append((nats, count))
            carried.append(direction_state)
        return sums, carried

    def train_loss(self, net, batch, state):
        sums, state = self._windows(net, batch, state)
        loss = torch.stack([nats / count.clamp(min=1) for nats, count in sums]).mean()
        return loss, state, int(sums[0][1])

    def dev_counts(self, net, batch, state, labels):
        sums, state = self._windows(net, batch, state)
        return torch.stack([torch.stack([nats.detach(), count.to(nats.dtype)]) for nats, count in sums]).cpu(), state

    def dev_figures(self, counts, labels, recipe):
        losses = (counts[:, 0] / counts[:, 1].clamp(min=1)).tolist()    # (directions, 2): nats, tokens
        figures = {"dev_loss": losses[0], DEV_PERPLEXITY: perplexity(losses[0])}
        if len(losses) > 1:
            figures["dev_backward_perplexity"] = perplexity(losses[1])
        return figures

    def save_parts(self, prepared):
        return {"tokenizer.json": prepared.tokenizer}, None, {"split": prepared.record.get("split")}

    def required_files(self, config):
        return self.files

    def predictor(self, net, prepared, recipe, device="cpu"):
        return LanguageModel(net, prepared.tokenizer, recipe.data, device=device)

    def load(self, parts, path, device="cpu"):
        net, recipe = _network(parts, path, self, {"split": None})
        return LanguageModel(net, parts["tokenizer"], recipe.data, parts["metrics"], path, device)

    def evaluation_splits(self, prepared):
        return {split: prepared.encoded[split] for split in ("dev", "test") if split in prepared.encoded}

    def check_prediction_options(self, model_dir, pretokenized, output):
        raise SeqtagError(f"{model_dir} is a language model; use `seqtag generate` (or `seqtag evaluate` for "
                          "perplexity).")

    def figures_line(self, metrics):
        bits = f"  bits/char {metrics['bits_per_char']:.4f}" if "bits_per_char" in metrics else ""
        return (f"perplexity {metrics['perplexity']:.2f}  loss {metrics['loss']:.4f} nats/token{bits}  "
                f"({metrics['tokens']} tokens)")


FAMILIES: dict[str, Family] = {family.name: family for family in (Tagging(), Classification(), LanguageModelling())}


def family_of(config: dict, path: Path | None = None) -> Family:
    """The family a recipe's task or a saved config.json names."""
    task = config.get("task") if isinstance(config, dict) else config
    if task not in FAMILIES:
        where = f"{path / 'config.json'}: " if path is not None else ""
        raise SeqtagError(f"{where}task is {task!r}; expected one of {', '.join(map(repr, FAMILIES))}.")
    return FAMILIES[task]

