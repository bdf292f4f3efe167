"""Checkers for chapter 07's exercises (feed-forward network, residual connections, LayerNorm)."""

from __future__ import annotations

import torch

from utils.exercises import checker, expect, expect_close, expect_shape
from utils.layers import FeedForward, LayerNorm, Residual


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


@checker("Exercise 7.4 — a pre-norm stack")
def check_pre_norm_stack(pre_norm_stack) -> None:
    """``pre_norm_stack(x, sublayers, norms, final_norm)``: x + f(norm(x)) for each pair, then final_norm."""
    generator = torch.Generator().manual_seed(7)
    C, n_layers = 8, 3
    with torch.random.fork_rng():
        torch.manual_seed(7)
        sublayers = [FeedForward(C, 16).eval() for _ in range(n_layers)]
        norms = [LayerNorm(C) for _ in range(n_layers)]
        final_norm = LayerNorm(C)
    with torch.no_grad():  # gains and biases away from 1 and 0, so that a skipped norm shows
        for norm in (*norms, final_norm):
            norm.weight.copy_(torch.rand(C, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(C, generator=generator))
    x = torch.randn(2, 5, C, generator=generator) * 3 + 1
    with torch.no_grad():
        out = pre_norm_stack(x.clone(), sublayers, norms, final_norm)
        expect_shape(out, (2, 5, C), f"pre_norm_stack of x {tuple(x.shape)}")
        stream = x
        for f, norm in zip(sublayers, norms):
            residual = Residual(C, norm_first=True)
            residual.norm.load_state_dict(norm.state_dict())
            stream = residual(stream, f)
        expected = final_norm(stream)
        post = x
        for f, norm in zip(sublayers, norms):
            post = norm(post + f(post))
        is_post_norm = any(torch.allclose(out, y, atol=1e-4) for y in (post, final_norm(post)))
        expect(not is_post_norm,
               "that is post-norm, norm(x + f(x)); pre-norm normalises the sublayer's *input*: x + f(norm(x))")
        expect(not torch.allclose(out, stream, atol=1e-4),
               "the stack's output has not been through final_norm: a pre-norm residual stream is never "
               "normalised on the way, so apply final_norm once at the end")
        no_residual = x
        for f, norm in zip(sublayers, norms):
            no_residual = f(norm(no_residual))
        expect(not torch.allclose(out, final_norm(no_residual), atol=1e-4),
               "the residual connection is missing: add the sublayer's output to x, x + f(norm(x))")
        expect_close(out, expected, "pre_norm_stack(x, sublayers, norms, final_norm)", atol=1e-4)
