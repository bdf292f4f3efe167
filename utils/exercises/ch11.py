"""Checkers for chapter 11's exercises (training a GPT: accumulation, schedules, the loss scale).

Each checker runs the reader's code next to an independent reference (a float64
computation in one graph, the paper's formula, PyTorch's own ``GradScaler``) and,
when they differ, names the likely mistake.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from utils.exercises import checker, expect, expect_number
from utils.models import GPT, GPTConfig
from utils.train import TrainConfig, learning_rate

# --- 11.1: micro-batches of unequal size ---------------------------------------------------------

IGNORE = -100  # a padding target: F.cross_entropy's and sequence_loss's default ignore_index


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=8, C=16, n_heads=2, n_layers=2)).double()


def unequal_micro_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three micro-batches of shapes (2, 5), (3, 8), (1, 3) holding 7, 14 and 3 real (not padding) targets."""
    generator = torch.Generator().manual_seed(11)
    batches = []
    for B, T in ((2, 5), (3, 8), (1, 3)):
        x = torch.randint(0, 13, (B, T), generator=generator)
        y = torch.randint(0, 13, (B, T), generator=generator)
        batches.append((x, y))
    batches[0][1][1, 2:] = IGNORE  # 10 - 3 = 7 targets
    batches[1][1][0, 5:] = IGNORE  # 24 - 3 - 7 = 14 targets
    batches[1][1][2, 1:] = IGNORE
    return batches


def _gradients(model: torch.nn.Module) -> torch.Tensor | None:
    if any(p.grad is None for p in model.parameters()):
        return None
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _gradients_of(model: torch.nn.Module, batches, weigh) -> torch.Tensor:
    """Gradients of sum_i weigh(sum_i, count_i, mean_i) over micro-batches, all in one graph."""
    model = copy.deepcopy(model)
    total = 0.0
    for x, y in batches:
        losses = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none", ignore_index=IGNORE)
        count = (y != IGNORE).sum()
        total = total + weigh(losses.sum(), count, losses.sum() / count, y.numel())
    total.backward()
    return _gradients(model)


@checker("Exercise 11.1 — accumulating micro-batches of unequal size")
def check_unequal_accumulation(accumulate) -> None:
    """``accumulate(model, micro_batches)``: gradients (and the loss) of the whole batch, one micro-batch at a time."""
    model, batches = _tiny_gpt(), unequal_micro_batches()
    counts = [int((y != IGNORE).sum()) for _, y in batches]
    n, k = sum(counts), len(batches)
    expected = _gradients_of(model, batches, lambda s, c, m, numel: s / n)
    expected_loss = sum(
        F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum", ignore_index=IGNORE).item()
        for x, y in batches) / n
    model.zero_grad(set_to_none=True)

    calls = []
    hook = model.register_forward_pre_hook(lambda module, inputs: calls.append(tuple(inputs[0].shape)))
    try:
        loss = accumulate(model, [(x.clone(), y.clone()) for x, y in batches])
    finally:
        hook.remove()
    shapes = [tuple(x.shape) for x, _ in batches]
    expect(calls == shapes,
           f"call the model once per micro-batch, in order (inputs of shapes {shapes}); it was called with "
           f"{calls}. Accumulation exists because the whole batch does not fit in memory at once")
    got = _gradients(model)
    expect(got is not None, "some parameters have no gradient after accumulate: call backward() on each "
                            "micro-batch's loss (and do not zero the gradients between micro-batches)")
    close = lambda a: torch.allclose(got, a, rtol=1e-7, atol=1e-12)  # noqa: E731
    if not close(expected):
        wrong = {
            "you divided each micro-batch's mean loss by the number of micro-batches, as for equal micro-batches; "
            f"here they hold {counts} real targets, so each is weighted equally where it should count by its "
            f"targets: sum the per-target losses and divide by all {n} targets":
                lambda s, c, m, numel: m / k,
            "you added the micro-batches' mean losses without any weighting: divide the summed per-target "
            f"losses by the {n} real targets of the whole batch": lambda s, c, m, numel: m,
            f"your gradients are {n} times too large: the summed losses must be divided by the {n} real targets":
                lambda s, c, m, numel: s,
            f"the padding targets ({IGNORE}) were counted: divide by the {n} real targets, not all "
            f"{sum(y.numel() for _, y in batches)} positions": lambda s, c, m, numel: s / sum(
                y.numel() for _, y in batches),
        }
        for message, weigh in wrong.items():
            expect(not close(_gradients_of(model, batches, weigh)), message)
        largest = (got - expected).abs().max().item()
        expect(False, f"the gradients differ from one batch's by up to {largest:.3g}: each target of the whole batch "
                      f"should weigh 1/{n} in the loss")
    got_loss = expect_number(loss, "accumulate")
    expect(math.isclose(got_loss, expected_loss, rel_tol=1e-6),
           f"accumulate returned {got_loss:.6f}; the whole batch's loss (mean over its {n} real targets) is "
           f"{expected_loss:.6f}")


