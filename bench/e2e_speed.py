"""End-to-end training speed: `seqtag train` epochs against a bare PyTorch loop over pre-built, fully sorted batches.

bench/train_speed.py feeds both of its loops from the toolkit's own DataLoader, so it cannot see what
the data path costs. Here the two sides share only the corpus and the network's shape:

* seqtag: `seqtag train ud-pos` on UD English-EWT in a fresh process per run (the CLI's own typer
  app, run by this script in child mode so that a small Lightning callback can note timestamps; no
  other change). One epoch costs the wall time of a 2-epoch run minus that of a 1-epoch run, so
  start-up and the final dev evaluation cancel out; what remains is one epoch of training plus its
  end-of-epoch dev pass and checkpoint, as a user pays it. Start-up is the wall time from launching
  the process to the start of the first training step (the callback's first on_train_batch_start).
* bare: a plain PyTorch loop in its own process over tensors built once beforehand: all sentences
  sorted by length, cut into batches of 32, padded once; only the batch order is shuffled per epoch.

Same network on both sides: word embedding 100, one BiLSTM layer of 256 per direction over packed
sequences, a linear layer; cross-entropy ignoring padding; SGD lr 0.1 without momentum, gradient
norm clipped at 5; no character encoder, no dropout, no word dropout. The parameter counts of the
two networks are compared, so a setting that did not take effect is reported.

Diagnostics (in this process, on the toolkit's own objects, skipped with --no-diagnostics) split the
toolkit's epoch into the data path (sampler, building the batches, DataLoader), the cost of
pooled bucketing against a full sort, the toolkit network's own overhead, and what remains for
Lightning.

    OMP_NUM_THREADS=1 .venv/bin/python bench/e2e_speed.py    # full EWT train, 1 thread: 4-5 min (quiet machine)
    OMP_NUM_THREADS=1 .venv/bin/python bench/e2e_speed.py --max-sentences 2000 --repeats 1   # quick dev run
    .venv/bin/python bench/e2e_speed.py --threads 2          # both cores
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

PROCESS_START = time.time()  # in a child: when the interpreter reached this script (light imports only so far)

# The setting that turns the character encoder off. Its key is being renamed from model.char_encoder to
# model.embedders; the old form is tried when the recipe loader does not know the new key.
NO_CHARS = "model.embedders=[word]"
NO_CHARS_OLD = "model.char_encoder=none"
SETTINGS = ["model.word_dim=100", "model.hidden_size=256", "model.num_layers=1", "model.dropout=0",
            "model.word_dropout=0", "train.optimizer=sgd", "train.lr=0.1", "train.momentum=0",
            "train.gradient_clip=5", "train.lr_schedule=none", "train.patience=0", "data.batch_size=32",
            "train.progress_bar=false"]
WORD_DIM, HIDDEN, BATCH, LR, CLIP, SEED = 100, 256, 32, 0.1, 5.0, 1
IGNORE = -100  # label of padded positions: the loss skips them
WARMUP_BATCHES = 20


# ---------------------------------------------------------------------------------------------------------
# The corpus, read without the toolkit (the bare side must not pay for datasets/Arrow/Lightning)


def conllu_blocks(path: str):
    """The lines of each sentence of a CoNLL-U file (comments included), sentence by sentence."""
    block: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                block.append(line)
            elif block:
                yield block
                block = []
    if block:
        yield block


def read_tagged(path: str) -> list[tuple[list[str], list[str]]]:
    """(forms, UPOS tags) per sentence; multiword ranges and empty nodes skipped, as seqtag's reader does."""
    sentences = []
    for block in conllu_blocks(path):
        rows = [line.rstrip("\n").split("\t") for line in block if not line.startswith("#")]
        rows = [row for row in rows if "-" not in row[0] and "." not in row[0]]
        if rows:
            sentences.append(([row[1] for row in rows], [row[3] for row in rows]))
    return sentences


def corpus_ids(train: str) -> tuple[list[list[int]], list[list[int]], int, int]:
    """Word and label ids of the training sentences, the word vocabulary size (lowercased training words plus
    padding and unknown, as seqtag builds it) and the label count (the training tags, as seqtag counts them)."""
    sentences = read_tagged(train)
    vocab = {"<pad>": 0, "<unk>": 1}
    words = [[vocab.setdefault(form.lower(), len(vocab)) for form in forms] for forms, _ in sentences]
    labels = sorted({tag for _, tags in sentences for tag in tags})
    index = {label: i for i, label in enumerate(labels)}
    return words, [[index[tag] for tag in tags] for _, tags in sentences], len(vocab), len(labels)


