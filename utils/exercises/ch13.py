"""Checkers for chapter 13's exercises (making it fast: the KV cache)."""

from __future__ import annotations

import torch

from utils.attention import MultiHeadAttention
from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 13.1 — the bottom-right causal mask")
def check_bottom_right_mask(bottom_right_mask) -> None:
    """``bottom_right_mask(T_q, T_k)``: bool (T_q, T_k), True where key s ≤ t + T_k − T_q."""
    for T_q, T_k in ((4, 4), (1, 5), (2, 6), (3, 7)):
        mask = bottom_right_mask(T_q, T_k)
        expect_shape(mask, (T_q, T_k), f"bottom_right_mask({T_q}, {T_k})")
        expect(mask.dtype == torch.bool, f"the mask should be bool (True = may attend), got {mask.dtype}")
        t, s = torch.arange(T_q)[:, None], torch.arange(T_k)[None, :]
        expected = s <= t + T_k - T_q
        if torch.equal(mask, s <= t) and T_q != T_k:
            expect(False, f"bottom_right_mask({T_q}, {T_k}) is aligned top-left (query t sees keys s <= t): "
                   f"the {T_q} queries are the *last* positions of {T_k}, so query t sits at position "
                   f"t + {T_k - T_q} and sees every key up to there")
        expect(not torch.equal(mask, ~expected), "your mask is inverted: True should mark the keys a query may see")
        expect(torch.equal(mask, expected),
               f"for T_q={T_q}, T_k={T_k} expected {expected.int().tolist()}, got {mask.int().tolist()}")


def _split(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)  # (B, n_heads, T, head_size)


@checker("Exercise 13.2 — one cached attention step")
def check_cached_attention(cached_attention) -> None:
    """``cached_attention(mha, x_new, cache)``: masked self-attention of the new tokens over all tokens so far.

    ``cache`` is a dict, empty at first; the function stores every key and value
    so far under ``"k"`` and ``"v"`` (B, n_heads, T, head_size), and returns
    (B, T_new, C), equal to the last T_new rows of ``mha(x_all, causal=True)``.
    """
    torch.manual_seed(13)
    C, n_heads = 16, 4
    mha = MultiHeadAttention(C, n_heads).eval()
    x = torch.randn(2, 9, C)
    cache: dict = {}
    seen = 0
    for T_new in (3, 1, 1, 2, 1, 1):
        x_new = x[:, seen:seen + T_new]
        with torch.no_grad():
            out = cached_attention(mha, x_new, cache)
            seen += T_new
            expected = mha(x[:, :seen], causal=True)[:, -T_new:]  # (B, T_new, C)
        expect(isinstance(cache, dict) and "k" in cache and "v" in cache,
               'store the keys and values in the cache dict, under "k" and "v"')
        expect_shape(cache["k"], (2, n_heads, seen, C // n_heads),
                     f'cache["k"] after {seen} tokens (append the new keys along the time dimension, dim 2)')
        expect_close(cache["k"], _split(mha.k_proj(x[:, :seen]), n_heads).detach(),
                     f'cache["k"] after {seen} tokens (the keys of all tokens so far, oldest first)')
        expect_close(cache["v"], _split(mha.v_proj(x[:, :seen]), n_heads).detach(),
                     f'cache["v"] after {seen} tokens')
        expect_shape(out, (2, T_new, C), f"the output for {T_new} new token(s)")
        if T_new > 1 and seen > T_new and not torch.allclose(out, expected, atol=1e-5):
            expect(False, f"with {T_new} new tokens after {seen - T_new} cached ones the outputs differ: the "
                   "causal mask must be aligned bottom-right (new query t sees keys s <= t + T_k - T_q); "
                   "is_causal=True aligns top-left")
        expect_close(out, expected, f"the output after {seen} tokens (compare mha(x_all, causal=True)[:, -T_new:])")


@checker("Exercise 13.3 — counting the keys a generation computes")
def check_key_count(keys_computed) -> None:
    """``keys_computed(prompt_length, new_tokens, n_layers, cached)``: key vectors computed to write the tokens."""
    cases = ((1, 1, 1), (5, 1, 2), (1, 10, 1), (8, 20, 4), (100, 500, 4))
    for prompt, new, layers in cases:
        uncached = layers * sum(prompt + i for i in range(new))  # step i runs the model on prompt + i tokens
        cached = layers * (prompt + new - 1)  # the prompt once, then each new token but the last
        got_uncached = keys_computed(prompt, new, layers, False)
        got_cached = keys_computed(prompt, new, layers, True)
        expect(got_uncached == uncached,
               f"without a cache, prompt {prompt}, {new} new tokens, {layers} layer(s): expected {uncached:,} "
               f"keys, got {got_uncached}. Step i runs the whole model on prompt + i tokens, in every layer")
        if got_cached == layers * (prompt + new):
            expect(False, f"with a cache ({prompt}, {new}, {layers}): {got_cached} counts one token too many; "
                   "the last generated token is never fed back to the model")
        expect(got_cached == cached,
               f"with a cache, prompt {prompt}, {new} new tokens, {layers} layer(s): expected {cached:,} keys, "
               f"got {got_cached}. The prompt's keys are computed once, then one key per fed token and layer")


@checker("Exercise 13.4 — one product for q, k and v")
def check_packed_qkv(packed_qkv) -> None:
    """``packed_qkv(mha, x)`` → ``(q, k, v)``, each (B, T, C), from one product with the stacked (3C, C) weight."""
    import torch.nn.functional as F

    torch.manual_seed(13)
    C = 12
    mha = MultiHeadAttention(C, 3).eval()
    x = torch.randn(2, 5, C)
    calls = []
    linear = F.linear

    def counted_linear(*args, **kwargs):
        calls.append(1)
        return linear(*args, **kwargs)

    F.linear = counted_linear  # nn.Linear calls it too: three module calls count three products
    try:
        with torch.no_grad():
            result = packed_qkv(mha, x)
    finally:
        F.linear = linear
    expect(isinstance(result, tuple | list) and len(result) == 3,
           f"return the three tensors (q, k, v); got {type(result).__name__}"
           + (f" of length {len(result)}" if isinstance(result, tuple | list) else ""))
    with torch.no_grad():
        wanted = [p(x) for p in (mha.q_proj, mha.k_proj, mha.v_proj)]
        without_bias = [x @ p.weight.T for p in (mha.q_proj, mha.k_proj, mha.v_proj)]
    for name, got in zip("qkv", result):
        expect_shape(got, (2, 5, C), f"{name} (x is (2, 5, {C}))")
    q, k, _ = result
    if torch.allclose(q, wanted[1], atol=1e-5) and torch.allclose(k, wanted[0], atol=1e-5):
        expect(False, "q and k are swapped: stack the weights in the order q_proj, k_proj, v_proj")
    if all(torch.allclose(got, want, atol=1e-5) for got, want in zip(result, without_bias)):
        expect(False, "the biases are missing: stack the three biases into one (3C,) vector too")
    for name, got, want in zip("qkv", result, wanted):
        expect_close(got, want, f"{name} (compare mha.{name}_proj(x))")
    expect(len(calls) <= 1, f"F.linear ran {len(calls)} times: stack the three weights into one (3C, C) matrix "
           "(torch.cat) and multiply once, then split the result")
