"""The training side of each task family: how its data is prepared, how a network starts, the loss of a
training batch, the dev figures, what a model directory saves and which splits are evaluated at the end.

`training.py` and `tasks.py` (Lightning) call these plain functions; nothing here imports Lightning. Each
objective is registered under its family's name and holds the family's declaration (`families.py`), which
builds the network and the predictor.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .config import Recipe
from .data.batching import Batch
from .data.featurizer import LM_TOKENIZER, Featurizer, LabelCodec
from .embedders import LM_EMBEDDER, KeptStates, row_key
from .data.splits import Prepared
from .data.lengths import pad_ragged
from .data.vocab import PAD_ID, UNK_ID, spell
from .errors import SeqtagError
from .families import FAMILIES, Family, family_of
from .heads import float32_region
from .language_model import LanguageModel, window_nats
from .metrics import confusion_scores, perplexity, span_scores
from .networks import Network, State
from .predict import Predictor, SequenceTagger, TextClassifier
from .registry import Registry

DEV_SCORE = "dev_score"            # accuracy or span F1 (tagging), accuracy or macro-F1 (classification)
DEV_PERPLEXITY = "dev_perplexity"  # language models; lower is better
NEW_LABELS_CORRECT = "dev_new_labels_correct"  # fine-tuning with appended labels: their correct dev predictions

OBJECTIVES = Registry("task", "training objective")  # family name → its objective (an instance)


class Objective:
    """What training a family's network means. `family` is its declaration."""

    family: Family
    monitor, mode = DEV_SCORE, "max"   # the dev figure that early stopping and model selection watch

    # -- data and network -----------------------------------------------------

    def prepare(self, recipe: Recipe, cache_dir: str | None = None, growth=None) -> Prepared:
        """Read, check and featurize every split; a fine-tuning run's `growth` (`seqtag.data.growth.Growth`)
        starts from the parent's vocabularies and labels."""
        raise NotImplementedError

    def start_network(self, net: Network, recipe: Recipe, prepared: Prepared) -> None:
        """Set what training starts from beyond random weights: pretrained word vectors, and the character
        language models of the "lm" embedder."""
        if prepared.pretrained:
            count = net.word_embedder().set_rows(prepared.pretrained, recipe.model.freeze_embeddings)
            prepared.record.pretrained_rows = count
        if prepared.language_models is not None:
            net.embedders[LM_EMBEDDER].load_language_models(prepared.language_models)

    # -- training ---------------------------------------------------------------

    def train_loss(self, net: Network, batch, state: State | None, keep: Distillation | None = None
                   ) -> tuple[torch.Tensor, State | None, int]:
        """The loss of one training batch, the state to carry to the next batch, and the batch's size. A
        fine-tuning run's `keep` adds the distillation loss that holds the old labels."""
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        loss = net.head.loss(scores, batch.labels, batch.mask)
        if keep is not None:
            loss = loss + keep.weight * keep.loss(net.head, scores, batch)
            if keep.swaps is not None:
                swapped, where = keep.swaps(batch)
                swapped_scores, _ = net(swapped.features, swapped.lengths, swapped.mask)
                loss = loss + keep.weight * keep.loss(net.head, swapped_scores, swapped, where)
        return loss, None, int(batch.mask.sum())

    def dev_counts(self, net: Network, batch, state: State | None, labels: LabelCodec | None,
                   first_new: int | None = None) -> tuple[torch.Tensor, State | None]:
        """Summable counts for one dev batch (summed over batches and ranks), and the state to carry. A
        fine-tuning run that appended labels gives `first_new`, the id of the first appended one."""
        raise NotImplementedError

    def dev_figures(self, counts: torch.Tensor, labels: LabelCodec | None, recipe: Recipe,
                    first_new: int | None = None) -> dict[str, float]:
        """The dev figures from the summed counts; holds `self.monitor`, and with `first_new` also
        NEW_LABELS_CORRECT: how many dev tokens, spans or texts of an appended label the network got right."""
        raise NotImplementedError

    # -- the end of training ------------------------------------------------------

    def save_parts(self, prepared: Prepared) -> tuple[dict, list[str] | None, dict]:
        """(tokenizer files, label list, config.json entries) to save beside the weights."""
        featurizer: Featurizer = prepared.featurizer
        tokenizers = {"word_tokenizer.json": featurizer.words, "char_tokenizer.json": featurizer.chars,
                      LM_TOKENIZER: featurizer.lm_chars}
        return tokenizers, featurizer.labels.labels, {}

    def predictor(self, net: Network, prepared: Prepared, recipe: Recipe, device="cpu") -> Predictor:
        """The predictor for a network just trained (final evaluation uses it, as `seqtag.load` would)."""
        raise NotImplementedError

    def evaluation_splits(self, prepared: Prepared) -> dict:
        return {split: prepared.rows[split] for split in ("dev", "test") if split in prepared.rows}


