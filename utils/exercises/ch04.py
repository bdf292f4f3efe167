"""Checkers for chapter 04's exercises (self-attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.exercises import checker, expect, expect_close, expect_number, expect_shape


@checker("Exercise 4.1 — attention from the formula")
def check_scaled_dot_product(scaled_dot_product) -> None:
    """``scaled_dot_product(q, k, v)`` returns ``(softmax(q kᵀ / √d_k) v, weights)``."""
    generator = torch.Generator().manual_seed(4)
    for shape_q, shape_kv, d_v in (((2, 3, 5, 8), (2, 3, 7, 8), 6), ((4, 16), (9, 16), 3)):
        q = torch.randn(shape_q, generator=generator)
        k = torch.randn(shape_kv, generator=generator)
        v = torch.randn((*shape_kv[:-1], d_v), generator=generator)
        result = scaled_dot_product(q, k, v)
        expect(isinstance(result, tuple) and len(result) == 2,
               f"return the pair (output, weights), got {type(result).__name__}")
        out, weights = result
        T_q, T_k = shape_q[-2], shape_kv[-2]
        expect_shape(weights, (*shape_q[:-2], T_q, T_k), f"weights for q {shape_q} and k {shape_kv}")
        expect_close(weights.sum(-1), torch.ones(*shape_q[:-2], T_q),
                     "the sum of each query's weights (softmax over the keys, the last dimension)")
        unscaled = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        expect(not torch.allclose(weights, unscaled, atol=1e-4),
               "your weights are softmax(q kᵀ) without the scale: divide the scores by √d_k first")
        over_d_k = torch.softmax(q @ k.transpose(-2, -1) / shape_q[-1], dim=-1)
        expect(not torch.allclose(weights, over_d_k, atol=1e-4),
               f"your scores are divided by d_k = {shape_q[-1]}; divide by its square root, √d_k")
        expect_close(weights, torch.softmax(q @ k.transpose(-2, -1) / shape_q[-1] ** 0.5, dim=-1), "weights")
        expect_close(out, F.scaled_dot_product_attention(q, k, v), f"the output for q {shape_q}, k {shape_kv}")


@checker("Exercise 4.2 — splitting and merging heads")
def check_split_heads(split_heads, merge_heads) -> None:
    """``split_heads(x, n_heads)``: (B, T, C) -> (B, n_heads, T, head_size); ``merge_heads`` inverts it."""
    B, T, C, n_heads = 2, 3, 8, 4
    head_size = C // n_heads
    # Channel c of token t in sequence b holds the number 100 b + 10 t + c: every entry is recognisable.
    x = (100 * torch.arange(B)[:, None, None] + 10 * torch.arange(T)[None, :, None]
         + torch.arange(C)[None, None, :]).float()
    heads = split_heads(x, n_heads)
    expect_shape(heads, (B, n_heads, T, head_size), f"split_heads of a {(B, T, C)} tensor with n_heads={n_heads}")
    for b, h, t in ((0, 1, 2), (1, 3, 0), (1, 0, 1)):
        expected = x[b, t, h * head_size : (h + 1) * head_size]
        expect(torch.equal(heads[b, h, t], expected),
               f"head {h}, token {t} of sequence {b} should hold channels {h * head_size}..{(h + 1) * head_size - 1}"
               f" of that token, {expected.tolist()}, but holds {heads[b, h, t].tolist()}"
               " (a plain view(B, n_heads, T, head_size) mixes tokens: split C first, then transpose)")
    merged = merge_heads(heads)
    expect_shape(merged, (B, T, C), "merge_heads(split_heads(x))")
    expect(torch.equal(merged, x), "merge_heads(split_heads(x)) should give x back exactly")
    other = torch.randn(3, 5, 12)
    expect(torch.equal(merge_heads(split_heads(other, 3)), other), "the round trip fails for B=3, T=5, C=12, n_heads=3")


@checker("Exercise 4.3 — counting parameters")
def check_parameter_count(attention_parameters) -> None:
    """``attention_parameters(C, n_heads, bias)``: the parameters of multi-head attention."""
    from utils.attention import MultiHeadAttention

    for C, n_heads in ((32, 4), (64, 1), (64, 8), (768, 12)):
        for bias in (True, False):
            module = MultiHeadAttention(C, n_heads, bias=bias)
            expected = sum(p.numel() for p in module.parameters())
            value = expect_number(attention_parameters(C, n_heads, bias), "attention_parameters")
            expect(value == expected,
                   f"for C={C}, n_heads={n_heads}, bias={bias} you gave {value:g}, but the layer has {expected}: "
                   f"four C×C maps (queries, keys, values, output){' plus their biases' if bias else ''}")


@checker("Exercise 4.4 — the forward pass of multi-head attention")
def check_multi_head_forward(multi_head_forward) -> None:
    """``multi_head_forward(module, x)`` equals ``utils.attention.MultiHeadAttention``'s forward."""
    from utils.attention import MultiHeadAttention

    generator = torch.Generator().manual_seed(44)
    for B, T, C, n_heads in ((2, 5, 12, 3), (1, 7, 16, 4), (3, 4, 8, 1)):
        torch.manual_seed(4 + n_heads)
        module = MultiHeadAttention(C, n_heads).eval()
        x = torch.randn(B, T, C, generator=generator)
        with torch.no_grad():
            yours = multi_head_forward(module, x)
            expected = module(x)
        expect_shape(yours, (B, T, C), f"your output for x of shape {(B, T, C)}, n_heads={n_heads}")
        with torch.no_grad():
            q = module.q_proj(x).view(B, T, n_heads, C // n_heads).transpose(1, 2)
            k = module.k_proj(x).view(B, T, n_heads, C // n_heads).transpose(1, 2)
            v = module.v_proj(x).view(B, T, n_heads, C // n_heads).transpose(1, 2)
            heads = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        expect(not torch.allclose(yours, heads, atol=1e-5),
               "your output is the heads side by side without the output projection: apply module.out_proj")
        if n_heads > 1:
            with torch.no_grad():  # the classic slip: a plain view that mixes tokens into heads
                q, k, v = (proj(x).reshape(B, n_heads, T, C // n_heads)
                           for proj in (module.q_proj, module.k_proj, module.v_proj))
                plain = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
                plain = module.out_proj(plain)
            expect(not torch.allclose(yours, plain, atol=1e-5),
                   "your heads mix tokens: a plain view(B, n_heads, T, head_size) cuts the memory wrongly; "
                   "view(B, T, n_heads, head_size) and then transpose(1, 2)")
        expect_close(yours, expected, f"your output for x of shape {(B, T, C)}, n_heads={n_heads}")
