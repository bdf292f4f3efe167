"""Checkers for chapter 12's exercises (batches by length, BLEU's brevity penalty, beam scores)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close


def _lengths(n: int, seed: int) -> list[tuple[int, int]]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(2, 30, (n,), generator=g)
    return [(int(s), max(1, int(s) + int(d))) for s, d in zip(src, torch.randint(-3, 4, (n,), generator=g))]


@checker("Exercise 12.1 — batches by length")
def check_bucketing(make_batches) -> None:
    """``make_batches(lengths, max_tokens)``: lists of indices, each pair once, each batch within budget, little padding."""
    from utils.translation import batch_positions, bucket_batches, padding_share

    for n, max_tokens, seed in ((7, 80, 0), (500, 600, 1), (2000, 2000, 2)):
        lengths = _lengths(n, seed)
        batches = [list(map(int, batch)) for batch in make_batches(list(lengths), max_tokens)]
        seen = sorted(i for batch in batches for i in batch)
        expect(all(len(batch) > 0 for batch in batches), "an empty batch came back: every batch needs a pair")
        expect(seen == list(range(n)), f"with {n} pairs every index 0..{n - 1} must be in exactly one batch; "
               f"{len(seen)} indices came back, {len(set(seen))} of them different")
        over = [b for b in batches if batch_positions(lengths, b) > max_tokens]
        expect(not over, f"a batch of {len(over[0]) if over else 0} pairs needs "
               f"{batch_positions(lengths, over[0]) if over else 0} padded positions, more than "
               f"max_tokens={max_tokens}: count B · (longest source + longest target)")
        reference = padding_share(lengths, bucket_batches(lengths, max_tokens))
        yours = padding_share(lengths, batches)
        expect(yours <= max(2 * reference, 0.05),
               f"{yours:.0%} of the padded positions are padding (sorting by length gives {reference:.0%}): "
               "sort the pairs by length before cutting them into batches")


@checker("Exercise 12.2 — BLEU's brevity penalty")
def check_brevity_penalty(brevity_penalty) -> None:
    """``brevity_penalty(c, r)``: 1 when c >= r, exp(1 - r/c) when 0 < c < r, 0 when c = 0."""
    for c, r in ((10, 10), (12, 10), (9, 10), (5, 10), (1, 7), (0, 4)):
        got = float(brevity_penalty(c, r))
        expected = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
        if c > r:
            expect(abs(got - 1.0) < 1e-9, f"brevity_penalty({c}, {r}) = {got:.4f}: translations longer than "
                   "the references are not penalised by BP (the precisions already are); expected 1")
        if c == 0:
            expect(abs(got) < 1e-12, f"brevity_penalty(0, {r}) = {got}: an empty corpus of translations "
                   "gets BP = 0 (guard the division by c)")
        expect(abs(got - expected) < 1e-9, f"brevity_penalty({c}, {r}) = {got:.6f}, expected {expected:.6f} "
               "(exp(1 - r / c) when the translations are shorter)")


@checker("Exercise 12.3 — the beam's score with a length penalty")
def check_beam_score(beam_score) -> None:
    """``beam_score(log_probs, alpha)``: sum of a 1-D tensor of log-probabilities / ((5 + n) / 6) ** alpha."""
    g = torch.Generator().manual_seed(12)
    for n in (1, 4, 9):
        log_probs = torch.log_softmax(torch.randn(n, 6, generator=g), -1)[:, 0]
        for alpha in (0.0, 0.6, 1.0):
            got = beam_score(log_probs.clone(), alpha)
            expected = log_probs.sum() / ((5 + n) / 6) ** alpha
            if alpha > 0 and n > 1:
                mean = log_probs.sum() / n
                expect(not torch.allclose(torch.as_tensor(got, dtype=mean.dtype), mean),
                       "you divided by the length n; Wu et al.'s penalty is ((5 + n) / 6) ** alpha")
            expect_close(torch.as_tensor(got, dtype=torch.float32).reshape(()), expected.float(),
                         f"beam_score of {n} tokens with alpha={alpha}")
