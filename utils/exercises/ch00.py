"""Checkers for chapter 00's exercises (introduction and notation)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close, expect_number, expect_shape


@checker("Exercise 0.1 — shapes through the pipeline")
def check_pipeline_shapes(pipeline_shapes) -> None:
    """``pipeline_shapes(B, T, C, V)`` returns {stage name: shape} for the four stages."""
    for B, T, C, V in ((4, 16, 32, 100), (1, 7, 8, 65)):
        expected = {"token ids": (B, T), "embeddings": (B, T, C), "logits": (B, T, V), "probabilities": (B, T, V)}
        shapes = pipeline_shapes(B, T, C, V)
        expect(isinstance(shapes, dict), f"return a dict of stage name -> shape, got {type(shapes).__name__}")
        for stage, shape in expected.items():
            expect(stage in shapes, f"the dict has no entry for {stage!r}; it has {sorted(shapes)}")
            expect(tuple(shapes[stage]) == shape,
                   f"{stage}: with B={B}, T={T}, C={C}, V={V} you gave {tuple(shapes[stage])}, expected {shape}")


@checker("Exercise 0.2 — probabilities from logits")
def check_softmax(softmax) -> None:
    """``softmax(logits)`` over the last dimension, written without torch.softmax."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5) * 4
    probs = softmax(logits)
    expect_shape(probs, (2, 3, 5), "softmax(logits)")
    expect((probs >= 0).all().item(), "probabilities must not be negative")
    expect_close(probs.sum(-1), torch.ones(2, 3), "the sum over the last dimension")
    expect_close(probs, torch.softmax(logits, dim=-1), "softmax(logits)")
    big = softmax(torch.tensor([[1000.0, 0.0]]))
    expect(not torch.isnan(big).any().item(),
           "softmax(tensor([[1000., 0.]])) gives NaN: subtract the row's maximum before exponentiating")


@checker("Exercise 0.3 — the loss of a model that knows nothing")
def check_uniform_loss(loss_of_uniform_model) -> None:
    """``loss_of_uniform_model(V)``: the cross-entropy of predicting every token with probability 1/V."""
    for V in (2, 65, 50257):
        value = expect_number(loss_of_uniform_model(V), f"loss_of_uniform_model({V})")
        expect(math.isclose(value, math.log(V), rel_tol=1e-4),
               f"for V={V} you returned {value:.4f}; the loss is -log(1/V) = {math.log(V):.4f}")
