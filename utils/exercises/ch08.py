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


def _waste_reference(lengths: list[int]) -> tuple[float, float]:
    T = max(lengths)
    real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    pairs = real[:, :, None] & real[:, None, :]  # (B, T, T): a real query and a real key
    return 1 - real.float().mean().item(), 1 - pairs.float().mean().item()


@checker("Exercise 8.2 — how much of the work is padding?")
def check_padding_waste(padding_waste) -> None:
    """``padding_waste(lengths)`` -> (share of the positions, share of the attention scores) spent on padding
    when the sentences are padded to the longest; a score is useful only for a real query and a real key."""
    for lengths in ([5, 5, 5], [10, 2, 3, 10], [1, 20], [7, 3, 12, 12, 4, 9]):
        result = padding_waste(list(lengths))
        expect(isinstance(result, tuple) and len(result) == 2,
               f"return a pair (positions share, scores share), got {type(result).__name__}")
        positions, scores = (float(x) for x in result)
        expected_positions, expected_scores = _waste_reference(lengths)
        expect(abs(positions - expected_positions) < 1e-6,
               f"padding_waste({lengths}): {positions:.4f} of the positions wasted, expected "
               f"{expected_positions:.4f} = 1 - sum(lengths) / (B · T), T the longest length")
        if lengths != [5, 5, 5]:
            expect(abs(scores - positions) > 1e-6,
                   f"padding_waste({lengths}): the scores' share equals the positions' share; attention computes "
                   "T × T scores per sentence, so a sentence of length L uses only L² of them")
            T = max(lengths)
            either = 1 - sum(T * T - (T - L) ** 2 for L in lengths) / (len(lengths) * T * T)
            expect(abs(scores - either) > 1e-6,
                   "you counted a score as useful when its query OR its key is real; a padded query's output is "
                   "thrown away and a padded key gets weight 0, so only real-query, real-key scores count: L²")
        expect(abs(scores - expected_scores) < 1e-6,
               f"padding_waste({lengths}): {scores:.4f} of the scores wasted, expected {expected_scores:.4f}")


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
