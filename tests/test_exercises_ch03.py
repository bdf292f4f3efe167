"""Chapter 03's checkers: they pass the reference solutions and explain plausible mistakes."""

import math

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch03 import check_shift_matrix, check_sinusoidal, check_wavelengths
from utils.positional import sinusoidal_positions


def test_check_sinusoidal_explains_mistakes():
    def swapped(T, C):  # cos in the even dimensions, sin in the odd ones
        return sinusoidal_positions(T, C).view(T, C // 2, 2).flip(-1).reshape(T, C)

    with pytest.raises(ExerciseFailed, match="swapped"):
        check_sinusoidal(swapped)

    def exponent_i_over_C(T, C):  # 10000^(i/C) with i counting pairs: frequencies too high
        angle = torch.arange(T)[:, None] / 10000.0 ** (torch.arange(C // 2) / C)
        return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, C)

    with pytest.raises(ExerciseFailed, match="2i/C"):
        check_sinusoidal(exponent_i_over_C)

    def halves(T, C):  # all sines first, then all cosines (a common variant, not the paper's layout)
        angle = torch.arange(T)[:, None] / 10000.0 ** (torch.arange(0, C, 2) / C)
        return torch.cat([angle.sin(), angle.cos()], dim=-1)

    with pytest.raises(ExerciseFailed, match="interleaves"):
        check_sinusoidal(halves)

    def base_1000(T, C):
        angle = torch.arange(T)[:, None] / 1000.0 ** (torch.arange(0, C, 2) / C)
        return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, C)

    with pytest.raises(ExerciseFailed, match="differs from the expected values"):
        check_sinusoidal(base_1000)
    with pytest.raises(ExerciseFailed, match=r"shape \(8, 10\), expected \(10, 8\)"):
        check_sinusoidal(lambda T, C: sinusoidal_positions(C, T))


def rotation_blocks(k, C, sign):
    blocks = []
    for i in range(C // 2):
        a = k / 10000.0 ** (2 * i / C)
        blocks.append(torch.tensor([[math.cos(a), sign * math.sin(a)], [-sign * math.sin(a), math.cos(a)]]))
    return torch.block_diag(*blocks)


def test_check_shift_matrix_explains_mistakes():
    check_shift_matrix(lambda k, C: rotation_blocks(k, C, +1))
    with pytest.raises(ExerciseFailed, match="wrong way"):
        check_shift_matrix(lambda k, C: rotation_blocks(k, C, -1))
    with pytest.raises(ExerciseFailed, match=r"shape \(2, 2\), expected \(4, 4\)"):
        check_shift_matrix(lambda k, C: rotation_blocks(k, 2, +1))

    def one_frequency(k, C):  # every pair rotated by the first pair's angle
        return torch.block_diag(*[rotation_blocks(k, 2, +1)] * (C // 2))

    with pytest.raises(ExerciseFailed, match="largest difference"):
        check_shift_matrix(one_frequency)

    def leaks(k, C):  # right blocks plus something outside them
        M = rotation_blocks(k, C, +1)
        M[0, -1] = 0.5
        return M

    with pytest.raises(ExerciseFailed, match="block-diagonal"):
        check_shift_matrix(leaks)


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
