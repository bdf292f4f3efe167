"""Checkers for chapter 05's exercises (masked self-attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.exercises import checker, expect, expect_close, expect_shape


def _prefix_reference(T: int, prefix_lengths: list[int]) -> torch.Tensor:
    mask = torch.zeros(len(prefix_lengths), 1, T, T, dtype=torch.bool)
    for b, prefix in enumerate(prefix_lengths):
        for t in range(T):
            for s in range(T):
                mask[b, 0, t, s] = s <= t or s < prefix
    return mask


@checker("Exercise 5.1 — a prefix language model's mask")
def check_prefix_lm_mask(prefix_lm_mask) -> None:
    """``prefix_lm_mask(T, prefix_lengths)``: (B, 1, T, T), True = may attend: s <= t, or s inside the prefix."""
    T, prefix_lengths = 6, [3, 0, 6, 1]
    mask = prefix_lm_mask(T, torch.tensor(prefix_lengths))
    expected = _prefix_reference(T, prefix_lengths)
    expect(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
           f"return a bool tensor (True = may attend), got {getattr(mask, 'dtype', type(mask).__name__)}")
    expect(tuple(mask.shape) == (len(prefix_lengths), 1, T, T),
           f"the mask has shape {tuple(mask.shape)}; expected (B, 1, T, T) = {(len(prefix_lengths), 1, T, T)}, "
           "one (T, T) mask per sequence that broadcasts over the heads")
    expect(not torch.equal(mask, ~expected),
           "your mask is True where attention is blocked; the book's masks are True where a query may attend")
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for b, prefix in enumerate(prefix_lengths):
        if torch.equal(mask[b, 0], causal) and not torch.equal(expected[b, 0], causal):
            expect(False, f"sequence {b} (prefix of {prefix} tokens) got a plain causal mask: inside the "
                          "prefix every token may read every other prefix token, later ones included")
        wrong = (mask[b, 0] != expected[b, 0]).nonzero()
        if len(wrong):
            t, s = wrong[0].tolist()
            reason = ("a key after the query, outside the prefix, is the future" if expected[b, 0, t, s] == 0
                      else "keys inside the prefix are visible to every query")
            if expected[b, 0, t, s] == 0 and s == prefix:
                reason = f"the prefix is positions 0..{prefix - 1}: position {prefix} is the first one generated"
            expect(False, f"sequence {b} (prefix of {prefix}): query {t}, key {s} should be "
                          f"{'allowed' if expected[b, 0, t, s] else 'masked'} ({reason}); expected "
                          f"{expected[b, 0].int().tolist()}, got {mask[b, 0].int().tolist()}")
    empty = prefix_lm_mask(4, torch.tensor([0]))
    expect(torch.equal(empty[0, 0], torch.ones(4, 4, dtype=torch.bool).tril()),
           "with an empty prefix the mask should be the causal mask")


def _dependence_reference(f, T: int, C: int) -> torch.Tensor:
    x = torch.randn(1, T, C, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda inputs: f(inputs)[0], x)[:, :, 0]  # (T, C, T, C)
    return jacobian.abs().amax(dim=(1, 3)) > 0  # [t, s]: does output t move with input s?


@checker("Exercise 5.2 — which outputs depend on which inputs? Measure it")
def check_dependence(dependence) -> None:
    """``dependence(f, T, C)``: (T, T) bool, [t, s] True when output t of f((1, T, C)) changes with input s."""
    from utils.attention import attention

    T, C = 6, 4

    def self_attention(x, mask):
        return attention(x, x, x, mask)[0]

    t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
    layers = {
        "causal attention": lambda x: self_attention(x, s <= t),
        "attention with no mask": lambda x: self_attention(x, None),
        "a window of 2": lambda x: self_attention(x, (s <= t) & (t - s < 2)),
        "reading the previous token": lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1),
        "a per-token layer": lambda x: torch.tanh(x) * 2,
        "causal attention, then LayerNorm": lambda x: F.layer_norm(self_attention(x, s <= t), (C,)),
    }
    for name, layer in layers.items():
        expected = _dependence_reference(layer, T, C)
        result = dependence(layer, T, C)
        expect_shape(result, (T, T), f"dependence(f, {T}, {C}) for {name}")
        expect(result.dtype == torch.bool, f"return a bool tensor, got {result.dtype}")
        if torch.equal(result, expected):
            continue
        expect(not torch.equal(result, expected.T),
               f"for {name} your matrix is transposed: row t is output position t, column s input position s")
        expect(not torch.equal(result, expected.any(dim=0, keepdim=True).expand(T, T)),
               f"for {name} every row is the same: one backward of f(x).sum() mixes all outputs; take one "
               "backward per output position t (or the Jacobian), each giving row t")
        if name.endswith("LayerNorm") and not (result & ~expected).any():  # only dependences missing
            expect(False, "after a LayerNorm every output vector sums to 0, so the gradient of out[0, t].sum() "
                          "is 0 (up to rounding): read output t through a random direction, (out[0, t] * r).sum()")
        where = (result != expected).nonzero()[0].tolist()
        expect(False, f"for {name}, output {where[0]} {'does' if expected[where[0], where[1]] else 'does not'} "
                      f"depend on input {where[1]}, but your matrix says the opposite. Expected "
                      f"{expected.int().tolist()}, got {result.int().tolist()} (a gradient can cancel to 0 when "
                      "summed over channels: test its absolute values)")


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


@checker("Exercise 5.4 — several documents in one row")
def check_document_mask(document_mask) -> None:
    """``document_mask(doc_ids)``: doc_ids (B, T) says which document each position belongs to (documents are
    contiguous); returns bool (B, 1, T, T), True where query t may attend to key s: s <= t, same document."""
    from utils.attention import attention

    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2], [5, 5, 5, 5, 5, 5, 5, 5], [3, 4, 4, 4, 9, 9, 9, 9]])
    B, T = doc_ids.shape
    mask = document_mask(doc_ids.clone())
    expect(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
           f"return a bool tensor (True = may attend), got {getattr(mask, 'dtype', type(mask).__name__)}")
    expect(tuple(mask.shape) == (B, 1, T, T),
           f"the mask has shape {tuple(mask.shape)}; it should be (B, 1, T, T) = {(B, 1, T, T)}, "
           "so that it broadcasts over the heads")
    t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    expected = (same & (s <= t))[:, None]  # (B, 1, T, T)
    expect(not torch.equal(mask, ~expected),
           "your mask is True where attention is blocked; the book's masks are True where a query may attend")
    expect(not torch.equal(mask, same[:, None]),
           "inside a document your mask lets a token read the tokens after it: it must stay causal")
    expect(not torch.equal(mask, (s <= t).expand(B, 1, T, T)),
           "that is the plain causal mask: a token may also read the end of the previous document; "
           "keys from another document must be masked")
    generator = torch.Generator().manual_seed(55)
    x = torch.randn(B, 2, T, 4, generator=generator)

    def run(inputs):
        return attention(inputs, inputs, inputs, mask)[0]

    out = run(x)
    for b in range(B):
        for document in doc_ids[b].unique().tolist():
            inside = doc_ids[b] == document
            changed = x.clone()
            changed[b, :, ~inside] = torch.randn(2, int((~inside).sum()), 4, generator=generator)
            difference = (run(changed)[b, :, inside] - out[b, :, inside]).abs().max().item()
            expect(difference < 1e-6, f"document {document} of row {b} changed (by up to {difference:.2g}) when "
                                      "only the other documents of the row changed: it reads them")
    expect_close(mask.float(), expected.float(), "your mask (1 = may attend)")
