"""Checkers for chapter 06's exercises (cross-attention)."""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.attention import MultiHeadAttention, copy_weights_from_torch
from utils.exercises import checker, expect, expect_close, expect_shape


def _padding(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T): True = padding


@checker("Exercise 6.1 — cross-attention weights with padding")
def check_cross_attention_weights(cross_attention_weights) -> None:
    """``cross_attention_weights(q, k, key_padding_mask)`` -> (B, n_heads, T_dec, T_enc)."""
    generator = torch.Generator().manual_seed(6)
    B, n_heads, T_dec, T_enc, d = 3, 2, 4, 6, 8
    q = torch.randn(B, n_heads, T_dec, d, generator=generator)
    k = torch.randn(B, n_heads, T_enc, d, generator=generator)
    padding = _padding([6, 2, 4], T_enc)
    weights = cross_attention_weights(q, k, padding)
    expect_shape(weights, (B, n_heads, T_dec, T_enc),
                 f"the weights for q {tuple(q.shape)} (decoder) and k {tuple(k.shape)} (encoder)")
    on_padding = weights[padding[:, None, None, :].expand_as(weights)]
    expect(on_padding.abs().max().item() == 0,
           "padded encoder positions (True in key_padding_mask) must get weight exactly 0; mask the scores of the "
           "padded *keys*, the last dimension, with -inf before softmax")
    expect_close(weights.sum(-1), torch.ones(B, n_heads, T_dec), "the sum of each decoder query's weights")
    scores = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(padding[:, None, None, :], float("-inf"))
    expect_close(weights, torch.softmax(scores, dim=-1), "the weights (remember the 1/√d scale)")


@checker("Exercise 6.2 — attention pooling")
def check_attention_pool(attention_pool) -> None:
    """``attention_pool(memory, query, key_padding_mask)`` -> (B, C)."""
    generator = torch.Generator().manual_seed(7)
    B, T, C = 3, 5, 8
    memory = torch.randn(B, T, C, generator=generator)
    query = torch.randn(C, generator=generator) * 2
    padding = _padding([5, 3, 1], T)
    pooled = attention_pool(memory, query, padding)
    expect_shape(pooled, (B, C), f"attention_pool of memory {(B, T, C)}")
    # Padding must not matter: change what sits in the padded positions and compare.
    noisy = memory.masked_fill(padding[:, :, None], 100.0)
    expect_close(attention_pool(noisy, query, padding), pooled,
                 "the result after changing only the padded positions of memory (padding must not be read)")
    expect_close(pooled[2], memory[2, 0], "the summary of a sequence with one real token (it is that token)")
    scores = (memory @ query / math.sqrt(C)).masked_fill(padding, float("-inf"))
    expected = (torch.softmax(scores, dim=-1)[:, :, None] * memory).sum(1)
    expect_close(pooled, expected, "the pooled vectors (scores query · m_t / √C, softmax over positions)")


@checker("Exercise 6.3 — one forward for self- and cross-attention")
def check_attention_forward(attention_forward) -> None:
    """``attention_forward(mha, query, key_value=None, key_padding_mask=None)`` -> (B, T_q, C)."""
    C, n_heads, T_q, T_k = 16, 4, 5, 7
    with torch.random.fork_rng():
        torch.manual_seed(6)
        theirs = nn.MultiheadAttention(C, n_heads, batch_first=True).eval()
        query, key_value = torch.randn(2, T_q, C), torch.randn(2, T_k, C)
    mha = copy_weights_from_torch(MultiHeadAttention(C, n_heads), theirs).eval()
    padding = _padding([7, 4], T_k)  # (B, T_k): True = padding
    with torch.no_grad():
        own = attention_forward(mha, query.clone())
        expect_shape(own, (2, T_q, C), "attention_forward(mha, query) with no key_value")
        expect_close(own, theirs(query, query, query, need_weights=False)[0],
                     "self-attention (key_value=None: keys and values come from the query's sequence)")
        cross = attention_forward(mha, query.clone(), key_value.clone())
        expect_shape(cross, (2, T_q, C),
                     f"cross-attention of a query {tuple(query.shape)} to key_value "
                     f"{tuple(key_value.shape)} (the query's length, T_q = {T_q})")
        expect(not torch.allclose(cross, own, atol=1e-5),
               "given key_value, the keys and values must come from it, not from the query")
        expect_close(cross, theirs(query, key_value, key_value, need_weights=False)[0],
                     "cross-attention (queries from query; keys and values from key_value)")
        masked = attention_forward(mha, query.clone(), key_value.clone(), padding)
        noisy = key_value.masked_fill(padding[:, :, None], 100.0)
        expect(torch.allclose(attention_forward(mha, query.clone(), noisy, padding), masked, atol=1e-5),
               "what sits at the padded key positions changed the output: mask their scores with "
               "-inf before the softmax (key_padding_mask is (B, T_k), True = padding)")
        expected = theirs(query, key_value, key_value, key_padding_mask=padding, need_weights=False)[0]
        expect_close(masked, expected, "cross-attention with a key padding mask")
