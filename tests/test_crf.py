"""The CRF head: its forward algorithm, Viterbi and marginals against brute force over every label sequence,
the scheme's forbidden transitions, unseen gold labels, and a train → save → load → predict round trip."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

import seqtag
from seqtag.config import ModelConfig, load_recipe
from seqtag.crf import FORBIDDEN, CRFHead, allowed_transitions
from seqtag.data.featurizer import span_label_list
from seqtag.data.schemes import find_violation
from seqtag.errors import SeqtagError
from seqtag.families import FAMILIES
from seqtag.training import train

SMALL = ["train.progress_bar=false", "model.hidden_size=8", "model.word_dim=8", "model.char_hidden=4",
         "model.char_dim=4"]
LABELS = ["O", "B-X", "I-X", "B-Y"]            # 4 labels, so brute force enumerates at most 4^5 sequences
LENGTHS = [5, 3, 1, 4]                        # a batch with padding


def _head(labels: list[str], scheme: str, seed: int = 0) -> CRFHead:
    torch.manual_seed(seed)
    head = CRFHead(6, ModelConfig(), {"labels": len(labels)})
    with torch.no_grad():  # trained-looking transition scores, not the zeros a new head starts from
        for parameter in (head.start_scores, head.transition_scores, head.end_scores):
            parameter.normal_(0, 1.5)
    head.constrain(labels, scheme)
    return head


def _batch(lengths: list[int], labels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(len(lengths), max(lengths), labels, generator=generator) * 2    # (B, T, L)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]            # (B, T)
    return emissions, mask


@torch.no_grad()
def _brute_force(head: CRFHead, emissions: torch.Tensor, length: int) -> dict[tuple[int, ...], float]:
    """The score of every allowed labelling of one sentence's first `length` tokens, written out by hand."""
    scores = {}
    for path in itertools.product(range(head.num_labels), repeat=length):
        steps = list(zip(path, path[1:]))
        if (not head.allowed_start[path[0]] or not head.allowed_end[path[-1]]
                or any(not head.allowed_steps[a, b] for a, b in steps)):
            continue
        score = head.start_scores[path[0]] + head.end_scores[path[-1]]
        score = score + sum(emissions[t, label] for t, label in enumerate(path))
        score = score + sum(head.transition_scores[a, b] for a, b in steps)
        scores[path] = float(score)
    return scores


@pytest.mark.parametrize("scheme", ["none", "iob2"])
def test_log_partition_viterbi_and_marginals_match_brute_force_with_padding(scheme):
    head = _head(LABELS, scheme)
    emissions, mask = _batch(LENGTHS, len(LABELS))
    start, steps, end = head._transitions(FORBIDDEN)
    log_partition = head._forward(emissions, mask, start, steps, end)[1]
    with torch.no_grad():
        paths = head.viterbi(emissions, mask)
        marginals = head.marginals(emissions, mask)
    for row, length in enumerate(LENGTHS):
        scores = _brute_force(head, emissions[row], length)
        assert (len(scores) < len(LABELS) ** length) == (scheme == "iob2"), "IOB2 rules some sequences out"
        expected = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
        assert float(log_partition[row]) == pytest.approx(float(expected), abs=1e-4)
        assert tuple(paths[row, :length].tolist()) == max(scores, key=scores.get)
        assert paths[row, length:].eq(0).all()
        by_hand = torch.zeros(length, len(LABELS), dtype=torch.float64)
        for path, score in scores.items():
            by_hand[torch.arange(length), list(path)] += torch.exp(torch.tensor(score, dtype=torch.float64) - expected)
        assert torch.allclose(marginals[row, :length].double(), by_hand, atol=1e-5)
        assert torch.allclose(marginals[row, :length].sum(-1), torch.ones(length), atol=1e-5)
        assert marginals[row, length:].eq(0).all()
        alone = emissions[row:row + 1, :length]                     # the same sentence in a batch of its own
        alone_mask = torch.ones(1, length, dtype=torch.bool)
        alone_partition = head._forward(alone, alone_mask, start, steps, end)[1]
        assert float(alone_partition) == pytest.approx(float(log_partition[row]), abs=1e-5)
        with torch.no_grad():
            assert torch.equal(head.viterbi(alone, alone_mask)[0], paths[row, :length])
            assert torch.allclose(head.marginals(alone, alone_mask)[0], marginals[row, :length], atol=1e-6)


