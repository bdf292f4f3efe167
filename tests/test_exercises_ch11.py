"""Chapter 11's exercises: the reference solutions pass, plausible wrong answers are caught and named."""

import math

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ExerciseFailed
from utils.exercises.ch11 import check_loss_scaler, check_unequal_accumulation, check_vaswani_schedule

# --- 11.1 ---------------------------------------------------------------------------------------


def accumulation(weigh, concatenate=False):
    """An accumulate(model, micro_batches) that weighs each micro-batch by weigh(sum, count, k, n, numel)."""

    def accumulate(model, micro_batches):
        if concatenate:  # one forward for all: pads every micro-batch to the longest
            T = max(x.shape[1] for x, _ in micro_batches)
            x = torch.cat([F.pad(x, (0, T - x.shape[1])) for x, _ in micro_batches])
            y = torch.cat([F.pad(y, (0, T - y.shape[1]), value=-100) for _, y in micro_batches])
            micro_batches = [(x, y)]
        k = len(micro_batches)
        n = sum(int((y != -100).sum()) for _, y in micro_batches)
        numel = sum(y.numel() for _, y in micro_batches)
        total = 0.0
        for x, y in micro_batches:
            summed = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")
            loss = weigh(summed, int((y != -100).sum()), k, n, numel)
            loss.backward()
            total += loss.item()
        return total

    return accumulate


def test_accumulation_reference_passes(capsys):
    check_unequal_accumulation(accumulation(lambda s, c, k, n, numel: s / n))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(("weigh", "named"), [
    (lambda s, c, k, n, numel: s / c / k, "divided each micro-batch's mean loss by the number of micro-batches"),
    (lambda s, c, k, n, numel: s / c, "without any weighting"),
    (lambda s, c, k, n, numel: s, "24 times too large"),
    (lambda s, c, k, n, numel: s / numel, "padding targets"),
    (lambda s, c, k, n, numel: s / (n + 1), "differ from one batch's"),
], ids=["mean-over-k", "sum-of-means", "no-division", "padding-counted", "other"])
def test_accumulation_checker_names_the_weighting_mistake(weigh, named):
    with pytest.raises(ExerciseFailed, match=named):
        check_unequal_accumulation(accumulation(weigh))


def test_accumulation_checker_wants_one_call_per_micro_batch_gradients_and_the_loss():
    with pytest.raises(ExerciseFailed, match="once per micro-batch"):
        check_unequal_accumulation(accumulation(lambda s, c, k, n, numel: s / n, concatenate=True))

    def no_backward(model, micro_batches):
        return sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item()
                   for x, y in micro_batches)

    with pytest.raises(ExerciseFailed, match="no gradient"):
        check_unequal_accumulation(no_backward)

    right = accumulation(lambda s, c, k, n, numel: s / n)
    with pytest.raises(ExerciseFailed, match="returned 0.000000"):
        check_unequal_accumulation(lambda model, batches: right(model, batches) * 0)
    with pytest.raises(ExerciseFailed, match="expected one number"):
        check_unequal_accumulation(lambda model, batches: [right(model, batches)])


# --- 11.2 ---------------------------------------------------------------------------------------


def paper(step, d, w):
    return d**-0.5 * min(step**-0.5, step * w**-1.5)


def test_vaswani_reference_passes(capsys):
    check_vaswani_schedule(paper, lambda d, w: d**-0.5 * w**-0.5)
    assert "✓" in capsys.readouterr().out


def test_vaswani_checker_names_a_missing_warmup_factor_and_a_wrong_peak():
    peak = lambda d, w: d**-0.5 * w**-0.5  # noqa: E731
    with pytest.raises(ExerciseFailed, match="no warm-up"):
        check_vaswani_schedule(lambda s, d, w: d**-0.5 * s**-0.5, peak)
    with pytest.raises(ExerciseFailed, match="d_model\\^-0.5 is missing"):
        check_vaswani_schedule(lambda s, d, w: min(s**-0.5, s * w**-1.5), peak)
    with pytest.raises(ExerciseFailed, match=r"vaswani_lr\(4001, 512, 4000\)"):
        check_vaswani_schedule(lambda s, d, w: d**-0.5 * min(s**-0.5, s * w**-1.5) if s <= w else d**-0.5 / s, peak)
    with pytest.raises(ExerciseFailed, match="highest rate of the schedule"):
        check_vaswani_schedule(paper, lambda d, w: d**-0.5 * w**-1.5)  # the rate of step 1
    with pytest.raises(ExerciseFailed, match="expected one number"):
        check_vaswani_schedule(paper, lambda d, w: (d**-0.5 * w**-0.5,))


