"""Chapter 10's exercises: the reference solutions pass, plausible wrong answers are caught."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch10 import (
    check_generate,
    check_gumbel_sample,
    check_repetition_penalty,
    check_smoothed_minimum,
)
from utils.generate import top_k_filter


def repetition_penalty(logits, previous_ids, penalty, divide_all=False, per_occurrence=False, in_place=False):
    out = logits if in_place else logits.clone()
    for b in range(len(out)):
        tokens = previous_ids[b].tolist() if per_occurrence else set(previous_ids[b].tolist())
        for token in tokens:
            if divide_all or out[b, token] > 0:
                out[b, token] = out[b, token] / penalty
            else:
                out[b, token] = out[b, token] * penalty
    return out


def test_repetition_penalty_checker(capsys):
    check_repetition_penalty(repetition_penalty)
    check_repetition_penalty(lambda *a: repetition_penalty(*a, in_place=True))  # in place is fine if right
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(ExerciseFailed, match="more likely"):
        check_repetition_penalty(lambda *a: repetition_penalty(*a, divide_all=True))
    with pytest.raises(ExerciseFailed, match="once per token"):
        check_repetition_penalty(lambda *a: repetition_penalty(*a, per_occurrence=True))
    with pytest.raises(ExerciseFailed, match="keep their logits"):
        check_repetition_penalty(lambda logits, ids, p: repetition_penalty(logits, ids, p) - 0.1)
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor"):
        check_repetition_penalty(lambda logits, ids, p: None)


def smoothed_minimum(V, epsilon):
    on, off = 1 - epsilon + epsilon / V, epsilon / V
    return -(on * math.log(on) + (V - 1) * off * math.log(off))


def test_smoothed_minimum_checker(capsys):
    check_smoothed_minimum(smoothed_minimum)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="no prediction gets below its entropy"):
        check_smoothed_minimum(lambda V, e: 0.0)
    with pytest.raises(ExerciseFailed, match="of the target alone"):
        check_smoothed_minimum(lambda V, e: -math.log(1 - e + e / V))
    with pytest.raises(ExerciseFailed, match="not 1 - ε"):
        check_smoothed_minimum(lambda V, e: -math.log(1 - e))
    with pytest.raises(ExerciseFailed, match="entropy of q"):  # ε spread over the V - 1 other tokens
        check_smoothed_minimum(lambda V, e: -((1 - e) * math.log(1 - e) + e * math.log(e / (V - 1))))
    with pytest.raises(ExerciseFailed, match="expected one number"):
        check_smoothed_minimum(lambda V, e: [smoothed_minimum(V, e)])


def gumbel_sample(logits, temperature, generator, noise="gumbel", tempered=True):
    u = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1 - 1e-10)
    g = {"gumbel": -torch.log(-torch.log(u)), "exponential": -torch.log(u), "none": torch.zeros_like(u)}[noise]
    return (logits / (temperature if tempered else 1.0) + g).argmax(dim=-1)


def test_gumbel_sample_checker(capsys):
    check_gumbel_sample(gumbel_sample)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="not softmax\\(logits / τ\\)"):  # temperature forgotten
        check_gumbel_sample(lambda z, t, g: gumbel_sample(z, t, g, tempered=False))
    with pytest.raises(ExerciseFailed, match="which is greedy decoding"):
        check_gumbel_sample(lambda z, t, g: gumbel_sample(z, t, g, noise="none"))
    with pytest.raises(ExerciseFailed, match="must be Gumbel"):
        check_gumbel_sample(lambda z, t, g: gumbel_sample(z, t, g, noise="exponential"))
    with pytest.raises(ExerciseFailed, match="use the generator"):
        check_gumbel_sample(lambda z, t, g: gumbel_sample(z, t, None if len(z) == 8 else g))
    with pytest.raises(ExerciseFailed, match="one integer id per row"):
        check_gumbel_sample(lambda z, t, g: torch.softmax(z / t, -1))
    # torch.multinomial draws from the same distribution: any correct sampler passes
    check_gumbel_sample(lambda z, t, g: torch.multinomial(torch.softmax(z / t, -1), 1, generator=g)[:, 0])


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
