"""Checkers for chapter 08's exercises (the encoder)."""

from __future__ import annotations

import torch

from utils.encoder import EncoderBlock
from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 8.1 — the parameters of an encoder block")
def check_encoder_block_parameters(encoder_block_parameters) -> None:
    """``encoder_block_parameters(C, d_ff)``: how many numbers an EncoderBlock(C, n_heads, d_ff) learns."""
    for C, d_ff in ((16, 64), (12, 20), (512, 2048)):
        block = EncoderBlock(C, 4, d_ff)
        expected = sum(p.numel() for p in block.parameters())
        value = encoder_block_parameters(C, d_ff)
        expect(isinstance(value, int), f"return an int, got {type(value).__name__}")
        hint = ""
        if value == expected - 4 * C:
            hint = " (you left out the two LayerNorms: a gain and a bias of C numbers each)"
        elif value == expected - (4 * C + d_ff + C):
            hint = " (you left out the biases of attention's four projections and of the feed-forward network)"
        expect(value == expected, f"for C={C}, d_ff={d_ff} you gave {value:,}; it is {expected:,}{hint}")


@checker("Exercise 8.2 — a padding mask from lengths")
def check_padding_mask(padding_mask) -> None:
    """``padding_mask(lengths, T)``: bool (B, T), True at the padding positions t >= lengths[b]."""
    lengths = torch.tensor([3, 5, 1])
    mask = padding_mask(lengths, 5)
    expect_shape(mask, (3, 5), "padding_mask(tensor([3, 5, 1]), T=5)")
    expect(mask.dtype == torch.bool, f"the mask must be a bool tensor, got {mask.dtype}")
    expected = torch.tensor([[False, False, False, True, True], [False] * 5, [False, True, True, True, True]])
    expect(not torch.equal(mask, ~expected),
           "True and False are swapped: in a key_padding_mask True marks padding (PyTorch's convention)")
    expect(torch.equal(mask, expected), f"for lengths [3, 5, 1] and T=5 you gave\n{mask.int().tolist()}\n"
                                        f"expected\n{expected.int().tolist()} (1 = padding)")
    expect(padding_mask(torch.tensor([2]), 4).shape == (1, 4), "the mask's width must be T, not the longest length")


@checker("Exercise 8.3 — one vector per sentence")
def check_masked_mean(masked_mean) -> None:
    """``masked_mean(x, key_padding_mask)``: (B, C), the mean of x (B, T, C) over the real positions only."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=generator)
    padding = torch.tensor([[False, False, False, True, True], [False] * 5, [False, True, True, True, True]])
    out = masked_mean(x, padding)
    expect_shape(out, (3, 4), "masked_mean(x, key_padding_mask) for x of shape (3, 5, 4)")
    expected = torch.stack([x[0, :3].mean(0), x[1].mean(0), x[2, :1].mean(0)])
    expect(not torch.allclose(out, x.mean(dim=1), atol=1e-5),
           "that is the mean over all T positions: the padding positions must not count")
    expect_close(out, expected, "masked_mean(x, key_padding_mask)")
    garbage = x.masked_fill(padding[..., None], 1e6)  # whatever sits at padding positions must not matter
    expect_close(masked_mean(garbage, padding), expected, "masked_mean with huge values at the padding positions",
                 atol=1e-3)
