"""Checkers for chapter 05's exercises (masked self-attention)."""

from __future__ import annotations

import torch

from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 5.1 — causal weights")
def check_causal_weights(causal_weights) -> None:
    """``causal_weights(scores)``: softmax over the keys with every later key masked out."""
    generator = torch.Generator().manual_seed(5)
    for shape in ((5, 5), (2, 3, 7, 7)):
        scores = torch.randn(shape, generator=generator) * 3
        weights = causal_weights(scores.clone())
        expect_shape(weights, shape, f"causal_weights of scores shaped {shape}")
        T = shape[-1]
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        itself = torch.eye(T, dtype=torch.bool)
        expect(not weights.isnan().any().item() and (weights[..., itself] > 0).all().item(),
               "each query may attend to itself (key s = t): mask only the keys with s > t, triu(diagonal=1); "
               "masking the diagonal too leaves query 0 with no key at all, and softmax of all -inf is NaN")
        leaked = weights[..., future].abs().max().item()
        expect(leaked == 0, f"keys after the query must get weight exactly 0, but one gets {leaked:.3g}: "
               "mask the scores with -inf (not 0) before softmax")
        expect_close(weights.sum(-1), torch.ones(shape[:-1]),
                     "the sum of each row of weights (mask before softmax, so the allowed keys share all the weight)")
        expected = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        expect_close(weights, expected, f"causal_weights for scores shaped {shape}")


@checker("Exercise 5.2 — a padding mask from lengths")
def check_padding_mask(padding_mask) -> None:
    """``padding_mask(lengths, T)``: bool (B, T), True where position ≥ length (PyTorch's convention)."""
    for lengths, T in (([3, 5, 1], 5), ([4], 6), ([2, 2], 2)):
        mask = padding_mask(torch.tensor(lengths), T)
        expect_shape(mask, (len(lengths), T), f"padding_mask({lengths}, T={T})")
        expect(mask.dtype == torch.bool, f"the mask should be bool, got {mask.dtype}")
        expected = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
        expect(not torch.equal(mask, ~expected),
               "your mask is inverted: in PyTorch's key_padding_mask, True marks padding "
               "(the positions at or after each sequence's length)")
        expect(torch.equal(mask, expected),
               f"for lengths {lengths} and T={T} expected {expected.int().tolist()} (1 = padding), "
               f"got {mask.int().tolist()}")


@checker("Exercise 5.3 — local attention")
def check_sliding_window_mask(sliding_window_mask) -> None:
    """``sliding_window_mask(T, window)``: True where s ≤ t and t − s < window."""
    for T, window in ((6, 2), (5, 1), (4, 4), (7, 3)):
        mask = sliding_window_mask(T, window)
        expect_shape(mask, (T, T), f"sliding_window_mask({T}, {window})")
        expect(mask.dtype == torch.bool, f"the mask should be bool (True = may attend), got {mask.dtype}")
        t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
        expected = (s <= t) & (t - s < window)
        if not torch.equal(mask, expected):
            where = (mask != expected).nonzero()[0].tolist()
            expect(False, f"with T={T}, window={window}: query {where[0]} and key {where[1]} should be "
                   f"{'allowed' if expected[where[0], where[1]] else 'masked'}; each query sees itself and the "
                   f"{window - 1} tokens before it. Expected {expected.int().tolist()}, got {mask.int().tolist()}")
