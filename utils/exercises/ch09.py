"""Checkers for chapter 09's exercises (the decoder)."""

from __future__ import annotations

import torch
from torch import nn

from utils.decoder import DecoderBlock, copy_decoder_layer_from_torch
from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 9.1 — scheduled sampling: the decoder reads some of its own guesses")
def check_scheduled_inputs(scheduled_inputs) -> None:
    """``scheduled_inputs(labels, predictions, p, sos_id, generator)`` -> decoder input (B, T): <SOS>, then for
    each later position the previous label, replaced by the model's previous prediction with probability p."""
    labels = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])  # (B, T): the target then <EOS>=2, <PAD>=0
    predictions = torch.tensor([[5, 3, 7, 4, 2], [11, 10, 12, 13, 14]])  # (B, T): the model's argmax at each step
    sos = 1
    forced = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 10, 2, 0]])  # teacher forcing: labels shifted right
    free = torch.tensor([[1, 5, 3, 7, 4], [1, 11, 10, 12, 13]])  # the model's own previous outputs
    out = scheduled_inputs(labels.clone(), predictions.clone(), 0.0, sos, torch.Generator().manual_seed(0))
    expect_shape(out, (2, 5), "scheduled_inputs(labels of shape (2, 5), ...)")
    expect(out.dtype == torch.long, f"return token ids (torch.long), got {out.dtype}")
    expect(not torch.equal(out, labels), "with p = 0 the decoder input is teacher forcing: <SOS>, then the "
                                         "labels shifted one place right (the input at t is the label at t-1)")
    expect(torch.equal(out, forced), f"with p = 0 expected teacher forcing {forced.tolist()}, got {out.tolist()}")
    out = scheduled_inputs(labels.clone(), predictions.clone(), 1.0, sos, torch.Generator().manual_seed(0))
    expect(not torch.equal(out, torch.cat([torch.full((2, 1), sos), predictions[:, 1:]], dim=1)),
           "with p = 1 position t reads the prediction made at t - 1 (shift the predictions right too)")
    expect(torch.equal(out, free), f"with p = 1 expected <SOS> then the predictions shifted right, {free.tolist()}, "
                                   f"got {out.tolist()}")
    big_labels = torch.randint(3, 50, (400, 30), generator=torch.Generator().manual_seed(1))
    big_predictions = big_labels + 100  # every prediction differs from its label
    shares = []
    for seed in (0, 1):
        out = scheduled_inputs(big_labels.clone(), big_predictions.clone(), 0.25, sos,
                               torch.Generator().manual_seed(seed))
        expect(bool((out[:, 0] == sos).all()), "the first decoder input is always <SOS>, whatever p is")
        from_model = out[:, 1:] >= 100
        from_labels = out[:, 1:] == big_labels[:, :-1]
        expect(bool((from_model | from_labels).all()),
               "each later position must hold either the previous label or the previous prediction")
        shares.append(from_model.float().mean().item())
    expect(all(abs(share - 0.25) < 0.03 for share in shares),
           f"with p = 0.25 about a quarter of the positions should read a prediction; yours: "
           f"{[round(x, 3) for x in shares]}. Draw one coin per position (torch.rand(..., generator=generator) < p)")
    expect(shares[0] != shares[1],
           "two different generators gave the same choice: draw the coins with the generator you are given")


@checker("Exercise 9.2 — the cross-attention mask")
def check_cross_attention_mask(cross_attention_mask) -> None:
    """``cross_attention_mask(src_padding, T_dec)``: bool (B, T_dec, T_enc), True = may attend."""
    src_padding = torch.tensor([[False, False, False, False, True],
                                [False, False, True, True, True]])  # (B=2, T_enc=5)
    for T_dec in (3, 6):
        mask = cross_attention_mask(src_padding.clone(), T_dec)
        expect_shape(mask, (2, T_dec, 5), f"cross_attention_mask(src_padding of shape (2, 5), T_dec={T_dec})")
        expect(mask.dtype == torch.bool, f"the mask should be bool (True = may attend), got {mask.dtype}")
        expected = (~src_padding)[:, None, :].expand(2, T_dec, 5)
        expect(not torch.equal(mask, ~expected),
               "the mask is inverted: here True means the query MAY attend, so padding must be False")
        causal = torch.ones(T_dec, 5, dtype=torch.bool).tril()
        expect(not torch.equal(mask, expected & causal),
               "you applied a causal mask: cross-attention reads the source, which is known in full "
               "before decoding starts, so every target position may see every real source token")
        expect(torch.equal(mask, expected),
               f"with src_padding {src_padding.int().tolist()} every row of the mask should be "
               "True at the real source tokens and False at the padding")


def _simulated_score_entries(T_enc: int, n_new: int, cached: bool) -> int:
    """Writing n_new tokens after <SOS> with one decoder layer and one head: count the scores computed."""
    total, written = 0, 1  # the decoder input starts as <SOS>
    for _ in range(n_new):
        queries = 1 if cached else written  # with a cache only the newest position is computed
        keys = written  # self-attention: every position so far
        total += queries * keys + queries * T_enc  # self-attention, then cross-attention
        written += 1
    return total


