"""Chapter 00's logits-memory and perplexity checkers: they pass right answers and name plausible mistakes.

(The softmax checker is tested in tests/test_exercises.py.)"""


import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch00 import check_logits_bytes, check_perplexity


def test_perplexity_checker(capsys):
    check_perplexity(lambda p: torch.exp(-torch.log(p).mean()))
    check_perplexity(lambda p: 2 ** (-torch.log2(p).mean()))  # in bits, the same number
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(ExerciseFailed, match="the loss; perplexity is e\\^loss"):
        check_perplexity(lambda p: -torch.log(p).mean())
    with pytest.raises(ExerciseFailed, match="the loss in bits"):
        check_perplexity(lambda p: -torch.log2(p).mean())
    with pytest.raises(ExerciseFailed, match="mean of 1/p"):
        check_perplexity(lambda p: (1 / p).mean())
    with pytest.raises(ExerciseFailed, match="exponentiated the sum"):
        check_perplexity(lambda p: torch.exp(-torch.log(p).sum()) if not torch.allclose(p, p[0]) else 1 / p[0])
    with pytest.raises(ExerciseFailed, match="expected one number"):
        check_perplexity(lambda p: 1 / p)


def size_of(dtype):
    return torch.finfo(dtype).bits // 8


@pytest.mark.parametrize(("wrong", "named"), [
    (lambda B, T, V, dtype: B * T * V, "the number of numbers"),
    (lambda B, T, V, dtype: B * T * V * size_of(dtype) * 8, "bits; a byte is 8 bits"),
    (lambda B, T, V, dtype: B * T * V * 4, "float32's size"),
    (lambda B, T, V, dtype: T * V * size_of(dtype), "one of B, T or V is missing"),
    (lambda B, T, V, dtype: B * T * V * size_of(dtype) + 1, "expected"),
    (lambda B, T, V, dtype: None, "expected one number"),
])
def test_logits_bytes_checker_names_the_mistake(wrong, named):
    with pytest.raises(ExerciseFailed, match=named):
        check_logits_bytes(wrong)


def test_logits_bytes_checker_passes_a_right_answer(capsys):
    check_logits_bytes(lambda B, T, V, dtype: B * T * V * torch.empty((), dtype=dtype).element_size())
    assert "✓" in capsys.readouterr().out
