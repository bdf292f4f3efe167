"""Chapter 04's checkers: they pass the reference solutions and reject plausible wrong answers."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch04 import (
    check_multi_head_forward,
    check_parameter_count,
    check_scaled_dot_product,
    check_split_heads,
)


def test_scaled_dot_product_checker_rejects_wrong_answers():
    def unscaled(q, k, v):
        weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return weights @ v, weights

    with pytest.raises(ExerciseFailed, match="without the scale"):
        check_scaled_dot_product(unscaled)

    def divided_by_d_k(q, k, v):
        weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
        return weights @ v, weights

    with pytest.raises(ExerciseFailed, match="divide by its square root"):
        check_scaled_dot_product(divided_by_d_k)

    def softmax_over_queries(q, k, v):
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2)
        return weights @ v, weights

    with pytest.raises(ExerciseFailed, match="sum of each query's weights"):
        check_scaled_dot_product(softmax_over_queries)

    def output_only(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v

    with pytest.raises(ExerciseFailed, match=r"return the pair \(output, weights\)"):
        check_scaled_dot_product(output_only)


def test_split_heads_checker_rejects_a_plain_view():
    def plain_view(x, n_heads):
        B, T, C = x.shape
        return x.view(B, n_heads, T, C // n_heads)

    def merge(x):
        B, n_heads, T, head_size = x.shape
        return x.transpose(1, 2).reshape(B, T, n_heads * head_size)

    with pytest.raises(ExerciseFailed, match="mixes tokens"):
        check_split_heads(plain_view, merge)

    def split(x, n_heads):
        B, T, C = x.shape
        return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)

    def merge_without_transpose(x):
        B, n_heads, T, head_size = x.shape
        return x.reshape(B, T, n_heads * head_size)

    with pytest.raises(ExerciseFailed, match="give x back"):
        check_split_heads(split, merge_without_transpose)


def test_parameter_count_checker_rejects_wrong_answers():
    with pytest.raises(ExerciseFailed, match=r"C=32, n_heads=4, bias=True you gave 3168, but the layer has 4224"):
        check_parameter_count(lambda C, n_heads, bias=True: 3 * C * C + (3 * C if bias else 0))  # no out_proj
    with pytest.raises(ExerciseFailed, match="four C×C maps"):
        check_parameter_count(lambda C, n_heads, bias=True: 4 * C * (C // n_heads) + 4 * C)  # one head's worth


def _forward(module, x, *, plain_view=False, project=True, scale=True):
    B, T, C = x.shape
    n_heads, head_size = module.n_heads, C // module.n_heads

    def split(t):
        if plain_view:
            return t.reshape(B, n_heads, T, head_size)
        return t.view(B, T, n_heads, head_size).transpose(1, 2)

    q, k, v = split(module.q_proj(x)), split(module.k_proj(x)), split(module.v_proj(x))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(head_size) if scale else 1.0)
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    return module.out_proj(out) if project else out


def test_multi_head_forward_checker_accepts_the_forward_and_names_slips(capsys):
    check_multi_head_forward(_forward)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="without the output projection"):
        check_multi_head_forward(lambda module, x: _forward(module, x, project=False))
    with pytest.raises(ExerciseFailed, match="mix tokens"):
        check_multi_head_forward(lambda module, x: _forward(module, x, plain_view=True))
    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_multi_head_forward(lambda module, x: _forward(module, x, scale=False))
    with pytest.raises(ExerciseFailed, match="shape"):
        check_multi_head_forward(lambda module, x: x[:, :-1])
