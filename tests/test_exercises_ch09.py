"""Chapter 09's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch09 import check_cross_attention_mask, check_decoder_parameters, check_teacher_forcing


def test_teacher_forcing_checker_rejects_wrong_pairs():
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_teacher_forcing(lambda ids, sos, eos: ([*ids, eos], [sos, *ids]))
    with pytest.raises(ExerciseFailed, match="<EOS>"):
        check_teacher_forcing(lambda ids, sos, eos: ([sos, *ids], [*ids, sos]))
    with pytest.raises(ExerciseFailed, match="both sequences have"):
        check_teacher_forcing(lambda ids, sos, eos: ([sos, *ids[:-1]], ids))  # forgot <EOS>, dropped a token


def test_cross_attention_mask_checker_rejects_causal_and_inverted_masks():
    with pytest.raises(ExerciseFailed, match="causal"):
        check_cross_attention_mask(lambda pad, T: (~pad)[:, None, :] & torch.ones(T, pad.shape[1], dtype=torch.bool).tril())
    with pytest.raises(ExerciseFailed, match="inverted"):
        check_cross_attention_mask(lambda pad, T: pad[:, None, :].expand(pad.shape[0], T, pad.shape[1]))
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 5\)"):
        check_cross_attention_mask(lambda pad, T: ~pad)


def test_decoder_parameters_checker_rejects_an_encoder_count_and_a_missing_bias():
    encoder_count = lambda C, d_ff: 4 * (C * C + C) + 2 * C * d_ff + d_ff + C + 4 * C
    with pytest.raises(ExerciseFailed, match="cross-attention"):
        check_decoder_parameters(encoder_count)
    with pytest.raises(ExerciseFailed, match="you counted"):
        check_decoder_parameters(lambda C, d_ff: 8 * C * C + 2 * C * d_ff + d_ff + C + 6 * C)
