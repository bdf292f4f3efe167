"""Chapter 11's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest

from utils.exercises import ExerciseFailed
from utils.exercises.ch11 import check_decay_split, check_evaluation_windows, check_vaswani_schedule


def by_shape(model):  # every matrix decays, positions included
    names = [n for n, _ in model.named_parameters()]
    return [n for n in names if model.get_parameter(n).ndim >= 2], [n for n in names if model.get_parameter(n).ndim < 2]


def test_decay_checker_rejects_decayed_positions_vectors_and_a_listed_tied_head():
    with pytest.raises(ExerciseFailed, match="position table"):
        check_decay_split(by_shape)
    with pytest.raises(ExerciseFailed, match="vectors"):
        check_decay_split(lambda m: ([n for n, _ in m.named_parameters() if "position" not in n],
                                     ["positions.embedding.weight"]))
    with pytest.raises(ExerciseFailed, match="tied"):
        check_decay_split(lambda m: (by_shape(m)[0] + ["head.weight"], by_shape(m)[1]))
    with pytest.raises(ExerciseFailed, match="neither group"):
        check_decay_split(lambda m: ([], []))
    with pytest.raises(ExerciseFailed, match="token embedding"):
        check_decay_split(lambda m: ([n for n in by_shape(m)[0] if "position" not in n and "token" not in n],
                                     by_shape(m)[1] + ["positions.embedding.weight", "token_embedding.weight"]))


def test_vaswani_checker_rejects_a_missing_warmup_and_a_wrong_peak():
    with pytest.raises(ExerciseFailed, match=r"vaswani_lr\(1, 512, 4000\)"):
        check_vaswani_schedule(lambda s, d, w: d**-0.5 * s**-0.5)  # no warm-up
    with pytest.raises(ExerciseFailed, match="peak"):
        check_vaswani_schedule(lambda s, d, w: min(s**-0.5, s * w**-1.5))  # forgot d_model^-0.5
    with pytest.raises(ExerciseFailed, match="number"):
        check_vaswani_schedule(lambda s, d, w: [0.1])


def test_windows_checker_rejects_overlap_a_dropped_tail_and_unshifted_targets():
    def sliding(data, block_size):  # stride 1: targets scored many times
        return [(data[i : i + block_size], data[i + 1 : i + block_size + 1]) for i in range(len(data) - block_size)]

    def full_only(data, block_size):  # drops the last, shorter window
        n = (len(data) - 1) // block_size
        return [(data[i * block_size : (i + 1) * block_size], data[i * block_size + 1 : (i + 1) * block_size + 1])
                for i in range(n)]

    def unshifted(data, block_size):
        return [(data[i : i + block_size], data[i : i + block_size]) for i in range(0, len(data) - 1, block_size)]

    with pytest.raises(ExerciseFailed, match="overlap"):
        check_evaluation_windows(sliding)
    with pytest.raises(ExerciseFailed, match="never scored"):
        check_evaluation_windows(full_only)
    with pytest.raises(ExerciseFailed, match="shifted by one"):
        check_evaluation_windows(unshifted)
    with pytest.raises(ExerciseFailed, match="longer than block_size"):
        check_evaluation_windows(lambda data, b: [(data[:-1], data[1:])])
    check_evaluation_windows(lambda data, b: [(c[:-1], c[1:]) for c in
                                              (data[s : s + b + 1] for s in range(0, len(data) - 1, b))])
