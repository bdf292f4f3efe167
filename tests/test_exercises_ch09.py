"""Chapter 09's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch09 import (
    check_cross_attention_mask,
    check_decoder_block_forward,
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


def _block(parts, x, memory, tgt_padding, src_padding, self_causal=True, cross_causal=False,
           memory_mask=True, pre_norm=False):
    sublayers = [
        (parts.norm1, lambda h: parts.self_attention(h, causal=self_causal, key_padding_mask=tgt_padding)),
        (parts.norm2, lambda h: parts.cross_attention(h, memory, causal=cross_causal,
                                                      key_padding_mask=src_padding if memory_mask else None)),
        (parts.norm3, parts.feed_forward),
    ]
    for norm, sublayer in sublayers:
        x = x + sublayer(norm(x)) if pre_norm else norm(x + sublayer(x))
    return x


def test_decoder_block_forward_mistakes_are_named():
    check_decoder_block_forward(_block)  # the right answer passes
    with pytest.raises(ExerciseFailed, match="self-attention must be causal"):
        check_decoder_block_forward(lambda *args: _block(*args, self_causal=False))
    with pytest.raises(ExerciseFailed, match="cross-attention must not be causal"):
        check_decoder_block_forward(lambda *args: _block(*args, cross_causal=True))
    with pytest.raises(ExerciseFailed, match="pass memory_key_padding_mask"):
        check_decoder_block_forward(lambda *args: _block(*args, memory_mask=False))
    with pytest.raises(ExerciseFailed, match="that is the pre-norm arrangement"):
        check_decoder_block_forward(lambda *args: _block(*args, pre_norm=True))
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got NoneType"):
        check_decoder_block_forward(lambda *args: None)
