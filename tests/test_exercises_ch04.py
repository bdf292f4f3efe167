"""Chapter 04's checkers: they pass right answers and name plausible mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch04 import (
    check_interleaved_heads,
    check_multi_query_attention,
    check_next_token_head,
    check_relative_attention,
)


def next_token_head(scale=8.0, back=False):
    W_Q, W_K = torch.zeros(4, 4), torch.eye(4)
    for t in range(4):
        if 0 <= t + (-1 if back else 1) < 4:
            W_Q[t, t + (-1 if back else 1)] = scale
    return W_Q, W_K


def test_next_token_head_checker(capsys):
    check_next_token_head(next_token_head)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="PREVIOUS token"):
        check_next_token_head(lambda: next_token_head(back=True))
    with pytest.raises(ExerciseFailed, match="scale W_Q up"):
        check_next_token_head(lambda: next_token_head(scale=2.0))
    with pytest.raises(ExerciseFailed, match="reads itself"):
        check_next_token_head(lambda: (8 * torch.eye(4), torch.eye(4)))
    with pytest.raises(ExerciseFailed, match="return a tuple"):
        check_next_token_head(lambda: next_token_head()[0])
    with pytest.raises(ExerciseFailed, match="at least 0.9"):  # uniform weights
        check_next_token_head(lambda: (torch.zeros(4, 4), torch.eye(4)))


def interleaved(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, C // n_heads, n_heads).permute(0, 3, 1, 2)  # (B, n_heads, T, head_size)


def rows(w, n_heads, columns=False, inverse=False):
    head_size = w.shape[0] // n_heads
    perm = torch.tensor([h + i * n_heads for h in range(n_heads) for i in range(head_size)])
    perm = torch.argsort(perm) if inverse else perm
    return w[:, perm] if columns else w[perm]


def contiguous(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def test_interleaved_heads_checker_passes_a_right_answer(capsys):
    check_interleaved_heads(interleaved, rows)
    check_interleaved_heads(lambda x, n: torch.stack([x[..., h::n] for h in range(n)], dim=1), rows)
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(("split", "reorder", "named"), [
    (contiguous, rows, "that is the book's contiguous split"),
    (lambda x, n: interleaved(x, n).transpose(2, 3), rows, "interleaved_heads of a"),
    (interleaved, lambda w, n: w, "came back unchanged"),
    (interleaved, lambda w, n: rows(w, n, columns=True), "reordered the columns"),
    (interleaved, lambda w, n: rows(w, n, inverse=True), "the inverse reordering"),
    (interleaved, lambda w, n: w * 2, "only reorder"),
    (interleaved, lambda w, n: w.flip(0), "should be row h"),
])
def test_interleaved_heads_checker_names_the_mistake(split, reorder, named):
    with pytest.raises(ExerciseFailed, match=named):
        check_interleaved_heads(split, reorder)


def relative_attention(q, k, v, table, reverse=False, before_scale=False, after_softmax=False):
    T, d = q.shape[-2], q.shape[-1]
    offsets = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # s - t
    bias = table[:, (-offsets if reverse else offsets) + T - 1]  # (n_heads, T, T)
    scores = q @ k.transpose(-2, -1)
    if before_scale:
        scores = (scores + bias) / math.sqrt(d)
    else:
        scores = scores / math.sqrt(d) + (0 if after_softmax else bias)
    weights = torch.softmax(scores, dim=-1) + (bias if after_softmax else 0)
    return weights @ v


def test_relative_attention_checker(capsys):
    check_relative_attention(relative_attention)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="t - s"):
        check_relative_attention(lambda q, k, v, b: relative_attention(q, k, v, b, reverse=True))
    with pytest.raises(ExerciseFailed, match="after dividing by √d"):
        check_relative_attention(lambda q, k, v, b: relative_attention(q, k, v, b, before_scale=True))
    with pytest.raises(ExerciseFailed, match="before softmax"):
        check_relative_attention(lambda q, k, v, b: relative_attention(q, k, v, b, after_softmax=True))
    with pytest.raises(ExerciseFailed, match="ignores the bias"):
        check_relative_attention(lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v))
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor"):
        check_relative_attention(lambda q, k, v, b: None)


def multi_query_attention(x, W_q, W_k, W_v, W_o, n_heads, causal=True, plain_view=False, scale_C=False,
                          skip_out=False):
    B, T, C = x.shape
    head_size = C // n_heads
    if plain_view:
        q = (x @ W_q).view(B, n_heads, T, head_size)
    else:
        q = (x @ W_q).view(B, T, n_heads, head_size).transpose(1, 2)  # (B, n_heads, T, head_size)
    k, v = (x @ W_k)[:, None], (x @ W_v)[:, None]  # (B, 1, T, head_size): broadcast over heads
    scores = q @ k.transpose(-2, -1) / math.sqrt(C if scale_C else head_size)  # (B, n_heads, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    return out if skip_out else out @ W_o


def test_multi_query_attention_checker(capsys):
    check_multi_query_attention(multi_query_attention)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="must be causal"):
        check_multi_query_attention(lambda *a: multi_query_attention(*a, causal=False))
    with pytest.raises(ExerciseFailed, match="skips W_o"):
        check_multi_query_attention(lambda *a: multi_query_attention(*a, skip_out=True))
    with pytest.raises(ExerciseFailed, match="mixes tokens"):
        check_multi_query_attention(lambda *a: multi_query_attention(*a, plain_view=True))
    with pytest.raises(ExerciseFailed, match="not by 1/√C"):
        check_multi_query_attention(lambda *a: multi_query_attention(*a, scale_C=True))
