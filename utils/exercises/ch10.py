"""Checkers for chapter 10's exercises (the output head, the loss, decoding)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.exercises import checker, expect, expect_close, expect_number, expect_shape
from utils.generate import generate as kept_generate


def _penalised_reference(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    out = logits.clone().double()
    for b in range(logits.shape[0]):
        for token in set(previous_ids[b].tolist()):
            value = out[b, token]
            out[b, token] = value / penalty if value > 0 else value * penalty
    return out


@checker("Exercise 10.1 — a repetition penalty")
def check_repetition_penalty(repetition_penalty) -> None:
    """``repetition_penalty(logits, previous_ids, penalty)``: logits (B, V); every token already in previous_ids
    (B, T) gets its logit divided by penalty if positive, multiplied by it if negative (once per token)."""
    generator = torch.Generator().manual_seed(0)
    B, V = 3, 12
    logits = torch.randn(B, V, generator=generator) * 3
    previous = torch.tensor([[1, 1, 1, 4, 4, 0], [2, 3, 5, 7, 11, 2], [9, 9, 9, 9, 9, 9]])
    logits[0, 1], logits[0, 4] = 2.0, -2.0  # one positive and one negative repeated token
    penalty = 1.5
    expected = _penalised_reference(logits, previous, penalty)
    original = logits.clone()
    out = repetition_penalty(logits, previous.clone(), penalty)
    expect_shape(out, (B, V), "repetition_penalty(logits of shape (3, 12), ...)")
    expect(torch.equal(logits, original) or torch.allclose(out.double(), expected),
           "you changed the logits you were given in place and got them wrong; work on a copy")
    out = out.detach().double()
    expect(not math.isclose(out[0, 4].item(), -2.0 / penalty, rel_tol=1e-5),
           "you divided a negative logit by the penalty: -2 / 1.5 = -1.33 is LARGER than -2, so the repeated "
           "token became more likely. Multiply negative logits by the penalty instead")
    expect(not math.isclose(out[0, 1].item(), 2.0 / penalty**3, rel_tol=1e-5),
           "token 1 occurs three times and was penalised three times; the penalty applies once per token")
    untouched = torch.ones(B, V, dtype=torch.bool)
    for b in range(B):
        untouched[b, previous[b]] = False
    expect(torch.allclose(out[untouched], original.double()[untouched]),
           "tokens that were not generated before must keep their logits")
    expect_close(out, expected, "your penalised logits")


def _smoothed_entropy(V: int, epsilon: float) -> float:
    q = torch.full((V,), epsilon / V, dtype=torch.float64)
    q[0] += 1 - epsilon
    # the best model predicts q itself; its loss is then the smoothed cross-entropy of log q
    return F.cross_entropy(q.log()[None], torch.tensor([0]), label_smoothing=epsilon).item()


@checker("Exercise 10.2 — the lowest loss label smoothing allows")
def check_smoothed_minimum(smoothed_minimum) -> None:
    """``smoothed_minimum(V, epsilon)``: the smallest value the label-smoothed cross-entropy can take."""
    for V, epsilon in ((10, 0.1), (9923, 0.1), (50257, 0.1), (65, 0.3), (2, 0.5)):
        value = smoothed_minimum(V, epsilon)
        value = expect_number(value, "smoothed_minimum")
        expected = _smoothed_entropy(V, epsilon)
        if math.isclose(value, expected, rel_tol=1e-5):
            continue
        p_star = 1 - epsilon + epsilon / V
        expect(value != 0.0, "a perfect model scores 0 without smoothing; with it, the target distribution q "
                             "is spread out, and no prediction gets below its entropy")
        expect(not math.isclose(value, -math.log(p_star), rel_tol=1e-5),
               "that is -log p* of the target alone; the smoothed loss also charges ε/V · (-log p) for every "
               "other token")
        expect(not math.isclose(value, -math.log(1 - epsilon), rel_tol=1e-5),
               "the best prediction of the target is 1 - ε + ε/V, not 1 - ε, and the other tokens cost too")
        expect(False, f"smoothed_minimum({V}, {epsilon}) gave {value:.6g}, expected {expected:.6g} (the best model "
                      "predicts the smoothed target q itself; its loss is then the entropy of q)")


@checker("Exercise 10.3 — sampling with the Gumbel-max trick")
def check_gumbel_sample(gumbel_sample) -> None:
    """``gumbel_sample(logits, temperature, generator)``: (N, V) logits -> (N,) ids, argmax(logits / τ + Gumbel noise),
    which draws each row from softmax(logits / τ) without computing it."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    N = 20_000
    for temperature in (1.0, 0.5, 2.0):
        ids = gumbel_sample(logits.expand(N, -1).clone(), temperature, torch.Generator().manual_seed(7))
        expect(isinstance(ids, torch.Tensor) and not ids.is_floating_point() and tuple(ids.shape) == (N,),
               f"return one integer id per row, a tensor of shape ({N},); got "
               f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        counts = torch.bincount(ids.cpu(), minlength=len(logits)).double()
        share = counts / N
        expected = torch.softmax(logits.double() / temperature, dim=-1)
        if temperature != 1.0:
            untempered = torch.softmax(logits.double(), dim=-1)
            expect(not torch.allclose(share, untempered, atol=0.015),
                   f"at temperature {temperature} your draws follow softmax(logits), not softmax(logits / τ): "
                   "divide the logits by the temperature before adding the noise")
        expect(int(counts.argmax()) == 0 and bool((counts > 0).sum() > 1),
               f"at temperature {temperature} your draws are {[int(c) for c in counts]}: "
               + ("always the largest logit, which is greedy decoding: add noise" if (counts > 0).sum() == 1
                  else "the largest logit should be drawn most often"))
        error = (share - expected).abs().max().item()
        expect(error < 0.015,
               f"at temperature {temperature} your draws give the shares {[round(x, 3) for x in share.tolist()]}, "
               f"softmax(logits / τ) is {[round(x, 3) for x in expected.tolist()]}. The noise must be Gumbel: "
               "-log(-log(u)) for u uniform in (0, 1), not -log(u) or u itself")
    first = gumbel_sample(logits.expand(8, -1).clone(), 1.0, torch.Generator().manual_seed(1))
    again = gumbel_sample(logits.expand(8, -1).clone(), 1.0, torch.Generator().manual_seed(1))
    expect(torch.equal(first, again), "the same generator seed should give the same draws: use the generator")


class _Bigram(nn.Module):
    """Logits from the last token (a table) plus a nudge from the first: cropping matters."""

    def __init__(self, table: torch.Tensor, block_size: int):
        super().__init__()
        self.table, self.block_size = table, block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        expect(T <= self.block_size,
               f"the model was given {T} tokens, more than its block_size={self.block_size}: run it on "
               "the last block_size tokens only, idx[:, -block_size:]")
        V = self.table.shape[0]
        return self.table[idx] + 2.0 * F.one_hot(idx[:, :1], V).float()  # (B, T, V)


@checker("Exercise 10.4 — the generation loop, with sampling and <EOS>")
def check_generate(generate) -> None:
    """``generate(model, idx, max_new_tokens, block_size, temperature=1.0, top_k=None, eos_id=None,
    generator=None)`` -> ids (B, T + n)."""
    g = torch.Generator().manual_seed(104)
    V, block_size = 12, 4
    model = _Bigram(torch.randn(V, V, generator=g) * 3, block_size).eval()
    idx = torch.randint(V, (6, 3), generator=g)

    def kept(**options):
        return kept_generate(model, idx.clone(), 7, block_size=block_size, **options)

    out = generate(model, idx.clone(), 7, block_size, temperature=0)
    expect_shape(out, (6, 10), "generate(model, idx of shape (6, 3), max_new_tokens=7, ..., temperature=0)")
    expect(torch.equal(out[:, :3], idx), "the result must begin with the prompt idx, then the new tokens")
    expect(torch.equal(out, kept(temperature=0)),
           "with temperature=0 every step must append the argmax of the last position's logits "
           f"(expected {kept(temperature=0).tolist()}, got {out.tolist()})")
    greedy_path = kept(temperature=0)[:, 3:]
    eos_id = next(i for i in range(V) if 0 < (greedy_path == i).any(dim=1).sum() < len(idx))
    stopped = generate(model, idx.clone(), 7, block_size, temperature=0, eos_id=eos_id)
    expected = kept(temperature=0, eos_id=eos_id)
    expect(torch.is_tensor(stopped) and torch.equal(stopped, expected),
           f"with eos_id={eos_id}: a row that has produced <EOS> gets eos_id at every later step, and the "
           f"loop stops as soon as every row has produced it (expected {expected.tolist()}, got "
           f"{stopped.tolist() if torch.is_tensor(stopped) else stopped!r})")

    one = torch.randint(V, (1, 1), generator=g)
    rows = one.expand(4000, 1)  # 4,000 draws of one step from the same distribution
    logits = model(rows[:1])[0, -1]  # (V,)
    draws = generate(model, rows.clone(), 1, block_size, temperature=1.0, top_k=2,
                     generator=torch.Generator().manual_seed(0))[:, -1]
    top2 = logits.topk(2).indices
    expect(bool(torch.isin(draws, top2).all()),
           f"with top_k=2 only the two most likely tokens {top2.tolist()} may be drawn; you drew "
           f"{sorted(set(draws.tolist()) - set(top2.tolist()))} too")
    again = generate(model, rows.clone(), 1, block_size, temperature=1.0, top_k=2,
                     generator=torch.Generator().manual_seed(0))[:, -1]
    expect(torch.equal(draws, again), "two runs with generators seeded alike must draw the same tokens: "
                                      "pass generator= to torch.multinomial")
    for temperature in (1.0, 0.5):
        draws = generate(model, rows.clone(), 1, block_size, temperature=temperature, top_k=2,
                         generator=torch.Generator().manual_seed(1))[:, -1]
        share = (draws == top2[0]).float().mean().item()
        expected = torch.softmax(logits[top2] / temperature, dim=-1)[0].item()
        expect(abs(share - expected) < 0.04,
               f"at temperature {temperature} with top_k=2 the most likely token should be drawn "
               f"{expected:.0%} of the time, you drew it {share:.0%}: divide the logits by the "
               "temperature, keep the top k, then sample from their softmax")
