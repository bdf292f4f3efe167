"""Chapter 10's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch10 import check_cross_entropy, check_label_smoothing, check_top_p


def naive_cross_entropy(logits, targets, ignore_index):
    log_p = torch.log(torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True))  # overflows for large logits
    keep = targets != ignore_index
    return -log_p[keep].gather(-1, targets[keep][:, None]).mean()


def test_cross_entropy_checker_rejects_padding_overflow_and_wrong_mean():
    with pytest.raises(ExerciseFailed, match="still count"):
        check_cross_entropy(lambda z, t, i: -torch.log_softmax(z, -1).gather(-1, t[:, None]).mean())
    with pytest.raises(ExerciseFailed, match="all N positions"):
        check_cross_entropy(lambda z, t, i: -(torch.log_softmax(z, -1).gather(-1, t[:, None])[:, 0]
                                               * (t != i)).sum() / len(t))
    with pytest.raises(ExerciseFailed, match="maximum"):
        check_cross_entropy(naive_cross_entropy)


def test_label_smoothing_checker_rejects_the_v_minus_one_convention_and_plain_loss():
    def v_minus_one(logits, targets, epsilon):
        log_p = torch.log_softmax(logits, -1)
        q = torch.full_like(log_p, epsilon / (logits.shape[-1] - 1))
        q[torch.arange(len(targets)), targets] = 1 - epsilon
        return -(q * log_p).sum(-1).mean()

    with pytest.raises(ExerciseFailed, match="V - 1"):
        check_label_smoothing(v_minus_one)
    with pytest.raises(ExerciseFailed, match="epsilon=0.1"):
        check_label_smoothing(lambda z, t, e: torch.nn.functional.cross_entropy(z, t))


def test_top_p_checker_rejects_stopping_before_the_crossing_token():
    def strictly_below(probs, p):
        kept, mass = {int(probs.argmax())}, 0.0
        for i in probs.argsort(descending=True).tolist():
            mass += probs[i].item()
            if mass >= p:
                break
            kept.add(i)
        return kept

    with pytest.raises(ExerciseFailed, match="crosses p"):
        check_top_p(strictly_below)
    with pytest.raises(ExerciseFailed, match="top-p keeps"):
        check_top_p(lambda probs, p: set(probs.argsort(descending=True)[:2].tolist()))
