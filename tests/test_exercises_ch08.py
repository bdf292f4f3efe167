"""Chapter 08's exercise checkers: the reference solutions pass, plausible mistakes are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch08 import (
    check_batch_invariance_gap,
    check_length_batches,
    check_masked_mean,
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


def batch_invariance_gap(encoder, sentences, use_mask=True, all_positions=False):
    longest, C = max(len(s) for s in sentences), sentences[0].shape[-1]
    batch = torch.zeros(len(sentences), longest, C)
    padding = torch.ones(len(sentences), longest, dtype=torch.bool)
    for b, s in enumerate(sentences):
        batch[b, : len(s)], padding[b, : len(s)] = s, False
    batched = encoder(batch, key_padding_mask=padding if use_mask else None)
    gaps = []
    for b, s in enumerate(sentences):
        alone = encoder(s[None])[0]
        if all_positions:  # compares the padded rows too
            alone = torch.cat([alone, torch.zeros(longest - len(s), C)])
            gaps.append((alone - batched[b]).abs().max().item())
        else:
            gaps.append((alone - batched[b, : len(s)]).abs().max().item())
    return max(gaps)


def test_batch_invariance_checker(capsys):
    check_batch_invariance_gap(batch_invariance_gap)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="Do you pass key_padding_mask"):
        check_batch_invariance_gap(lambda e, s: batch_invariance_gap(e, s, use_mask=False))
    with pytest.raises(ExerciseFailed, match="compare only the real positions"):
        check_batch_invariance_gap(lambda e, s: batch_invariance_gap(e, s, all_positions=True))
    with pytest.raises(ExerciseFailed, match="encode each sentence alone AND"):
        check_batch_invariance_gap(lambda e, s: 0.0)
    with pytest.raises(ExerciseFailed, match="return one number"):
        check_batch_invariance_gap(lambda e, s: torch.tensor(batch_invariance_gap(e, s)))
    with pytest.raises(ExerciseFailed, match="largest absolute"):  # the mean difference, not the largest
        check_batch_invariance_gap(lambda e, s: batch_invariance_gap(e, s) / 2)


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
