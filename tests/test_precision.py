"""Mixed precision is safe (issue 17): under autocast — bf16 on CPU, fp16 and bf16 on CUDA — the heads' scores
may come as bfloat16/float16, but the CRF's forward algorithm, Viterbi and marginals and every loss run in
float32 with autocast off. Each check takes the scores produced under autocast and runs loss and decoding on
those exact scores inside and outside autocast: the results must agree (before the fix a bf16 matrix product
in the forward algorithm moved the CRF marginals by ~1.5e-2). The CUDA variants skip without a GPU."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from seqtag.config import ModelConfig
from seqtag.crf import CRFHead
from seqtag.data.featurizer import span_label_list
from seqtag.heads import NextTokenHead, PooledHead, SoftmaxHead

LABELS = span_label_list(["X", "Y"], "bioes")     # O + B/I/E/S for two types: 9 labels, many forbidden steps
LENGTHS = [12, 7, 1, 10, 3]                        # a batch with padding and a one-token sentence
HIDDEN = 16

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA_DTYPES = [pytest.param(torch.float16, id="fp16"),
               pytest.param(torch.bfloat16, id="bf16", marks=pytest.mark.skipif(
                   not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                   reason="needs a CUDA GPU with bfloat16"))]


def _batch(device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(len(LENGTHS), max(LENGTHS), HIDDEN, generator=generator) * 3           # (B, T, H)
    lengths = torch.tensor(LENGTHS)
    mask = torch.arange(max(LENGTHS))[None, :] < lengths[:, None]                                # (B, T)
    return states.to(device), mask.to(device), lengths


def _crf_head(device: str, seed: int = 0) -> CRFHead:
    torch.manual_seed(seed)
    head = CRFHead(HIDDEN, ModelConfig(), {"labels": len(LABELS)})
    with torch.no_grad():  # trained-looking transition scores, not the zeros a new head starts from
        for parameter in (head.start_scores, head.transition_scores, head.end_scores):
            parameter.normal_(0, 1.5)
        head.linear.weight.mul_(4)  # emissions of a few nats, as a trained head gives
    head.constrain(LABELS, "bioes")
    return head.to(device).eval()


def _crf_results(head: CRFHead, scores, gold, mask):
    with torch.no_grad():
        paths, marginals = head.decode(scores, mask)
        return head.loss(scores, gold, mask), paths, marginals


def _check_crf(device: str, dtype: torch.dtype) -> float:
    """Loss, Viterbi and marginals on the scores made under autocast agree inside and outside autocast; the
    marginals' largest difference is returned."""
    head = _crf_head(device)
    states, mask, lengths = _batch(device)
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        scores = head.scores(states, mask, lengths)
    assert scores.dtype == dtype, "the emissions' linear layer ran under autocast"
    gold = head.viterbi(scores.float(), mask)                  # an allowed labelling: a finite, realistic loss
    gold[1, 2] = len(LABELS)                                   # an unseen label: that sentence is left out
    reference = _crf_results(head, scores, gold, mask)         # float32, no autocast
    with torch.autocast(device, dtype=dtype):
        loss, paths, marginals = _crf_results(head, scores, gold, mask)
    assert loss.dtype == marginals.dtype == torch.float32
    drift = float((marginals - reference[2]).abs().max())
    assert drift <= 1e-4, f"CRF marginals under autocast drift by {drift:.2e}"
    assert torch.equal(paths, reference[1])
    assert float(loss) == pytest.approx(float(reference[0]), abs=1e-4)
    assert torch.allclose(marginals.sum(-1), mask.float(), atol=1e-5)
    return drift


def _check_crf_training_step(device: str, dtype: torch.dtype) -> None:
    """A whole step under autocast: the loss is float32, its gradients finite and close to float32's."""
    grads = []
    for autocast in (False, True):
        head = _crf_head(device).train()
        head.dropout.p = 0.0
        states, mask, lengths = _batch(device)
        gold = torch.zeros(mask.shape, dtype=torch.long, device=device)   # all "O": allowed everywhere
        with torch.autocast(device, dtype=dtype, enabled=autocast):
            loss = head.loss(head.scores(states, mask, lengths), gold, mask)
        assert loss.dtype == torch.float32
        loss.backward()
        grads.append([parameter.grad for parameter in head.parameters()])
    for full, mixed in zip(*grads):
        assert torch.isfinite(mixed).all()
        assert torch.allclose(full, mixed, rtol=0.05, atol=0.05), "only the emissions differ (bf16 linear layer)"


