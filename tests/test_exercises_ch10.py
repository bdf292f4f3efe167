"""Chapter 10's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch10 import check_cross_entropy, check_generate, check_label_smoothing, check_top_p
from utils.generate import top_k_filter


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



def test_top_p_checker_keeps_a_mass_exactly_equal_to_p():
    def strictly_above(probs, p):
        kept, mass = set(), 0.0
        for i in probs.argsort(descending=True).tolist():
            kept.add(i)
            mass += probs[i].item()
            if mass > p:
                break
        return kept

    with pytest.raises(ExerciseFailed, match="compare the mass with >= p, not > p"):
        check_top_p(strictly_above)


@torch.no_grad()
def reference_generate(model, idx, max_new_tokens, block_size, temperature=1.0, top_k=None, eos_id=None,
                       generator=None, crop=True, use_generator=True, use_temperature=True, use_eos=True):
    finished = torch.zeros(len(idx), dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits = model(idx[:, -block_size:] if crop else idx)[:, -1, :]
        if temperature == 0:
            next_id = logits.argmax(-1)
        else:
            logits = logits / temperature if use_temperature else logits
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            probs = torch.softmax(logits, -1)
            next_id = torch.multinomial(probs, 1, generator=generator if use_generator else None)[:, 0]
        if eos_id is not None and use_eos:
            next_id = next_id.masked_fill(finished, eos_id)
            finished |= next_id == eos_id
        idx = torch.cat([idx, next_id[:, None]], dim=1)
        if eos_id is not None and use_eos and finished.all():
            break
    return idx


def test_generation_loop_mistakes_are_named():
    check_generate(reference_generate)  # the right answer passes
    cases = {"run it on the last block_size tokens": dict(crop=False),
             "pass generator= to torch.multinomial": dict(use_generator=False),
             "divide the logits by the temperature": dict(use_temperature=False),
             "a row that has produced <EOS> gets eos_id": dict(use_eos=False)}
    for message, mistake in cases.items():
        with pytest.raises(ExerciseFailed, match=message):
            check_generate(lambda *args, mistake=mistake, **kwargs: reference_generate(*args, **kwargs, **mistake))
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got NoneType"):
        check_generate(lambda *args, **kwargs: None)