def write_first_sentences(source: str, target: Path, count: int) -> None:
    with open(target, "w", encoding="utf-8") as out:
        for number, block in enumerate(conllu_blocks(source)):
            if number == count:
                break
            out.writelines(block + ["\n"])


def padding_figures(shapes: list[tuple[int, int]], tokens: int) -> dict:
    """From the (batch size, longest) of each batch: padded share of the positions and the LSTM's time steps."""
    positions = sum(b * t for b, t in shapes)
    return {"batches": len(shapes), "positions": positions, "padding": 1 - tokens / positions,
            "lstm_steps": sum(t for _, t in shapes)}


# ---------------------------------------------------------------------------------------------------------
# The bare network and loop


def bare_net(num_words: int, num_labels: int):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class BareTagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(num_words, WORD_DIM, padding_idx=0)
            self.lstm = nn.LSTM(WORD_DIM, HIDDEN, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * HIDDEN, num_labels)

        def forward(self, word_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            x = self.embed(word_ids)                                              # (B, T, 100)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.size(1))
            return self.out(states)                                               # (B, T, L)

    return BareTagger()


def bare_loss(net):
    """The loss of a bare batch (word_ids, lengths, labels): cross-entropy over the real tokens."""
    import torch.nn.functional as F

    return lambda batch: F.cross_entropy(net(batch[0], batch[1]).flatten(0, 1), batch[2].flatten(),
                                         ignore_index=IGNORE)


def clocks() -> tuple[float, float]:
    """Wall-clock seconds and this process's CPU seconds. At one torch thread the CPU time is less disturbed
    by other jobs on the cores than the wall time (not immune: they share caches, and hyperthreads share a
    core), so it is printed beside the wall time for runs on a busy machine."""
    return time.time(), time.process_time()


def since(start: tuple[float, float]) -> list[float]:
    """[wall, CPU] seconds since `start` (a `clocks()` reading)."""
    return [now - then for now, then in zip(clocks(), start)]


def train_epoch(model, batches: list, optimizer, loss_of) -> list[float]:
    """[wall, CPU] seconds for one pass of plain training steps over the batches (`loss_of(batch)` gives the
    loss)."""
    model.train()
    start = clocks()
    for batch in batches:
        common.plain_step(model, optimizer, loss_of(batch), CLIP)
    return since(start)


def sgd(model):
    import torch

    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0)


def bare_child(spec: dict, out_json: str) -> None:
    """The bare side, in its own process: sorted batches built once, then warm-up and timed epochs."""
    import torch

    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    words, labels, num_words, num_labels = corpus_ids(spec["train"])
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    pad = lambda rows, value: torch.nn.utils.rnn.pad_sequence(  # noqa: E731
        [torch.tensor(row) for row in rows], batch_first=True, padding_value=value)
    batches = []
    for first in range(0, len(order), BATCH):
        chosen = order[first:first + BATCH]
        lengths = torch.tensor([len(words[i]) for i in chosen])
        batches.append((pad([words[i] for i in chosen], 0), lengths, pad([labels[i] for i in chosen], IGNORE)))
    tokens = sum(map(len, words))
    prep = time.perf_counter() - start
    torch.manual_seed(SEED)
    net = bare_net(num_words, num_labels)
    optimizer, loss_of, rng = sgd(net), bare_loss(net), random.Random(SEED)
    train_epoch(net, rng.sample(batches, min(WARMUP_BATCHES, len(batches))), optimizer, loss_of)  # lazy init
    seconds = []  # [wall, CPU] per epoch
    for _ in range(spec["epochs"]):
        seconds.append(train_epoch(net, rng.sample(batches, len(batches)), optimizer, loss_of))  # order shuffled
    result = {"seconds": seconds, "tokens": tokens, "prep_seconds": prep, "peak_rss_mb": common.peak_rss_mb(),
              "params": sum(p.numel() for p in net.parameters()), "num_words": num_words,
              **padding_figures([tuple(batch[0].shape) for batch in batches], tokens)}
    Path(out_json).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------
