"""Chapter 13's checkers: they reject plausible wrong answers with a message that says what is off."""

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch13 import check_bottom_right_mask, check_cached_attention, check_key_count, check_packed_qkv


def test_bottom_right_mask_checker_rejects_the_top_left_and_inverted_masks():
    with pytest.raises(ExerciseFailed, match="aligned top-left"):
        check_bottom_right_mask(lambda T_q, T_k: torch.ones(T_q, T_k, dtype=torch.bool).tril())
    with pytest.raises(ExerciseFailed, match="inverted"):
        check_bottom_right_mask(lambda T_q, T_k: ~torch.ones(T_q, T_k, dtype=torch.bool).tril(T_k - T_q))
    with pytest.raises(ExerciseFailed, match="bool"):
        check_bottom_right_mask(lambda T_q, T_k: torch.ones(T_q, T_k).tril(T_k - T_q))


def heads(z, mha):
    B, T, C = z.shape
    return z.view(B, T, mha.n_heads, C // mha.n_heads).transpose(1, 2)


def cached_attention_with(*, keep_cache=True, is_causal_flag=False):
    def cached_attention(mha, x_new, cache):
        B, T_new, C = x_new.shape
        q, k, v = (heads(p(x_new), mha) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
        if keep_cache and "k" in cache:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        cache["k"], cache["v"] = k, v
        if is_causal_flag:  # top-left: wrong as soon as T_new > 1 after a cache
            out = F.scaled_dot_product_attention(q, k, v, is_causal=T_new > 1)
        else:
            T_k = k.shape[2]
            mask = torch.arange(T_k)[None, :] <= torch.arange(T_new)[:, None] + T_k - T_new
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return mha.out_proj(out.transpose(1, 2).reshape(B, T_new, C))

    return cached_attention


def test_cached_attention_checker_accepts_a_right_answer_and_rejects_wrong_ones():
    check_cached_attention(cached_attention_with())
    with pytest.raises(ExerciseFailed, match=r'cache\["k"\] after 4 tokens'):
        check_cached_attention(cached_attention_with(keep_cache=False))  # forgets the past
    with pytest.raises(ExerciseFailed, match="bottom-right"):
        check_cached_attention(cached_attention_with(is_causal_flag=True))
    with pytest.raises(ExerciseFailed, match='under "k" and "v"'):
        check_cached_attention(lambda mha, x_new, cache: mha(x_new, causal=True))


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
