"""Checkers for chapter 01's exercises (tokenization)."""

from __future__ import annotations

from collections import Counter

import torch

from utils.exercises import checker, expect, expect_shape


def _reference_pair_counts(ids: list[int]) -> Counter:
    return Counter(zip(ids, ids[1:]))


@checker("Exercise 1.1 — counting pairs")
def check_pair_counts(pair_counts) -> None:
    """``pair_counts(ids)`` returns {(a, b): how often b directly follows a in ids}."""
    cases = [
        [1, 2, 3, 1, 2],
        [7, 7, 7],  # overlapping pairs count every time: (7, 7) twice
        [4],
        [],
        list(b"hello hello"),
    ]
    for ids in cases:
        counts = pair_counts(list(ids))
        expect(isinstance(counts, dict), f"return a dict (or Counter) of pair -> count, got {type(counts).__name__}")
        counts = {tuple(pair): n for pair, n in counts.items() if n}
        expected = dict(_reference_pair_counts(ids))
        if len(ids) < 2:
            expect(counts == {}, f"pair_counts({ids}) should be empty (fewer than two ids), got {counts}")
            continue
        for pair, n in expected.items():
            expect(pair in counts, f"pair_counts({ids}) is missing the pair {pair}, which occurs {n} time(s)")
            expect(counts[pair] == n, f"pair_counts({ids}) gives {pair} a count of {counts[pair]}, expected {n}")
        extra = sorted(set(counts) - set(expected))
        expect(not extra, f"pair_counts({ids}) lists pairs that are not adjacent in it: {extra}")


@checker("Exercise 1.2 — merging a pair")
def check_merge(merge) -> None:
    """``merge(ids, pair, new_id)`` replaces each occurrence of pair, left to right, by new_id."""
    cases = [
        (([1, 2, 3, 1, 2], (1, 2), 9), [9, 3, 9]),
        (([1, 2, 3], (2, 1), 9), [1, 2, 3]),
        (([5, 5, 5], (5, 5), 9), [9, 5]),
        (([5, 5, 5, 5], (5, 5), 9), [9, 9]),
        (([2, 1, 2, 1, 2], (1, 2), 9), [2, 9, 9]),
        (([], (1, 2), 9), []),
        (([1], (1, 2), 9), [1]),
    ]
    for (ids, pair, new_id), expected in cases:
        original = list(ids)
        result = merge(list(ids), pair, new_id)
        expect(isinstance(result, list), f"return a list of ids, got {type(result).__name__}")
        hint = ""
        if pair[0] == pair[1]:
            hint = " (an occurrence that overlaps one already merged is left alone: scan left to right and skip both ids)"
        expect(result == expected, f"merge({original}, {pair}, {new_id}) gave {result}, expected {expected}{hint}")


@checker("Exercise 1.3 — padding a batch")
def check_pad_batch(pad_batch) -> None:
    """``pad_batch(sequences, pad_id)`` -> (ids (B, T) long, padding_mask (B, T) bool, True = padding)."""
    sequences = [[5, 6, 7], [8], [9, 10, 11, 12], []]
    pad_id = 0
    result = pad_batch([list(s) for s in sequences], pad_id)
    expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (ids, padding_mask)")
    ids, mask = result
    expect_shape(ids, (4, 4), "ids")
    expect(ids.dtype == torch.long, f"ids should be torch.long (embedding tables need integer ids), got {ids.dtype}")
    expect_shape(mask, (4, 4), "padding_mask")
    expect(mask.dtype == torch.bool, f"padding_mask should be a bool tensor, got {mask.dtype}")
    for b, sequence in enumerate(sequences):
        row = ids[b].tolist()
        expected = sequence + [pad_id] * (4 - len(sequence))
        expect(row == expected, f"row {b} of ids is {row}, expected {expected} (the sequence, then padding on the right)")
        expected_mask = [False] * len(sequence) + [True] * (4 - len(sequence))
        expect(mask[b].tolist() == expected_mask,
               f"row {b} of padding_mask is {mask[b].tolist()}, expected {expected_mask} (True marks padding)")
    ids, mask = pad_batch([[3, 4]], 1)
    expect(ids.tolist() == [[3, 4]] and not mask.any().item(),
           f"a batch of one sequence needs no padding: got ids {ids.tolist()}, padding_mask {mask.tolist()}")
    ids, mask = pad_batch([[1, 2], [3]], 2)
    expect(mask.tolist() == [[False, False], [False, True]],
           f"with pad_id=2, the real id 2 in [1, 2] is not padding: padding_mask is {mask.tolist()}, "
           "expected [[False, False], [False, True]] (mark padding by length, not by comparing with pad_id)")
