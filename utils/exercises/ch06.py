"""Checkers for chapter 06's exercises (cross-attention)."""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.attention import MultiHeadAttention
from utils.exercises import checker, expect, expect_close, expect_shape


def _padding(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T): True = padding


class _CallCounter:
    """Counts the calls of some modules' forward while it is active (forward hooks)."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.counts = dict.fromkeys(modules, 0)
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name):
        def count(module, inputs, output):
            self.counts[name] += 1
        return count

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@checker("Exercise 6.1 — the memory's keys and values, computed once")
def check_cached_cross_attention(precompute_memory, cross_attend_cached) -> None:
    """``precompute_memory(mha, memory)`` -> (k, v), each (B, n_heads, T_enc, head_size), made once per source;
    ``cross_attend_cached(mha, x, k, v, key_padding_mask)`` -> (B, T_dec, C), equal to ``mha(x, memory, ...)``."""
    torch.manual_seed(0)
    B, T_enc, C, n_heads = 3, 7, 16, 4
    mha = MultiHeadAttention(C, n_heads).eval()
    memory = torch.randn(B, T_enc, C)
    padding = _padding([7, 4, 1], T_enc)
    with torch.no_grad():
        kv = precompute_memory(mha, memory.clone())
    expect(isinstance(kv, tuple) and len(kv) == 2, "precompute_memory should return a tuple (k, v)")
    k, v = kv
    head_size = C // n_heads
    expect_shape(k, (B, n_heads, T_enc, head_size), "k (split into heads, ready for every step)")
    expect_shape(v, (B, n_heads, T_enc, head_size), "v")
    counter = _CallCounter({"k_proj": mha.k_proj, "v_proj": mha.v_proj, "q_proj": mha.q_proj})
    try:
        outputs = []
        with torch.no_grad():
            for step in range(1, 6):  # a decoder writing: 1, 2, ..., 5 tokens so far
                x = torch.randn(B, step, C, generator=torch.Generator().manual_seed(step))
                out = cross_attend_cached(mha, x, k, v, padding.clone())
                expect_shape(out, (B, step, C), f"cross_attend_cached at a step with {step} decoder tokens")
                outputs.append((x, out))
    finally:
        counter.close()
    expect(counter.counts["k_proj"] == 0 and counter.counts["v_proj"] == 0,
           f"in 5 decoder steps your cross_attend_cached called k_proj {counter.counts['k_proj']} and "
           f"v_proj {counter.counts['v_proj']} times: the memory's keys and values are made once, by "
           "precompute_memory, and only read afterwards")
    expect(counter.counts["q_proj"] == 5,
           f"q_proj ran {counter.counts['q_proj']} times in 5 steps: the queries come from the decoder "
           "tokens and must be computed at every step")
    with torch.no_grad():
        for x, out in outputs:
            expected = mha(x, memory, key_padding_mask=padding)
            no_mask = mha(x, memory)
            expect(not torch.allclose(out, no_mask, atol=1e-5),
                   "your output ignores key_padding_mask: the padded source positions must get weight 0")
            before_out_proj = (expected - mha.out_proj.bias) @ torch.linalg.inv(mha.out_proj.weight.T)
            expect(not torch.allclose(out, before_out_proj, atol=1e-4),
                   "your output stops before out_proj: the heads, put side by side, go through out_proj")
            expect_close(out, expected, f"your output with {x.shape[1]} decoder tokens (compared with "
                         "mha(x, memory, key_padding_mask=...))")


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


@checker("Exercise 6.3 — predict the output for an empty source")
def check_empty_source_output(empty_source_output) -> None:
    """``empty_source_output(mha, x)``: what ``mha(x, memory, key_padding_mask=all True)`` returns, (B, T, C)."""
    torch.manual_seed(1)
    B, T, T_enc, C = 2, 3, 5, 8
    mha = MultiHeadAttention(C, 2).eval()
    nn.init.normal_(mha.out_proj.bias)  # a bias that is not 0, so that it shows
    x = torch.randn(B, T, C)
    with torch.no_grad():
        predicted = empty_source_output(mha, x.clone())
        actual = mha(x, torch.randn(B, T_enc, C), key_padding_mask=torch.ones(B, T_enc, dtype=torch.bool))
    expect_shape(predicted, (B, T, C), "empty_source_output(mha, x)")
    predicted = predicted.detach()
    expect(not torch.isnan(predicted).any(),
           "NaN is what plain softmax over no keys gives (chapter 05); the kept module defines the "
           "average over nothing instead. What is it, and what does out_proj make of it?")
    expect(not torch.allclose(predicted, torch.zeros_like(predicted)),
           "the attention output is 0, but the module does not stop there: out_proj maps 0 to its bias")
    expect(not torch.allclose(predicted, mha(x, x).detach(), atol=1e-6),
           "that is self-attention of x; here every key of the memory is padding")
    expect_close(predicted, actual, "your prediction (compared with the module's own output)")


