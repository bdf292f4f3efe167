"""Checkers for chapter 08's exercises (the encoder)."""

from __future__ import annotations

import torch
from torch import nn

from utils.encoder import EncoderBlock, copy_encoder_layer_from_torch
from utils.exercises import checker, expect, expect_close, expect_shape


def _padding_of(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch) for batch in batches)


@checker("Exercise 8.1 — batches of similar lengths")
def check_length_batches(length_batches) -> None:
    """``length_batches(lengths, batch_size)``: lists of indices, each index once, at most batch_size per batch,
    with as little padding as sorting by length gives."""
    generator = torch.Generator().manual_seed(0)
    for n, batch_size in ((23, 4), (8, 8), (10, 3)):
        lengths = torch.randint(1, 40, (n,), generator=generator).tolist()
        batches = length_batches(list(lengths), batch_size)
        expect(isinstance(batches, list) and all(isinstance(b, list | tuple) for b in batches),
               f"return a list of batches, each a list of indices, got {type(batches).__name__}")
        flat = [i for batch in batches for i in batch]
        expect(all(isinstance(i, int) and not isinstance(i, bool) for i in flat),
               "each batch should hold indices (ints) into lengths")
        if sorted(flat) != list(range(n)) and sorted(flat) == sorted(lengths):
            expect(False, "your batches hold the lengths themselves; return the indices of the sentences "
                          "(the batch is built from sentences, not from their lengths)")
        missing, repeated = sorted(set(range(n)) - set(flat)), sorted({i for i in flat if flat.count(i) > 1})
        expect(not missing and not repeated and len(flat) == n,
               f"every sentence must be in exactly one batch: missing {missing}, repeated {repeated}")
        too_big = [len(batch) for batch in batches if len(batch) > batch_size]
        expect(not too_big and all(batches), f"batches hold 1 to {batch_size} sentences; yours have sizes "
                                             f"{[len(b) for b in batches]}")
        order = sorted(range(n), key=lambda i: lengths[i])
        best = _padding_of([order[i : i + batch_size] for i in range(0, n, batch_size)], lengths)
        yours = _padding_of([list(batch) for batch in batches], lengths)
        in_order = _padding_of([list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)], lengths)
        expect(yours <= best,
               f"your {len(batches)} batches of {n} sentences need {yours} padding positions; sorted by length "
               f"first they need only {best} (in the given order: {in_order})")


def _gap_reference(encoder, sentences):
    longest = max(len(s) for s in sentences)
    C = sentences[0].shape[-1]
    batch = torch.zeros(len(sentences), longest, C)
    padding = torch.ones(len(sentences), longest, dtype=torch.bool)
    for b, sentence in enumerate(sentences):
        batch[b, : len(sentence)], padding[b, : len(sentence)] = sentence, False
    batched = encoder(batch, key_padding_mask=padding)
    return max((encoder(s[None])[0] - batched[b, : len(s)]).abs().max().item() for b, s in enumerate(sentences))


@checker("Exercise 8.2 — does the batch change a sentence's encoding?")
def check_batch_invariance_gap(batch_invariance_gap) -> None:
    """``batch_invariance_gap(encoder, sentences)``: the largest difference, over the real positions, between
    each sentence encoded alone and encoded in one zero-padded batch with its key padding mask."""
    from utils.encoder import Encoder

    torch.manual_seed(0)
    C = 8
    sentences = [torch.randn(T, C) for T in (5, 2, 7)]
    encoder = Encoder(2, C, 2).eval()

    class IgnoresTheMask(nn.Module):  # a broken encoder: attends to padding
        def forward(self, x, key_padding_mask=None):
            return encoder(x)

    with torch.no_grad():
        gap = batch_invariance_gap(encoder, [s.clone() for s in sentences])
        leaky = batch_invariance_gap(IgnoresTheMask(), [s.clone() for s in sentences])
        expected_leaky = _gap_reference(IgnoresTheMask(), sentences)
    for value, what in ((gap, "the kept Encoder"), (leaky, "an encoder that ignores the mask")):
        expect(isinstance(value, float | int) and not isinstance(value, bool),
               f"return one number (a float), got {type(value).__name__} for {what}")
    expect(gap < 1e-4, f"for the kept Encoder you report a gap of {gap:.3g}; with the padding mask a real "
                       "token never reads padding, so the gap is rounding only (< 1e-4). Do you pass "
                       "key_padding_mask (True = padding) and compare only the real positions?")
    expect(leaky > 1e-3, f"an encoder that ignores the mask changes the real tokens' vectors, but you report "
                         f"{leaky:.3g}: encode each sentence alone AND in the padded batch, and compare")
    expect(abs(leaky - expected_leaky) < 1e-4 * max(1.0, expected_leaky),
           f"for the leaky encoder you report {leaky:.5g}, expected {expected_leaky:.5g}: the largest absolute "
           "difference over every sentence's real positions")


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
