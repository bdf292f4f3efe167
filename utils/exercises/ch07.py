"""Checkers for chapter 07's exercises (feed-forward network, residual connections, LayerNorm)."""

from __future__ import annotations

import torch

from utils.exercises import checker, expect, expect_close, expect_shape
from utils.layers import FeedForward


def _swiglu_reference(x, W_gate, W_up, W_down):
    x, W_gate, W_up, W_down = (t.double() for t in (x, W_gate, W_up, W_down))
    gate = x @ W_gate
    return (gate * torch.sigmoid(gate) * (x @ W_up)) @ W_down


@checker("Exercise 7.1 — a gated feed-forward network (SwiGLU)")
def check_swiglu(swiglu, swiglu_width) -> None:
    """``swiglu(x, W_gate, W_up, W_down)`` = (SiLU(x W_gate) ⊙ x W_up) W_down, no biases;
    ``swiglu_width(C)``: the hidden width with the parameters of FeedForward(C, 4C)'s weights."""
    generator = torch.Generator().manual_seed(0)
    B, T, C, hidden = 2, 3, 6, 16
    x = torch.randn(B, T, C, generator=generator)
    W_gate, W_up = (torch.randn(C, hidden, generator=generator) for _ in range(2))
    W_down = torch.randn(hidden, C, generator=generator)
    out = swiglu(x.clone(), W_gate.clone(), W_up.clone(), W_down.clone())
    expect_shape(out, (B, T, C), "swiglu(x, ...) for x of shape (2, 3, 6)")
    out = out.detach().double()
    expected = _swiglu_reference(x, W_gate, W_up, W_down)
    expect(not torch.allclose(out, _swiglu_reference(x, W_up, W_gate, W_down), atol=1e-4),
           "SiLU went on the wrong branch: the gate is SiLU(x @ W_gate), multiplied by the plain x @ W_up")
    sigmoid_gate = (torch.sigmoid(x.double() @ W_gate.double()) * (x.double() @ W_up.double())) @ W_down.double()
    expect(not torch.allclose(out, sigmoid_gate, atol=1e-4),
           "that is sigmoid(x W_gate) ⊙ x W_up (GLU); Swish/SiLU is z · sigmoid(z)")
    relu_gate = (torch.relu(x.double() @ W_gate.double()) * (x.double() @ W_up.double())) @ W_down.double()
    expect(not torch.allclose(out, relu_gate, atol=1e-4), "that is ReGLU (ReLU gate); SwiGLU uses SiLU")
    expect_close(out, expected, "swiglu(x, ...)", atol=1e-4)
    for C in (64, 768, 4096):
        width = swiglu_width(C)
        expect(isinstance(width, int), f"swiglu_width should return an int, got {type(width).__name__}")
        relu_parameters, swiglu_parameters = 2 * C * 4 * C, 3 * C * width
        expect(abs(swiglu_parameters - relu_parameters) <= 3 * C,
               f"swiglu_width({C}) = {width}: three ({C} × {width}) matrices hold {swiglu_parameters:,} "
               f"weights, FeedForward({C}, {4 * C})'s two hold {relu_parameters:,}; make them (nearly) equal")


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


@checker("Exercise 7.4 — a stream that does not grow with depth")
def check_scale_residual_outputs(scale_residual_outputs_) -> None:
    """``scale_residual_outputs_(sublayers, n_residuals)``: in place, each sublayer's output weight
    (``linear2.weight``) times 1/√n_residuals; everything else untouched (GPT-2's initialisation)."""
    n_residuals = 12
    with torch.random.fork_rng():
        torch.manual_seed(7)
        sublayers = [FeedForward(8, 16) for _ in range(3)]
    before = [{name: p.detach().clone() for name, p in f.named_parameters()} for f in sublayers]
    with torch.no_grad():
        returned = scale_residual_outputs_(sublayers, n_residuals)
    expect(returned is None or returned is sublayers,
           f"scale the weights in place and return nothing, got a {type(returned).__name__}")
    for f, old in zip(sublayers, before):
        now = dict(f.named_parameters())
        expect(torch.equal(now["linear1.weight"], old["linear1.weight"]),
               "linear1 changed: only the output projection, linear2, feeds the residual addition")
        expect(torch.equal(now["linear1.bias"], old["linear1.bias"]) and
               torch.equal(now["linear2.bias"], old["linear2.bias"]),
               "a bias changed: GPT-2 scales only the output weight (its biases start at zero anyway)")
        w, w0 = now["linear2.weight"].detach(), old["linear2.weight"]
        expect(not torch.equal(w, w0), "linear2.weight is unchanged: multiply it in place, e.g. "
                                       "f.linear2.weight.mul_(...) under torch.no_grad()")
        expect(not torch.allclose(w, w0 / n_residuals),
               f"you divided by n_residuals = {n_residuals}; independent additions add variances, so the rms "
               "grows as the square root: divide by √n_residuals")
        expect(not torch.allclose(w, w0 * n_residuals ** 0.5), "you multiplied by √n_residuals: divide by it")
        expect_close(w, w0 / n_residuals ** 0.5, "linear2.weight after scaling")
