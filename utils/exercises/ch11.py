"""Checkers for chapter 11's exercises (training a GPT: weight decay, schedules, exact evaluation)."""

from __future__ import annotations

import math

import torch

from utils.exercises import checker, expect
from utils.models import GPT, GPTConfig
from utils.train import TrainConfig, decay_groups, learning_rate


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=8, C=16, n_heads=2, n_layers=2))


@checker("Exercise 11.1 — which parameters get weight decay")
def check_decay_split(split_for_decay) -> None:
    """``split_for_decay(model)`` → (names with decay, names without), the rule of ``configure_optimizer``."""
    model = _tiny_gpt()
    answer = split_for_decay(model)
    expect(isinstance(answer, tuple | list) and len(answer) == 2,
           f"return two collections of parameter names (decay, no decay), got {type(answer).__name__}")
    decay, no_decay = (set(a) for a in answer)
    expected_decay, expected_no_decay = (set(a) for a in decay_groups(model))
    every = {name for name, _ in model.named_parameters()}
    expect("head.weight" not in decay | no_decay,
           "head.weight is the token embedding itself (tied): named_parameters() lists it once, so should you")
    expect(not (decay - every) and not (no_decay - every),
           f"unknown names {sorted((decay | no_decay) - every)[:3]}: use the names of model.named_parameters()")
    expect(not decay & no_decay, f"{sorted(decay & no_decay)[:3]} are in both groups")
    missing = every - decay - no_decay
    expect(not missing, f"{sorted(missing)[:3]} are in neither group: every parameter goes in one of them")
    expect("positions.embedding.weight" not in decay,
           "the position table is a matrix, but a table of vectors *added* per position, a bias that depends on "
           "the position: it gets no decay")
    wrong_vectors = sorted(n for n in decay if model.get_parameter(n).ndim < 2)
    expect(not wrong_vectors, f"{wrong_vectors[:3]} are vectors (biases, LayerNorm gains): no decay for them")
    expect("token_embedding.weight" in decay,
           "the token embedding is also the output layer's weight matrix (tied), which multiplies: decay it")
    expect(decay == expected_decay and no_decay == expected_no_decay,
           f"decay should be {sorted(expected_decay)}, got {sorted(decay)}")


@checker("Exercise 11.2 — the Transformer paper's learning rate")
def check_vaswani_schedule(vaswani_lr) -> None:
    """``vaswani_lr(step, d_model, warmup_steps)`` = d^-0.5 · min(step^-0.5, step · warmup^-1.5), step from 1."""
    for d_model, warmup in ((512, 4000), (128, 100)):
        peak = d_model**-0.5 * warmup**-0.5
        config = TrainConfig(steps=10 * warmup, lr=peak, min_lr=0.0, warmup_steps=warmup, schedule="inverse_sqrt")
        for step in (warmup, 1, 2, warmup // 2, warmup - 1, warmup + 1, 3 * warmup, 10 * warmup):  # peak first
            got = vaswani_lr(step, d_model, warmup)
            expected = learning_rate(step - 1, config)  # the paper counts steps from 1, the trainer from 0
            expect(isinstance(got, int | float) or (isinstance(got, torch.Tensor) and got.numel() == 1),
                   f"vaswani_lr should return a number, got {type(got).__name__}")
            got = float(got)
            if step == warmup and not math.isclose(got, peak, rel_tol=1e-6):
                expect(False, f"at step = warmup_steps = {warmup} the rate should peak at d_model^-0.5 · "
                              f"warmup^-0.5 = {peak:.6g}, got {got:.6g}")
            expect(math.isclose(got, expected, rel_tol=1e-6),
                   f"vaswani_lr({step}, {d_model}, {warmup}) = {got:.6g}, expected {expected:.6g} "
                   f"(d_model^-0.5 · min(step^-0.5, step · warmup^-1.5))")


@checker("Exercise 11.3 — windows that score every target once")
def check_evaluation_windows(evaluation_windows) -> None:
    """``evaluation_windows(data, block_size)`` → list of (x, y): non-overlapping, each target once, in order."""
    for n, block_size in ((50, 8), (49, 8), (9, 8), (30, 5)):
        data = torch.arange(100, 100 + n)
        windows = list(evaluation_windows(data, block_size))
        expect(len(windows) > 0 and all(len(w) == 2 for w in windows),
               "return a list of (x, y) pairs of 1-D tensors")
        xs, ys = [w[0] for w in windows], [w[1] for w in windows]
        for x, y in windows:
            expect(x.ndim == 1 and x.shape == y.shape, f"x and y of a window are 1-D and equal in length; got "
                                                       f"{tuple(x.shape)} and {tuple(y.shape)}")
            expect(len(x) <= block_size, f"a window of {len(x)} tokens is longer than block_size={block_size}")
            expect(len(x) > 0, "a window holds at least one token")
            expect(torch.equal(y[:-1], x[1:]) and y[-1] == x[-1] + 1,  # data are consecutive numbers here
                   "y should be x shifted by one token (the next tokens)")
        scored = torch.cat(ys)
        expect(len(scored) <= n - 1,
               "windows overlap: some targets are scored more than once; step by block_size, not by 1")
        expect(len(scored) >= n - 1,
               f"{n - 1 - len(scored)} of the {n - 1} targets are never scored: keep the last, shorter window")
        expect(len(scored) == n - 1 and torch.equal(scored, data[1:]),
               "the targets, in order, should be every token of data but the first, each exactly once")
        expect(torch.equal(torch.cat(xs), data[:-1]), "the inputs, in order, should be data without its last token")
