"""Exercise checkers: every chapter ends with exercises the reader's code is checked against.

Each chapter has a module here (``utils.exercises.chNN``) of checker functions
made with :func:`checker`. A checker takes the reader's function (or value),
runs it on test inputs and

* prints ``✓ Exercise N.M — title`` when it is right,
* prints a reminder when the reader has not started (their code still raises
  ``NotImplementedError``), so a chapter runs top to bottom before any attempt,
* raises :class:`ExerciseFailed` with a message that says what was expected and
  what came back, when it is wrong.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import torch


class ExerciseFailed(AssertionError):
    """The reader's answer is not right yet; the message says why."""


def expect(condition: bool, message: str) -> None:
    """Fail the exercise with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(message)


def expect_shape(tensor, shape: tuple, what: str = "your result") -> None:
    expect(isinstance(tensor, torch.Tensor), f"{what} should be a torch.Tensor, got {type(tensor).__name__}")
    expect(tuple(tensor.shape) == tuple(shape), f"{what} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")


def expect_number(value, what: str = "your function") -> float:
    """``value`` as a float, or :class:`ExerciseFailed` naming what came back instead of one number."""
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} returned a tensor of shape {tuple(value.shape)}; expected one number")
        return float(value.item())
    expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
           f"{what} returned {type(value).__name__} {str(value)[:40]!r}; expected one number")
    return float(value)


def expect_ids(value, what: str = "your function") -> set[int]:
    """``value`` (a tensor, list, tuple or set of token ids) as a set of ints, or :class:`ExerciseFailed`."""
    if isinstance(value, torch.Tensor):
        expect(not value.is_floating_point() and value.ndim <= 1,
               f"{what} returned a {value.dtype} tensor of shape {tuple(value.shape)}; expected 1-D integer ids")
        return {int(i) for i in value.reshape(-1).tolist()}
    expect(isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in value),
        f"{what} returned {type(value).__name__} {str(value)[:40]!r}; expected token ids (a tensor, list or set "
        "of ints)")
    return {int(i) for i in value}


def expect_close(actual, expected: torch.Tensor, what: str = "your result", atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Shapes first (named in the message), then values, reporting the largest difference.

    Both are compared in float64 (an integer answer is not truncated to match integer
    expectations), and NaN is right exactly where NaN is expected.
    """
    expect_shape(actual, tuple(expected.shape), what)
    compare = torch.complex128 if actual.is_complex() or expected.is_complex() else torch.float64
    actual = actual.detach().cpu().to(compare)
    expected = expected.detach().cpu().to(compare)
    for extra_nan, yours, theirs in ((actual, "contains NaN", "expected"), (expected, "should be NaN", "yours")):
        other = expected if extra_nan is actual else actual
        wrong = torch.isnan(extra_nan) & ~torch.isnan(other)
        if wrong.any():
            where = tuple(int(i) for i in torch.nonzero(wrong)[0])
            raise ExerciseFailed(f"{what} {yours} at index {where} ({theirs} {other[where].item():.5g})")
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol, equal_nan=True):
        difference = (actual - expected).abs()
        difference = difference.masked_fill(torch.isnan(difference), 0.0)  # NaN where NaN was expected: equal
        where = tuple(int(i) for i in torch.nonzero(difference == difference.max())[0])
        raise ExerciseFailed(
            f"{what} differs from the expected values: the largest difference is "
            f"{difference.max().item():.3g} at index {where} "
            f"(yours {actual[where].item():.5g}, expected {expected[where].item():.5g})"
        )


def checker(title: str) -> Callable:
    """Turn a function that raises :class:`ExerciseFailed` into a reader-facing checker."""

    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(*args, **kwargs) -> None:
            try:
                check(*args, **kwargs)
            except NotImplementedError:
                # Two short lines: outputs are read on a web page, at most 88 characters wide.
                print(f"… {title}: not attempted yet.\n"
                      "  Replace `raise NotImplementedError` with your code and run the cell again.")
                return
            except ExerciseFailed as failure:
                raise ExerciseFailed(f"{title}: {failure}") from None
            except TypeError as error:  # the commonest slip: check(my_function()) for check(my_function)
                if args and not callable(args[0]) and "not callable" in str(error):
                    raise ExerciseFailed(
                        f"{title}: pass your function itself, e.g. {check.__name__}(my_function), not what it "
                        f"returns; got {type(args[0]).__name__} {str(args[0])[:40]!r}"
                    ) from None
                raise
            print(f"✓ {title}")

        run.title = title
        return run

    return decorate