class Distillation:
    """Learning without forgetting (finetune.keep_old=distill): on the new sentences, the frozen parent network's
    distribution over its own labels — the first `labels` of the child's, which appends new ones after them — is
    a soft target for the child's distribution over those same labels, both at `temperature`:

        loss = temperature² · mean over the distilled tokens (texts) of KL(parent ‖ child)

    (the square keeps the gradients' size as the temperature changes). The distributions are the heads' own
    (`log_distribution`): a softmax over the old labels' scores, or a CRF's marginals over the labellings made of
    old labels. Neither depends on the new labels' scores, so matching the parent there leaves the child free to
    give a token a new label. `skip_new`: the tokens (texts) whose gold label is a new one are left out, as the
    parent cannot know them (a small gain in bench/keep_old.py: old-test F1 86.0 against 85.1 over five seeds, at T=2).
    `skip_corrected`: so are those whose gold label is an old one that the parent does not find most probable: the
    new data corrects the parent there (a new domain's organisations that a tweet tagger calls groups, a review's
    words it mistags), and the parent's errors would otherwise be a target. What the parent gets right, and old
    labels the new data lacks, stay held.

    `parent` is a plain attribute, never a submodule of the network or of the Lightning module: it is not
    trained, not in the optimiser, not in a checkpoint nor in the saved model (a resumed run rebuilds it from the
    parent directory), and stays in eval mode (no dropout) when Lightning switches the child to training."""

    skip_new = True
    skip_corrected = True

    def __init__(self, parent: Network, labels: int, temperature: float = 1.0, weight: float = 1.0,
                 swaps: "WordSwaps | None" = None):
        if not hasattr(parent.head, "log_distribution"):
            raise SeqtagError(f"finetune.keep_old=distill needs the head's distribution over the old labels, which "
                              f"the {type(parent.head).__name__} head does not give: use finetune.keep_old=none, or "
                              "=replay with the parent's training data.")
        self.parent = parent.eval().requires_grad_(False)
        self.labels, self.temperature, self.weight = labels, temperature, weight
        self.swaps = swaps                  # finetune.distill_swaps: sentences with the parent's words swapped in
        self.kept: KeptStates | None = None  # each sentence's targets, once computed (`keep_targets`)

    def keep_targets(self, megabytes: float) -> None:
        """Keep each sentence's targets, up to `megabytes` of them (0: off): the parent never changes, so a
        sentence's targets are the same every epoch (with an LM pair in the parent, later epochs ran 1.8x faster
        in bench/RESULTS.md; without one, 1.03-1.17x)."""
        self.kept = KeptStates(megabytes) if megabytes > 0 else None

    def targets(self, batch, device: torch.device) -> torch.Tensor:
        """The parent's log-probabilities over its labels for the batch (no gradient), on `device`."""
        if next(self.parent.parameters()).device != device:
            self.parent.to(device)
        if self.kept is None:
            return self._computed(batch)
        keys = [row_key(batch.features, batch.mask, row) for row in range(batch.mask.size(0))]
        if any(key not in self.kept.vectors for key in keys):
            computed = self._computed(batch)
            for row, key in enumerate(keys):
                self.kept.add(key, computed[row, :int(batch.mask[row].sum())] if computed.dim() == 3
                              else computed[row])
            return computed
        first = self.kept.vectors[keys[0]]                                    # (N, P) per sentence, (P,) per text
        words = list(batch.mask.shape[1:]) if first.dim() == 2 else []
        # Padding gets the even distribution, a finite value the loss leaves out.
        out = torch.full((len(keys), *words, first.size(-1)), -math.log(first.size(-1)), dtype=first.dtype)
        self.kept.fill(out, list(enumerate(keys)))
        return out.to(device)

    def _computed(self, batch) -> torch.Tensor:
        with torch.no_grad():
            self.parent.eval()
            scores, _ = self.parent(batch.features, batch.lengths, batch.mask)
            return self.parent.head.log_distribution(scores, batch.mask, self.labels, self.temperature)

    def loss(self, head, scores: torch.Tensor, batch, swapped: torch.Tensor | None = None) -> torch.Tensor:
        """The distillation loss of the child's `scores` (from `head`) on `batch`, in float32. `swapped`: the
        batch is one of `WordSwaps`, whose targets are computed afresh, and these (B, T) tokens are distilled
        whatever their gold label (a word swapped in has none)."""
        gold = batch.labels
        if swapped is None:
            target = self.targets(batch, scores.device)                      # (B, T, P) or (B, P)
        else:
            target = self._computed(batch).to(scores.device)
        with float32_region(scores):
            mine = head.log_distribution(scores, batch.mask, self.labels, self.temperature)
            kl = (target.exp() * (target - mine)).sum(-1)                       # (B, T) or (B,)
            kept = batch.mask if kl.dim() == 2 else torch.ones_like(kl, dtype=torch.bool)
            if self.skip_new:
                kept = kept & (gold < self.labels)
            if self.skip_corrected:
                kept = kept & ((target.argmax(-1) == gold) | (gold >= self.labels))
            if swapped is not None:
                kept = kept | (swapped & batch.mask)
            kept = kept.to(kl.dtype)
            return self.temperature ** 2 * (kl * kept).sum() / kept.sum().clamp(min=1)


