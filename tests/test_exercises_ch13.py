"""Chapter 13's checkers: they reject plausible wrong answers with a message that says what is off."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.attention import causal_mask
from utils.exercises import ExerciseFailed
from utils.exercises.ch13 import (
    check_causal_blockwise_attention,
    check_key_count,
    check_packed_qkv,
    check_scaled_step,
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


def scaled_step_with(*, unscale=True, skip=True, back_off=True, grow=True, reset=True, returns=True):
    """GradScaler's step written out, right by default, with one chosen mistake."""

    def scaled_step(loss, optimizer, state):
        (loss * state["scale"]).backward()
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if unscale:
            for p in params:
                p.grad /= state["scale"]
        finite = all(bool(torch.isfinite(p.grad).all()) for p in params)
        if not finite and skip:
            state["scale"] *= 0.5 if back_off else 1
            state["good_steps"] = 0 if reset else state["good_steps"]
            return False if returns else None
        optimizer.step()
        state["good_steps"] += 1
        if grow and state["good_steps"] == 3:
            state["scale"], state["good_steps"] = 2 * state["scale"], 0
        return True if returns else None

    return scaled_step


def test_scaled_step_checker_compares_with_gradscaler_and_names_each_mistake():
    check_scaled_step(scaled_step_with())
    with pytest.raises(ExerciseFailed, match="1024 times too long"):
        check_scaled_step(scaled_step_with(unscale=False))
    with pytest.raises(ExerciseFailed, match="skip the step and return False"):
        check_scaled_step(scaled_step_with(skip=False))
    with pytest.raises(ExerciseFailed, match=r"step 2 .*should now be 512, yours is 1024"):
        check_scaled_step(scaled_step_with(back_off=False))
    with pytest.raises(ExerciseFailed, match=r"step 5 .*should now be 1024, yours is 512"):
        check_scaled_step(scaled_step_with(grow=False))
    with pytest.raises(ExerciseFailed, match=r"step 3 .*should now be 512, yours is 1024"):
        check_scaled_step(scaled_step_with(reset=False))
    with pytest.raises(ExerciseFailed, match="return True when the optimizer stepped"):
        check_scaled_step(scaled_step_with(returns=False))


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