def test_the_loss_is_the_gold_paths_negative_log_likelihood_per_token():
    head = _head(LABELS, "iob2").eval()
    states, mask = _batch(LENGTHS, 6, seed=1)
    emissions = head.scores(states, mask, torch.tensor(LENGTHS))
    gold = torch.tensor([[1, 2, 0, 3, 0], [0, 1, 2, 0, 0], [3, 0, 0, 0, 0], [0, 0, 3, 0, 0]])
    gold = gold.masked_fill(~mask, -100)
    expected = 0.0
    for row, length in enumerate(LENGTHS):
        scores = _brute_force(head, emissions[row].detach(), length)
        gold_path = tuple(gold[row, :length].tolist())
        expected += torch.logsumexp(torch.tensor(list(scores.values())), 0) - scores[gold_path]
    loss = head.loss(emissions, gold, mask)
    assert float(loss) == pytest.approx(float(expected) / sum(LENGTHS), abs=1e-4)


@pytest.mark.parametrize("scheme", ["bioes", "iob2"])
def test_decoding_never_outputs_a_transition_the_scheme_forbids(scheme):
    labels = span_label_list(["LOC", "ORG", "PER"], scheme)
    head = _head(labels, scheme)
    start, steps, end = allowed_transitions(labels, scheme)
    with torch.no_grad():  # the learned scores favour exactly the forbidden transitions
        head.start_scores.masked_fill_(~start, 20.0)
        head.transition_scores.masked_fill_(~steps, 20.0)
        head.end_scores.masked_fill_(~end, 20.0)
    for trial in range(200):
        lengths = [1 + (trial + i) % 9 for i in range(6)]
        emissions, mask = _batch(lengths, len(labels), seed=trial)
        paths, marginals = head.decode(emissions * 5, mask)
        for row, length in enumerate(lengths):
            decoded = [labels[i] for i in paths[row, :length].tolist()]
            assert find_violation(decoded, scheme) is None, decoded
        # a label no allowed path can hold at a position has probability 0 there
        assert marginals[:, 0][:, ~start].eq(0).all()


def test_the_forbidden_transitions_come_from_the_scheme_rules():
    labels = span_label_list(["LOC", "PER"], "bioes")  # O, B-LOC, E-LOC, I-LOC, S-LOC, B-PER, ...
    start, steps, end = allowed_transitions(labels, "bioes")
    index = labels.index
    assert not start[index("I-PER")] and not start[index("E-PER")] and start[index("B-PER")] and start[index("S-PER")]
    assert not end[index("B-PER")] and not end[index("I-PER")] and end[index("E-PER")] and end[index("O")]
    assert steps[index("B-PER"), index("I-PER")] and steps[index("I-PER"), index("E-PER")]
    assert not steps[index("O"), index("I-PER")] and not steps[index("B-LOC"), index("E-PER")]
    assert not steps[index("B-PER"), index("O")], "in BIOES an open entity must go on or end with E-"
    iob2 = span_label_list(["LOC", "PER"], "iob2")
    start, steps, end = allowed_transitions(iob2, "iob2")
    assert end.all() and not start[iob2.index("I-LOC")]
    assert not steps[iob2.index("I-PER"), iob2.index("I-LOC")] and steps[iob2.index("I-LOC"), iob2.index("I-LOC")]
    assert int((~steps).sum()) == 2 * (len(iob2) - 2)   # each I-X may follow only B-X and I-X
    plain = allowed_transitions(["NOUN", "VERB", "I-NOUN"], "none")
    assert all(part.all() for part in plain), "plain tags have no forbidden transitions"


