"""Checkers for chapter 10's exercises (the output head, the loss, decoding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.exercises import checker, expect, expect_close, expect_ids, expect_shape
from utils.generate import generate as kept_generate


@checker("Exercise 10.1 — cross-entropy from scratch")
def check_cross_entropy(cross_entropy) -> None:
    """``cross_entropy(logits (N, V), targets (N,), ignore_index)``: mean -log p(target) over kept targets."""
    g = torch.Generator().manual_seed(10)
    logits = torch.randn(12, 7, generator=g) * 3
    targets = torch.randint(1, 7, (12,), generator=g)
    plain = cross_entropy(logits.clone(), targets.clone(), -100)
    expect_shape(plain, (), "cross_entropy(...) (a scalar)")
    expect_close(plain, F.cross_entropy(logits, targets), "cross_entropy with nothing to ignore")
    padded = targets.clone()
    padded[[2, 5, 6, 11]] = 0
    with_padding = cross_entropy(logits.clone(), padded.clone(), 0)
    counted = F.cross_entropy(logits, padded)
    expect(not torch.allclose(torch.as_tensor(with_padding, dtype=counted.dtype), counted, atol=1e-5),
           "the targets equal to ignore_index still count: leave them out of the sum and of the count")
    expected = F.cross_entropy(logits, padded, ignore_index=0)
    summed_over_all = -torch.log_softmax(logits, -1)[padded != 0].gather(-1, padded[padded != 0][:, None]).sum() / 12
    expect(not torch.allclose(torch.as_tensor(with_padding, dtype=expected.dtype), summed_over_all, atol=1e-5),
           "you divided by all N positions; the mean is over the kept (non-ignored) positions only")
    expect_close(with_padding, expected, "cross_entropy with ignore_index=0")
    huge = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 2000.0, 0.0]])
    safe = cross_entropy(huge, torch.tensor([0, 0]), -100)
    expect(torch.isfinite(torch.as_tensor(safe)).item(),
           "logits in the thousands give inf or NaN: subtract each row's maximum before exponentiating")
    expect_close(safe, F.cross_entropy(huge, torch.tensor([0, 0])), "cross_entropy of large logits", atol=1e-3)


@checker("Exercise 10.2 — label smoothing")
def check_label_smoothing(smoothed_loss) -> None:
    """``smoothed_loss(logits (N, V), targets (N,), epsilon)`` equals F.cross_entropy(label_smoothing=epsilon)."""
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(9, 6, generator=g) * 2
    targets = torch.randint(6, (9,), generator=g)
    for epsilon in (0.0, 0.1, 0.3):
        got = smoothed_loss(logits.clone(), targets.clone(), epsilon)
        expected = F.cross_entropy(logits, targets, label_smoothing=epsilon)
        expect_shape(got, (), f"smoothed_loss(..., epsilon={epsilon}) (a scalar)")
        if epsilon > 0:
            log_p = torch.log_softmax(logits, -1)
            other = (1 - epsilon) * -log_p.gather(-1, targets[:, None])[:, 0] \
                - epsilon / 5 * (log_p.sum(-1) - log_p.gather(-1, targets[:, None])[:, 0])
            expect(not torch.allclose(torch.as_tensor(got, dtype=expected.dtype), other.mean(), atol=1e-5),
                   "you spread ε over the V - 1 other tokens; here (as in PyTorch) ε/V goes to every token, "
                   "the target included, and the target gets 1 - ε on top")
        expect_close(got, expected, f"smoothed_loss with epsilon={epsilon}")


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
