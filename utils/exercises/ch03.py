"""Checkers for chapter 03's exercises (positional encoding)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close, expect_shape
from utils.positional import sinusoidal_positions


def _frequencies(C: int, base: float = 10000.0) -> torch.Tensor:
    return base ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # (C/2,): ω_i = base^(-2i/C)


@checker("Exercise 3.1 — sinusoidal positions from the formula")
def check_sinusoidal(sinusoidal) -> None:
    """``sinusoidal(T, C)`` returns the (T, C) table of the paper: even dims sin, odd dims cos."""
    for T, C in ((10, 8), (50, 16)):
        table = sinusoidal(T, C)
        expect_shape(table, (T, C), f"sinusoidal({T}, {C})")
        table = table.detach().float().cpu()
        expected = sinusoidal_positions(T, C)
        swapped = expected.view(T, C // 2, 2).flip(-1).reshape(T, C)
        expect(not torch.allclose(table, swapped, atol=1e-4),
               "sines and cosines are swapped: even dimensions (0, 2, 4, ...) hold sin, odd ones hold cos")
        halves = torch.cat([expected[:, 0::2], expected[:, 1::2]], dim=-1)
        expect(not torch.allclose(table, halves, atol=1e-4),
               "all sines come first, then all cosines; the paper interleaves them: "
               "dimension 2i holds sin, dimension 2i+1 the cos of the same angle")
        angle = torch.arange(T, dtype=torch.float32)[:, None] * 10000.0 ** (-torch.arange(C // 2) / C)
        one_step = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T, C)
        expect(not torch.allclose(table, one_step, atol=1e-4),
               "the frequencies are off: pair i uses the exponent 2i/C (i counts pairs), not i/C")
        expect(table[0, 0].abs() < 1e-6 and (table[0, 1] - 1).abs() < 1e-6,
               f"position 0 should start with sin(0) = 0 and cos(0) = 1, got {table[0, 0]:.4f}, {table[0, 1]:.4f}")
        expect_close(table, expected, f"sinusoidal({T}, {C})", atol=1e-4)


@checker("Exercise 3.2 — a shift of k positions is a rotation")
def check_shift_matrix(shift_matrix) -> None:
    """``shift_matrix(k, C)`` returns the (C, C) matrix M with PE[pos + k] = M @ PE[pos] for every pos."""
    for k, C in ((1, 4), (5, 16)):
        M = shift_matrix(k, C)
        expect_shape(M, (C, C), f"shift_matrix({k}, {C})")
        M = M.detach().double().cpu()
        pe = sinusoidal_positions(60, C).double()
        expect(not torch.allclose(pe[:-k], pe[k:] @ M.T, atol=1e-4),
               f"shift_matrix({k}, {C}) turns the wrong way: it maps PE[pos + k] back to PE[pos]; "
               "swap the signs of the two sines")
        outside = M.clone()
        for i in range(C // 2):
            outside[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = 0
        expect(outside.abs().max() < 1e-6,
               "M should be block-diagonal: each (sin, cos) pair only mixes with itself")
        expect_close((pe[:-k] @ M.T).float(), pe[k:].float(), f"PE[pos] mapped by shift_matrix({k}, {C})", atol=1e-4)


@checker("Exercise 3.3 — the wavelengths")
def check_wavelengths(wavelengths) -> None:
    """``wavelengths(C, base)`` returns (C/2,) periods, in positions, of the dimension pairs."""
    for C, base in ((8, 10000.0), (64, 10000.0), (16, 100.0)):
        result = wavelengths(C, base)
        expect_shape(result, (C // 2,), f"wavelengths({C}, {base:g})")
        result = result.detach().double().cpu()
        expected = 2 * math.pi / _frequencies(C, base)
        expect(not torch.allclose(result, 1 / _frequencies(C, base), rtol=1e-4),
               "these are 1/ω; a sine of angular frequency ω repeats every 2π/ω positions")
        expect(not torch.allclose(result, 2 * math.pi * _frequencies(C, base), rtol=1e-4),
               "these grow the wrong way: the first pair turns fastest (wavelength 2π), the last slowest")
        expect_close(result, expected, f"wavelengths({C}, {base:g})", rtol=1e-4)
