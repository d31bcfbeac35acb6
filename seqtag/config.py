"""Recipes: one dataclass per concern, loaded from YAML, overridden with `--set`.

A recipe file has the sections `data`, `model` and `train`; every key in it must be a
field below, so a typo is an error instead of a silently ignored setting. A value is converted
to its field's declared type (YAML reads 1e-3 as text; "12" is a fine int, 12.5 is not), and a
key the recipe's task does not read (fields declared with `used_by`) is an error too.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The parts' registries, complete: each part registers itself where its class is written (crf.py adds its head,
# text_readers.py the text formats).
from . import crf  # noqa: F401 - registers the CRF head in HEADS
from .cells import CELLS, LSTM
from .data import text_readers  # noqa: F401 - registers the text formats in FORMATS
from .data.readers import CONLL, FORMATS, formats_of
from .data.vocab import TOKENIZERS, WORD, tokenizers_of
from .embedders import EMBEDDERS, WORD_EMBEDDER
from .errors import SeqtagError
from .heads import HEADS
from .paths import RECIPES_DIR



def _one_of(section: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise SeqtagError(f"{section}.{name} is {value!r}; expected one of {', '.join(map(repr, allowed))}.")


def _positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise SeqtagError(f"{section}.{name} is {value!r}; it must be {bound}.")


# The task families: those some data format is read for (each family registers a reader for its formats).
TASKS = tuple(dict.fromkeys(family for fmt in FORMATS.values() for family in fmt.readers))
SEED_MAX = 2**32 - 1  # numpy's seeds are unsigned 32-bit; Lightning seeds numpy, torch and random with train.seed


def used_by(*tasks: str, **field_args: Any) -> Any:
    """A dataclass field that only these task families read; a recipe of another task that sets it is
    refused. Fields declared without `used_by` are read by every task."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"used_by: unknown task families {sorted(unknown)}; known: {TASKS}")
    return field(metadata={"tasks": tasks}, **field_args)


@dataclass
class DataConfig:
    format: str = CONLL
    """Reader. Tagging: "conll" (columns), "conllu" (Universal Dependencies) or "hub" (a dataset on the HF hub).
    Classification: "csv", "tsv", "jsonl", "auto" (csv/tsv/jsonl by file extension), "class_files" (one file per
    class, one text per line, the label is the file's extension: rt-polarity.pos -> "pos"), "class_folders" (a
    folder holding one sub-folder per class, one text per file) or "hub".
    Language models: "text" (plain text files), "wikitext" (PTB/WikiText: tokens split at whitespace, <unk> kept,
    <eos> at each line end) or "hub" (a text dataset)."""
    train: str | None = None
    """Training file (for "hub": the split name, default "train"; for "class_files" and "text": comma-separated
    files, and for "text" also glob patterns such as corpus/*.txt, or folders: every *.txt file inside)."""
    dev: str | None = None
    """Development file used for early stopping and model selection."""
    test: str | None = None
    """Test file, evaluated once at the end of training."""
    token_column: int = used_by("tagging", default=0)
    """CoNLL: 0-based column of the tokens."""
    label_column: int | str = used_by("tagging", "classification", default=-1)
    """CoNLL: 0-based column of the labels (-1 is the last). CoNLL-U: a field name such as "upos" or "xpos".
    CSV/TSV: a header name or 0-based index. JSON lines and hub: a field name."""
    text_column: int | str = used_by("classification", "lm", default=0)
    """Classification, CSV/TSV: a header name or 0-based index of the text. JSON lines and hub: a field name.
    Language models with format "hub": the field holding the text ("text" unless a name is given)."""
    header: bool = used_by("classification", default=True)
    """CSV/TSV: the first row names the columns."""
    quoting: bool = used_by("classification", default=True)
    """CSV/TSV: fields may be quoted with double quotes (csv module rules); false reads quotes literally."""
    skip_bad_rows: bool = used_by("classification", default=False)
    """Classification: skip (and count and report) rows with an empty text or a wrong field count instead of
    stopping with an error."""
    dev_fraction: float = used_by("classification", "lm", default=0.1)
    """Without a dev file: for classification the share of the training texts held out as dev, by a seeded split;
    for language models the last share of the training text (cut at that character; at a line end for words)."""
    test_fraction: float = used_by("classification", default=0.0)
    """Classification without a test file: the share of the training texts held out as test (0: no test split)."""
    split_seed: int = used_by("classification", default=1)
    """Classification: seed of these splits; it and the split sizes are recorded in the saved model (a language
    model's dev cut is not random)."""
    tokenizer: str = used_by("classification", "lm", default=WORD)
    """Classification: "word" (whole words), "bpe" or "wordpiece" (sub-words trained on the training text).
    Language models: "word" (closed vocabulary plus <unk>), "char" or "bpe" (byte-level, trained on the text)."""
    vocab_size: int = used_by("classification", "lm", default=30_000)
    """Classification and language models: the largest vocabulary the tokenizer may learn (words: the most
    frequent ones are kept)."""
    normalization: str = used_by("classification", default="none")
    """Classification: Unicode normalization of the text before tokenizing: "none", "nfc", "nfkc"."""
    max_length: int = used_by("classification", default=0)
    """Classification: tokens kept per text (0 keeps all); how many texts were cut is logged and saved."""
    hub_name: str | None = None
    """For format "hub": the dataset name (or a local folder with data files)."""
    hub_config: str | None = None
    """For format "hub": the dataset configuration name, if it has several."""
    tokens_field: str = used_by("tagging", default="tokens")
    """Tagging with format "hub": the field holding the token lists."""
    labels_field: str = used_by("tagging", default="ner_tags")
    """Tagging with format "hub": the field holding the label lists."""
    scheme: str = used_by("tagging", default="auto")
    """Tag scheme of the files: "auto" (detected), "iob1", "iob2", "bioes", or "none" for plain tags such as POS."""
    train_scheme: str = used_by("tagging", default="bioes")
    """Scheme the network is trained in for span tasks; predictions go back to the files' own scheme."""
    lowercase: bool = True
    """Lowercase words for the word vocabulary (the character encoder still sees the original case)."""
    min_freq: int = 1
    """Words (characters, for a character language model) seen fewer times in training map to the unknown
    token."""
    max_word_length: int = used_by("tagging", "classification", default=30)
    """Tagging and classification: characters per word given to the character encoder; longer words are cut
    (the word id is unaffected)."""
    batch_size: int = 32
    """Sentences per training batch; batches are bucketed by length. Language models: the number of contiguous
    columns the training stream is cut into."""
    eval_batch_size: int = 256
    """Sentences per batch for evaluation and prediction. Language models: columns of the evaluated stream."""
    bptt: int = used_by("lm", default=128)
    """Language models: tokens per truncated-backpropagation window; the hidden state carries across windows."""

    def __post_init__(self) -> None:
        FORMATS.check(self.format)
        TOKENIZERS.check(self.tokenizer)
        if FORMATS[self.format].check is not None:  # settings this format cannot read with
            FORMATS[self.format].check(self)
        _one_of("data", "normalization", self.normalization, ("none", "nfc", "nfkc"))
        _positive("data", "max_length", self.max_length, allow_zero=True)
        _positive("data", "vocab_size", self.vocab_size)
        if not 0 < self.dev_fraction < 1:
            raise SeqtagError(f"data.dev_fraction is {self.dev_fraction!r}; it must be between 0 and 1 "
                              "(0.1 holds out a tenth of the training texts as dev).")
        if not 0 <= self.test_fraction < 1 or self.dev_fraction + self.test_fraction >= 1:
            raise SeqtagError(f"data.test_fraction is {self.test_fraction!r}; it must be in [0, 1) and leave "
                              f"training texts beside data.dev_fraction={self.dev_fraction!r}.")
        _one_of("data", "scheme", self.scheme, ("auto", "iob1", "iob2", "bioes", "none"))
        _one_of("data", "train_scheme", self.train_scheme, ("iob2", "bioes"))
        for name in ("min_freq", "max_word_length", "batch_size", "eval_batch_size", "bptt"):
            _positive("data", name, getattr(self, name))