@checker("Exercise 9.3 — predict, then count: the attention scores of writing a sentence")
def check_score_entries(score_entries) -> None:
    """``score_entries(T_enc, n_new, cached)``: query-key scores a one-layer, one-head decoder computes to write
    n_new tokens after <SOS>, for a source of T_enc tokens; ``cached``: only the newest position is recomputed."""
    for T_enc, n_new in ((1, 1), (7, 1), (5, 4), (20, 30), (0, 10)):
        for cached in (False, True):
            expected = _simulated_score_entries(T_enc, n_new, cached)
            value = score_entries(T_enc, n_new, cached)
            expect(isinstance(value, int) and not isinstance(value, bool),
                   f"return an int, got {type(value).__name__} {str(value)[:20]}")
            if value == expected:
                continue
            self_only = _simulated_score_entries(0, n_new, cached)
            hint = ""
            if not cached and value == _simulated_score_entries(T_enc, n_new, True):
                hint = (" (that is the cached count: without a cache, step k recomputes all k positions, "
                        "k × k self-attention scores)")
            elif value == self_only:
                hint = " (you left out cross-attention: every query also scores all T_enc source tokens)"
            elif value in [sum((1 if cached else k) * (k + T_enc) for k in range(first, first + n_new))
                           for first in (0, 2)]:
                hint = " (off by one step: the first step reads <SOS> alone, 1 position; the last reads n_new)"
            expect(False, f"score_entries({T_enc}, {n_new}, cached={cached}) gave {value}, expected "
                          f"{expected}{hint}")


class _Parts(nn.Module):
    """A decoder block's modules with no forward of their own: the exercise writes it."""

    def __init__(self, block: DecoderBlock):
        super().__init__()
        self.self_attention = block.self_attention
        self.cross_attention = block.cross_attention
        self.feed_forward = block.feed_forward
        self.norm1 = block.self_attention_residual.norm
        self.norm2 = block.cross_attention_residual.norm
        self.norm3 = block.feed_forward_residual.norm


@checker("Exercise 9.4 — a decoder block's forward")
def check_decoder_block_forward(decoder_block_forward) -> None:
    """``decoder_block_forward(parts, x, memory, tgt_key_padding_mask, memory_key_padding_mask)``."""
    C, n_heads, T_dec, T_enc = 16, 4, 5, 7
    with torch.random.fork_rng():
        torch.manual_seed(9)
        theirs = nn.TransformerDecoderLayer(C, n_heads, 4 * C, dropout=0.0, batch_first=True).eval()
        with torch.no_grad():  # gains and biases away from 1 and 0, so that a swapped norm shows
            for norm in (theirs.norm1, theirs.norm2, theirs.norm3):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.5)
        x, memory = torch.randn(2, T_dec, C), torch.randn(2, T_enc, C)
    tgt_padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])  # (B, T_dec): True = padding
    src_padding = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])  # (B, T_enc)
    parts = _Parts(copy_decoder_layer_from_torch(DecoderBlock(C, n_heads), theirs).eval())
    real = ~tgt_padding

    def run(x, memory):
        return decoder_block_forward(parts, x.clone(), memory.clone(), tgt_padding, src_padding)

    with torch.no_grad():
        out = run(x, memory)
        expect_shape(out, (2, T_dec, C), f"the block's output for x {tuple(x.shape)}")
        changed = x.clone()
        changed[:, -1] += 5.0  # a different last target token
        expect(torch.allclose(run(changed, memory)[:, :-1], out[:, :-1], atol=1e-5),
               "changing the last target token changed the outputs before it: the decoder's "
               "self-attention must be causal (causal=True)")
        later_source = memory.clone()
        later_source[:, 3] += 5.0  # a different source token 3 (real in both rows)
        expect(not torch.allclose(run(x, later_source)[:, 0], out[:, 0], atol=1e-5),
               "target position 0 did not see source position 3: the cross-attention must not be "
               "causal, every target position may read the whole source")
        garbage = memory.masked_fill(src_padding[:, :, None], 100.0)
        expect(torch.allclose(run(x, garbage)[real], out[real], atol=1e-5),
               "what sits at the padded source positions changed the output: pass "
               "memory_key_padding_mask to the cross-attention")
        torch_causal = torch.ones(T_dec, T_dec, dtype=torch.bool).triu(1)  # True = hidden (PyTorch)
        expected = theirs(x, memory, tgt_mask=torch_causal, tgt_key_padding_mask=tgt_padding,
                          memory_key_padding_mask=src_padding)
        pre = x + parts.self_attention(parts.norm1(x), causal=True, key_padding_mask=tgt_padding)
        pre = pre + parts.cross_attention(parts.norm2(pre), memory, key_padding_mask=src_padding)
        pre = pre + parts.feed_forward(parts.norm3(pre))
        expect(not torch.allclose(out[real], pre[real], atol=1e-4),
               "that is the pre-norm arrangement; this block is post-norm, the paper's: "
               "x = norm(x + sublayer(x)) for each of the three sublayers")
        expect_close(out[real], expected[real],
                     "the output at the real target positions (compared with "
                     "nn.TransformerDecoderLayer; order: masked self-attention, cross-attention, "
                     "feed-forward, each followed by add & norm with norm1, norm2, norm3)", atol=1e-5)
