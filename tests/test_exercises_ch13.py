"""Chapter 13's checkers: they reject plausible wrong answers with a message that says what is off."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.attention import causal_mask
from utils.exercises import ExerciseFailed
from utils.exercises.ch13 import (
    check_causal_blockwise_attention,
    check_int8_quantization,
    check_key_count,
    check_packed_qkv,
)


def blockwise_with(*, align="bottom_right", rescale=True, normalise=True, whole=False, fused=False):
    """A causal online softmax over key blocks, right by default, with one chosen mistake."""

    def causal_blockwise_attention(q, k, v, block_size):
        T_q, T_k = q.shape[-2], k.shape[-2]
        if fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T_q, T_k))
        mask = causal_mask(T_q, T_k, align=align) if align else torch.ones(T_q, T_k, dtype=torch.bool)
        step = T_k if whole else block_size
        m = q.new_full((*q.shape[:-1], 1), -math.inf)
        total, out = q.new_zeros((*q.shape[:-1], 1)), q.new_zeros((*q.shape[:-1], v.shape[-1]))
        for start in range(0, T_k, step):
            s = (q @ k[..., start:start + step, :].mT / math.sqrt(q.shape[-1]))
            s = s.masked_fill(~mask[:, start:start + step], -math.inf)
            new_m = torch.maximum(m, s.amax(-1, keepdim=True))
            factor = torch.exp(m - new_m) if rescale else torch.ones_like(m)
            w = torch.exp(s - new_m)
            total, out, m = total * factor + w.sum(-1, keepdim=True), out * factor + w @ v[..., start:start + step, :], new_m
        return out / total if normalise else out

    return causal_blockwise_attention


def test_blockwise_checker_accepts_the_online_softmax_and_names_each_mistake():
    check_causal_blockwise_attention(blockwise_with())
    with pytest.raises(ExerciseFailed, match="aligned top-left"):
        check_causal_blockwise_attention(blockwise_with(align="top_left"))
    with pytest.raises(ExerciseFailed, match="no causal mask"):
        check_causal_blockwise_attention(blockwise_with(align=None))
    with pytest.raises(ExerciseFailed, match=r"exp\(m_old - m_new\)"):
        check_causal_blockwise_attention(blockwise_with(rescale=False))
    with pytest.raises(ExerciseFailed, match="divide the running output"):
        check_causal_blockwise_attention(blockwise_with(normalise=False))
    with pytest.raises(ExerciseFailed, match=r"a \(6, 6\) matrix was computed at once"):
        check_causal_blockwise_attention(blockwise_with(whole=True))
    with pytest.raises(ExerciseFailed, match="write the loop over key blocks yourself"):
        check_causal_blockwise_attention(blockwise_with(fused=True))


def quantize_with(*, per_row=True, per_column=False, rounding=torch.round, levels=127, clamp=True,
                  guard_zero=True, dtype=torch.int8, keepdim=True, in_place=False):
    """Per-row absmax int8 quantization, right by default, with one chosen mistake."""

    def quantize_int8(weight):
        if per_column:
            absmax = weight.abs().amax(dim=0, keepdim=True)
        elif per_row:
            absmax = weight.abs().amax(dim=1, keepdim=True)
        else:
            absmax = weight.abs().amax()
        scale = absmax / levels
        if guard_zero:
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = rounding(weight / scale)
        if clamp:
            q = q.clamp(-levels, 127)
        if in_place:
            weight.zero_()
        return q.to(dtype), scale if keepdim else scale.flatten()

    return quantize_int8


def int8_linear_with(*, use_scale=True, divide=False, bias=True):
    """x @ (q * scale).T + bias, right by default, with one chosen mistake."""

    def int8_linear(x, q, scale, b):
        weight = q.float() / scale if divide else q.float() * scale if use_scale else q.float()
        return x @ weight.T + b if bias else x @ weight.T

    return int8_linear


RIGHT_LINEAR = int8_linear_with()


def test_int8_checker_accepts_per_row_absmax_rounding_and_names_each_quantize_mistake(capsys):
    check_int8_quantization(quantize_with(), RIGHT_LINEAR)
    assert "✓ Exercise 13.2" in capsys.readouterr().out
    check_int8_quantization(quantize_with(rounding=lambda t: torch.floor(t + 0.5)), RIGHT_LINEAR)  # halves up
    mistakes = [
        (quantize_with(per_row=False), "one scale for the whole"),
        (quantize_with(per_column=True), "one scale per input column"),
        (quantize_with(rounding=torch.trunc), "truncated toward zero"),
        (quantize_with(rounding=lambda t: t), "truncated toward zero"),  # the int8 cast cuts the fraction
        (quantize_with(rounding=torch.floor), "rounded down"),
        (quantize_with(levels=128), "divide by 127"),
        (quantize_with(levels=128, clamp=False), "divide by 127"),
        (quantize_with(guard_zero=False), r"row 3 .*all zeros and its scale is 0"),
        (quantize_with(dtype=torch.float32), "q is torch.float32: store it as torch.int8"),
        (quantize_with(dtype=torch.int32), "q is torch.int32"),
        (quantize_with(keepdim=False), r"scale for the \(6, 10\) weight .*has shape \(6,\), expected \(6, 1\)"),
        (quantize_with(in_place=True), "changed the weight in place"),
    ]
    for quantize, message in mistakes:
        with pytest.raises(ExerciseFailed, match=message):
            check_int8_quantization(quantize, RIGHT_LINEAR)


def test_int8_checker_names_a_nonzero_q_for_a_zero_row_and_a_shared_scale():
    def nonzero_q(weight):
        q, scale = quantize_with()(weight)
        q[3] = 1  # row 3 of the first weight is all zeros
        return q, scale

    with pytest.raises(ExerciseFailed, match="row 3 .*so its q must be 0"):
        check_int8_quantization(nonzero_q, RIGHT_LINEAR)

    def shared_scale(weight):  # one scale, repeated into the (out, 1) shape
        q, scale = quantize_with(per_row=False)(weight)
        return q, scale.expand(weight.shape[0], 1)

    with pytest.raises(ExerciseFailed, match="every row of the .* has the same scale"):
        check_int8_quantization(shared_scale, RIGHT_LINEAR)


def test_int8_checker_names_each_int8_linear_mistake():
    for linear, message in (
        (int8_linear_with(use_scale=False), "the scale is missing"),
        (int8_linear_with(divide=True), "multiply by it to get the weight back"),
        (int8_linear_with(bias=False), "the bias is missing"),
        (lambda x, q, scale, b: (x @ (q.float() * scale).T + b)[..., :5], r"output .*has shape \(2, 5, 5\)"),
        (lambda x, q, scale, b: x @ (q.float() * scale).T + b + 1e-2, "largest difference is 0.01"),
    ):
        with pytest.raises(ExerciseFailed, match=message):
            check_int8_quantization(quantize_with(), linear)


def test_key_count_checker_names_the_off_by_one_and_the_missing_layers():
    def right(prompt, new, layers, cached):
        return layers * (prompt + new - 1) if cached else layers * sum(prompt + i for i in range(new))

    check_key_count(right)
    with pytest.raises(ExerciseFailed, match="one token too many"):
        check_key_count(lambda p, n, layers, cached: layers * (p + n) if cached else right(p, n, layers, cached))
    with pytest.raises(ExerciseFailed, match="in every layer"):
        check_key_count(lambda p, n, layers, cached: right(p, n, 1, cached))


def packed_qkv_with(*, order=("q", "k", "v"), bias=True, modules=False, returns=3):
    def packed_qkv(mha, x):
        if modules:  # three products, through the modules
            return mha.q_proj(x), mha.k_proj(x), mha.v_proj(x)
        projections = [getattr(mha, f"{name}_proj") for name in order]
        weight = torch.cat([p.weight for p in projections])
        packed = F.linear(x, weight, torch.cat([p.bias for p in projections]) if bias else None)
        return packed.split(mha.C, dim=-1)[:returns]

    return packed_qkv


def test_packed_qkv_checker_accepts_one_product_and_names_the_usual_mistakes():
    check_packed_qkv(packed_qkv_with())  # passes
    with pytest.raises(ExerciseFailed, match="F.linear ran 3 times"):
        check_packed_qkv(packed_qkv_with(modules=True))
    with pytest.raises(ExerciseFailed, match="q and k are swapped"):
        check_packed_qkv(packed_qkv_with(order=("k", "q", "v")))
    with pytest.raises(ExerciseFailed, match="biases are missing"):
        check_packed_qkv(packed_qkv_with(bias=False))
    with pytest.raises(ExerciseFailed, match="three tensors"):
        check_packed_qkv(packed_qkv_with(returns=2))
    with pytest.raises(ExerciseFailed, match="three tensors"):
        check_packed_qkv(lambda mha, x: None)
    assert F.linear.__name__ == "linear"  # the checker put PyTorch's own F.linear back each time
