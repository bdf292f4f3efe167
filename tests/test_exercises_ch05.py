"""Chapter 05's checkers: they pass the reference solutions and reject plausible wrong answers."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch05 import (
    check_causal_weights,
    check_decoder_mask,
    check_padding_mask,
    check_sliding_window_mask,
)


def future(T):
    return torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)


def test_causal_weights_checker_rejects_wrong_answers():
    # masking with 0 instead of -inf: the future still gets e^0
    with pytest.raises(ExerciseFailed, match=r"-inf \(not 0\)"):
        check_causal_weights(lambda s: torch.softmax(s.masked_fill(future(s.shape[-1]), 0.0), dim=-1))
    # masking after softmax: rows no longer sum to 1
    with pytest.raises(ExerciseFailed, match="sum of each row"):
        check_causal_weights(lambda s: torch.softmax(s, dim=-1).masked_fill(future(s.shape[-1]), 0.0))
    # the diagonal masked too: query 0 sees no key, its row is NaN
    with pytest.raises(ExerciseFailed, match="may attend to itself"):
        check_causal_weights(lambda s: torch.softmax(s.masked_fill(future(s.shape[-1]).T.logical_not(), float("-inf")), dim=-1))
    # the wrong triangle: the past masked, the future kept
    with pytest.raises(ExerciseFailed, match="weight exactly 0"):
        check_causal_weights(lambda s: torch.softmax(s.masked_fill(future(s.shape[-1]).T, float("-inf")), dim=-1))


def test_padding_mask_checker_rejects_wrong_answers():
    with pytest.raises(ExerciseFailed, match="inverted"):
        check_padding_mask(lambda lengths, T: torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None])
    with pytest.raises(ExerciseFailed, match=r"expected \[\[0, 0, 0, 1, 1\]"):
        check_padding_mask(lambda lengths, T: torch.arange(T)[None, :] > torch.as_tensor(lengths)[:, None])
    with pytest.raises(ExerciseFailed, match="bool"):
        check_padding_mask(lambda lengths, T: (torch.arange(T)[None, :] >= torch.as_tensor(lengths)[:, None]).int())


def test_sliding_window_checker_rejects_an_off_by_one():
    def window_too_wide(T, window):
        t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
        return (s <= t) & (t - s <= window)

    with pytest.raises(ExerciseFailed, match=r"query 2 and key 0 should be masked"):
        check_sliding_window_mask(window_too_wide)
    with pytest.raises(ExerciseFailed, match="should be allowed"):
        check_sliding_window_mask(lambda T, window: torch.eye(T, dtype=torch.bool))


def _causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def test_decoder_mask_checker_accepts_the_mask_and_shows_each_leak(capsys):
    check_decoder_mask(lambda padding: _causal(padding.shape[1]) & ~padding[:, None, None, :])
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="leaks the future"):  # padding only, no causal part
        check_decoder_mask(lambda padding: (~padding[:, None, None, :]).expand(-1, 1, padding.shape[1], -1))
    with pytest.raises(ExerciseFailed, match="attend to padding"):  # causal only
        check_decoder_mask(lambda padding: _causal(padding.shape[1]).expand(padding.shape[0], 1, -1, -1))
    with pytest.raises(ExerciseFailed, match="attn_mask"):  # the blocked pairs instead
        check_decoder_mask(lambda padding: ~(_causal(padding.shape[1]) & ~padding[:, None, None, :]))
    with pytest.raises(ExerciseFailed, match="broadcasts over the heads"):  # (B, T, T)
        check_decoder_mask(lambda padding: _causal(padding.shape[1]) & ~padding[:, None, :])
    with pytest.raises(ExerciseFailed, match="bool"):
        check_decoder_mask(lambda padding: (_causal(padding.shape[1]) & ~padding[:, None, None, :]).float())