# --- 11.2: the Transformer paper's schedule --------------------------------------------------------


def _paper(step: int, d_model: int, warmup_steps: int) -> float:  # Vaswani et al. (2017), section 5.3
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


@checker("Exercise 11.2 — the Transformer paper's learning rate")
def check_vaswani_schedule(vaswani_lr, vaswani_peak) -> None:
    """``vaswani_lr(step, d_model, warmup_steps)`` (steps from 1) and ``vaswani_peak(d_model, warmup_steps)``."""
    for d_model, warmup in ((512, 4000), (128, 100), (64, 7)):
        for step in (1, 2, warmup // 2, warmup - 1, warmup, warmup + 1, 3 * warmup, 10 * warmup):
            if step < 1:
                continue
            got = expect_number(vaswani_lr(step, d_model, warmup), "vaswani_lr")
            expected = _paper(step, d_model, warmup)
            if not math.isclose(got, expected, rel_tol=1e-9):
                no_warmup = d_model**-0.5 * step**-0.5
                expect(not math.isclose(got, no_warmup, rel_tol=1e-9) or step > warmup,
                       f"vaswani_lr({step}, {d_model}, {warmup}) = {got:.6g}: that is d_model^-0.5 · step^-0.5, "
                       "with no warm-up; during the first warmup_steps the rate rises as step · warmup^-1.5")
                expect(not math.isclose(got, expected * d_model**0.5, rel_tol=1e-9),
                       f"vaswani_lr({step}, {d_model}, {warmup}) = {got:.6g} is {d_model}^0.5 times too large: "
                       "the factor d_model^-0.5 is missing")
                expect(False, f"vaswani_lr({step}, {d_model}, {warmup}) = {got:.6g}, expected {expected:.6g} "
                              "(d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5))")
        highest = max(_paper(s, d_model, warmup) for s in range(1, 4 * warmup))  # by brute force
        peak = expect_number(vaswani_peak(d_model, warmup), "vaswani_peak")
        expect(math.isclose(peak, highest, rel_tol=1e-9),
               f"vaswani_peak({d_model}, {warmup}) = {peak:.6g}, but the highest rate of the schedule is "
               f"{highest:.6g} (at step {warmup}: the two branches of the min meet there)")
        config = TrainConfig(steps=10 * warmup, lr=peak, min_lr=0.0, warmup_steps=warmup, schedule="inverse_sqrt")
        for step in (1, warmup, 7 * warmup):  # the trainer counts steps from 0
            expect(math.isclose(learning_rate(step - 1, config), _paper(step, d_model, warmup), rel_tol=1e-9),
                   "TrainConfig(lr=vaswani_peak(...), schedule='inverse_sqrt') should follow the paper's rates")


# --- 11.3: a loss scaler by hand -------------------------------------------------------------------


def _scaler_inputs() -> list[torch.Tensor]:
    """Eleven steps of inputs; steps 2, 3 and 8 hold an infinity, so their gradients overflow."""
    inputs = []
    for i in range(11):
        x = torch.tensor([1.0, -2.0, 3.0]) * (1 + i / 10)
        if i in (2, 3, 8):
            x[2] = math.inf
        inputs.append(x)
    return inputs


@checker("Exercise 11.3 — a loss scaler by hand")
def check_loss_scaler(LossScaler) -> None:  # noqa: N803 (the reader passes a class)
    """``LossScaler(scale, growth_interval)`` with ``scale_loss(loss)`` and ``step(optimizer)``, as GradScaler."""
    init, interval = 2.0**10, 3
    ours = LossScaler(scale=init, growth_interval=interval)
    expect(math.isclose(float(ours.scale), init), f"LossScaler(scale={init:g}).scale should start at {init:g}, "
                                                  f"got {ours.scale!r}")
    reference = torch.amp.GradScaler("cpu", init_scale=init, growth_factor=2.0, backoff_factor=0.5,
                                     growth_interval=interval)

    expected_weights, expected_scales = [], []
    w = torch.nn.Parameter(torch.tensor([0.5, 0.25, -1.0]))
    optimizer = torch.optim.SGD([w], lr=0.1)
    for x in _scaler_inputs():
        reference.scale((w * x).sum()).backward()
        reference.step(optimizer)
        reference.update()
        optimizer.zero_grad(set_to_none=True)
        expected_weights.append(w.detach().clone())
        expected_scales.append(reference.get_scale())

    w = torch.nn.Parameter(torch.tensor([0.5, 0.25, -1.0]))
    optimizer = torch.optim.SGD([w], lr=0.1)
    overflows = [i for i, x in enumerate(_scaler_inputs()) if not torch.isfinite(x).all()]
    for i, x in enumerate(_scaler_inputs()):
        loss = (w * x).sum()
        scaled = ours.scale_loss(loss)
        expect(isinstance(scaled, torch.Tensor) and scaled.requires_grad,
               f"scale_loss(loss) should return the loss times the scale, a tensor to call backward() on; got "
               f"{type(scaled).__name__}")
        scale_used = expected_scales[i - 1] if i else init  # the scale before this step
        if i not in overflows:
            expect(math.isclose(scaled.item(), loss.item() * scale_used, rel_tol=1e-6),
                   f"step {i}: scale_loss(loss) returned {scaled.item():.6g}, expected loss × scale = "
                   f"{loss.item():.6g} × {scale_used:g}")
        scaled.backward()
        before = w.detach().clone()
        stepped = ours.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        after = w.detach()
        if i in overflows:
            expect(torch.equal(after, before),
                   f"step {i}: the gradients held inf, yet the weights changed (to {after.tolist()}): a step whose "
                   "gradients are not all finite must be skipped")
            expect(stepped is False, f"step {i} overflowed and was skipped: step() should return False, "
                                     f"got {stepped!r}")
        else:
            expect(stepped is True, f"step {i} had finite gradients: step() should return True, got {stepped!r}")
            scaled_step = before - 0.1 * x * scale_used  # the gradient of w·x is x
            expect(not torch.allclose(after, scaled_step),
                   f"step {i}: the optimizer saw the gradients still multiplied by the scale: divide every .grad "
                   "by the scale before optimizer.step()")
            expect(torch.allclose(after, expected_weights[i], rtol=1e-6, atol=1e-7),
                   f"step {i}: the weights are {after.tolist()}, expected {expected_weights[i].tolist()} (one SGD "
                   "step on the true, unscaled gradients)")
        scale = float(ours.scale)
        if not math.isclose(scale, expected_scales[i]):
            if i in overflows:
                expect(False, f"after the overflow of step {i} the scale should be halved to {expected_scales[i]:g}; "
                              f"it is {scale:g}")
            expect(False, f"after step {i} the scale should be {expected_scales[i]:g}, it is {scale:g}: it doubles "
                          f"after every {interval} steps in a row without an overflow, and the count of such steps "
                          "restarts at 0 after an overflow and after each doubling")


# --- 11.4: warm-up, stable, decay --------------------------------------------------------------------


def _wsd(step: int, steps: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps  # as learning_rate: step 0 already moves
    decay_start = steps - decay_steps
    if step < decay_start:
        return lr
    progress = (step - decay_start + 1) / decay_steps  # 1 at the last step, steps - 1
    return lr + (min_lr - lr) * progress


@checker("Exercise 11.4 — warm-up, a stable rate, then a linear decay")
def check_wsd_schedule(wsd_lr) -> None:
    """``wsd_lr(step, steps, lr, min_lr, warmup_steps, decay_steps)`` for steps 0 … steps - 1."""
    for steps, lr, min_lr, warmup, decay in ((1000, 2e-2, 1e-4, 100, 200), (50, 1.0, 0.0, 5, 10), (30, 3e-3, 3e-4, 1, 10)):
        got = [expect_number(wsd_lr(s, steps, lr, min_lr, warmup, decay), "wsd_lr") for s in range(steps)]
        expected = [_wsd(s, steps, lr, min_lr, warmup, decay) for s in range(steps)]
        setting = f"steps={steps}, lr={lr:g}, min_lr={min_lr:g}, warmup_steps={warmup}, decay_steps={decay}"
        if math.isclose(got[0], 0.0, abs_tol=1e-12) and expected[0] > 0:
            expect(False, f"{setting}: step 0 gives 0, so the first step moves nothing; as learning_rate, the warm-up "
                          f"should give lr · (step + 1) / warmup_steps = {expected[0]:.6g} at step 0")
        expect(math.isclose(got[-1], min_lr, rel_tol=1e-9, abs_tol=1e-12),
               f"{setting}: the last step ({steps - 1}) should reach min_lr = {min_lr:g} exactly, got {got[-1]:.6g} "
               "(count the decay so that its last step is steps - 1)")
        for s in range(steps):
            if math.isclose(got[s], expected[s], rel_tol=1e-9, abs_tol=1e-15):
                continue
            decay_start = steps - decay
            if s >= decay_start:
                decay_part = got[decay_start - 1:]  # from the last stable step to the end
                steps_down = [a - b for a, b in zip(decay_part, decay_part[1:])]
                expect(max(steps_down) - min(steps_down) <= 1e-9 * lr,
                       f"{setting}: the decay should fall by the same amount every step, from lr at step "
                       f"{decay_start - 1} to min_lr at step {steps - 1} (a straight line, {(lr - min_lr) / decay:.3g} a step); "
                       f"yours falls by {min(steps_down):.3g} to {max(steps_down):.3g}")
            phase = "warm-up" if s < warmup else "stable phase"
            expect(False, f"{setting}: step {s} (in the {phase}) gives {got[s]:.6g}, expected {expected[s]:.6g}")