# The seqtag side: the CLI in a child process, with a callback that notes timestamps and batch shapes


def seqtag_child(out_json: str, cli_args: list[str]) -> None:
    import pytorch_lightning as pl

    import seqtag.training

    record = {"process_start": PROCESS_START, "epochs": []}

    class Probe(pl.Callback):
        """Per epoch, [wall, CPU] seconds of its parts; per batch only clock reads and the batch's shape."""

        def on_train_epoch_start(self, trainer, module):
            now = clocks()
            record["epochs"].append({"start": now, "first_step": None, "last_step_end": now, "between": [0.0, 0.0],
                                     "in_step": [0.0, 0.0], "val": [0.0, 0.0], "shapes": [], "tokens": 0})

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            epoch = record["epochs"][-1]
            gap = since(epoch["last_step_end"])  # the next batch built + Lightning's loop between steps
            epoch["between"] = [a + b for a, b in zip(epoch["between"], gap)]
            epoch["step_start"] = clocks()
            epoch["first_step"] = epoch["first_step"] or epoch["step_start"][0]
            lengths = getattr(batch, "lengths", None)
            if lengths is not None:
                epoch["shapes"].append((len(lengths), int(lengths.max())))
                epoch["tokens"] += int(lengths.sum())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            epoch = record["epochs"][-1]
            epoch["in_step"] = [a + b for a, b in zip(epoch["in_step"], since(epoch["step_start"]))]
            epoch["last_step_end"] = clocks()

        def on_validation_start(self, trainer, module):
            self.val_start = clocks()

        def on_validation_end(self, trainer, module):
            if record["epochs"]:
                epoch = record["epochs"][-1]
                epoch["val"] = [a + b for a, b in zip(epoch["val"], since(self.val_start))]

        def on_train_epoch_end(self, trainer, module):
            record["epochs"][-1]["end"] = clocks()

        def on_train_end(self, trainer, module):
            record["train_end"] = clocks()  # after the last epoch's checkpoint

    make_trainer = seqtag.training.make_trainer

    def probed_make_trainer(*args, **kwargs):
        record["make_trainer"] = time.time()  # data read, vocabularies built, data encoded, network built
        trainer, checkpoint = make_trainer(*args, **kwargs)
        trainer.callbacks.append(Probe())
        return trainer, checkpoint

    seqtag.training.make_trainer = probed_make_trainer
    from cli import app

    code = 0
    try:
        app(args=cli_args, prog_name="seqtag")
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        record.update(exit=time.time(), peak_rss_mb=common.peak_rss_mb(), code=code)
        Path(out_json).write_text(json.dumps(record))
    sys.exit(code)


def run_child(args: list[str], env: dict, log: Path) -> tuple[float, dict]:
    """Launch this script in a child mode; its wall seconds and the JSON it wrote."""
    out_json = log.with_suffix(".json")
    cpu_before = children_cpu()
    launched = time.time()
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, __file__, *args[:1], str(out_json), *args[1:]], env=env,
                              stdout=handle, stderr=subprocess.STDOUT)
    wall = time.time() - launched
    if done.returncode != 0:
        sys.exit(f"child run failed ({' '.join(args[:3])} ...); its output:\n{log.read_text()[-3000:]}")
    record = json.loads(out_json.read_text())
    record.update(launched=launched, cpu=children_cpu() - cpu_before)
    return wall, record


