"""Chapter 08's exercise checkers: the reference solutions pass, plausible mistakes are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch08 import (
    check_encoder_block_parameters,
    check_masked_mean,
    check_padding_mask,
    check_pre_norm_block,
)


def test_block_parameter_count_mistakes_get_hints():
    attention = lambda C: 4 * (C * C + C)
    feed_forward = lambda C, d_ff: 2 * C * d_ff + d_ff + C
    with pytest.raises(ExerciseFailed, match="left out the two LayerNorms"):
        check_encoder_block_parameters(lambda C, d_ff: attention(C) + feed_forward(C, d_ff))
    with pytest.raises(ExerciseFailed, match="left out the biases"):
        check_encoder_block_parameters(lambda C, d_ff: 4 * C * C + 2 * C * d_ff + 4 * C)
    with pytest.raises(ExerciseFailed, match="for C=16, d_ff=64 you gave 3,072; it is 3,280"):
        check_encoder_block_parameters(lambda C, d_ff: 4 * C * C + 2 * C * d_ff)


def test_padding_mask_mistakes_are_named():
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_padding_mask(lambda lengths, T: torch.arange(T)[None, :] < lengths[:, None])
    with pytest.raises(ExerciseFailed, match="bool"):
        check_padding_mask(lambda lengths, T: (torch.arange(T)[None, :] >= lengths[:, None]).int())
    with pytest.raises(ExerciseFailed, match="expected"):
        check_padding_mask(lambda lengths, T: torch.arange(T)[None, :] > lengths[:, None])  # off by one


def test_masked_mean_mistakes_are_named():
    with pytest.raises(ExerciseFailed, match="padding positions must not count"):
        check_masked_mean(lambda x, mask: x.mean(dim=1))

    def divides_by_T(x, mask):
        return (x * (~mask).unsqueeze(-1)).sum(dim=1) / x.shape[1]

    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_masked_mean(divides_by_T)


def _pre_norm(block, x, key_padding_mask, norms=None, mask=True):
    first, second = norms or (block.attention_residual.norm, block.feed_forward_residual.norm)
    x = x + block.self_attention(first(x), key_padding_mask=key_padding_mask if mask else None)
    return x + block.feed_forward(second(x))


def test_pre_norm_block_mistakes_are_named():
    with pytest.raises(ExerciseFailed, match="the block's own post-norm forward"):
        check_pre_norm_block(lambda block, x, mask: block(x, key_padding_mask=mask))
    with pytest.raises(ExerciseFailed, match="padding mask is not used"):
        check_pre_norm_block(lambda block, x, mask: _pre_norm(block, x, mask, mask=False))

    def swapped_norms(block, x, mask):
        norms = (block.feed_forward_residual.norm, block.attention_residual.norm)
        return _pre_norm(block, x, mask, norms=norms)

    with pytest.raises(ExerciseFailed, match="did you use norm1 before attention"):
        check_pre_norm_block(swapped_norms)
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got NoneType"):
        check_pre_norm_block(lambda block, x, mask: None)
    check_pre_norm_block(_pre_norm)  # and the right answer passes
