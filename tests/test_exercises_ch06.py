"""Chapter 06's checkers: they pass the reference solutions and reject plausible wrong answers."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch06 import check_attention_forward, check_attention_pool, check_cross_attention_weights


def test_cross_attention_checker_rejects_wrong_answers():
    def no_mask(q, k, key_padding_mask):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)

    with pytest.raises(ExerciseFailed, match="padded encoder positions"):
        check_cross_attention_weights(no_mask)

    def inverted_mask(q, k, key_padding_mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return torch.softmax(scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf")), dim=-1)

    with pytest.raises(ExerciseFailed, match="padded encoder positions"):
        check_cross_attention_weights(inverted_mask)

    def unscaled(q, k, key_padding_mask):
        scores = (q @ k.transpose(-2, -1)).masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1)

    with pytest.raises(ExerciseFailed, match="1/√d scale"):
        check_cross_attention_weights(unscaled)


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


def test_attention_forward_mistakes_are_named():
    check_attention_forward(_forward)  # the right answer passes
    with pytest.raises(ExerciseFailed, match="must come from it, not from the query"):
        check_attention_forward(lambda *args: _forward(*args, keys_from_query=True))
    with pytest.raises(ExerciseFailed, match="mask their scores with -inf"):
        check_attention_forward(lambda *args: _forward(*args, mask=False))
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got NoneType"):
        check_attention_forward(lambda *args: None)