def test_gradient_flows_to_emissions_and_allowed_transitions_only():
    head = _head(LABELS, "iob2").train()
    states, mask = _batch(LENGTHS, 6, seed=2)
    states.requires_grad_(True)
    gold = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long).masked_fill(~mask, -100)
    gold[0, :3] = torch.tensor([1, 2, 2])
    head.loss(head.scores(states, mask, torch.tensor(LENGTHS)), gold, mask).backward()
    for parameter in (states, head.linear.weight, head.start_scores, head.transition_scores, head.end_scores):
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0
    assert states.grad[~mask].eq(0).all(), "padding takes no part"
    assert head.transition_scores.grad[~head.allowed_steps].eq(0).all()
    assert head.start_scores.grad[~head.allowed_start].eq(0).all()
    huge = (head.scores(states, mask, torch.tensor(LENGTHS)) * 300).detach().requires_grad_(True)
    head.loss(huge, gold, mask).backward()   # labels hundreds of nats below the best: still no NaN or inf
    assert torch.isfinite(huge.grad).all() and torch.isfinite(head.transition_scores.grad).all()


def test_a_sentence_with_a_label_never_seen_in_training_is_left_out_of_the_loss():
    head = _head(LABELS, "none")
    emissions, mask = _batch(LENGTHS, len(LABELS), seed=3)
    emissions.requires_grad_(True)
    gold = torch.randint(0, len(LABELS), mask.shape, generator=torch.Generator().manual_seed(0))
    gold = gold.masked_fill(~mask, -100)
    unseen = gold.clone()
    unseen[1, 2] = len(LABELS) + 1                      # an id past the head's outputs
    loss = head.loss(emissions, unseen, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert emissions.grad[1].eq(0).all(), "the sentence with the unseen label carries no gradient"
    keep = torch.tensor([0, 2, 3])
    assert float(loss) == pytest.approx(float(head.loss(emissions[keep], gold[keep], mask[keep])), abs=1e-5)
    every_sentence_unseen = gold.masked_fill(mask, len(LABELS))
    nothing = head.loss(emissions, every_sentence_unseen, mask)
    nothing.backward()
    assert float(nothing) == 0.0


def test_the_crf_head_is_for_tagging_only():
    recipe = load_recipe("demo", ["model.head=crf"])
    assert FAMILIES["tagging"].resolve(recipe).model.head == "crf"
    for family in ("classification", "lm"):
        with pytest.raises(SeqtagError, match=f"model.head is 'crf', which task '{family}' cannot use"):
            FAMILIES[family].resolve(recipe)
    with pytest.raises(SeqtagError, match="model.head"):
        load_recipe("demo", ["model.head=crff"])


def test_a_crf_tagger_trains_saves_loads_and_predicts_spans(ner_files, tmp_path):
    recipe = load_recipe("conll-ner", [*SMALL, "model.head=crf", "train.max_epochs=3"], **ner_files)
    result = train(recipe, tmp_path / "run")
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["recipe"]["model"]["head"] == "crf" and config["train_scheme"] == "bioes"
    model = seqtag.load(result.model_dir)
    head = model.net.head
    assert isinstance(head, CRFHead)
    labels = model.featurizer.labels.labels
    for loaded, rule in zip((head.allowed_start, head.allowed_steps, head.allowed_end),
                            allowed_transitions(labels, "bioes")):
        assert torch.equal(loaded, rule), "loading sets the scheme's forbidden transitions again"
    assert model.evaluate(ner_files["test"])["f1"] == result.metrics["test"]["f1"]
    sentence = model.predict("Ada Lovelace visited Paris .")
    assert sentence.words == ["Ada", "Lovelace", "visited", "Paris", "."]
    assert set(sentence.labels) <= set(model.labels) and find_violation(sentence.labels, "iob1") is None
    assert all(0.0 <= p <= 1.0 for p in sentence.probabilities)
    for span in sentence.spans:
        assert span.probability == pytest.approx(
            sum(sentence.probabilities[span.token_start:span.token_end]) / (span.token_end - span.token_start))