class WordSwaps:
    """Sentences to distil on besides the new ones (finetune.distill_swaps, taggers): each training batch again,
    with a share of its words replaced by words of the parent's vocabulary, half of them capitalised. New data
    that lacks an old label (no organisation at all) then still shows the child the names the parent knows as
    organisations, in the new data's contexts, and what the parent makes of them is a target. The batch keeps
    its lengths, mask and labels; a call returns it with the (B, T) tokens that were swapped (`Distillation.loss`
    distils those whatever their gold label says).

    `words` and `char_ids` are the grown featurizer's (the parent's own entries first); `parent_words` is how many
    word rows the parent has. Models that read the "lm" embedder are not given swaps: its features spell the
    sentence's own text."""

    def __init__(self, words, char_ids: dict[str, int] | None, parent_words: int, max_word_length: int,
                 share: float):
        entries = [(index, word) for word, index in words.get_vocab().items() if UNK_ID < index < parent_words]
        entries.sort()
        self.ids = torch.tensor([index for index, _ in entries], dtype=torch.long)
        self.share = share  # the draws come from torch's own generator, which a checkpoint saves and resumes
        self.spellings = None
        if char_ids is not None:  # (form, word, char): each word as the vocabulary has it, then capitalised
            words = [word for _, word in entries]
            forms = spell(char_ids, [words, [word[:1].upper() + word[1:] for word in words]], max_word_length)
            spelled = [chars for form in forms for chars in form]
            lengths = np.fromiter(map(len, spelled), dtype=np.int64, count=len(spelled))
            flat = np.fromiter((c for chars in spelled for c in chars), dtype=np.int64, count=int(lengths.sum()))
            padded = pad_ragged(flat, lengths, int(lengths.max()), PAD_ID)
            self.spellings = torch.from_numpy(padded).view(2, len(entries), -1)

    def __call__(self, batch: Batch) -> tuple[Batch, torch.Tensor]:
        mask = batch.mask.cpu()
        swap = mask & (torch.rand(mask.shape) < self.share)
        picked = torch.randint(len(self.ids), (int(swap.sum()),))
        features = dict(batch.features)
        word_ids = features["word_ids"].cpu().clone()
        word_ids[swap] = self.ids[picked]
        features["word_ids"] = word_ids
        if self.spellings is not None and "char_ids" in features:
            chars = features["char_ids"].cpu()
            width = max(chars.size(-1), self.spellings.size(-1))
            chars = torch.nn.functional.pad(chars, (0, width - chars.size(-1)), value=PAD_ID)
            form = torch.randint(2, (len(picked),))
            spelled = self.spellings[form, picked]
            chars[swap] = torch.nn.functional.pad(spelled, (0, width - spelled.size(-1)), value=PAD_ID)
            features["char_ids"] = chars
        device = batch.mask.device
        swapped = Batch({key: value.to(device) for key, value in features.items()}, batch.lengths, batch.mask,
                        batch.labels)
        return swapped, swap.to(device)


