"""Chapter 09's exercises: the reference solutions pass, plausible wrong answers are caught."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch09 import (
    check_attention_entropy,
    check_cross_attention_mask,
    check_scheduled_inputs,
    check_score_entries,
)


def test_cross_attention_mask_checker_rejects_causal_and_inverted_masks():
    with pytest.raises(ExerciseFailed, match="causal"):
        check_cross_attention_mask(lambda pad, T: (~pad)[:, None, :] & torch.ones(T, pad.shape[1], dtype=torch.bool).tril())
    with pytest.raises(ExerciseFailed, match="inverted"):
        check_cross_attention_mask(lambda pad, T: pad[:, None, :].expand(pad.shape[0], T, pad.shape[1]))
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 5\)"):
        check_cross_attention_mask(lambda pad, T: ~pad)


def scheduled_inputs(labels, predictions, p, sos_id, generator, shift=True, own_coins=False):
    coins = torch.rand(labels.shape, generator=None if own_coins else generator) < p  # (B, T)
    mixed = torch.where(coins, predictions, labels)
    if not shift:  # the labels shifted, but the prediction of the same step
        shifted = torch.cat([torch.full_like(labels[:, :1], sos_id), labels[:, :-1]], dim=1)
        return torch.where(coins, predictions, shifted).index_fill(1, torch.tensor([0]), sos_id)
    return torch.cat([torch.full_like(labels[:, :1], sos_id), mixed[:, :-1]], dim=1)


def test_scheduled_sampling_checker(capsys):
    check_scheduled_inputs(scheduled_inputs)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="shifted one place right"):
        check_scheduled_inputs(lambda labels, preds, p, sos, g: labels.clone())
    with pytest.raises(ExerciseFailed, match="shift the predictions right too"):
        check_scheduled_inputs(lambda *a: scheduled_inputs(*a, shift=False))
    with pytest.raises(ExerciseFailed, match="about a quarter"):  # one coin per sequence, not per position
        check_scheduled_inputs(lambda labels, preds, p, sos, g: scheduled_inputs(
            labels, preds, 0.0 if p < 1 else p, sos, g))
    with pytest.raises(ExerciseFailed, match="torch.long"):
        check_scheduled_inputs(lambda *a: scheduled_inputs(*a).float())
    torch.manual_seed(0)
    with pytest.raises(ExerciseFailed, match="the generator you are given"):
        check_scheduled_inputs(lambda labels, preds, p, sos, g: scheduled_inputs(
            labels, preds, p, sos, torch.Generator().manual_seed(5)))


def score_entries(T_enc, n_new, cached, cross=True, steps_from=1):
    total = 0
    for k in range(steps_from, n_new + steps_from):  # positions read at this step
        queries = 1 if cached else k
        total += queries * k + (queries * T_enc if cross else 0)
    return total


def test_score_entries_checker(capsys):
    check_score_entries(score_entries)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="left out cross-attention"):
        check_score_entries(lambda T_enc, n, cached: score_entries(T_enc, n, cached, cross=False))
    with pytest.raises(ExerciseFailed, match="that is the cached count"):
        check_score_entries(lambda T_enc, n, cached: score_entries(T_enc, n, True))
    with pytest.raises(ExerciseFailed, match="off by one step"):
        check_score_entries(lambda T_enc, n, cached: score_entries(T_enc, n, cached, steps_from=2))
    with pytest.raises(ExerciseFailed, match="return an int"):
        check_score_entries(lambda T_enc, n, cached: float(score_entries(T_enc, n, cached)))


def attention_entropy(weights, src_padding, base=None, sign=1.0, naive=False):
    terms = weights * weights.log() if naive else torch.special.xlogy(weights, weights)
    entropy = -sign * terms.sum(dim=-1)
    return entropy / math.log(base) if base else entropy


def test_attention_entropy_checker(capsys):
    check_attention_entropy(attention_entropy)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="contains NaN"):
        check_attention_entropy(lambda w, p: attention_entropy(w, p, naive=True))
    with pytest.raises(ExerciseFailed, match="in bits"):
        check_attention_entropy(lambda w, p: attention_entropy(w, p, base=2))
    with pytest.raises(ExerciseFailed, match="wrong sign"):
        check_attention_entropy(lambda w, p: attention_entropy(w, p, sign=-1.0))
    with pytest.raises(ExerciseFailed, match="has entropy 0"):  # 1 - max weight: a different measure
        check_attention_entropy(lambda w, p: 1 - w.amax(dim=-1) + 1e-2)
    with pytest.raises(ExerciseFailed, match=r"has shape \(2, 4\), expected \(2, 3, 4\)"):
        check_attention_entropy(lambda w, p: attention_entropy(w, p).mean(dim=1))
