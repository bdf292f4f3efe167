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


@checker("Exercise 5.4 — the decoder's mask, and what leaks without it")
def check_decoder_mask(decoder_mask) -> None:
    """``decoder_mask(key_padding_mask)``: (B, T) True = padding -> (B, 1, T, T) True = may attend.

    The checker runs attention under the reader's mask and changes inputs: later
    tokens (a mask that leaks the future changes earlier outputs) and padded tokens
    (a mask that lets real tokens read padding changes their outputs).
    """
    from utils.attention import attention

    padding = torch.tensor([[False] * 6, [True, True] + [False] * 4, [True] + [False] * 5])  # left-padded
    B, T = padding.shape
    mask = decoder_mask(padding.clone())
    expect(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
           f"return a bool tensor (True = may attend), got {getattr(mask, 'dtype', type(mask).__name__)}")
    expect(tuple(mask.shape) == (B, 1, T, T),
           f"the mask has shape {tuple(mask.shape)}; it should be (B, 1, T, T) = {(B, 1, T, T)}, "
           "so that it broadcasts over the heads of scores shaped (B, n_heads, T, T)")
    expected = torch.ones(T, T, dtype=torch.bool).tril() & ~padding[:, None, None, :]
    expect(not torch.equal(mask, ~expected),
           "your mask is True where attention is blocked (nn.MultiheadAttention's attn_mask "
           "convention); the book's masks are True where a query may attend")

    generator = torch.Generator().manual_seed(54)
    n_heads, head_size = 2, 4
    x = torch.randn(B, n_heads, T, head_size, generator=generator)

    def run(inputs):  # self-attention of each head under the reader's mask
        return attention(inputs, inputs, inputs, mask)[0]  # (B, n_heads, T, head_size)

    out = run(x)
    for t in range(T - 1):
        changed = x.clone()
        changed[:, :, t + 1 :] = torch.randn(B, n_heads, T - t - 1, head_size, generator=generator)
        difference = (run(changed)[:, :, : t + 1] - out[:, :, : t + 1]).abs().max().item()
        expect(difference < 1e-6,
               f"your mask leaks the future: changing the tokens after position {t} changed the output "
               f"at positions 0..{t} (by up to {difference:.2g}); query t may only see keys s <= t")
    changed = x.clone()
    changed[padding[:, None, :, None].expand_as(x)] = 100.0  # rewrite every padded token
    real = ~padding[:, None, :, None].expand_as(x)
    difference = (run(changed)[real] - out[real]).abs().max().item()
    expect(difference < 1e-6,
           f"real tokens attend to padding: changing the padded tokens changed their outputs (by up to "
           f"{difference:.2g}); combine the causal mask with ~key_padding_mask[:, None, None, :]")
    expect_close(mask.float(), expected.float(), "your mask (1 = may attend)")