def leading_part(tensor: torch.Tensor, shape) -> torch.Tensor:
    """The part of a grown tensor that holds its parent's `shape`: a fine-tuned network appends words,
    characters and labels after the parent's, so each parent tensor sits at the start of every dimension."""
    return tensor[tuple(slice(0, size) for size in shape)]


class Anchor:
    """finetune.anchor: a pull of the fine-tuned weights back toward the parent's, beside the loss (the "L2-SP"
    of Li, Grandvalet and Davoine, 2018):

        loss = anchor · Σ over the parent's weights of (child − parent)²

    Only each tensor's parent part is pulled (`leading_part`): appended rows of new words and labels are free.
    Weights that do not learn (frozen parts, an untuned LM pair) cost nothing. Where the new data lacks a label
    (a domain without organisations), its loss alone moves the shared encoder until the old label is lost; the
    pull keeps the encoder near the parent's unless the new data pays for the move. `reference` is the parent's
    saved state dictionary, kept on the CPU and moved beside the network on first use."""

    def __init__(self, reference: dict[str, torch.Tensor], weight: float):
        self.reference = {name: tensor.detach().float() for name, tensor in reference.items()}
        self.weight = weight

    def loss(self, net: Network) -> torch.Tensor:
        total = None
        for name, weight in net.named_parameters():
            parent = self.reference.get(name)
            if parent is None or not weight.requires_grad:
                continue
            if parent.device != weight.device:
                parent = self.reference[name] = parent.to(weight.device)
            gap = ((leading_part(weight, parent.shape).float() - parent) ** 2).sum()
            total = gap if total is None else total + gap
        if total is None:
            return torch.zeros(())
        return self.weight * total


class TaggingObjective(Objective):
    family = FAMILIES["tagging"]

    def prepare(self, recipe, cache_dir=None, growth=None):
        from .data.corpus import prepare_tagging  # reading files needs `datasets`

        return prepare_tagging(recipe, cache_dir, growth)

    def start_network(self, net, recipe, prepared):
        super().start_network(net, recipe, prepared)
        self.family.constrain(net, prepared.featurizer.labels)

    def dev_counts(self, net, batch, state, labels, first_new=None):
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        predicted, _ = net.head.decode(scores, batch.mask)
        tokens = batch.mask.sum()
        loss = net.head.loss(scores, batch.labels, batch.mask).detach() * tokens
        if not labels.is_span:
            hits = (predicted == batch.labels) & batch.mask
            counts = [hits.sum().float(), tokens.float(), loss, tokens.float()]
            if first_new is not None:
                counts.append((hits & (batch.labels >= first_new)).sum().float())
            return torch.stack(counts).cpu(), None
        gold_seqs, predicted_seqs = [], []
        for gold_row, pred_row, n in zip(batch.labels.tolist(), predicted.tolist(), batch.lengths.tolist()):
            gold_seqs.append([labels.name(i) for i in gold_row[:n]])
            predicted_seqs.append([labels.labels[i] for i in pred_row[:n]])
        scores = span_scores(gold_seqs, predicted_seqs)
        counts = [scores["correct_spans"], scores["gold_spans"], scores["predicted_spans"], float(loss), float(tokens)]
        if first_new is not None:
            new_types = {label.split("-", 1)[1] for label in labels.labels[first_new:]}
            counts.append(sum(figures["correct"] for kind, figures in scores["per_label"].items()
                              if kind in new_types))
        return torch.tensor(counts), None

    def dev_figures(self, counts, labels, recipe, first_new=None):
        counts = counts.tolist()
        new_correct = counts.pop() if first_new is not None else None
        *counts, loss, tokens = counts
        if not labels.is_span:
            correct, total = counts
            score = 100.0 * correct / total if total else 0.0
        else:
            correct, gold, predicted = counts
            precision = correct / predicted if predicted else 0.0
            recall = correct / gold if gold else 0.0
            score = 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        figures = {DEV_SCORE: score, "dev_loss": loss / tokens if tokens else 0.0}
        if new_correct is not None:
            figures[NEW_LABELS_CORRECT] = new_correct
        return figures

    def save_parts(self, prepared):
        tokenizers, labels, extra = super().save_parts(prepared)
        codec = prepared.featurizer.labels
        return tokenizers, labels, {"file_scheme": codec.file_scheme, "train_scheme": codec.train_scheme}

    def predictor(self, net, prepared, recipe, device="cpu"):
        return SequenceTagger(net, prepared.featurizer, recipe.data, device=device)


