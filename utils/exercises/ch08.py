"""Checkers for chapter 08's exercises (the encoder)."""

from __future__ import annotations

import torch
from torch import nn

from utils.encoder import EncoderBlock, copy_encoder_layer_from_torch
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


@checker("Exercise 8.4 — a block converted to pre-norm")
def check_pre_norm_block(pre_norm_block) -> None:
    """``pre_norm_block(block, x, key_padding_mask)``: a post-norm block's weights, run pre-norm."""
    C, n_heads = 16, 4
    with torch.random.fork_rng():
        torch.manual_seed(8)
        theirs = nn.TransformerEncoderLayer(C, n_heads, dim_feedforward=4 * C, dropout=0.0,
                                            batch_first=True, norm_first=True).eval()
        with torch.no_grad():  # gains and biases away from 1 and 0, so that a swapped norm shows
            for norm in (theirs.norm1, theirs.norm2):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.5)
        x = torch.randn(2, 6, C)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # (B, T): True = padding
    pre = copy_encoder_layer_from_torch(EncoderBlock(C, n_heads, norm_first=True), theirs).eval()
    block = EncoderBlock(C, n_heads, norm_first=False).eval()  # the same weights, built post-norm
    block.load_state_dict(pre.state_dict())
    with torch.no_grad():
        expected = theirs(x, src_key_padding_mask=padding)
        out = pre_norm_block(block, x.clone(), padding)
        expect_shape(out, (2, 6, C), f"pre_norm_block(block, x of shape {tuple(x.shape)}, ...)")
        expect(not torch.allclose(out, block(x, key_padding_mask=padding), atol=1e-5),
               "that is the block's own post-norm forward; pre-norm normalises each sublayer's "
               "input, x + sublayer(norm(x)), and never the sum")
        real = ~padding
        unmasked = pre_norm_block(block, x.clone(), None)
        expect(not torch.allclose(out[real], unmasked[real], atol=1e-6)
               or torch.allclose(out[real], expected[real], atol=1e-5),
               "the padding mask is not used: pass key_padding_mask to the self-attention")
        expect_close(out[real], expected[real],
                     "the output at the real positions (compared with nn.TransformerEncoderLayer, "
                     "norm_first=True; did you use norm1 before attention and norm2 before the "
                     "feed-forward network?)")
