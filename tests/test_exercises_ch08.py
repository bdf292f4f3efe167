"""Chapter 08's exercise checkers: the reference solutions pass, plausible mistakes are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch08 import (
    check_length_batches,
    check_masked_mean,
    check_padding_waste,
    check_pre_norm_block,
)


def length_batches(lengths, batch_size, sort=True):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if sort else list(range(len(lengths)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def test_length_batches_checker(capsys):
    check_length_batches(length_batches)
    check_length_batches(lambda lengths, b: length_batches(lengths, b)[::-1])  # any batch order is fine
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(ExerciseFailed, match="sorted by length first they need only"):
        check_length_batches(lambda lengths, b: length_batches(lengths, b, sort=False))
    with pytest.raises(ExerciseFailed, match="hold the lengths themselves"):
        check_length_batches(lambda lengths, b: [[lengths[i] for i in batch] for batch in length_batches(lengths, b)])
    with pytest.raises(ExerciseFailed, match="exactly one batch: missing"):
        check_length_batches(lambda lengths, b: length_batches(lengths, b)[:-1])
    with pytest.raises(ExerciseFailed, match="batches hold 1 to"):
        check_length_batches(lambda lengths, b: [sorted(range(len(lengths)), key=lambda i: lengths[i])])
    with pytest.raises(ExerciseFailed, match="a list of batches"):
        check_length_batches(lambda lengths, b: torch.tensor(length_batches(lengths, len(lengths))))


def padding_waste(lengths, attention="pairs"):
    B, T = len(lengths), max(lengths)
    positions = 1 - sum(lengths) / (B * T)
    useful = {"pairs": sum(L * L for L in lengths), "either": sum(T * T - (T - L) ** 2 for L in lengths),
              "linear": sum(lengths) * T}[attention]
    return positions, 1 - useful / (B * T * T)


def test_padding_waste_checker(capsys):
    check_padding_waste(padding_waste)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="T × T scores per sentence"):
        check_padding_waste(lambda lengths: padding_waste(lengths, attention="linear"))
    with pytest.raises(ExerciseFailed, match="its query OR its key"):
        check_padding_waste(lambda lengths: padding_waste(lengths, attention="either"))
    with pytest.raises(ExerciseFailed, match="T the longest length"):  # the mean length instead of the longest
        check_padding_waste(lambda lengths: (1 - sum(lengths) / len(lengths) / max(lengths) / 2, 0.5))
    with pytest.raises(ExerciseFailed, match="return a pair"):
        check_padding_waste(lambda lengths: padding_waste(lengths)[0])


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
