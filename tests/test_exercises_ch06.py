"""Chapter 06's checkers: they pass the reference solutions and reject plausible wrong answers."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch06 import check_attention_pool, check_cross_attention_weights


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
