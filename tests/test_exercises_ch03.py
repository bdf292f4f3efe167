"""Chapter 03's checkers: they pass the reference solutions and explain plausible mistakes."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch03 import check_alibi_bias, check_rotary, check_wavelengths


def alibi_bias(T, n_heads, first_head=1, sign=-1.0, masked=True):
    slopes = 2.0 ** (-8.0 * (torch.arange(n_heads) + first_head) / n_heads)  # (n_heads,)
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T): t - s
    bias = sign * slopes[:, None, None] * distance  # (n_heads, T, T)
    if masked:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias


def test_check_alibi_bias_explains_mistakes(capsys):
    check_alibi_bias(alibi_bias)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="-inf above the diagonal"):
        check_alibi_bias(lambda T, n: alibi_bias(T, n, masked=False))
    with pytest.raises(ExerciseFailed, match="reward looking far back"):
        check_alibi_bias(lambda T, n: alibi_bias(T, n, sign=1.0))
    with pytest.raises(ExerciseFailed, match="h counts from 0"):
        check_alibi_bias(lambda T, n: alibi_bias(T, n, first_head=0))
    with pytest.raises(ExerciseFailed, match="wrong way"):
        check_alibi_bias(lambda T, n: alibi_bias(T, n).flip(0))
    with pytest.raises(ExerciseFailed, match=r"shape \(5, 5\), expected \(4, 5, 5\)"):
        check_alibi_bias(lambda T, n: alibi_bias(T, n)[0])


def rotary(x, base=10000.0, sign=1.0, start=0, rotate_half=False, scale=1.0, power=1):
    T, C = x.shape[-2:]
    omega = base ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # (C/2,)
    angle = sign * (torch.arange(T, dtype=torch.float64)[:, None] + start) ** power * omega  # (T, C/2)
    cos, sin = angle.cos(), angle.sin() * scale
    x = x.double()
    if rotate_half:
        a, b = x[..., : C // 2], x[..., C // 2 :]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def test_check_rotary_explains_mistakes(capsys):
    check_rotary(rotary)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="keeps every vector's length"):
        check_rotary(lambda x, base: rotary(x, base, scale=2.0))
    with pytest.raises(ExerciseFailed, match="positions start at 1"):
        check_rotary(lambda x, base: rotary(x, base, start=1))
    with pytest.raises(ExerciseFailed, match="rotate half"):
        check_rotary(lambda x, base: rotary(x, base, rotate_half=True))
    with pytest.raises(ExerciseFailed, match="other way round"):
        check_rotary(lambda x, base: rotary(x, base, sign=-1.0))
    with pytest.raises(ExerciseFailed, match="depends on the offset only"):  # angle not linear in t
        check_rotary(lambda x, base: rotary(x, base, power=2))
    with pytest.raises(ExerciseFailed, match=r"rotary\(x, base=100\)"):  # the base ignored
        check_rotary(lambda x, base: rotary(x, 10000.0))


def test_check_wavelengths_explains_mistakes():
    def omegas(C, base):
        return base ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)

    check_wavelengths(lambda C, base=10000.0: 2 * math.pi / omegas(C, base))
    with pytest.raises(ExerciseFailed, match="2π/ω"):
        check_wavelengths(lambda C, base=10000.0: 1 / omegas(C, base))
    with pytest.raises(ExerciseFailed, match="wrong way"):
        check_wavelengths(lambda C, base=10000.0: 2 * math.pi * omegas(C, base))
    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_wavelengths(lambda C, base=10000.0: 2 * math.pi / omegas(C, 10000.0))  # ignores base