def children_cpu() -> float:
    """CPU seconds (user + system) of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seqtag_run(epochs: int, files: dict, setting: str, tmp: Path, env: dict, name: str,
               smoke: bool = False) -> tuple[float, dict]:
    cli = ["train", "ud-pos", "--train", files["train"], "--dev", files["dev"], "--out", str(tmp / name)]
    cli += ["--smoke"] if smoke else []
    for item in SETTINGS + [setting, f"train.max_epochs={epochs}"]:
        cli += ["--set", item]
    return run_child(["--seqtag-child", *cli], env, tmp / f"{name}.log")


# ---------------------------------------------------------------------------------------------------------
# Diagnostics: where the toolkit's epoch goes, measured on its own objects in this process


def load_toolkit(files: dict):
    """The recipe with the character encoder off (new key first, then the old one), and the note to print."""
    from seqtag.config import load_recipe
    from seqtag.errors import SeqtagError

    refusal = None
    for setting in (NO_CHARS, NO_CHARS_OLD):
        try:
            recipe = load_recipe("ud-pos", SETTINGS + [setting], **files)
        except SeqtagError as err:
            if "Unknown recipe key" not in str(err):
                raise
            refusal = str(err).split(" Known keys")[0]
            continue
        note = (f"character encoder off with --set '{setting}'" if refusal is None else
                f"character encoder off with --set '{setting}' (FALLBACK: {refusal})")
        return recipe, setting, note
    sys.exit(f"neither {NO_CHARS!r} nor {NO_CHARS_OLD!r} is a known recipe key: {refusal}")


def batching_of(loader):
    """The toolkit's bucketing sampler and its function from a list of row indices to a Batch, taken from its
    training DataLoader: a batch sampler whose rows are fetched from Arrow and collated, or a sampler of index
    lists over a dataset that builds whole batches."""
    if loader.batch_sampler is not None:
        dataset, collate_fn = loader.dataset, loader.collate_fn
        return loader.batch_sampler, lambda indices: collate_fn(dataset.__getitems__(indices))
    return loader.sampler, loader.dataset.__getitem__


def data_path_costs(loader, epoch: int) -> dict:
    """[wall, CPU] seconds of one epoch of the toolkit's DataLoader with no training, and of its parts: the
    sampler, and building the batches (fetching the rows and padding them), as the DataLoader does it."""
    sampler, make_batch = batching_of(loader)
    sampler.set_epoch(epoch)
    start = clocks()
    for _ in loader:
        pass
    costs = {"dataloader": since(start)}
    start = clocks()
    index_batches = list(sampler)
    costs["sampler"] = since(start)
    start = clocks()
    for indices in index_batches:
        make_batch(indices)
    costs["building"] = since(start)
    costs["batches"] = len(index_batches)
    return costs


def diagnostics(data, vocab_size: int, num_labels: int, repeats: int) -> dict:
    """In this process, in the same plain loop: the bare network on fully sorted batches and on the toolkit's
    bucketed batches (those of the 2-epoch run's second epoch), and the toolkit's network on the toolkit's
    batches; [wall, CPU] tok/s of each. The three loops take turns batch by batch, so the machine's noise falls
    on all alike (taking turns epoch by epoch, single epochs were seen 20-30% apart on a busy machine)."""
    import torch

    from seqtag.data.batching import length_batches
    from seqtag.training import new_task

    loader = data.train_dataloader()
    costs = data_path_costs(loader, epoch=1)
    sampler, make_batch = batching_of(loader)
    sampler.set_epoch(1)
    bucketed = [make_batch(indices) for indices in sampler]
    lengths = sampler.lengths
    full_sort = [make_batch(indices) for indices in length_batches(lengths, BATCH)]
    random.Random(SEED).shuffle(full_sort)
    tokens = sum(lengths)
    costs["char_cells"] = sum(b.features["char_ids"].numel() for b in bucketed if "char_ids" in b.features)
    for name, batches in (("bucketed", bucketed), ("full_sort", full_sort)):
        costs[f"{name}_shape"] = padding_figures([tuple(b.features["word_ids"].shape) for b in batches], tokens)

    torch.manual_seed(SEED)
    plain = lambda batches: [(b.features["word_ids"], b.lengths, b.labels) for b in batches]  # noqa: E731
    nets = {"bare_full_sort": bare_net(vocab_size, num_labels), "bare_bucketed": bare_net(vocab_size, num_labels)}
    task = new_task(data)  # the toolkit's network with its family's loss, in the same plain loop
    runs = {name: (net, bare_loss(net), plain(full_sort if name == "bare_full_sort" else bucketed))
            for name, net in nets.items()}
    runs["toolkit_net_bucketed"] = (task.net, lambda b: task.objective.train_loss(task.net, b, None)[0], bucketed)
    runs = {name: (net, sgd(net), loss_of, batches) for name, (net, loss_of, batches) in runs.items()}
    for net, optimizer, loss_of, batches in runs.values():
        train_epoch(net, batches[:WARMUP_BATCHES], optimizer, loss_of)  # allocations, lazy init
    seconds = {name: [0.0, 0.0] for name in runs}
    for _ in range(repeats):
        for step in range(max(len(batches) for *_, batches in runs.values())):
            for name, (net, optimizer, loss_of, batches) in runs.items():
                if step < len(batches):
                    spent = train_epoch(net, batches[step:step + 1], optimizer, loss_of)
                    seconds[name] = [a + b for a, b in zip(seconds[name], spent)]
    return {**costs, **{name: [repeats * tokens / value for value in pair] for name, pair in seconds.items()}}


# ---------------------------------------------------------------------------------------------------------
# The report


def epoch_parts(record: dict, index: int) -> dict:
    """[wall, CPU] seconds of the parts of one epoch of a seqtag run, and its batches' shapes and tokens."""
    epoch = record["epochs"][index]
    following = record["epochs"][index + 1]["start"] if index + 1 < len(record["epochs"]) else record["train_end"]
    minus = lambda a, b: [x - y for x, y in zip(a, b)]  # noqa: E731
    return {"epoch": minus(following, epoch["start"]), "train": minus(epoch["last_step_end"], epoch["start"]),
            "between": epoch["between"], "in_step": epoch["in_step"], "val": epoch["val"],
            "tokens": epoch["tokens"], "shapes": epoch["shapes"]}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--seqtag-child":
        return seqtag_child(sys.argv[2], sys.argv[3:])
    if len(sys.argv) > 2 and sys.argv[1] == "--bare-child":
        return bare_child(json.loads(sys.argv[3]), sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--max-sentences", type=int, default=0,
                        help="train on the first N sentences of EWT train (0: all 12,544); for quick dev runs")
    parser.add_argument("--repeats", type=int, default=2,
                        help="seqtag 1-epoch + 2-epoch run pairs, each followed by one bare process (default 2)")
    parser.add_argument("--bare-epochs", type=int, default=2, help="timed bare epochs per bare process (default 2)")
    parser.add_argument("--diag-repeats", type=int, default=1,
                        help="epochs of each of the three in-process diagnostic loops (default 1)")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the in-process breakdown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="seqtag-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        # A private datasets cache: this process fills it, the seqtag runs read from it (warm-cache start-up).
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-cache")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        files = {"train": common.ewt_files()["train"], "dev": common.ewt_files()["dev"]}
        if args.max_sentences:
            files["train"] = str(tmp / f"en_ewt-ud-train-first{args.max_sentences}.conllu")
            write_first_sentences(common.ewt_files()["train"], Path(files["train"]), args.max_sentences)
        report(args, files, tmp, env)


def report(args, files: dict, tmp: Path, env: dict) -> None:
    import torch

    from seqtag.training import new_task, prepare_data

    torch.set_num_threads(args.threads)
    recipe, setting, note = load_toolkit(files)
    print(note, flush=True)
    data = prepare_data(recipe)
    words, _, vocab_size, num_labels = corpus_ids(files["train"])
    tokens = sum(batching_of(data.train_dataloader())[0].lengths)  # what the toolkit's sampler batches
    bare_params = sum(p.numel() for p in bare_net(vocab_size, num_labels).parameters())
    task = new_task(data)
    toolkit_params = sum(p.numel() for p in task.parameters())
    print(f"train: {len(words):,} sentences, {tokens:,} tokens ({sum(map(len, words)):,} by the bare reader); "
          f"{vocab_size:,} words, {num_labels} labels; torch threads {args.threads}")
    if toolkit_params != bare_params or tokens != sum(map(len, words)):
        extra = ", ".join(f"{name} {tuple(p.shape)}" for name, p in task.named_parameters())
        print(f"WARNING: the two sides differ: seqtag's network has {toolkit_params:,} parameters, the bare one "
              f"{bare_params:,}; seqtag's tensors: {extra}", flush=True)
    else:
        print(f"same network on both sides: {bare_params:,} parameters", flush=True)
    del task

    epochs_wall, epochs_cpu, startups, records, bare_records, paired = [], [], [], [], [], []
    spec = json.dumps({"train": files["train"], "threads": args.threads, "epochs": args.bare_epochs})
    # Warm-up, not counted: the first process pays for cold file caches.
    seqtag_run(1, files, setting, tmp, env, "warm-up", smoke=True)
    for repeat in range(args.repeats):
        runs = {}
        for epochs in ((1, 2) if repeat % 2 == 0 else (2, 1)):  # alternate the order against drift
            wall, record = runs[epochs] = seqtag_run(epochs, files, setting, tmp, env, f"run{repeat}-{epochs}ep")
            startups.append(record["epochs"][0]["first_step"] - record["launched"])
            records.append(record)
            parts = " + ".join(f"{epoch_parts(record, i)['epoch'][0]:.2f}" for i in range(epochs))
            print(f"  seqtag {epochs} epoch(s): {wall:.2f} s = start-up {startups[-1]:.2f} + epochs {parts} + final "
                  f"evaluation, save and exit {record['launched'] + wall - record['train_end'][0]:.2f} "
                  f"({record['cpu']:.2f} CPU s)", flush=True)
        epochs_wall.append(runs[2][0] - runs[1][0])
        epochs_cpu.append(runs[2][1]["cpu"] - runs[1][1]["cpu"])
        _, bare = run_child(["--bare-child", spec], env, tmp / f"bare{repeat}.log")
        bare_records.append(bare)
        rates = [bare["tokens"] / wall for wall, _ in bare["seconds"]]
        paired.append(tokens / epochs_wall[-1] / common.median(rates))
        print(f"repeat {repeat + 1}: seqtag {tokens / epochs_wall[-1]:,.0f} tok/s ({tokens / epochs_cpu[-1]:,.0f} per "
              f"CPU s) | bare {', '.join(f'{r:,.0f}' for r in rates)} tok/s", flush=True)

    second = [epoch_parts(r, 1) for r in records if len(r["epochs"]) == 2]  # the 2-epoch runs' second epochs
    med = lambda key, clock=0: common.median([part[key][clock] for part in second])  # noqa: E731
    bare_epochs = [seconds for r in bare_records for seconds in r["seconds"]]
    rate = {"seqtag": [tokens / common.median(epochs_wall), tokens / common.median(epochs_cpu)],
            "bare": [common.median([tokens / s[clock] for s in bare_epochs]) for clock in (0, 1)],
            "no_dev": [tokens / (common.median(epochs) - med("val", clock))
                       for clock, epochs in enumerate((epochs_wall, epochs_cpu))],
            "callback": [tokens / med("epoch", clock) for clock in (0, 1)],
            "training": [tokens / med("train", clock) for clock in (0, 1)]}
    ratio = lambda name: "  ".join(f"{rate[name][c] / rate['bare'][c]:>6.3f}" for c in (0, 1))  # noqa: E731
    row = lambda label, name: print(f"{label:<58}{rate[name][0]:>9,.0f}{rate[name][1]:>9,.0f}   "  # noqa: E731
                                    f"{ratio(name) if name != 'bare' else ''}")
    print(f"\n== end-to-end training speed, UD English-EWT train ({tokens:,} tokens/epoch), {args.threads} "
          f"thread(s), {args.repeats} repeat(s) ==")
    print(f"{'tokens per second':<58}{'wall':>9}{'CPU':>9}   ratio to bare: wall, CPU")
    row("seqtag train, 2-epoch minus 1-epoch run (medians)", "seqtag")
    row("bare loop, fully sorted batches (median epoch)", "bare")
    row(f"  seqtag without its end-of-epoch dev pass ({med('val'):.2f} s)", "no_dev")
    row("  seqtag 2nd epoch by the callback (dev pass included)", "callback")
    row("  seqtag 2nd epoch by the callback, training steps only", "training")
    print(f"median paired ratio (wall) {common.median(paired):.3f} | goal >= 0.95 | seqtag epoch "
          f"{common.median(epochs_wall):.2f} s wall ({common.median(epochs_cpu):.2f} CPU s) incl. its dev pass "
          f"{med('val'):.2f} s and checkpoint")
    since_launch = lambda key: common.median([r[key] - r["launched"] for r in records])  # noqa: E731
    print(f"start-up to the first training step: {common.median(startups):.2f} s median of {len(startups)} runs "
          f"(launch -> this script's code {since_launch('process_start'):.2f} s -> data read, vocabularies, "
          f"encoding and network built {since_launch('make_trainer'):.2f} s -> first step)")
    shapes = padding_figures([s for part in second for s in part["shapes"]], sum(p["tokens"] for p in second))
    bare = bare_records[0]
    print(f"padded share of positions per epoch: seqtag {shapes['padding']:.1%} "
          f"({shapes['lstm_steps'] / len(second):,.0f} LSTM time steps, {shapes['batches'] / len(second):,.0f} "
          f"batches) | bare {bare['padding']:.1%} ({bare['lstm_steps']:,} LSTM time steps, {bare['batches']} batches)")
    print(f"peak RSS: seqtag {max(r['peak_rss_mb'] for r in records):,.0f} MiB (largest run) | bare "
          f"{max(r['peak_rss_mb'] for r in bare_records):,.0f} MiB (data prep {bare['prep_seconds']:.1f} s)")
    print(note)

    if args.no_diagnostics:
        return
    print(f"\n== where the toolkit's epoch goes (this process; the 2-epoch run's second epoch; {args.diag_repeats} "
          f"epoch(s) per loop, the loops taking turns batch by batch) ==", flush=True)
    d = diagnostics(data, vocab_size, num_labels, args.diag_repeats)
    n = d["batches"]
    both = lambda v: f"{v[0]:.2f} s ({v[1]:.2f} CPU s)"  # noqa: E731
    per_step = lambda v: f"{1000 * v[0] / n:.2f} ms ({1000 * v[1] / n:.2f} CPU ms) per step"  # noqa: E731
    minus = lambda a, b: [x - y for x, y in zip(a, b)]  # noqa: E731
    own = minus(minus(d["dataloader"], d["sampler"]), d["building"])
    print(f"data path alone, {n} batches: DataLoader epoch {both(d['dataloader'])} = sampler "
          f"{both(d['sampler'])} + building the batches (rows fetched and padded) {both(d['building'])}, "
          f"{per_step(d['building'])} + the DataLoader's own {both(own)}")
    if d["char_cells"]:
        print(f"  the batches carry char_ids this network never reads: {d['char_cells']:,} cells per epoch")
    for name, label in (("bucketed", "toolkit sampler"), ("full_sort", "full sort")):
        shape = d[f"{name}_shape"]
        print(f"  {label}: padded {shape['padding']:.1%}, {shape['lstm_steps']:,} LSTM time steps")
    loss = lambda a, b: "  ".join(f"{1 - d[a][c] / d[b][c]:>6.1%}" for c in (0, 1))  # noqa: E731
    print(f"{'plain loop, tokens per second':<58}{'wall':>9}{'CPU':>9}")
    for name, label, note in (("bare_full_sort", "bare network, fully sorted batches", ""),
                              ("bare_bucketed", "bare network, the toolkit's batches",
                               f"   slower by {loss('bare_bucketed', 'bare_full_sort')} (bucketing)"),
                              ("toolkit_net_bucketed", "toolkit's network and loss, the toolkit's batches",
                               f"   slower by {loss('toolkit_net_bucketed', 'bare_bucketed')} (network)")):
        print(f"{label:<58}{d[name][0]:>9,.0f}{d[name][1]:>9,.0f}{note}")
    # The epoch's steps as a plain loop takes them with the toolkit's network and batches, against the seqtag run.
    steps = [tokens / rate for rate in d["toolkit_net_bucketed"]]
    between, in_step = [[med(key, c) for c in (0, 1)] for key in ("between", "in_step")]
    print(f"seqtag's training steps in its 2nd epoch (callback; set against this process's plain loop, so both "
          f"processes' noise is in it; on a busy machine the CPU figures are the less disturbed): "
          f"{both([med('train', c) for c in (0, 1)])} = between steps {both(between)} + in steps {both(in_step)}")
    print(f"  between steps: data path {both(d['dataloader'])} + Lightning's loop "
          f"{both(minus(between, d['dataloader']))}, {per_step(minus(between, d['dataloader']))}")
    print(f"  in steps: a plain loop's steps {both(steps)} + Lightning's step {both(minus(in_step, steps))}, "
          f"{per_step(minus(in_step, steps))} (optimizer closure, hooks, logging)")
    print(f"not in the bare loop: the end-of-epoch dev pass {both([med('val', c) for c in (0, 1)])} and the "
          f"checkpoint and the rest "
          f"{both([med('epoch', c) - med('train', c) - med('val', c) for c in (0, 1)])} per epoch")

if __name__ == "__main__":
    main()
