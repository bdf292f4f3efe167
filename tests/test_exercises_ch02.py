"""Chapter 02's checkers: they pass the reference solutions and explain plausible mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch02 import check_bigram_counts, check_embed_with_one_hot, check_table_loss


def test_check_embed_with_one_hot_explains_mistakes():
    with pytest.raises(ExerciseFailed, match="num_classes=V"):
        check_embed_with_one_hot(lambda ids, weight: F.one_hot(ids).float() @ weight)
    with pytest.raises(ExerciseFailed, match="dtype torch.int64"):
        check_embed_with_one_hot(lambda ids, weight: F.one_hot(ids, weight.shape[0]) @ weight.long())
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 5, 11\), expected \(2, 5, 3\)"):
        check_embed_with_one_hot(lambda ids, weight: F.one_hot(ids, weight.shape[0]).float())
    with pytest.raises(ExerciseFailed, match="largest difference"):  # off by one row
        check_embed_with_one_hot(lambda ids, weight: F.one_hot(ids + 1, weight.shape[0]).float() @ weight)


def test_check_bigram_counts_explains_mistakes():
    def reference(ids, V):
        return torch.zeros(V, V).index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)

    check_bigram_counts(reference)
    with pytest.raises(ExerciseFailed, match="swapped"):
        check_bigram_counts(lambda ids, V: reference(ids, V).T)
    with pytest.raises(ExerciseFailed, match="neighbouring pairs"):  # counts the wrap-around pair too
        check_bigram_counts(lambda ids, V: reference(torch.cat([ids, ids[:1]]), V))
    with pytest.raises(ExerciseFailed, match="neighbouring pairs"):  # index_put_ without accumulate=True
        check_bigram_counts(lambda ids, V: torch.zeros(V, V).index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1)))
    with pytest.raises(ExerciseFailed, match="differs from the expected values"):  # pairs each token with itself
        check_bigram_counts(lambda ids, V: torch.zeros(V, V).index_put_((ids[1:], ids[1:]), torch.ones(len(ids) - 1),
                                                                       accumulate=True))
    with pytest.raises(ExerciseFailed, match=r"shape \(4, 4\), expected \(5, 5\)"):
        check_bigram_counts(lambda ids, V: reference(ids, V)[:4, :4])


def test_check_table_loss_explains_mistakes():
    def reference(probs, ids):
        return -torch.log(probs[ids[:-1], ids[1:]]).mean()

    check_table_loss(reference)
    with pytest.raises(ExerciseFailed, match="negative"):
        check_table_loss(lambda probs, ids: -reference(probs, ids))
    with pytest.raises(ExerciseFailed, match="bits"):
        check_table_loss(lambda probs, ids: reference(probs, ids) / math.log(2))
    with pytest.raises(ExerciseFailed, match=r"probs\[current, next\]"):
        check_table_loss(lambda probs, ids: -torch.log(probs[ids[1:], ids[:-1]]).mean())
    with pytest.raises(ExerciseFailed, match="expected"):  # summed instead of averaged
        check_table_loss(lambda probs, ids: -torch.log(probs[ids[:-1], ids[1:]]).sum())