def _token_heads(device: str) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, head, gold) for the softmax, pooled (plain and class-weighted) and next-token heads."""
    torch.manual_seed(0)
    config = ModelConfig()
    generator = torch.Generator().manual_seed(1)
    size = len(LABELS)
    batch, steps = len(LENGTHS), max(LENGTHS)
    token_gold = torch.randint(0, size, (batch, steps), generator=generator)
    token_gold[0, 0], token_gold[2, 0] = -1, size            # padding-like and unseen ids carry no loss
    text_gold = torch.randint(0, size, (batch,), generator=generator)
    text_gold[3] = size
    weighted = PooledHead(HIDDEN, config, {"labels": size})
    weighted.class_weights = torch.rand(size, generator=generator) + 0.5
    words = 50
    lm_gold = torch.randint(0, words, (batch, steps), generator=generator)
    lm_gold[:, -2:] = -100
    tied = nn.Embedding(words, 8)
    heads = [("softmax", SoftmaxHead(HIDDEN, config, {"labels": size}), token_gold),
             ("pooled", PooledHead(HIDDEN, config, {"labels": size}), text_gold),
             ("pooled-weighted", weighted, text_gold),
             ("next-token", NextTokenHead(HIDDEN, config, {"words": words}), lm_gold),
             ("next-token-tied", NextTokenHead(HIDDEN, config, {"words": words}, tied=tied), lm_gold)]
    for _, head, _ in heads:
        with torch.no_grad():
            for parameter in head.parameters():
                parameter.mul_(4)  # confident scores, where a bf16 softmax loses the most
    tied.to(device)
    return [(name, head.to(device).eval(), gold.to(device)) for name, head, gold in heads]


def _check_softmax_heads(device: str, dtype: torch.dtype) -> None:
    states, mask, lengths = _batch(device)
    for name, head, gold in _token_heads(device):
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            scores = head.scores(states, mask, lengths)
        assert scores.dtype == dtype, name
        with torch.no_grad():
            reference = head.loss(scores.float(), gold, mask)
            reference_probabilities = head.decode(scores.float(), mask)[1]
            low_precision = head.loss(scores, gold, mask)    # the scores as they are, with autocast over
            with torch.autocast(device, dtype=dtype):
                loss = head.loss(scores, gold, mask)
                ids, probabilities = head.decode(scores, mask)
        for result in (loss, low_precision):
            assert result.dtype == torch.float32, name
            assert float(result) == pytest.approx(float(reference), rel=1e-5, abs=1e-5), name
        assert probabilities.dtype == torch.float32, name
        assert torch.allclose(probabilities, reference_probabilities, atol=1e-6), name
        assert torch.equal(ids, reference_probabilities.argmax(-1)), name


def _all_heads(device: str) -> list[tuple[str, nn.Module, torch.Tensor]]:
    crf = _crf_head(device)
    gold = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long, device=device)
    return [("crf", crf, gold)] + _token_heads(device)


# -- CPU: bf16 autocast ---------------------------------------------------------------------------------------

def test_crf_marginals_viterbi_and_loss_under_cpu_bf16_autocast_match_float32():
    _check_crf("cpu", torch.bfloat16)


def test_crf_training_step_under_cpu_bf16_autocast_is_float32():
    _check_crf_training_step("cpu", torch.bfloat16)


def test_softmax_pooled_and_next_token_losses_of_cpu_bf16_scores_are_float32():
    _check_softmax_heads("cpu", torch.bfloat16)


def test_float32_scores_give_identical_results_with_and_without_autocast():
    """On float32 scores the heads' losses, labels and probabilities are bit-identical with no autocast, with
    autocast explicitly off, and under bf16 autocast (the float32 region turns it off)."""
    states, mask, lengths = _batch("cpu")
    for name, head, gold in _all_heads("cpu"):
        with torch.no_grad():
            scores = head.scores(states, mask, lengths)
            assert scores.dtype == torch.float32
            plain = [head.loss(scores, gold, mask), *head.decode(scores, mask)]
            with torch.autocast("cpu", enabled=False):
                off = [head.loss(scores, gold, mask), *head.decode(scores, mask)]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mixed = [head.loss(scores, gold, mask), *head.decode(scores, mask)]
        for a, b, c in zip(plain, off, mixed):
            assert torch.equal(a, b), name
            assert torch.equal(a, c), name


# -- CUDA: fp16 and bf16 autocast -----------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_crf_marginals_viterbi_and_loss_under_cuda_autocast_match_float32(dtype):
    _check_crf("cuda", dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_crf_training_step_under_cuda_autocast_is_float32(dtype):
    _check_crf_training_step("cuda", dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_softmax_pooled_and_next_token_losses_of_cuda_low_precision_scores_are_float32(dtype):
    _check_softmax_heads("cuda", dtype)
