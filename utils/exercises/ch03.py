"""Checkers for chapter 03's exercises (positional encoding)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close, expect_shape


def _frequencies(C: int, base: float = 10000.0) -> torch.Tensor:
    return base ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)  # (C/2,): ω_i = base^(-2i/C)


def _alibi_reference(T: int, n_heads: int) -> torch.Tensor:
    bias = torch.full((n_heads, T, T), float("-inf"), dtype=torch.float64)
    for h in range(n_heads):
        slope = 2.0 ** (-8.0 * (h + 1) / n_heads)
        for t in range(T):
            for s in range(t + 1):
                bias[h, t, s] = -slope * (t - s)
    return bias


@checker("Exercise 3.1 — ALiBi: distance as a bias, not a vector")
def check_alibi_bias(alibi_bias) -> None:
    """``alibi_bias(T, n_heads)``: (n_heads, T, T), -m_h (t - s) for s <= t, -inf above; m_h = 2^(-8(h+1)/n_heads)."""
    for T, n_heads in ((5, 4), (7, 8)):
        bias = alibi_bias(T, n_heads)
        expect_shape(bias, (n_heads, T, T), f"alibi_bias({T}, {n_heads})")
        bias = bias.detach().double().cpu()
        expected = _alibi_reference(T, n_heads)
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        expect(bool(torch.isneginf(bias[:, future]).all()),
               f"alibi_bias({T}, {n_heads}) must be -inf above the diagonal (key s after query t): "
               "the model is causal, so the future gets no weight at all")
        past = ~future
        expect(bool((bias[:, past] <= 0).all()),
               "a bias on the past should be <= 0 and fall with distance (-m (t - s)): yours is positive "
               "somewhere, which would reward looking far back")
        expect(bool((bias.diagonal(dim1=1, dim2=2) == 0).all()),
               "a query's bias for itself (t = s, distance 0) should be 0")
        slopes = -bias[:, 1, 0]  # distance 1: the slope of each head
        expected_slopes = -expected[:, 1, 0]
        if torch.allclose(slopes, expected_slopes.flip(0)) and n_heads > 1:
            expect(False, f"your slopes {slopes.tolist()} run the wrong way: head 0 gets the steepest, "
                          "2^(-8/n_heads), and the last head the gentlest, 2^(-8)")
        first = 2.0 ** (-8.0 / n_heads)
        expect(math.isclose(slopes[0].item(), first, rel_tol=1e-5),
               f"head 0's slope is {slopes[0].item():.5g}, expected 2^(-8/{n_heads}) = {first:.5g} "
               "(h counts from 0, so head h has 2^(-8(h+1)/n_heads))")
        expect_close(bias.masked_fill(future, 0.0), expected.masked_fill(future, 0.0),
                     f"alibi_bias({T}, {n_heads}) below the diagonal")


def _rotary_reference(x: torch.Tensor, base: float, sign: float = 1.0) -> torch.Tensor:
    *_, T, C = x.shape
    angles = sign * torch.arange(T, dtype=torch.float64)[:, None] * _frequencies(C, base)[None, :]  # (T, C/2)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x.double()[..., 0::2], x.double()[..., 1::2]
    out = torch.empty(x.shape, dtype=torch.float64)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


@checker("Exercise 3.2 — rotary position embeddings (RoPE)")
def check_rotary(rotary) -> None:
    """``rotary(x, base)``: x (..., T, C); pair (2i, 2i+1) at position t turned by the angle t ω_i."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 8, generator=generator)
    base = 10000.0
    out = rotary(x.clone(), base)
    expect_shape(out, tuple(x.shape), "rotary(x) for x of shape (2, 6, 8)")
    out = out.detach().double().cpu()
    expect(torch.allclose(out.norm(dim=-1), x.double().norm(dim=-1), atol=1e-4),
           "a rotation keeps every vector's length, yours changes it: each pair (x[2i], x[2i+1]) becomes "
           "(x cos - y sin, x sin + y cos), with cos and sin of the same angle")
    expect(torch.allclose(out[:, 0], x[:, 0].double(), atol=1e-6),
           "position 0 should not move (angle 0 · ω = 0); do your positions start at 1?")
    # the point of RoPE: q at position t and k at position s meet with a score that depends on t - s only
    q = torch.randn(8, generator=generator).expand(6, 8)
    k = torch.randn(8, generator=generator).expand(6, 8)
    scores = rotary(q.clone(), base).double() @ rotary(k.clone(), base).double().T  # (T, T)
    for offset in range(-5, 6):
        diagonal = scores.diagonal(offset)
        expect(torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4),
               f"the score of a query at t and a key at t + {offset} should be the same for every t "
               "(it depends on the offset only); yours varies along that diagonal, so the angle is not "
               "(position × ω_i) for both q and k")
    expected = _rotary_reference(x, base)
    expect(not torch.allclose(out, _rotate_half_layout(x, base), atol=1e-5),
           "you paired dimension i with i + C/2 (the 'rotate half' layout some libraries use); here the "
           "pairs are (2i, 2i + 1), as in section 3's table")
    expect(not torch.allclose(out, _rotary_reference(x, base, sign=-1.0), atol=1e-5),
           "you turned each pair the other way round: the pair (x, y) becomes (x cos - y sin, x sin + y cos)")
    expect_close(out, expected, "rotary(x)", atol=1e-5)
    slow = rotary(x.clone(), 100.0).detach().double()
    expect_close(slow, _rotary_reference(x, 100.0), "rotary(x, base=100)", atol=1e-5)


def _rotate_half_layout(x: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE with dimension i paired with i + C/2 (GPT-NeoX / Llama code's layout)."""
    C = x.shape[-1]
    first, second = x.double()[..., : C // 2], x.double()[..., C // 2 :]
    interleaved = torch.stack([first, second], dim=-1).flatten(-2)  # (…, C): pairs side by side
    rotated = _rotary_reference(interleaved, base)
    return torch.cat([rotated[..., 0::2], rotated[..., 1::2]], dim=-1)


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