@dataclass
class ModelConfig:
    word_dim: int = 100
    """Size of the word embeddings."""
    pretrained_vectors: str | None = used_by("tagging", "classification", "lm", default=None)
    """Optional file of pretrained word vectors (GloVe or word2vec text, fastText .vec, word2vec binary; plain or
    gzip) whose rows initialise the word embeddings of taggers, classifiers (data.tokenizer word) and word-level
    language models. Only the vocabulary's vectors and the first pretrained_max_words are kept, and the saved
    model carries them: it never needs the file again."""
    pretrained_max_words: int = used_by("tagging", "classification", "lm", default=100_000)
    """Taggers and classifiers: how many of the vector file's first words (files list frequent words first) join
    the vocabulary beside the training words. A language model's vocabulary stays its training words (every
    word is also an output), so it only takes the vectors of those."""
    pretrained_format: str = used_by("tagging", "classification", "lm", default="auto")
    """Format of pretrained_vectors: "auto" (gzip is recognised by its first bytes, word2vec binary by its
    header and the bytes after it), "text" or "word2vec_binary"."""
    freeze_embeddings: bool = False
    """Keep the word embeddings fixed during training."""
    embedders: list[str] = field(default_factory=list)
    """Token embedders whose vectors are concatenated for each token: "word" (a word embedding), "char_cnn"
    (a CNN over the word's characters), "char_lstm" (a BiLSTM over them) and "lm" (contextual string embeddings:
    the states of a forward and a backward character LM, model.lm, around the word in its sentence); "word" comes
    first. Empty picks
    the task's own: [word, char_cnn] for tagging and classification, [word] for language models."""
    cell: str = LSTM
    """Recurrent cell of the encoder: "lstm", "gru" or "rnn" (PyTorch's fused kernels), "peephole" (an LSTM whose
    forget and input gates also read the previous cell state and whose output gate reads the new one, through
    diagonal peephole weights) or "coupled" (an LSTM whose forget gate f also decides writing: C_t = f·C_{t-1} +
    (1 - f)·C̃, three gate blocks instead of four). The last two are seqtag's own (seqtag/cells.py), a compiled
    step loop: slower to train than the fused kernels (bench/RESULTS.md has the ratios)."""
    head: str = ""
    """Output layer; empty picks the task's own: "softmax" (tagging), "pooled" (classification),
    "next_token" (language models). Tagging can also use "crf": a linear-chain CRF that scores whole label
    sequences, decodes with Viterbi (never a transition the tag scheme forbids) and gives marginal
    probabilities per token."""
    char_dim: int = used_by("tagging", "classification", default=30)
    """Size of the character embeddings."""
    char_hidden: int = used_by("tagging", "classification", default=50)
    """CNN filters, or hidden size per direction of the character BiLSTM."""
    char_kernel: int = used_by("tagging", "classification", default=3)
    """Width of the character CNN's window."""
    hidden_size: int = 200
    """Hidden size per direction of the word-level BiLSTM."""
    num_layers: int = 2
    """Stacked BiLSTM layers."""
    dropout: float = 0.33
    """Dropout on the embeddings, between LSTM layers and before the output layer."""
    word_dropout: float = used_by("tagging", "classification", default=0.05)
    """Tagging and classification: chance during training that a word is replaced by the unknown token, so that
    token learns a useful vector."""
    weight_drop: float = 0.0
    """DropConnect on the recurrent (hidden-to-hidden) weights, as in AWD-LSTM: during training each forward
    pass zeroes this share of the entries of every weight_hh matrix (scaling the rest), the same at every time
    step. 0 turns it off. Works with every cell."""
    locked_dropout: bool = False
    """Variational dropout: the dropout on the embeddings and between recurrent layers (rate model.dropout) draws
    one mask per sequence and keeps it over all time steps, instead of a fresh mask per token. The encoder then
    runs its layers one at a time during training (no measurable cost in bench/cell_speed.py)."""
    embedding_dropout: float = 0.0
    """During training, the chance that a word type loses its whole embedding row for a batch (every occurrence
    becomes a zero vector; the other rows are scaled up to match), as in AWD-LSTM. 0 turns it off."""
    pooling: str = used_by("classification", default="max")
    """Classification: how token states become one text vector: "max", "mean", "last" (final states of both
    directions) or "attention". Only real (unpadded) positions take part."""
    tie_embeddings: bool = used_by("lm", default=False)
    """Language models: use the embedding matrix as the output layer too (word_dim-sized; the LSTM state is
    projected to word_dim when hidden_size differs)."""
    lm_directions: str = used_by("lm", default="forward")
    """Language models: "forward" (left to right), or "both": an ELMo-style pair of a forward and a backward LM,
    each predicting its next token in its own direction (generation uses the forward one)."""
    lm: str | None = used_by("tagging", "classification", default=None)
    """Taggers and classifiers with the "lm" embedder: the model folder of a character LM pair (`seqtag train
    contextual-lm --out lm` saves it in lm/model; the run folder lm is taken too). Its weights and tokenizer are
    copied into the new model when training starts, so the saved model never needs this folder again."""
    lm_tune: bool = used_by("tagging", "classification", default=False)
    """The "lm" embedder: train the language models' weights too (at model.lm_lr). False keeps them fixed: no
    gradient, evaluation mode, no dropout."""
    lm_lr: float | None = used_by("tagging", "classification", default=None)
    """The "lm" embedder with lm_tune: the language models' learning rate; null is a tenth of train.lr."""
    lm_cell: str = used_by("tagging", "classification", default="")
    """The "lm" embedder: the language models' recurrent cell. This and the three sizes below are filled in from
    model.lm when training starts and recorded so the saved model rebuilds them; leave them unset."""
    lm_dim: int = used_by("tagging", "classification", default=0)
    """The "lm" embedder: the language models' character embedding size (from model.lm)."""
    lm_hidden_size: int = used_by("tagging", "classification", default=0)
    """The "lm" embedder: the language models' hidden size per direction (from model.lm)."""
    lm_layers: int = used_by("tagging", "classification", default=0)
    """The "lm" embedder: the language models' recurrent layers (from model.lm)."""

    def __post_init__(self) -> None:
        for name in self.embedders:
            EMBEDDERS.check(name)
        if self.embedders and (self.embedders[0] != WORD_EMBEDDER or len(set(self.embedders)) != len(self.embedders)):
            raise SeqtagError(f"model.embedders is {self.embedders!r}; it must start with {WORD_EMBEDDER!r} and name "
                              f"each embedder once, e.g. [{', '.join(list(EMBEDDERS)[:2])}].")
        CELLS.check(self.cell)
        HEADS.check(self.head, ["", *HEADS])  # empty: the task's own head
        _one_of("model", "pooling", self.pooling, ("max", "mean", "last", "attention"))
        _one_of("model", "lm_directions", self.lm_directions, ("forward", "both"))
        _one_of("model", "pretrained_format", self.pretrained_format, ("auto", "text", "word2vec_binary"))
        for name in ("word_dim", "char_dim", "char_hidden", "char_kernel", "hidden_size", "num_layers",
                     "pretrained_max_words"):
            _positive("model", name, getattr(self, name))
        for name in ("lm_dim", "lm_hidden_size", "lm_layers"):
            _positive("model", name, getattr(self, name), allow_zero=True)
        if self.lm_cell:
            CELLS.check(self.lm_cell)
        if self.lm_lr is not None:
            _positive("model", "lm_lr", self.lm_lr)
        for name in ("dropout", "word_dropout", "weight_drop", "embedding_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise SeqtagError(f"model.{name} is {getattr(self, name)!r}; it must be in [0, 1).")


@dataclass
class TrainConfig:
    optimizer: str = "adam"
    """"adam" or "sgd" (with momentum)."""
    lr: float = 0.002
    """Initial learning rate."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    """L2 penalty."""
    lr_schedule: str = "plateau"
    """"none", "plateau" (multiply by lr_factor when the dev score stalls) or "linear" (decay to 0 over max_epochs)."""
    lr_factor: float = 0.5
    """Factor for the "plateau" schedule."""
    lr_patience: int = 2
    """Epochs without improvement before the "plateau" schedule lowers the rate. Counted once the dev score has
    left its first value (a small tagger's F1 can sit at 0 for its first epochs), as for `patience`."""
    gradient_clip: float = 5.0
    """Clip the gradient norm to this value (0 turns clipping off)."""
    max_epochs: int = 30
    """Upper bound on training epochs."""
    patience: int = 6
    """Early stopping: epochs without a better dev score before training stops (0: off). Counted once the dev
    score has left the value of the first dev check."""
    seed: int = 1
    """Seed for weights, shuffling and dropout. On a GPU, cuDNN's LSTM is not bit-for-bit reproducible."""
    accelerator: str = "auto"
    """Passed to Lightning: "cpu", "gpu", "auto", ..."""
    devices: int | str = "auto"
    """Passed to Lightning: a count, a list such as "0,1", or "auto"."""
    strategy: str = "auto"
    """Passed to Lightning: "auto", "ddp", ..."""
    num_nodes: int = 1
    """Machines the run spans, passed to Lightning (with `devices` processes on each); set it to the launcher's
    node count (torchrun --nnodes, SLURM --nodes)."""
    precision: str = "32-true"
    """Passed to Lightning: "32-true", "16-mixed", "bf16-mixed"."""
    val_check_interval: float = 1.0
    """Check the dev set this often: 1.0 once per epoch, 0.25 four times per epoch (for long epochs)."""
    max_steps: int = 0
    """Stop after this many optimiser steps (0: no limit)."""
    max_time_minutes: float | None = None
    """Stop training after this many minutes (the best checkpoint so far is kept); null: no time limit."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""
    cache_mb: float = 2048
    """Megabytes of main memory (each, 0: none) for what training computes the same way every epoch, kept from
    the first time a sentence comes: the word vectors of fixed language models (the "lm" embedder; WNUT-17's
    training and dev sentences take 140 MiB with the 256 pair) and a fine-tuning parent's distillation targets."""
    ema_decay: float = 0.0
    """Dev checks, the best checkpoint and the saved model use an exponential moving average of the weights, updated
    after every step with this decay (0: off, the weights as trained). 0.99 averages over about the last 100 steps:
    on a small corpus, where the dev score jumps from epoch to epoch, it smooths what early stopping and model
    selection see. It did not raise test F1 on WNUT-17 or CrossNER (bench/RESULTS.md), so it is off by default."""
    class_weights: str = used_by("classification", default="none")
    """Classification: "none", or "balanced" (each class weighted by n_texts / (n_classes * its count))."""
    dev_metric: str = used_by("classification", default="accuracy")
    """Classification: what early stopping and model selection watch, "accuracy" or "macro_f1"."""

    def __post_init__(self) -> None:
        _one_of("train", "optimizer", self.optimizer, ("adam", "sgd"))
        _one_of("train", "class_weights", self.class_weights, ("none", "balanced"))
        _one_of("train", "dev_metric", self.dev_metric, ("accuracy", "macro_f1"))
        _one_of("train", "lr_schedule", self.lr_schedule, ("none", "plateau", "linear"))
        _positive("train", "lr", self.lr)
        _positive("train", "max_epochs", self.max_epochs)
        _positive("train", "num_nodes", self.num_nodes)
        _positive("train", "gradient_clip", self.gradient_clip, allow_zero=True)
        _positive("train", "patience", self.patience, allow_zero=True)
        _positive("train", "max_steps", self.max_steps, allow_zero=True)
        _positive("train", "cache_mb", self.cache_mb, allow_zero=True)
        if not 0 <= self.ema_decay < 1:
            raise SeqtagError(f"train.ema_decay is {self.ema_decay!r}; it must be 0 (off) or a decay below 1, such "
                              "as 0.99 (an average over about the last 100 steps).")
        if self.max_time_minutes is not None:
            _positive("train", "max_time_minutes", self.max_time_minutes)
        if not 0 <= self.seed <= SEED_MAX:
            raise SeqtagError(f"train.seed is {self.seed!r}; it must be a whole number from 0 to {SEED_MAX} "
                              "(the range numpy and torch seed from).")
        if not 0 < self.val_check_interval <= 1:
            raise SeqtagError(f"train.val_check_interval is {self.val_check_interval!r}; it must be in (0, 1] "
                              "(a fraction of an epoch).")


KEEP_OLD = ("distill", "replay", "none")  # finetune.keep_old


@dataclass
class FinetuneConfig:
    """`seqtag finetune` settings (`--set finetune.KEY=VALUE`); they are not part of a recipe, and the fine-tuned
    model's config.json records them."""

    new_labels: str = "append"
    """Labels of the fine-tuning data that the model lacks: "append" them (the head grows; the old labels keep their
    rows; a new entity type brings all its B-/I-/E-/S- labels), or "error": each is an error naming file and line."""
    label_map: str | None = None
    """Rename the data's labels onto the model's before anything else: a file of "theirs=ours" lines (or
    theirs<TAB>ours), or inline person=PER,location=LOC. For span labels the entity type is renamed."""
    extend_vocab: bool = True
    """Give words (and characters) of the fine-tuning data that the model lacks fresh rows, started from the
    unknown word's vector; false keeps them unknown. They take data.min_freq as a new vocabulary does, and
    classifiers and language models add at most data.vocab_size of them, the most frequent first. A BPE or
    WordPiece vocabulary never grows."""
    freeze: str = "none"
    """Keep parts fixed: "none", "embeddings" (the token embedders) or "encoder" (embedders and recurrent encoder,
    so only the head learns)."""
    unfreeze_after: int = 0
    """Epochs after which frozen parts learn again; 0 keeps them frozen for the whole run."""
    start_new_labels: str = "fresh"
    """Where appended labels' output rows start: "fresh" from nothing; "related" copies, for each new type, the
    rows of the old type the parent gives a third or more of its training tokens (a CrossNER researcher is a
    WNUT-17 person to it), and with a CRF head its transition scores. "related" did not beat "fresh" on CrossNER
    (bench/RESULTS.md, "Fine-tuning that pays off"), so it is not the default."""
    keep_old: str | None = None
    """How the model keeps what it knew of its old labels while it learns the new data: "distill" (the parent's
    own predictions over its labels are a soft target on the new sentences: no old data needed), "replay" (the
    parent's training data, finetune.replay, is mixed into every epoch) or "none". Unset: "replay" when
    finetune.replay is given, else "distill" ("none" for language models)."""
    distill_weight: float = 1.0
    """keep_old=distill: the weight of the distillation loss beside the new data's loss."""
    distill_temperature: float = 1.0
    """keep_old=distill: the temperature both distributions are softened with (the loss is scaled by its square);
    above 1 the parent's lesser choices weigh more. 1 kept the old labels best in bench/keep_old.py."""
    distill_swaps: float = 0.15
    """keep_old=distill, taggers: also distil on each training batch with this share of its words swapped for
    words of the parent's vocabulary (half of them capitalised), so that the parent's names for a label the new
    data lacks stay a target; 0 turns it off. The demo case (no ORG in the new data) kept 97.7 old-test F1
    instead of 82.8 (CRF head: 99.7 instead of 94.3), for 0.2-1.2 F1 points on a new domain (CrossNER) and
    one more forward pass of each network per step (bench/RESULTS.md, "Keeping the old labels"). Not with the
    "lm" embedder, whose features spell each sentence's own text."""
    replay: str | None = None
    """A file of the original training data (read like the fine-tuning data) mixed into every epoch, a fresh
    sample each epoch, to limit forgetting (finetune.keep_old=replay). Taggers and classifiers."""
    replay_fraction: float = 0.5
    """Share of each epoch's training sentences (texts) that come from the replay file (at most all of it)."""
    lr_factor: float = 1.0
    """Without --set train.lr, the parent's learning rate times this. 1: on a small new domain with new labels
    the parent's own rate learnt them 2-4 F1 points better within the recipe's epochs than half of it did
    (bench/RESULTS.md, "Fine-tuning that pays off"); below 1 moves less far from the parent."""
    head_lr_factor: float = 2.0
    """The output layer's learning rate (with a CRF, its transitions too) as a multiple of the run's (train.lr):
    new labels' rows start there from nothing."""
    anchor: float = 0.0
    """The weight of a pull toward the parent's weights (a sum of squared differences over the parent's part of
    each tensor, beside the loss); 0 turns it off. It holds old labels that data from the parent's own domain
    lacks, with any finetune.keep_old (demo case, 5 seeds: 97.7 old-test F1 with distill at 0.01, against 82.8),
    and holds a model back on a new domain (CrossNER ai: -6.6 F1 at 0.01), hence off by default."""

    def __post_init__(self) -> None:
        _one_of("finetune", "new_labels", self.new_labels, ("append", "error"))
        _one_of("finetune", "freeze", self.freeze, ("none", "embeddings", "encoder"))
        _one_of("finetune", "start_new_labels", self.start_new_labels, ("related", "fresh"))
        if self.keep_old is None:
            self.keep_old = "replay" if self.replay else "distill"
        _one_of("finetune", "keep_old", self.keep_old, KEEP_OLD)
        if self.keep_old == "replay" and not self.replay:
            raise SeqtagError("finetune.keep_old=replay mixes the parent's training data into every epoch, but no file "
                              "names it: add --set finetune.replay=FILE, or use finetune.keep_old=distill, which "
                              "needs no old data.")
        if self.replay and self.keep_old != "replay":
            raise SeqtagError(f"finetune.replay={self.replay} is read only with finetune.keep_old=replay (the default "
                              f"when replay is given), not with keep_old={self.keep_old}: drop one of the two.")
        _positive("finetune", "distill_weight", self.distill_weight, allow_zero=True)
        _positive("finetune", "distill_temperature", self.distill_temperature)
        if not 0 <= self.distill_swaps < 1:
            raise SeqtagError(f"finetune.distill_swaps is {self.distill_swaps!r}; it must be 0 (off) or a share of "
                              "the words below 1, such as 0.3.")
        _positive("finetune", "unfreeze_after", self.unfreeze_after, allow_zero=True)
        _positive("finetune", "lr_factor", self.lr_factor)
        _positive("finetune", "head_lr_factor", self.head_lr_factor)
        _positive("finetune", "anchor", self.anchor, allow_zero=True)
        if not 0 < self.replay_fraction < 1:
            raise SeqtagError(f"finetune.replay_fraction is {self.replay_fraction!r}; it must be between 0 and 1 "
                              "(0.5: half of each epoch's sentences come from the replay file).")


@dataclass
class Recipe:
    name: str = "custom"
    """Recipe name, used for the default output folder."""
    task: str = "tagging"
    """Task family: "tagging" (a label per token), "classification" (a label per text) or "lm" (a language
    model predicting the next token)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _one_of("recipe", "task", self.task, TASKS)
        formats = formats_of(self.task)
        if self.data.format not in formats:
            raise SeqtagError(f"data.format is {self.data.format!r}, which task {self.task!r} cannot read; expected "
                              f"one of {', '.join(map(repr, formats))}.")
        tokenizers = tokenizers_of(self.task)
        if tokenizers and self.data.tokenizer not in tokenizers:
            raise SeqtagError(f"data.tokenizer is {self.data.tokenizer!r}, which task {self.task!r} does not use; "
                              f"expected one of {', '.join(map(repr, tokenizers))}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

# Recipe keys added after model format 2 was fixed, each with the value that rebuilds a model saved before the key
# existed exactly as it was trained. A saved recipe that lacks one of these gets this value; any other missing
# key means a damaged config.json. Every data or model key added from now on belongs here.
ADDED_KEYS: dict[str, Any] = {"model.lm": None, "model.lm_tune": False, "model.lm_lr": None, "model.lm_cell": "",
                               "model.lm_dim": 0, "model.lm_hidden_size": 0, "model.lm_layers": 0,
                               "model.weight_drop": 0.0, "model.locked_dropout": False, "model.embedding_dropout": 0.0,
                               "model.pretrained_format": "auto"}
PATH_KEYS = ("train", "dev", "test")


@dataclass(frozen=True)
class _Field:
    type: Any
    """The declared type, evaluated (`from __future__ import annotations` leaves strings)."""
    default: Any
    tasks: tuple[str, ...]
    """Task families that read the field (`used_by`); all of them by default."""


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls)
    return {f.name: _Field(hints[f.name], f.default if f.default_factory is dataclasses.MISSING else
                           f.default_factory(), f.metadata.get("tasks", TASKS)) for f in dataclasses.fields(cls)}


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    number = float(value)  # "1e-3", which YAML 1.1 reads as text, and ints; "abc" raises
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _to_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    number = _to_float(value)  # 12.0 and "3e4" are whole numbers; 12.5 is not
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(value)


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # name: 2024, precision: 16
        return str(value)
    raise ValueError(value)


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):  # --set model.embedders=word,char_lstm
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(value)
    return [_to_str(item) for item in value]


CONVERTERS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str, list: _to_list}
EXPECTED = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
            list: "a list ([word, char_cnn] in YAML, word,char_cnn with --set)", type(None): "null"}


def _as_setting(value: Any) -> str:
    """How a value is written after --set KEY=."""
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(value) if isinstance(value, list) else str(value)


def _typed(key: str, value: Any, declared: _Field) -> Any:
    """`value` as the type the field declares; in a union (`int | str`) a value of one member stays as it is."""
    union = typing.get_origin(declared.type) in (typing.Union, types.UnionType)
    kinds = [typing.get_origin(t) or t for t in (typing.get_args(declared.type) if union else (declared.type,))]
    if type(value) in kinds and type(value) not in (float, list):  # floats are checked to be finite
        return value
    for kind in kinds:
        try:
            return CONVERTERS[kind](value)
        except (KeyError, ValueError):
            continue
    example = f", e.g. {key}={_as_setting(declared.default)}" if declared.default not in (None, "", []) else ""
    quote = (" (YAML reads unquoted yes, no, on and off as true and false; quote the text)"
             if isinstance(value, bool) and str in kinds else "")
    raise SeqtagError(f"{key} is {value!r}; expected {' or '.join(EXPECTED[k] for k in kinds)}{example}{quote}.")


def _unknown_key(key: str, known: list[str], where: str) -> SeqtagError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return SeqtagError(f"Unknown recipe key {key!r} in {where}.{hint} Known keys: {', '.join(sorted(known))}.")


def _settings(raw: dict, section: str, where: str) -> dict:
    """The settings a user wrote in one section; an empty section (YAML null) holds none."""
    value = raw.get(section)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SeqtagError(f"{where}: section {section!r} must be a mapping of settings, got {value!r}.")
    return value


def _check_keys(raw: dict, where: str) -> None:
    known = ["name", "task", *SECTIONS]
    for key in raw:
        if key not in known:
            raise _unknown_key(key, known, where)
    for section, cls in SECTIONS.items():
        for key in _settings(raw, section, where):
            if key not in _fields(cls):
                raise _unknown_key(f"{section}.{key}", [f"{section}.{f}" for f in _fields(cls)], where)


def _section(section: str, cls: type, settings: dict, task: str, where: str, saved: bool = False) -> Any:
    """One section's config from the settings a user wrote: each one read by `task`, each one typed."""
    fields = _fields(cls)
    for key, value in settings.items():
        if task not in fields[key].tasks and not saved:
            raise SeqtagError(f"{section}.{key} is set to {value!r} in {where}, but task {task!r} does not use it "
                              f"(only {' and '.join(fields[key].tasks)} recipes do); remove the setting.")
    return cls(**{key: _typed(f"{section}.{key}", value, fields[key]) for key, value in settings.items()})


def recipe_from_dict(raw: dict, where: str = "recipe", saved: bool = False) -> Recipe:
    """Build a Recipe from the keys a user wrote: an unknown key is refused with the list of known ones, a key
    the task does not read is refused, and every value is converted to its field's declared type. A `saved`
    recipe (config.json of a model) holds every key, the ones its task does not read included."""
    _check_keys(raw, where)
    top = {key: _typed(key, raw[key], _fields(Recipe)[key]) for key in ("name", "task") if key in raw}
    task = top.get("task", _fields(Recipe)["task"].default)
    _one_of("recipe", "task", task, TASKS)
    sections = {name: _section(name, cls, _settings(raw, name, where), task, where, saved)
                for name, cls in SECTIONS.items()}
    return Recipe(**top, **sections)


def find_recipe(name_or_path: str) -> Path:
    """A recipe is a path to a YAML file or the name of one in recipes/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SeqtagError(f"Recipe file {path} not found.")
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    if not names:
        raise SeqtagError(f"No recipe named {name_or_path!r}: this seqtag installation has no recipes in "
                          f"{RECIPES_DIR}. Reinstall seqtag, or give a path to a .yaml file.")
    raise SeqtagError(f"No recipe named {name_or_path!r}. Recipes: {', '.join(names)}; or give a path to a .yaml file.")


def parse_override(assignment: str) -> tuple[str, Any]:
    """Split "section.key=value"; the value is read as YAML, so 3, 0.5, true and null get their types."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise SeqtagError(f"--set expects KEY=VALUE such as model.hidden_size=256, got {assignment!r}.")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _resolve(value: str, base: Path, format: str | None) -> str:
    """An absolute path; for "class_files" and "text", each of the comma-separated files."""
    parts = value.split(",") if FORMATS[format].sources == "files" else [value]
    return ",".join(str((base / part.strip()).resolve()) for part in parts)


def load_recipe(name_or_path: str, overrides: list[str] = (), **paths: str | None) -> Recipe:
    """Load a recipe, apply `--set` overrides, then the --train/--dev/--test paths given.

    The data paths are resolved last, by the final data.format (a "hub" split name is no path): paths
    written in the recipe are relative to the recipe file, paths from the command line to the cwd."""
    path = find_recipe(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SeqtagError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise SeqtagError(f"{path}: a recipe is a mapping with sections data, model and train.")
    raw.setdefault("name", path.stem)
    base = {split: path.parent for split in PATH_KEYS if split in _settings(raw, "data", str(path))}
    for assignment in overrides:
        key, value = parse_override(assignment)
        section, _, sub = key.partition(".")
        if section in SECTIONS and sub:
            raw[section] = {**_settings(raw, section, str(path)), sub: value}
        elif key in ("name", "task"):
            raw[key] = value
        else:
            known = ["name", "task", *(f"{s}.{name}" for s, cls in SECTIONS.items() for name in _fields(cls))]
            raise _unknown_key(key, known, "--set")
        if section == "data" and sub in PATH_KEYS:
            base[sub] = Path.cwd()
    for split, value in paths.items():
        if value is not None:
            raw["data"] = {**_settings(raw, "data", str(path)), split: str(value)}
            base[split] = Path.cwd()
    recipe = recipe_from_dict(raw, where=str(path) if not overrides else f"{path} with --set")
    for split, folder in base.items():
        value = getattr(recipe.data, split)
        if value is not None and FORMATS[recipe.data.format].sources != "split":
            setattr(recipe.data, split, _resolve(value, folder, recipe.data.format))
    return recipe


# What `seqtag finetune --set` may change in the parent's recipe. Data keys that shaped the parent's vocabularies
# and labels, and model keys that shaped its weights, stay as the parent was trained.
FIXED_DATA_KEYS = ("tokenizer", "vocab_size", "normalization", "lowercase", "max_word_length", "train_scheme")
ADJUSTABLE_MODEL_KEYS = ("dropout", "word_dropout", "embedding_dropout", "locked_dropout", "weight_drop",
                         "freeze_embeddings", "pretrained_vectors", "pretrained_format", "pretrained_max_words",
                         "lm_tune", "lm_lr")
PAIR_KEYS = ("embedders", "lm")  # may add the "lm" embedder to a parent without it (`_added_pair`)
PAIR_SHAPE_KEYS = ("lm_cell", "lm_dim", "lm_hidden_size", "lm_layers")


def _added_pair(parent: dict, model: dict) -> None:
    """Check `--set model.embedders` and `model.lm` of a fine-tuning run against the parent's recipe model section.
    The one change allowed is adding the "lm" embedder, last, with a pair: the fine-tuned model then reads the pair's
    states as well (`starts.grow_network` starts their weights at zero, so training starts from the parent's
    predictions). The pair's shape is cleared here so that resolving the recipe reads it from model.lm."""
    old, new = list(parent.get("embedders") or []), list(model.get("embedders") or [])
    if "lm" in old:
        if new != old or model.get("lm") != parent.get("lm"):
            raise SeqtagError(f"--set model.embedders / model.lm: the parent reads the pair {parent.get('lm')} through "
                              f"[{', '.join(old)}], and its weights were trained on those states, so a fine-tuned model "
                              "keeps them. Train a new model to read another pair.")
        return
    if new == old + ["lm"]:
        for key in PAIR_SHAPE_KEYS:
            model[key] = ADDED_KEYS[f"model.{key}"]
    elif new != old:
        raise SeqtagError(f"--set model.embedders: the parent's are [{', '.join(old)}] and a fine-tuned model keeps "
                          f"them; it can add the 'lm' embedder, last: --set model.embedders=[{', '.join(old + ['lm'])}] "
                          "--set model.lm=PAIR.")
    elif model.get("lm") != parent.get("lm"):
        raise SeqtagError(f"--set model.lm: the parent has no 'lm' embedder to read it; add one too: --set "
                          f"model.embedders=[{', '.join(old + ['lm'])}].")


def finetune_recipe(parent: dict, overrides: list[str] = (), **paths: str | None) -> tuple[Recipe, FinetuneConfig, list[str]]:
    """The recipe a fine-tuning run trains with: the parent model's saved recipe (`parent`, from config.json)
    with the new data files, the `--set` overrides (`finetune.*` keys go to the FinetuneConfig), and, unless
    train.lr is set, the parent's learning rate times finetune.lr_factor; the parent run's train.max_steps and
    train.max_time_minutes are not carried over. Also returns the keys set."""
    raw = {key: (dict(value) if isinstance(value, dict) else value) for key, value in parent.items()}
    task = raw.get("task", "tagging")
    for split in PATH_KEYS:  # the parent's files are not the new data
        raw["data"][split] = None
    settings: dict = {}
    changed = []
    for assignment in overrides:
        key, value = parse_override(assignment)
        section, _, sub = key.partition(".")
        if section == "finetune" and sub in _fields(FinetuneConfig):
            settings[sub] = value
        elif section in SECTIONS and sub in _fields(SECTIONS[section]):
            field_ = _fields(SECTIONS[section])[sub]
            if task not in field_.tasks:
                raise SeqtagError(f"--set {key}: task {task!r} does not use it (only {' and '.join(field_.tasks)} "
                                  "models do).")
            fixed = (section == "data" and sub in FIXED_DATA_KEYS) or (
                section == "model" and sub not in ADJUSTABLE_MODEL_KEYS + (PAIR_KEYS if task != "lm" else ()))
            if fixed and value != raw[section].get(sub):  # the parent's own value is no change (scripts pass both)
                raise SeqtagError(f"--set {key}: {key} shaped the parent model's vocabularies, labels or weights, so "
                                  "a fine-tuned model keeps the parent's value. Train a new model to change it.")
            raw[section][sub] = value
        else:
            known = [f"finetune.{name}" for name in _fields(FinetuneConfig)] + [
                f"{s}.{name}" for s, cls in SECTIONS.items() for name in _fields(cls)]
            raise _unknown_key(key, known, "--set")
        changed.append(key)
    if task != "lm":
        _added_pair(parent["model"], raw["model"])
    for split, value in paths.items():
        if value is not None:
            raw["data"][split] = str(value)
            changed.append(f"data.{split}")
    recipe = recipe_from_dict(raw, where="the parent's recipe with --set", saved=True)
    for split in PATH_KEYS:
        value = getattr(recipe.data, split)
        if value is not None and FORMATS[recipe.data.format].sources != "split":
            setattr(recipe.data, split, _resolve(value, Path.cwd(), recipe.data.format))
    finetune = _section("finetune", FinetuneConfig, settings, task, "--set")
    if "train.lr" not in changed:
        recipe.train.lr *= finetune.lr_factor
    for key in ("max_steps", "max_time_minutes"):  # the parent run's limits are not the fine-tuning run's
        if f"train.{key}" not in changed:
            setattr(recipe.train, key, _fields(TrainConfig)[key].default)
    return recipe, finetune, changed
