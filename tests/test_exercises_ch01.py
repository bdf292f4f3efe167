"""Chapter 01's checkers: they pass the reference solutions and reject plausible wrong answers."""

from collections import Counter

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch01 import check_merge, check_pad_batch, check_pair_counts


def test_pair_counts_checker_rejects_wrong_answers():
    # counting distinct pairs only, not how often each occurs
    with pytest.raises(ExerciseFailed, match=r"gives \(1, 2\) a count of 1, expected 2"):
        check_pair_counts(lambda ids: {pair: 1 for pair in zip(ids, ids[1:])})
    # stepping two at a time, which misses every other pair
    with pytest.raises(ExerciseFailed, match=r"pair_counts\(\[1, 2, 3, 1, 2\]\) gives \(1, 2\) a count of 1"):
        check_pair_counts(lambda ids: Counter(zip(ids[::2], ids[1::2])))
    # wrapping around from the last id to the first
    with pytest.raises(ExerciseFailed, match=r"not adjacent in it: \[\(2, 1\)\]"):
        check_pair_counts(lambda ids: Counter(zip(ids, ids[1:] + ids[:1])))
    # returning a list of pairs
    with pytest.raises(ExerciseFailed, match="return a dict"):
        check_pair_counts(lambda ids: list(zip(ids, ids[1:])))


def test_merge_checker_rejects_wrong_answers():
    def overlapping(ids, pair, new_id):  # merges at every position, even one already used
        return [new_id if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])]

    with pytest.raises(ExerciseFailed, match=r"merge\(\[1, 2, 3, 1, 2\], \(1, 2\), 9\) gave"):
        check_merge(overlapping)

    def replace_all_at_once(ids, pair, new_id):  # correct except for overlaps: no skipping past a match
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                if not (i + 2 < len(ids) and ids[i + 2] == pair[1] and pair[0] == pair[1]):
                    i += 1
            else:
                out.append(ids[i])
            i += 1
        return out

    with pytest.raises(ExerciseFailed, match=r"\[5, 5, 5\], \(5, 5\), 9\) gave .* overlaps"):
        check_merge(replace_all_at_once)


def test_pad_batch_checker_rejects_wrong_answers():
    def float_ids(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.float)
        return ids, torch.tensor([[False] * len(s) + [True] * (T - len(s)) for s in sequences])

    with pytest.raises(ExerciseFailed, match="torch.long"):
        check_pad_batch(float_ids)

    def mask_by_value(sequences, pad_id):  # marks a real token equal to pad_id as padding
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.long)
        return ids, ids == pad_id

    with pytest.raises(ExerciseFailed, match="mark padding by length"):
        check_pad_batch(mask_by_value)

    def left_padding(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([[pad_id] * (T - len(s)) + s for s in sequences], dtype=torch.long)
        return ids, torch.tensor([[True] * (T - len(s)) + [False] * len(s) for s in sequences])

    with pytest.raises(ExerciseFailed, match=r"row 0 of ids is \[0, 5, 6, 7\], expected \[5, 6, 7, 0\]"):
        check_pad_batch(left_padding)

    def inverted_mask(sequences, pad_id):
        T = max(map(len, sequences))
        ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in sequences], dtype=torch.long)
        return ids, torch.tensor([[True] * len(s) + [False] * (T - len(s)) for s in sequences])

    with pytest.raises(ExerciseFailed, match="True marks padding"):
        check_pad_batch(inverted_mask)
