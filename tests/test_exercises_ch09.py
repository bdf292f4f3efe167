"""Chapter 09's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch09 import (
    check_cross_attention_mask,
    check_decoder_block_forward,
    check_decoder_parameters,
    check_teacher_forcing,
)


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


def test_parameter_count_that_is_not_a_number_gets_the_checkers_message():
    with pytest.raises(ExerciseFailed, match="as an int; decoder_block_parameters\\(32, 128\\) returned None"):
        check_decoder_parameters(lambda C, d_ff: None)


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
