"""Chapter 12's checkers reject plausible wrong answers with a helpful message."""

import math

import pytest

from utils.exercises import ExerciseFailed
from utils.exercises.ch12 import check_beam_score, check_brevity_penalty, check_bucketing
from utils.translation import batch_positions, bucket_batches


def in_given_order(lengths, max_tokens):
    """Batches within budget, but unsorted: the pairs as they come."""
    batches = [[]]
    for i in range(len(lengths)):
        if batches[-1] and batch_positions(lengths, batches[-1] + [i]) > max_tokens:
            batches.append([])
        batches[-1].append(i)
    return batches


def test_bucketing_checker():
    check_bucketing(lambda lengths, max_tokens: bucket_batches(lengths, max_tokens))
    with pytest.raises(ExerciseFailed, match="exactly one batch"):
        check_bucketing(lambda lengths, max_tokens: bucket_batches(lengths, max_tokens)[:-1])
    with pytest.raises(ExerciseFailed, match="more than max_tokens"):
        check_bucketing(lambda lengths, max_tokens: [list(range(len(lengths)))])
    with pytest.raises(ExerciseFailed, match="sort the pairs by length"):  # small enough, but unsorted
        check_bucketing(in_given_order)


def test_brevity_penalty_checker():
    check_brevity_penalty(lambda c, r: 1.0 if c >= r else (math.exp(1 - r / c) if c else 0.0))
    with pytest.raises(ExerciseFailed, match="not penalised"):
        check_brevity_penalty(lambda c, r: math.exp(1 - r / c) if c else 0.0)
    with pytest.raises(ExerciseFailed, match="guard the division"):
        check_brevity_penalty(lambda c, r: 1.0 if c >= r else math.exp(1 - r / max(c, 1)))


def test_beam_score_checker():
    check_beam_score(lambda lp, alpha: lp.sum() / ((5 + len(lp)) / 6) ** alpha)
    with pytest.raises(ExerciseFailed, match="divided by the length"):
        check_beam_score(lambda lp, alpha: lp.sum() / len(lp) ** (alpha > 0))
    with pytest.raises(ExerciseFailed, match="differs"):
        check_beam_score(lambda lp, alpha: lp.sum() / (5 + len(lp)) ** alpha)
