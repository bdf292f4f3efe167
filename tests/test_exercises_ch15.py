"""Chapter 15's checkers: they accept the right answers and reject plausible wrong ones with a message
that says what is off."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch15 import check_group_kv_heads, check_ntk_frequencies, check_qk_norm_attention
from utils.modern import GroupedQueryAttention, apply_rope, grouped_query_attention


def ntk(head_size, theta, scale):
    return (theta * scale ** (head_size / (head_size - 2))) ** (-torch.arange(0, head_size, 2) / head_size)


def test_ntk_checker_accepts_the_formula_and_names_the_two_usual_slips(capsys):
    check_ntk_frequencies(ntk)
    assert "✓ Exercise 15.1" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="position interpolation"):
        check_ntk_frequencies(lambda d, theta, s: theta ** (-torch.arange(0, d, 2) / d) / s)
    with pytest.raises(ExerciseFailed, match="multiplies theta by the scale"):
        check_ntk_frequencies(lambda d, theta, s: (theta * s) ** (-torch.arange(0, d, 2) / d))
    with pytest.raises(ExerciseFailed, match=r"shape \(8,\), expected \(4,\)"):
        check_ntk_frequencies(lambda d, theta, s: ntk(2 * d, theta, s))


def group_kv_heads_with(pool="mean", strided=False):
    def group_kv_heads(attention, n_kv_heads):
        group, hs, C = attention.n_heads // n_kv_heads, attention.head_size, attention.C
        new = GroupedQueryAttention(C, attention.n_heads, n_kv_heads)
        with torch.no_grad():
            new.q_proj.weight.copy_(attention.q_proj.weight)
            new.out_proj.weight.copy_(attention.out_proj.weight)
            for name in ("k_proj", "v_proj"):
                w = getattr(attention, name).weight
                heads = w.view(group, n_kv_heads, hs, C).transpose(0, 1) if strided else w.view(n_kv_heads, group,
                                                                                                 hs, C)
                merged = heads.mean(1) if pool == "mean" else heads[:, 0]
                getattr(new, name).weight.copy_(merged.reshape(n_kv_heads * hs, C))
        return new

    return group_kv_heads


def test_group_kv_heads_checker_accepts_mean_pooling_and_names_first_head_and_strided_groups(capsys):
    check_group_kv_heads(group_kv_heads_with())
    assert "✓ Exercise 15.2" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="first head of each group"):
        check_group_kv_heads(group_kv_heads_with(pool="first"))
    with pytest.raises(ExerciseFailed, match="next to each other"):
        check_group_kv_heads(group_kv_heads_with(strided=True))
    with pytest.raises(ExerciseFailed, match="a new module"):
        check_group_kv_heads(lambda attention, n: attention)
    with pytest.raises(ExerciseFailed, match="return a GroupedQueryAttention"):
        check_group_kv_heads(lambda attention, n: attention.k_proj)


def qk_norm_with(order="before", skip=False):
    def qk_norm_attention(attention, q_norm, k_norm, x, rope):
        B, T, _ = x.shape
        hs = attention.head_size
        q = attention.q_proj(x).view(B, T, attention.n_heads, hs).transpose(1, 2)
        k = attention.k_proj(x).view(B, T, attention.n_kv_heads, hs).transpose(1, 2)
        v = attention.v_proj(x).view(B, T, attention.n_kv_heads, hs).transpose(1, 2)
        if skip:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        elif order == "before":
            q, k = apply_rope(q_norm(q), *rope), apply_rope(k_norm(k), *rope)
        else:
            q, k = q_norm(apply_rope(q, *rope)), k_norm(apply_rope(k, *rope))
        out = grouped_query_attention(q, k, v, is_causal=True)
        return attention.out_proj(out.transpose(1, 2).reshape(B, T, -1))

    return qk_norm_attention


def test_qk_norm_checker_accepts_qwen3s_order_and_names_the_wrong_order_and_no_norm(capsys):
    check_qk_norm_attention(qk_norm_with())
    assert "✓ Exercise 15.3" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="after RoPE"):
        check_qk_norm_attention(qk_norm_with(order="after"))
    with pytest.raises(ExerciseFailed, match="equals plain attention"):
        check_qk_norm_attention(qk_norm_with(skip=True))

    def not_causal(attention, q_norm, k_norm, x, rope):
        B, T, _ = x.shape
        q = apply_rope(q_norm(attention.q_proj(x).view(B, T, 4, 8)).transpose(1, 2), *rope)
        k = apply_rope(k_norm(attention.k_proj(x).view(B, T, 2, 8)).transpose(1, 2), *rope)
        v = attention.v_proj(x).view(B, T, 2, 8).transpose(1, 2)
        return attention.out_proj(grouped_query_attention(q, k, v).transpose(1, 2).reshape(B, T, -1))

    with pytest.raises(ExerciseFailed, match="the output .* differs"):
        check_qk_norm_attention(not_causal)


def test_unstarted_exercises_are_reported_not_failed(capsys):
    def not_started(*args):
        raise NotImplementedError

    for check in (check_ntk_frequencies, check_group_kv_heads, check_qk_norm_attention):
        check(not_started)
        assert "not attempted yet" in capsys.readouterr().out
