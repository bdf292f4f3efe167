"""Checkers for chapter 07's exercises (feed-forward network, residual connections, LayerNorm)."""

from __future__ import annotations

import torch

from utils.exercises import checker, expect, expect_close, expect_shape
from utils.layers import FeedForward


@checker("Exercise 7.1 — the feed-forward network's parameters")
def check_feed_forward_parameters(feed_forward_parameters) -> None:
    """``feed_forward_parameters(C, d_ff)``: how many numbers a FeedForward(C, d_ff) learns."""
    for C, d_ff in ((16, 64), (10, 7), (512, 2048), (768, 3072)):
        expected = sum(p.numel() for p in FeedForward(C, d_ff).parameters()) if C < 100 else 2 * C * d_ff + d_ff + C
        value = feed_forward_parameters(C, d_ff)
        expect(isinstance(value, int), f"return an int, got {type(value).__name__}")
        weights_only = 2 * C * d_ff
        hint = " (you counted the weights; the two biases add d_ff + C more)" if value == weights_only else ""
        expect(value == expected, f"for C={C}, d_ff={d_ff} you gave {value:,}; it is {expected:,}{hint}")


def _rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


@checker("Exercise 7.2 — RMSNorm")
def check_rms_norm(rms_norm) -> None:
    """``rms_norm(x, weight, eps)``: x / sqrt(mean(x², last dim) + eps) * weight, without centring."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, generator=generator) * 3 + 2  # a mean far from 0 tells RMSNorm and LayerNorm apart
    weight = torch.rand(8, generator=generator) + 0.5
    out = rms_norm(x, weight, 1e-6)
    expect_shape(out, (2, 5, 8), "rms_norm(x, weight, eps) for x of shape (2, 5, 8)")
    centred = x - x.mean(dim=-1, keepdim=True)
    if torch.allclose(out, _rms_norm_reference(centred, weight, 1e-6), atol=1e-4):
        expect(False, "you subtracted the mean first: that is LayerNorm. RMSNorm divides x itself by its root mean square")
    expect_close(out, _rms_norm_reference(x, weight, 1e-6), "rms_norm(x, weight, eps)", atol=1e-4)
    zeros = rms_norm(torch.zeros(1, 8), torch.ones(8), 1e-6)
    expect(not torch.isnan(zeros).any().item(), "rms_norm of an all-zero vector gives NaN: add eps inside the square root")
    expect_close(rms_norm(x, weight, 10.0), _rms_norm_reference(x, weight, 10.0), "rms_norm with eps=10", atol=1e-4)


@checker("Exercise 7.3 — the feed-forward network as two convolutions")
def check_feed_forward_as_convolutions(feed_forward_as_convolutions) -> None:
    """``feed_forward_as_convolutions(x, ff)``: ff(x) for x (B, T, C), computed with F.conv1d."""
    torch.manual_seed(0)
    ff = FeedForward(8, d_ff=20).eval()
    x = torch.randn(2, 5, 8)
    out = feed_forward_as_convolutions(x, ff)
    expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}")
    expect(tuple(out.shape) != (2, 8, 5),
           "your result has shape (B, C, T) = (2, 8, 5): conv1d works channels-first, transpose back to (B, T, C)")
    expect_close(out, ff(x).detach(), "feed_forward_as_convolutions(x, ff)")
