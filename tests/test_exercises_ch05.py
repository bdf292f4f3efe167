"""Chapter 05's checkers: they pass the reference solutions and reject plausible wrong answers."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch05 import (
    check_dependence,
    check_document_mask,
    check_prefix_lm_mask,
    check_sliding_window_mask,
)


def prefix_lm_mask(T, prefix_lengths, inclusive=False, causal_only=False):
    t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]  # (T, 1), (1, T)
    prefix = torch.as_tensor(prefix_lengths)[:, None, None, None]  # (B, 1, 1, 1)
    inside = (s <= prefix) if inclusive else (s < prefix)
    return (s <= t) | (inside & (not causal_only))


def test_prefix_lm_mask_checker(capsys):
    check_prefix_lm_mask(prefix_lm_mask)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="plain causal mask"):
        check_prefix_lm_mask(lambda T, p: prefix_lm_mask(T, p, causal_only=True))
    with pytest.raises(ExerciseFailed, match="the first one generated"):
        check_prefix_lm_mask(lambda T, p: prefix_lm_mask(T, p, inclusive=True))
    with pytest.raises(ExerciseFailed, match="True where attention is blocked"):
        check_prefix_lm_mask(lambda T, p: ~prefix_lm_mask(T, p))
    with pytest.raises(ExerciseFailed, match=r"expected \(B, 1, T, T\)"):
        check_prefix_lm_mask(lambda T, p: prefix_lm_mask(T, p)[:, 0])
    with pytest.raises(ExerciseFailed, match="bool tensor"):
        check_prefix_lm_mask(lambda T, p: prefix_lm_mask(T, p).float())


def dependence(f, T, C, transpose=False, one_backward=False, signed=False, plain_sum=False):
    x = torch.randn(1, T, C, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = f(x)  # (1, T, C)
    if one_backward:
        (grad,) = torch.autograd.grad(out.sum(), x)
        return (grad[0].abs().amax(-1) > 0)[None, :].expand(T, T)
    rows = []
    for t in range(T):
        direction = torch.ones(C) if plain_sum else torch.randn(C, generator=torch.Generator().manual_seed(t))
        (grad,) = torch.autograd.grad((out[0, t] * direction).sum(), x, retain_graph=True, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        rows.append(grad[0].sum(-1) != 0 if signed else grad[0].abs().amax(-1) > 0)
    result = torch.stack(rows)  # (T, T): [t, s]
    return result.T if transpose else result


def test_dependence_checker(capsys):
    check_dependence(dependence)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="transposed"):
        check_dependence(lambda f, T, C: dependence(f, T, C, transpose=True))
    with pytest.raises(ExerciseFailed, match="one backward of f\\(x\\).sum\\(\\) mixes all outputs"):
        check_dependence(lambda f, T, C: dependence(f, T, C, one_backward=True))
    with pytest.raises(ExerciseFailed, match="random direction"):
        check_dependence(lambda f, T, C: dependence(f, T, C, plain_sum=True))
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor"):
        check_dependence(lambda f, T, C: [[True] * T] * T)
    with pytest.raises(ExerciseFailed, match="says the opposite"):  # each output reads its own input only
        check_dependence(lambda f, T, C: torch.eye(T, dtype=torch.bool))


def test_sliding_window_checker_rejects_an_off_by_one():
    def window_too_wide(T, window):
        t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
        return (s <= t) & (t - s <= window)

    with pytest.raises(ExerciseFailed, match=r"query 2 and key 0 should be masked"):
        check_sliding_window_mask(window_too_wide)
    with pytest.raises(ExerciseFailed, match="should be allowed"):
        check_sliding_window_mask(lambda T, window: torch.eye(T, dtype=torch.bool))


def document_mask(doc_ids, causal=True, same_doc=True):
    T = doc_ids.shape[1]
    t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
    same = doc_ids[:, :, None] == doc_ids[:, None, :] if same_doc else torch.ones(1, T, T, dtype=torch.bool)
    allowed = same & (s <= t) if causal else same
    return allowed[:, None].expand(doc_ids.shape[0], 1, T, T)


def test_document_mask_checker(capsys):
    check_document_mask(document_mask)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="must stay causal"):
        check_document_mask(lambda d: document_mask(d, causal=False))
    with pytest.raises(ExerciseFailed, match="plain causal mask"):
        check_document_mask(lambda d: document_mask(d, same_doc=False))
    with pytest.raises(ExerciseFailed, match="True where attention is blocked"):
        check_document_mask(lambda d: ~document_mask(d))
    with pytest.raises(ExerciseFailed, match=r"should be \(B, 1, T, T\)"):
        check_document_mask(lambda d: document_mask(d)[:, 0])
    with pytest.raises(ExerciseFailed, match="bool tensor"):
        check_document_mask(lambda d: document_mask(d).float())
    with pytest.raises(ExerciseFailed, match="reads them"):  # the previous document's last token leaks in
        check_document_mask(lambda d: document_mask(d) | torch.eye(d.shape[1], dtype=torch.bool).roll(-1, 1))
