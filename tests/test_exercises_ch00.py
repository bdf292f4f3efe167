"""Chapter 00's perplexity checker: it passes right answers and names plausible mistakes.

(The other chapter 00 checkers are tested in tests/test_exercises.py.)"""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch00 import check_perplexity


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
    assert math.isclose(float(torch.exp(-torch.log(torch.full((3,), 0.5)).mean())), 2.0)
