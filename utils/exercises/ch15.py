"""Checkers for chapter 15's exercises (the modern decoder block)."""

from __future__ import annotations

import torch

from utils.exercises import checker, expect, expect_close, expect_shape
from utils.modern import GroupedQueryAttention, RMSNorm, apply_rope, grouped_query_attention, rope_angles


@checker("Exercise 15.1 — NTK-aware RoPE scaling")
def check_ntk_frequencies(ntk_frequencies) -> None:
    """``ntk_frequencies(head_size, theta, scale)``: RoPE's frequencies with theta raised to
    ``theta · scale^(head_size / (head_size − 2))``; the fastest pair keeps its frequency, the slowest is
    divided by ``scale``."""
    for head_size, theta, scale in ((8, 10000.0, 4.0), (64, 10000.0, 2.0), (128, 500000.0, 8.0), (16, 100.0, 1.0)):
        got = ntk_frequencies(head_size, theta, scale)
        what = f"ntk_frequencies({head_size}, {theta:g}, {scale:g})"
        expect_shape(got, (head_size // 2,), what)
        i = torch.arange(0, head_size, 2, dtype=torch.float64)
        expected = (theta * scale ** (head_size / (head_size - 2))) ** (-i / head_size)
        plain = theta ** (-i / head_size)
        got64 = got.detach().double()
        if scale != 1 and torch.allclose(got64, plain / scale, rtol=1e-4):
            expect(False, f"{what} divides every frequency by the scale: that is position interpolation, which "
                   "also slows the fastest pairs that tell neighbours apart; change the base theta instead")
        if scale != 1 and torch.allclose(got64, (theta * scale) ** (-i / head_size), rtol=1e-4):
            expect(False, f"{what} multiplies theta by the scale: then the slowest pair is divided by less than "
                   f"the scale; raise the scale to the power head_size / (head_size - 2) first")
        expect_close(got64[0], torch.tensor(1.0, dtype=torch.float64), f"{what}[0] (the fastest pair's frequency, "
                     "theta^0, which NTK scaling leaves alone)")
        expect_close(got64[-1], plain[-1] / scale, f"{what}[-1] (the slowest pair's frequency, divided by the "
                     "scale)", rtol=1e-4, atol=0)
        expect_close(got64, expected, what, rtol=1e-4, atol=0)


def _reference_grouped(attention: GroupedQueryAttention, n_kv_heads: int) -> GroupedQueryAttention:
    group = attention.n_heads // n_kv_heads
    merged = GroupedQueryAttention(attention.C, attention.n_heads, n_kv_heads, bias=False)
    hs = attention.head_size
    with torch.no_grad():
        merged.q_proj.weight.copy_(attention.q_proj.weight)
        merged.out_proj.weight.copy_(attention.out_proj.weight)
        for name in ("k_proj", "v_proj"):
            heads = getattr(attention, name).weight.view(n_kv_heads, group, hs, attention.C)
            getattr(merged, name).weight.copy_(heads.mean(dim=1).reshape(n_kv_heads * hs, attention.C))
    return merged


@checker("Exercise 15.2 — GQA from a multi-head checkpoint")
def check_group_kv_heads(group_kv_heads) -> None:
    """``group_kv_heads(attention, n_kv_heads)``: a new GroupedQueryAttention whose key/value heads are the
    means of each group's heads (Ainslie et al., 2023), the query and output projections copied."""
    torch.manual_seed(15)
    attention = GroupedQueryAttention(32, 8, bias=False)
    x = torch.randn(2, 6, 32)
    for n_kv_heads in (8, 4, 2, 1):
        got = group_kv_heads(attention, n_kv_heads)
        expect(isinstance(got, GroupedQueryAttention),
               f"return a GroupedQueryAttention, got {type(got).__name__}")
        expect(got is not attention, "return a new module; leave the multi-head one as it is")
        expect(got.n_kv_heads == n_kv_heads, f"asked for {n_kv_heads} key/value heads, got {got.n_kv_heads}")
        expect_shape(got.k_proj.weight, (n_kv_heads * 4, 32), f"k_proj.weight for {n_kv_heads} key/value heads")
        expected = _reference_grouped(attention, n_kv_heads)
        first = attention.k_proj.weight.view(n_kv_heads, 8 // n_kv_heads, 4, 32)[:, 0].reshape(-1, 32)
        if n_kv_heads < 8 and torch.allclose(got.k_proj.weight, first):
            expect(False, "k_proj keeps the first head of each group; the GQA paper averages the group's heads "
                   "(mean pooling), which keeps more of what the heads learned")
        strided = attention.k_proj.weight.view(8 // n_kv_heads, n_kv_heads, 4, 32).mean(0).reshape(-1, 32)
        if 1 < n_kv_heads < 8 and torch.allclose(got.k_proj.weight, strided):
            expect(False, "the groups are heads h, h + n_kv_heads, …; query head h reads key/value head "
                   "h // group, so a group is heads j·group … (j + 1)·group − 1, next to each other")
        expect_close(got.k_proj.weight, expected.k_proj.weight, f"k_proj.weight for {n_kv_heads} key/value heads")
        expect_close(got.v_proj.weight, expected.v_proj.weight, f"v_proj.weight for {n_kv_heads} key/value heads")
        expect_close(got.q_proj.weight, attention.q_proj.weight, "q_proj.weight (copied unchanged)")
        expect_close(got.out_proj.weight, attention.out_proj.weight, "out_proj.weight (copied unchanged)")
        with torch.no_grad():
            expect_close(got(x), expected(x), f"the output with {n_kv_heads} key/value heads")


def _reference_qk_norm(attention, q_norm, k_norm, x, rope, norm_after_rope=False):
    B, T, _ = x.shape
    hs = attention.head_size
    q = attention.q_proj(x).view(B, T, attention.n_heads, hs).transpose(1, 2)  # (B, n_heads, T, hs)
    k = attention.k_proj(x).view(B, T, attention.n_kv_heads, hs).transpose(1, 2)  # (B, n_kv_heads, T, hs)
    v = attention.v_proj(x).view(B, T, attention.n_kv_heads, hs).transpose(1, 2)
    if norm_after_rope:
        q, k = q_norm(apply_rope(q, *rope)), k_norm(apply_rope(k, *rope))
    else:
        q, k = apply_rope(q_norm(q), *rope), apply_rope(k_norm(k), *rope)
    out = grouped_query_attention(q, k, v, is_causal=True)
    return attention.out_proj(out.transpose(1, 2).reshape(B, T, -1))


@checker("Exercise 15.3 — QK-norm")
def check_qk_norm_attention(qk_norm_attention) -> None:
    """``qk_norm_attention(attention, q_norm, k_norm, x, rope)``: causal grouped-query attention whose queries
    and keys are RMS-normalised head by head (over head_size) before RoPE, as in Qwen3."""
    torch.manual_seed(16)
    attention = GroupedQueryAttention(32, 4, 2, bias=False)
    q_norm, k_norm = RMSNorm(8), RMSNorm(8)
    with torch.no_grad():  # trained-looking gains: normalising before or after RoPE then differs
        q_norm.weight.uniform_(0.2, 3.0)
        k_norm.weight.uniform_(0.2, 3.0)
    x = 4 * torch.randn(2, 7, 32)
    rope = rope_angles(torch.arange(7), 8, 10000.0)
    with torch.no_grad():
        got = qk_norm_attention(attention, q_norm, k_norm, x, rope)
        expected = _reference_qk_norm(attention, q_norm, k_norm, x, rope)
        plain = attention(x, rope)
        after = _reference_qk_norm(attention, q_norm, k_norm, x, rope, norm_after_rope=True)
    expect_shape(got, (2, 7, 32), "the output")
    expect(not torch.allclose(got, after, atol=1e-5), "q and k are normalised after RoPE; Qwen3 normalises "
           "them before rotating (the gains are per channel, and RoPE moves values between channels)")
    expect(not torch.allclose(got, plain, atol=1e-4), "the output equals plain attention: normalise q and k "
           "with q_norm and k_norm, head by head")
    expect_close(got, expected, "the output (q_norm and k_norm over each head's head_size channels, before "
                 "RoPE, then causal attention)")