# --- 11.3 ---------------------------------------------------------------------------------------


def make_scaler(unscale=True, skip=True, backoff=0.5, reset_on_overflow=True, grow_at=None):
    class LossScaler:
        def __init__(self, scale=2.0**16, growth_interval=2000):
            self.scale, self.interval, self.good = scale, growth_interval, 0

        def scale_loss(self, loss):
            return loss * self.scale

        def step(self, optimizer):
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if unscale:
                for g in grads:
                    g.div_(self.scale)
            if not all(torch.isfinite(g).all() for g in grads):
                self.scale *= backoff
                if reset_on_overflow:
                    self.good = 0
                if skip:
                    return False
                optimizer.step()
                return True
            optimizer.step()
            self.good += 1
            if self.good == (grow_at or self.interval):
                self.scale, self.good = self.scale * 2, 0
            return True

    return LossScaler


def test_loss_scaler_reference_passes(capsys):
    check_loss_scaler(make_scaler())
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(("settings", "named"), [
    (dict(unscale=False), "still multiplied by the scale"),
    (dict(skip=False), "must be skipped"),
    (dict(backoff=1.0), "should be halved"),
    (dict(reset_on_overflow=False), "restarts at 0 after an overflow"),
    (dict(grow_at=2), "doubles after every 3 steps"),
], ids=["no-unscale", "no-skip", "no-backoff", "no-reset", "grows-too-early"])
def test_loss_scaler_checker_names_the_mistake(settings, named):
    with pytest.raises(ExerciseFailed, match=named):
        check_loss_scaler(make_scaler(**settings))


def test_loss_scaler_checker_wants_a_tensor_the_start_scale_and_a_boolean():
    class Float(make_scaler()):
        def scale_loss(self, loss):
            return loss.item() * self.scale

    with pytest.raises(ExerciseFailed, match="a tensor to call backward"):
        check_loss_scaler(Float)

    class StartsAtOne(make_scaler()):
        def __init__(self, scale=2.0**16, growth_interval=2000):
            super().__init__(1.0, growth_interval)

    with pytest.raises(ExerciseFailed, match="should start at 1024"):
        check_loss_scaler(StartsAtOne)

    class ReturnsNothing(make_scaler()):
        def step(self, optimizer):
            super().step(optimizer)

    with pytest.raises(ExerciseFailed, match="should return True"):
        check_loss_scaler(ReturnsNothing)
    assert math.isclose(make_scaler()(scale=8.0).scale_loss(torch.tensor(2.0)).item(), 16.0)


# --- 11.4 ---------------------------------------------------------------------------------------


def wsd(warmup=lambda s, w: (s + 1) / w, progress=lambda s, start, d: (s - start + 1) / d, stable=1.0,
        shape=lambda p: p):
    def wsd_lr(step, steps, lr, min_lr, warmup_steps, decay_steps):
        if step < warmup_steps:
            return lr * warmup(step, warmup_steps)
        start = steps - decay_steps
        if step < start:
            return lr * stable
        return lr + (min_lr - lr) * shape(progress(step, start, decay_steps))

    return wsd_lr


def test_wsd_reference_passes(capsys):
    from utils.exercises.ch11 import check_wsd_schedule

    check_wsd_schedule(wsd())
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(("answer", "named"), [
    (wsd(warmup=lambda s, w: s / w), "step 0 gives 0"),
    (wsd(progress=lambda s, start, d: (s - start) / d), "reach min_lr = 0.0001 exactly"),
    (wsd(shape=lambda p: (1 - math.cos(math.pi * p)) / 2), "a straight line"),
    (wsd(progress=lambda s, start, d: min(1.0, (s - start + 2) / d)), r"from lr at step 799 to min_lr at step 999 \(a straight line, 9.95e-05 a step\)"),
    (wsd(stable=0.5), r"in the stable phase\) gives 0.01, expected 0.02"),
    (lambda *args: [0.1], "expected one number"),
], ids=["warmup-from-zero", "ends-late", "cosine", "starts-early", "stable-wrong", "not-a-number"])
def test_wsd_checker_names_the_mistake(answer, named):
    from utils.exercises.ch11 import check_wsd_schedule

    with pytest.raises(ExerciseFailed, match=named):
        check_wsd_schedule(answer)
