"""Chapter 06's checkers: they pass right answers and name plausible mistakes."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch06 import check_attention_pool, check_cached_cross_attention, check_empty_source_output


def precompute_memory(mha, memory):
    B, T, C = memory.shape

    def heads(t):
        return t.view(B, T, mha.n_heads, mha.head_size).transpose(1, 2)

    return heads(mha.k_proj(memory)), heads(mha.v_proj(memory))


def cross_attend_cached(mha, x, k, v, key_padding_mask, use_mask=True, out_proj=True):
    B, T, C = x.shape
    q = mha.q_proj(x).view(B, T, mha.n_heads, mha.head_size).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(mha.head_size)
    if use_mask:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    return mha.out_proj(out) if out_proj else out


def test_cached_cross_attention_checker(capsys):
    check_cached_cross_attention(precompute_memory, cross_attend_cached)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="ignores key_padding_mask"):
        check_cached_cross_attention(precompute_memory, lambda *a: cross_attend_cached(*a, use_mask=False))
    with pytest.raises(ExerciseFailed, match="stops before out_proj"):
        check_cached_cross_attention(precompute_memory, lambda *a: cross_attend_cached(*a, out_proj=False))

    memory_seen = {}

    def recomputing(mha, memory):  # keeps the memory and projects it again at every step
        memory_seen["memory"] = memory
        return precompute_memory(mha, memory)

    def step_recomputes(mha, x, k, v, key_padding_mask):
        k, v = precompute_memory(mha, memory_seen["memory"])
        return cross_attend_cached(mha, x, k, v, key_padding_mask)

    with pytest.raises(ExerciseFailed, match="made once"):
        check_cached_cross_attention(recomputing, step_recomputes)
    with pytest.raises(ExerciseFailed, match=r"shape \(3, 7, 16\), expected \(3, 4, 7, 4\)"):
        check_cached_cross_attention(lambda mha, m: (mha.k_proj(m), mha.v_proj(m)), cross_attend_cached)
    with pytest.raises(ExerciseFailed, match="tuple"):
        check_cached_cross_attention(lambda mha, m: precompute_memory(mha, m)[0], cross_attend_cached)


def test_attention_pool_checker_rejects_wrong_answers():
    def reads_padding(memory, query, key_padding_mask):
        weights = torch.softmax(memory @ query / math.sqrt(memory.shape[-1]), dim=-1)
        return (weights[:, :, None] * memory).sum(1)

    with pytest.raises(ExerciseFailed, match="padding must not be read"):
        check_attention_pool(reads_padding)

    def plain_mean(memory, query, key_padding_mask):
        keep = (~key_padding_mask)[:, :, None].float()
        return (memory * keep).sum(1) / keep.sum(1)

    with pytest.raises(ExerciseFailed, match="pooled vectors"):
        check_attention_pool(plain_mean)


def _forward(mha, query, key_value=None, key_padding_mask=None, *, keys_from_query=False, mask=True):
    source = query if key_value is None or keys_from_query else key_value
    B, T_q, C = query.shape
    T_k = source.shape[1]

    def heads(t, T):
        return t.view(B, T, mha.n_heads, mha.head_size).transpose(1, 2)

    q, k, v = heads(mha.q_proj(query), T_q), heads(mha.k_proj(source), T_k), heads(mha.v_proj(source), T_k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(mha.head_size)
    if key_padding_mask is not None and mask:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T_q, C)
    return mha.out_proj(out)




def test_empty_source_checker(capsys):
    check_empty_source_output(lambda mha, x: mha.out_proj.bias.expand_as(x))
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="NaN"):
        check_empty_source_output(lambda mha, x: torch.full_like(x, float("nan")))
    with pytest.raises(ExerciseFailed, match="maps 0 to its bias"):
        check_empty_source_output(lambda mha, x: torch.zeros_like(x))
    with pytest.raises(ExerciseFailed, match="self-attention of x"):
        check_empty_source_output(lambda mha, x: mha(x, x))
    with pytest.raises(ExerciseFailed, match="differs from the expected"):  # the mean of the values, as if unmasked
        check_empty_source_output(lambda mha, x: mha.out_proj(mha.v_proj(x).mean(1, keepdim=True).expand_as(x)))
