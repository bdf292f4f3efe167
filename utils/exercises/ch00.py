"""Checkers for chapter 00's exercises (introduction and notation)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect, expect_close, expect_number, expect_shape


@checker("Exercise 0.1 — how much memory the logits take")
def check_logits_bytes(logits_bytes) -> None:
    """``logits_bytes(B, T, V, dtype)``: the bytes of a logits tensor (B, T, V) of ``dtype``."""
    cases = [(3, 16, 65, torch.float32), (2, 7, 100, torch.float16), (3, 5, 11, torch.float64),
             (8, 1024, 50257, torch.float32), (1, 3, 9, torch.bfloat16), (2, 3, 9, torch.bfloat16)]
    for B, T, V, dtype in cases:
        expected = torch.empty(B, T, V, dtype=dtype, device="meta").nbytes  # PyTorch's own count, nothing allocated
        value = expect_number(logits_bytes(B, T, V, dtype), "logits_bytes")
        size = torch.empty((), dtype=dtype).element_size()
        where = f"logits_bytes({B}, {T}, {V}, {dtype})"
        if value == expected:
            continue
        expect(value != B * T * V,
               f"{where} returned {value:,}, the number of numbers; each takes {size} bytes in {dtype}")
        expect(value != B * T * V * size * 8, f"{where} returned {value:,} bits; a byte is 8 bits")
        expect(value != B * T * V * 4,
               f"{where} returned {value:,}: 4 bytes a number is float32's size, but {dtype} takes {size}")
        expect(value not in (T * V * size, B * V * size, B * T * size),
               f"{where} returned {value:,}: one of B, T or V is missing from the product")
        expect(value == expected, f"{where} returned {value:,}, expected {expected:,}")


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


@checker("Exercise 0.3 — perplexity, the number of choices")
def check_perplexity(perplexity) -> None:
    """``perplexity(p_true)``: exp of the mean of -log p over the probabilities the model gave the true tokens."""
    for k in (2, 65, 50257, 1):  # uniform over k tokens: perplexity k
        value = expect_number(perplexity(torch.full((10,), 1.0 / k)), "perplexity")
        expect(not math.isclose(value, math.log(k), rel_tol=1e-4) or k == 1,
               f"for a model uniform over {k} tokens you returned {value:.4g} = log {k}, the loss; perplexity is "
               "e^loss")
        expect(not math.isclose(value, math.log2(k), rel_tol=1e-4) or k == 1,
               f"for a model uniform over {k} tokens you returned {value:.4g}, the loss in bits; perplexity is "
               "e^loss (in nats), or 2^loss in bits: the same number")
        expect(math.isclose(value, k, rel_tol=1e-4),
               f"a model uniform over {k} tokens gives each true token 1/{k}; its perplexity should be {k}, "
               f"yours is {value:.6g}")
    p_true = torch.tensor([0.5, 0.25, 0.125, 1.0, 0.01], dtype=torch.float64)
    expected = math.exp(-p_true.log().mean().item())
    value = expect_number(perplexity(p_true.clone()), "perplexity")
    arithmetic = (1 / p_true).mean().item()
    expect(not math.isclose(value, arithmetic, rel_tol=1e-4),
           f"you returned the mean of 1/p ({arithmetic:.4g}); perplexity is exp(mean(-log p)), the geometric "
           "mean of 1/p, so one very unlikely token does not swamp the rest")
    expect(not math.isclose(value, math.exp(-p_true.log().sum().item()), rel_tol=1e-4),
           "you exponentiated the sum of -log p; perplexity uses the mean (the loss), so it does not grow "
           "with the number of tokens")
    expect(math.isclose(value, expected, rel_tol=1e-4),
           f"for true-token probabilities {p_true.tolist()} you returned {value:.6g}, expected {expected:.6g}")