class ClassificationObjective(Objective):
    family = FAMILIES["classification"]

    def prepare(self, recipe, cache_dir=None, growth=None):
        from .data.classification import prepare_classification  # reading files needs `datasets`

        return prepare_classification(recipe, cache_dir, growth)

    def start_network(self, net, recipe, prepared):
        super().start_network(net, recipe, prepared)
        if recipe.train.class_weights == "balanced":
            # n / (k · count) per class, so every class weighs as much in the loss as the others.
            ids = torch.as_tensor(prepared.encoded["train"]["label_id"], dtype=torch.long)
            size = prepared.sizes["labels"]
            counts = torch.bincount(ids, minlength=size).float()
            net.head.class_weights = len(ids) / (size * counts.clamp(min=1))
            prepared.record.class_weights = dict(zip(prepared.featurizer.labels.labels,
                                                     net.head.class_weights.tolist()))

    def dev_counts(self, net, batch, state, labels, first_new=None):
        scores, _ = net(batch.features, batch.lengths, batch.mask)
        predicted, _ = net.head.decode(scores, batch.mask)
        size = len(labels)
        # A gold class never seen in training goes to an extra last row: always an error.
        cells = batch.labels.clamp(max=size) * size + predicted                           # (B,)
        return torch.bincount(cells, minlength=(size + 1) * size).view(size + 1, size).cpu(), None

    def dev_figures(self, counts, labels, recipe, first_new=None):
        size = len(labels)
        scores = confusion_scores(counts[:size].tolist(), labels.labels)
        unseen = int(counts[size].sum())
        accuracy = 100.0 * sum(int(counts[i, i]) for i in range(size)) / max(1, int(counts.sum()))
        figure = scores["macro_f1"] if recipe.train.dev_metric == "macro_f1" else accuracy
        figures = {DEV_SCORE: figure, "dev_unseen": float(unseen)}
        if first_new is not None:
            figures[NEW_LABELS_CORRECT] = float(sum(int(counts[i, i]) for i in range(first_new, size)))
        return figures

    def save_parts(self, prepared):
        tokenizers, labels, _ = super().save_parts(prepared)
        return tokenizers, labels, {"split": prepared.record.split, "truncated": prepared.record.truncated}

    def predictor(self, net, prepared, recipe, device="cpu"):
        return TextClassifier(net, prepared.featurizer, recipe.data, device=device)


class LanguageModellingObjective(Objective):
    family = FAMILIES["lm"]
    monitor, mode = DEV_PERPLEXITY, "min"

    def prepare(self, recipe, cache_dir=None, growth=None):
        from .data.lm import prepare_lm  # reading files needs `datasets`

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

    def train_loss(self, net, batch, state, keep=None):
        # `keep` is always None: fine-tuning refuses finetune.keep_old=distill for language models.
        sums, state = self._windows(net, batch, state)
        loss = torch.stack([nats / count.clamp(min=1) for nats, count in sums]).mean()
        return loss, state, int(sums[0][1])

    def dev_counts(self, net, batch, state, labels, first_new=None):
        sums, state = self._windows(net, batch, state)
        return torch.stack([torch.stack([nats.detach(), count.to(nats.dtype)]) for nats, count in sums]).cpu(), state

    def dev_figures(self, counts, labels, recipe, first_new=None):
        losses = (counts[:, 0] / counts[:, 1].clamp(min=1)).tolist()    # (directions, 2): nats, tokens
        figures = {"dev_loss": losses[0], DEV_PERPLEXITY: perplexity(losses[0])}
        if len(losses) > 1:
            figures["dev_backward_perplexity"] = perplexity(losses[1])
        return figures

    def save_parts(self, prepared):
        return {"tokenizer.json": prepared.tokenizer}, None, {"split": prepared.record.split}

    def predictor(self, net, prepared, recipe, device="cpu"):
        return LanguageModel(net, prepared.tokenizer, recipe.data, device=device)

    def evaluation_splits(self, prepared):
        return {split: prepared.encoded[split] for split in ("dev", "test") if split in prepared.encoded}


for _objective in (TaggingObjective(), ClassificationObjective(), LanguageModellingObjective()):
    OBJECTIVES.register(_objective.family.name, _objective)


def objective_of(task: str) -> Objective:
    """The training objective of a recipe's task (an unknown task is named in the error)."""
    return OBJECTIVES[family_of(task).name]
