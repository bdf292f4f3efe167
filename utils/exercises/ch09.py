"""Checkers for chapter 09's exercises (the decoder)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 9.1 — scheduled sampling")
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


@checker("Exercise 9.3 — the attention scores of writing a sentence")
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


@checker("Exercise 9.4 — how focused is cross-attention? Its entropy")
def check_attention_entropy(attention_entropy) -> None:
    """``attention_entropy(weights, src_padding)``: weights (B, n_heads, T_dec, T_enc) -> (B, n_heads, T_dec),
    -Σ w log w in nats over the real source positions (0 log 0 counts as 0)."""
    generator = torch.Generator().manual_seed(9)
    B, n_heads, T_dec, T_enc = 2, 3, 4, 6
    src_padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    scores = torch.randn(B, n_heads, T_dec, T_enc, generator=generator, dtype=torch.float64) * 2
    scores[0, 0, 0] = torch.tensor([50.0, 0, 0, 0, 0, 0])  # one query puts all its weight on one word
    scores = scores.masked_fill(src_padding[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # exact zeros at padding and (nearly) one-hot rows
    w = weights.clamp(min=1e-300)
    expected = -(weights * w.log()).sum(-1)  # (B, n_heads, T_dec)
    out = attention_entropy(weights.clone().float(), src_padding.clone())
    expect_shape(out, (B, n_heads, T_dec), "attention_entropy(weights of shape (2, 3, 4, 6), ...)")
    out = out.detach().double()
    expect(not torch.isnan(out).any(),
           "your entropy contains NaN: a weight of exactly 0 (padding, or a one-hot row) gives 0 · log 0 = 0 · -inf; "
           "count those terms as 0 (torch.special.xlogy, or clamp the weights inside the log)")
    expect(not torch.allclose(out, expected / math.log(2), atol=1e-4),
           "that is the entropy in bits (log2); the book measures in nats (natural log)")
    expect(not torch.allclose(out, -expected, atol=1e-4), "an entropy is -Σ w log w: yours has the wrong sign")
    expect(out[0, 0, 0].item() < 1e-3,
           f"a query that puts all its weight on one source word has entropy 0; yours gives {out[0, 0, 0].item():.4g}")
    expect_close(out, expected, "your entropies", atol=1e-4)
    uniform = torch.full((1, 1, 1, 5), 0.2)
    value = attention_entropy(uniform, torch.zeros(1, 5, dtype=torch.bool)).reshape(-1)[0].item()
    expect(math.isclose(value, math.log(5), rel_tol=1e-4),
           f"weights spread evenly over 5 words should give log 5 = {math.log(5):.4f}; yours gives {value:.4f}")
