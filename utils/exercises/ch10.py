"""Checkers for chapter 10's exercises (the output head, the loss, decoding)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.exercises import checker, expect, expect_close, expect_ids, expect_shape
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
        expect(isinstance(value, int | float) and not isinstance(value, bool)
               or (isinstance(value, torch.Tensor) and value.numel() == 1),
               f"return one number, got {type(value).__name__}")
        value = float(value)
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


@checker("Exercise 10.3 — the nucleus of top-p sampling")
def check_top_p(nucleus) -> None:
    """``nucleus(probs, p)`` returns the set of ids kept by top-p: the smallest most-likely set with mass >= p."""
    probs = torch.tensor([0.1, 0.4, 0.05, 0.3, 0.15])  # sorted: 1 (0.4), 3 (0.3), 4 (0.15), 0 (0.1), 2 (0.05)
    cases = {0.3: {1}, 0.6: {1, 3}, 0.8: {1, 3, 4}, 0.9: {1, 3, 4, 0}, 0.99: {0, 1, 2, 3, 4}}
    for p, expected in cases.items():
        kept = expect_ids(nucleus(probs.clone(), p), "nucleus")
        strictly_below = set()
        mass = 0.0
        for i in probs.argsort(descending=True).tolist():
            if mass + probs[i].item() >= p:
                break
            strictly_below.add(i)
            mass += probs[i].item()
        if p > 0.4:
            expect(kept != strictly_below,
                   f"p={p}: you stopped before the token that crosses p (kept {sorted(kept)}); that set "
                   f"has mass below p, so add the next most likely token too: {sorted(expected)}")
        expect(kept == expected,
               f"with probabilities {probs.tolist()} and p={p}, top-p keeps {sorted(expected)}, "
               f"you returned {sorted(kept)}")
    exact = torch.tensor([0.5, 0.25, 0.125, 0.125])  # sums are exact in binary floating point
    kept = expect_ids(nucleus(exact.clone(), 0.75), "nucleus")
    expect(kept != {0, 1, 2},
           "with probabilities [0.5, 0.25, 0.125, 0.125] and p=0.75 the two most likely tokens hold "
           "exactly 0.75, which already reaches p ('at least p'): keep {0, 1}. You kept one more: "
           "compare the mass with >= p, not > p")
    expect(kept == {0, 1}, f"with probabilities [0.5, 0.25, 0.125, 0.125] and p=0.75, top-p keeps "
                           f"[0, 1], you returned {sorted(kept)}")


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
