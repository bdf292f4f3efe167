"""Chapter 02's checkers: they pass right answers and name plausible mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch02 import check_embedding_grad, check_trigram_loss, check_whole_split_loss


def embedding_grad(ids, grad_out, V):
    grad = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype)
    return grad.index_add_(0, ids.reshape(-1), grad_out.reshape(-1, grad_out.shape[-1]))


def test_embedding_grad_checker(capsys):
    check_embedding_grad(embedding_grad)
    check_embedding_grad(lambda ids, g, V: F.one_hot(ids, V).double().flatten(0, 1).T @ g.flatten(0, 1))
    assert capsys.readouterr().out.count("✓") == 2

    def overwrite(ids, grad_out, V):
        grad = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype)
        grad[ids.reshape(-1)] = grad_out.reshape(-1, grad_out.shape[-1])
        return grad

    with pytest.raises(ExerciseFailed, match="sum of four gradients"):
        check_embedding_grad(overwrite)

    def averaged(ids, grad_out, V):
        counts = torch.bincount(ids.reshape(-1), minlength=V).clamp(min=1)[:, None]
        return embedding_grad(ids, grad_out, V) / counts

    with pytest.raises(ExerciseFailed, match="averaged"):
        check_embedding_grad(averaged)
    with pytest.raises(ExerciseFailed, match="never occurs"):
        check_embedding_grad(lambda ids, g, V: embedding_grad(ids, g, V) + 1)
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 6, 3\), expected \(7, 3\)"):
        check_embedding_grad(lambda ids, g, V: g)


def trigram_loss(train_ids, val_ids, V, alpha=0.1, row_alpha=None, counted_on=None, context=3):
    counted_on = train_ids if counted_on is None else counted_on
    counts = torch.zeros(V, V, V, dtype=torch.float64)
    counts.index_put_((counted_on[:-2], counted_on[1:-1], counted_on[2:]),
                      torch.ones(len(counted_on) - 2, dtype=torch.float64), accumulate=True)
    if context == 2:  # a bigram table of every neighbouring pair, read at (b, c)
        pairs = torch.zeros(V, V, dtype=torch.float64)
        pairs.index_put_((counted_on[:-1], counted_on[1:]), torch.ones(len(counted_on) - 1,
                         dtype=torch.float64), accumulate=True)
        counts = pairs[None].expand(V, V, V)
    row_alpha = alpha * V if row_alpha is None else row_alpha
    probs = (counts + alpha) / (counts.sum(-1, keepdim=True) + row_alpha)
    return -torch.log(probs[val_ids[:-2], val_ids[1:-1], val_ids[2:]]).mean().item()


def test_trigram_checker(capsys):
    check_trigram_loss(trigram_loss)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="add alpha to every"):
        check_trigram_loss(lambda t, v, V, alpha: trigram_loss(t, v, V, 0.0))
    with pytest.raises(ExerciseFailed, match="validation text itself"):
        check_trigram_loss(lambda t, v, V, alpha: trigram_loss(t, v, V, alpha, counted_on=v))
    with pytest.raises(ExerciseFailed, match="alpha \\* V"):
        check_trigram_loss(lambda t, v, V, alpha: trigram_loss(t, v, V, alpha, row_alpha=alpha))
    with pytest.raises(ExerciseFailed, match="bigram model's loss"):
        check_trigram_loss(lambda t, v, V, alpha: trigram_loss(t, v, V, alpha, context=2))
    with pytest.raises(ExerciseFailed, match="returned .*expected one number"):
        check_trigram_loss(lambda t, v, V, alpha: [1.0])


def whole_text_loss(model, ids, block_size, mean_of_means=False, drop_last=False, step=None):
    n_targets, total, count, losses = len(ids) - 1, 0.0, 0, []
    with torch.no_grad():
        for start in range(0, n_targets, step or block_size):
            end = min(start + block_size, n_targets)
            if drop_last and end - start < block_size:
                break
            loss = F.cross_entropy(model(ids[start:end][None])[0], ids[start + 1 : end + 1],
                                   reduction="sum").item()
            total, count = total + loss, count + end - start
            losses.append(loss / (end - start))
    return sum(losses) / len(losses) if mean_of_means else total / count


def test_whole_text_loss_checker(capsys):
    check_whole_split_loss(whole_text_loss)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="last, shorter window"):
        check_whole_split_loss(lambda m, ids, T: whole_text_loss(m, ids, T, drop_last=True))
    with pytest.raises(ExerciseFailed, match="averaged the windows' mean losses"):
        check_whole_split_loss(lambda m, ids, T: whole_text_loss(m, ids, T, mean_of_means=True))
    with pytest.raises(ExerciseFailed, match="your windows hold 9 inputs"):
        check_whole_split_loss(lambda m, ids, T: whole_text_loss(m, ids, T - 1))
    # overlapping windows (stride 1) score most targets several times
    with pytest.raises(ExerciseFailed, match="score each window's targets once"):
        check_whole_split_loss(lambda m, ids, T: whole_text_loss(m, ids, T, step=T // 2))
    # one pass over the whole text ignores block_size (a context model's loss then differs)
    with pytest.raises(ExerciseFailed, match=r"expected .*: cut ids\[:-1\]"):
        check_whole_split_loss(lambda m, ids, T: F.cross_entropy(m(ids[None, :-1])[0], ids[1:]).item())
    assert math.isfinite(whole_text_loss(torch.nn.Embedding(4, 4), torch.tensor([0, 1, 2, 3]), 2))
