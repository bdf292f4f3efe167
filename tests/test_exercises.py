"""The exercise machinery, and chapter 00's checkers on right and wrong answers."""

import importlib
import inspect

import pytest
import torch

from tests.notebooks import CHAPTERS, load, run_solutions, tagged
from utils.exercises import ExerciseFailed, checker, expect, expect_close
from utils.exercises.ch00 import check_softmax


def test_checker_reports_success_not_attempted_and_failure(capsys):
    @checker("Exercise 9.9 — demo")
    def check_double(double):
        expect(double(2) == 4, f"double(2) gave {double(2)}, expected 4")

    check_double(lambda x: 2 * x)
    assert "✓ Exercise 9.9 — demo" in capsys.readouterr().out

    def not_started(x):
        raise NotImplementedError

    check_double(not_started)
    assert "not attempted yet" in capsys.readouterr().out

    with pytest.raises(ExerciseFailed, match=r"Exercise 9.9 — demo: double\(2\) gave 5, expected 4"):
        check_double(lambda x: 5)


def test_expect_close_names_shapes_and_the_largest_difference():
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 3\), expected \(3, 2\)"):
        expect_close(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ExerciseFailed, match=r"largest difference is 0.5 at index \(1, 0\)"):
        expect_close(torch.tensor([[0.0], [0.5]]), torch.zeros(2, 1))


def test_a_checker_given_a_value_instead_of_a_function_says_so():  # issue 11
    with pytest.raises(ExerciseFailed, match=r"pass your function itself, e.g. check_softmax\(my_function\).*got NoneType"):
        check_softmax(None)
    with pytest.raises(ExerciseFailed, match="got Tensor"):
        check_softmax(torch.zeros(3))  # softmax(x) was called and its result passed


def test_expect_close_accepts_nan_where_nan_is_expected_and_never_truncates():  # issue 11
    nan = float("nan")
    expect_close(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0]))  # e.g. a fully masked row
    with pytest.raises(ExerciseFailed, match=r"largest difference is 1 at index \(1,\)"):
        expect_close(torch.tensor([nan, 1.0]), torch.tensor([nan, 2.0]))
    with pytest.raises(ExerciseFailed, match=r"should be NaN at index \(0,\) \(yours 1\)"):
        expect_close(torch.tensor([1.0, 1.0]), torch.tensor([nan, 1.0]))
    with pytest.raises(ExerciseFailed, match=r"contains NaN at index \(1,\)"):
        expect_close(torch.tensor([1.0, nan]), torch.tensor([1.0, 1.0]))
    with pytest.raises(ExerciseFailed, match=r"largest difference is 0.7 .*yours 2.7, expected 2"):
        expect_close(torch.tensor([2.7, 1.0]), torch.tensor([2, 1]))  # was cast to 2 and passed


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_reference_solutions_pass(path, capsys):
    """Every chapter's hidden solutions, run alone, satisfy their checkers."""
    solutions = tagged(load(path), "solution")
    run_solutions(path.stem)
    assert capsys.readouterr().out.count("✓") == len(solutions)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_checker_reports_an_unstarted_exercise_instead_of_failing(path, capsys):
    module = importlib.import_module(f"utils.exercises.ch{path.stem[:2]}")
    checkers = [f for f in vars(module).values() if callable(f) and hasattr(f, "title")]
    assert len(checkers) == len(tagged(load(path), "solution"))

    def not_started(*args, **kwargs):
        raise NotImplementedError

    for check in checkers:
        required = [p for p in inspect.signature(check).parameters.values() if p.default is inspect.Parameter.empty]
        check(*[not_started] * len(required))
        assert "not attempted yet" in capsys.readouterr().out, check.title


def test_chapter_00_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseFailed, match="NaN"):
        check_softmax(lambda x: x.exp() / x.exp().sum(-1, keepdim=True))
    with pytest.raises(ExerciseFailed, match="sum over the last dimension"):
        check_softmax(lambda x: x.exp() / x.exp().sum(0, keepdim=True))


@pytest.mark.parametrize(
    ("module", "name", "wrong"),
    [
        ("ch00", "check_perplexity", lambda p_true: None),
        ("ch00", "check_perplexity", lambda p_true: "4.17"),
        ("ch02", "check_trigram_loss", lambda train_ids, val_ids, V, alpha: torch.zeros(3)),
        ("ch10", "check_smoothed_minimum", lambda V, epsilon: None),
        ("ch10", "check_smoothed_minimum", lambda V, epsilon: torch.tensor([1.0, 2.0])),
        ("ch10", "check_smoothed_minimum", lambda V, epsilon: "1.245"),
    ],
)
def test_checkers_name_a_wrong_return_type_instead_of_crashing(module, name, wrong):
    check = getattr(importlib.import_module(f"utils.exercises.{module}"), name)
    with pytest.raises(ExerciseFailed, match="returned .*expected"):
        check(wrong)
