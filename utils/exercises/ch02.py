"""Checkers for chapter 02's exercises (embeddings and the bigram model)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.exercises import checker, expect, expect_close, expect_number, expect_shape


@checker("Exercise 2.1 — an embedding table's gradient, by hand")
def check_embedding_grad(embedding_grad) -> None:
    """``embedding_grad(ids, grad_out, V)``: dL/dW (V, C) of ``W[ids]``, given dL/d(output) (B, T, C)."""
    generator = torch.Generator().manual_seed(0)
    B, T, V, C = 2, 6, 7, 3
    ids = torch.tensor([[1, 4, 1, 1, 0, 6], [4, 2, 2, 6, 1, 3]])  # 1 occurs 4 times, 5 never
    grad_out = torch.randn(B, T, C, generator=generator, dtype=torch.float64)
    weight = torch.randn(V, C, dtype=torch.float64, requires_grad=True)
    F.embedding(ids, weight).backward(grad_out)  # the reference: autograd through a lookup
    expected = weight.grad
    grad = embedding_grad(ids, grad_out, V)
    expect_shape(grad, (V, C), "embedding_grad(ids, grad_out, V)")
    grad = grad.detach().double()
    expect(torch.all(grad[5] == 0),
           f"token 5 never occurs in ids, so its row must get no gradient; yours is {grad[5].tolist()}")
    overwritten = torch.zeros(V, C, dtype=torch.float64)
    overwritten[ids.reshape(-1)] = grad_out.reshape(-1, C)
    expect(not torch.allclose(grad, overwritten),
           "token 1 occurs four times, so its row gets the sum of four gradients; assignment "
           "(grad[ids] = ...) keeps only one of them. Add them up: index_add_ or one_hot.T @ grad_out")
    counts = torch.bincount(ids.reshape(-1), minlength=V).clamp(min=1).double()[:, None]
    expect(not torch.allclose(grad, expected / counts),
           "you averaged the gradients of repeated tokens; the chain rule adds them (the lookup is "
           "one_hot @ W, whose gradient is one_hot.T @ grad_out)")
    expect_close(grad, expected, "your gradient", atol=1e-9)


def _trigram_reference(train_ids: list[int], val_ids: list[int], V: int, alpha: float,
                       row_alpha: float | None = None) -> float:
    row_alpha = alpha * V if row_alpha is None else row_alpha
    counts: dict[tuple[int, int, int], int] = {}
    context: dict[tuple[int, int], int] = {}
    for a, b, c in zip(train_ids, train_ids[1:], train_ids[2:]):
        counts[a, b, c] = counts.get((a, b, c), 0) + 1
        context[a, b] = context.get((a, b), 0) + 1
    losses = [-math.log((counts.get((a, b, c), 0) + alpha) / (context.get((a, b), 0) + row_alpha))
              for a, b, c in zip(val_ids, val_ids[1:], val_ids[2:])]
    return sum(losses) / len(losses)


@checker("Exercise 2.2 — a trigram model, counted")
def check_trigram_loss(trigram_loss) -> None:
    """``trigram_loss(train_ids, val_ids, V, alpha)``: mean -ln p(c | a, b) on val, counted on train, add-alpha."""
    generator = torch.Generator().manual_seed(1)
    V = 5
    train_ids = torch.randint(V, (300,), generator=generator)
    train_ids[::7] = 0  # some structure: a 0 every 7 tokens
    val_ids = torch.randint(V, (40,), generator=generator)
    for alpha in (0.1, 1.0):
        expected = _trigram_reference(train_ids.tolist(), val_ids.tolist(), V, alpha)
        value = expect_number(trigram_loss(train_ids.clone(), val_ids.clone(), V, alpha), "trigram_loss")
        expect(math.isfinite(value),
               f"your loss is {value}: a trigram never seen in training has count 0; add alpha to every "
               "count (and alpha * V to every row's total) so no probability is 0")
        leaked = _trigram_reference(val_ids.tolist(), val_ids.tolist(), V, alpha)
        expect(not math.isclose(value, leaked, rel_tol=1e-6),
               "you counted the trigrams of the validation text itself: count on train_ids, score on val_ids")
        no_row_alpha = _trigram_reference(train_ids.tolist(), val_ids.tolist(), V, alpha, row_alpha=alpha)
        expect(not math.isclose(value, no_row_alpha, rel_tol=1e-6),
               "each row's total must grow by alpha * V (alpha for each of the V possible next tokens), "
               "or the smoothed probabilities of a row do not sum to 1")
        bigram = _bigram_reference(train_ids.tolist(), val_ids.tolist(), V, alpha)
        expect(not math.isclose(value, bigram, rel_tol=1e-6),
               "that is the bigram model's loss (one token of context); the trigram reads two: "
               "p(c | a, b) from counts of (a, b, c)")
        expect(math.isclose(value, expected, rel_tol=1e-6),
               f"with alpha = {alpha} you returned {value:.5f}, expected {expected:.5f}: p(c | a, b) = "
               "(count(a, b, c) + alpha) / (count(a, b) + alpha * V), averaged over the "
               f"{len(val_ids) - 2} trigrams of val_ids")


def _bigram_reference(train_ids: list[int], val_ids: list[int], V: int, alpha: float) -> float:
    counts: dict[tuple[int, int], int] = {}
    context: dict[int, int] = {}
    for a, b in zip(train_ids, train_ids[1:]):
        counts[a, b] = counts.get((a, b), 0) + 1
        context[a] = context.get(a, 0) + 1
    losses = [-math.log((counts.get((b, c), 0) + alpha) / (context.get(b, 0) + alpha * V))
              for b, c in zip(val_ids[1:], val_ids[2:])]
    return sum(losses) / len(losses)


class _RunningMean(torch.nn.Module):
    """A toy model whose logits at position t depend on every id up to t *within its input*.

    So the loss depends on where the windows are cut, and only the exact cutting matches.
    """

    def __init__(self, V: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        self.table = torch.nn.Parameter(torch.randn(V, V, generator=generator))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        rows = self.table[ids]  # (B, T, V)
        steps = torch.arange(1, ids.shape[1] + 1, device=ids.device)[None, :, None]
        return rows.cumsum(dim=1) / steps


def _windowed_reference(model, ids: torch.Tensor, block_size: int, mean_of_means: bool = False,
                        drop_last: bool = False) -> float:
    n_targets = len(ids) - 1
    total, count, means = 0.0, 0, []
    with torch.no_grad():
        for start in range(0, n_targets, block_size):
            end = min(start + block_size, n_targets)
            if drop_last and end - start < block_size:
                break
            logits = model(ids[start:end][None]).double()[0]  # (T, V)
            losses = F.cross_entropy(logits, ids[start + 1 : end + 1], reduction="none")
            total, count = total + losses.sum().item(), count + len(losses)
            means.append(losses.mean().item())
    return sum(means) / len(means) if mean_of_means else total / count


@checker("Exercise 2.3 — the exact loss of a whole text, window by window")
def check_whole_split_loss(whole_split_loss) -> None:
    """``whole_split_loss(model, ids, block_size)``: every target of ``ids`` scored once, windows of block_size."""
    V = 6
    model = _RunningMean(V)
    ids = torch.randint(V, (103,), generator=torch.Generator().manual_seed(3))  # 102 targets
    block_size = 10  # ten windows of 10 inputs, then one of 2
    expected = _windowed_reference(model, ids, block_size)
    value = expect_number(whole_split_loss(model, ids.clone(), block_size), "whole_split_loss")
    expect(not math.isclose(value, _windowed_reference(model, ids, block_size, drop_last=True), rel_tol=1e-6),
           "you left out the last, shorter window: its 2 targets must be scored too (every target once)")
    expect(not math.isclose(value, _windowed_reference(model, ids, block_size, mean_of_means=True), rel_tol=1e-6),
           "you averaged the windows' mean losses, which gives the short last window the weight of a "
           "full one; add up the losses of all targets and divide by their number, len(ids) - 1")
    expect(not math.isclose(value, _windowed_reference(model, ids, block_size - 1), rel_tol=1e-6),
           f"your windows hold {block_size - 1} inputs; block_size = {block_size} is the number of inputs "
           f"per window (a window of inputs ids[s : s + {block_size}] has targets ids[s + 1 : s + {block_size + 1}])")
    expect(math.isclose(value, expected, rel_tol=1e-5),
           f"you returned {value:.5f}, expected {expected:.5f}: cut ids[:-1] into windows of block_size "
           "inputs from the start (the last one shorter), and score each window's targets once")
    exact = F.cross_entropy(model(ids[None, :-1])[0].double(), ids[1:]).item()
    value = expect_number(whole_split_loss(model, ids.clone(), len(ids) - 1), "whole_split_loss")
    expect(math.isclose(value, exact, rel_tol=1e-5),
           f"with one window holding the whole text, you returned {value:.5f}, expected {exact:.5f}")
