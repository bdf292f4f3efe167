"""The trainer on devices this machine may not have: precision by compute capability, CUDA's random
state only on CUDA runs, and no read of a device value in a training step (issue 18, items 3, 4, 7).

The CUDA queries are patched, so these run on a CPU: a T4 (compute capability 7.5) and an A100 (8.0).
"""

import math

import pytest
import torch

from utils import train as kit
from utils.models import GPT, GPTConfig
from utils.train import PRECISION_VARIABLE, TrainConfig, Trainer, random_windows, resolve_precision

V = 11
STREAM = torch.randint(V, (500,), generator=torch.Generator().manual_seed(1))


def tiny_trainer(steps=6, plain=False, **fields):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=8, C=16, n_heads=2, n_layers=2, dropout=0.1))
    if plain:  # no check of the token ids inside (those are utils.models', tested there): only the trainer reads
        model = torch.nn.Sequential(torch.nn.Embedding(V, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, V))
    config = TrainConfig(**{"steps": steps, "batch_size": 4, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2,
                            "eval_every": 10**6, "device": "cpu", **fields})
    return Trainer(model, config, batch_at=random_windows(STREAM, 8, 4, seed=5))


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_follows_the_compute_capability_not_is_bf16_supported(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # a T4 answers True (emulated)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"  # a precision asked for is kept


def test_the_precision_variable_replaces_the_config_and_a_bad_value_is_one_line(monkeypatch):
    monkeypatch.setenv(PRECISION_VARIABLE, "bf16")
    assert tiny_trainer().precision == "bf16"
    monkeypatch.setenv(PRECISION_VARIABLE, "fp32")
    assert tiny_trainer(precision="bf16").precision == "fp32"
    monkeypatch.setenv(PRECISION_VARIABLE, "fp8")
    with pytest.raises(ValueError, match=r"LLM_FROM_SCRATCH_PRECISION='fp8': use one of auto, fp32, bf16, fp16"):
        tiny_trainer()
    monkeypatch.setenv(PRECISION_VARIABLE, "fp16")  # the T4's precision, on a CPU: refused, naming the variable
    with pytest.raises(ValueError, match=r"needs a CUDA GPU.*LLM_FROM_SCRATCH_PRECISION is set"):
        tiny_trainer()
    monkeypatch.setenv(PRECISION_VARIABLE, "")
    assert tiny_trainer().precision == "fp32"


def test_the_command_line_answers_a_bad_precision_variable_with_exit_2(monkeypatch, capsys, tmp_path):
    from utils.train import main

    monkeypatch.setenv(PRECISION_VARIABLE, "half")
    assert main(["gpt", "--steps", "1", "--out", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "LLM_FROM_SCRATCH_PRECISION='half'" in err and len(err.strip().splitlines()) == 1


def test_a_cpu_run_never_touches_cudas_random_state(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("a CPU run touched CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with a GPU...
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("get_rng_state_all", "set_rng_state_all", "get_rng_state", "set_rng_state", "init"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    trainer = tiny_trainer()  # ...training on its CPU
    trainer.fit(until=2)
    state = trainer.state()
    assert "cuda" not in state["rng"]
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]  # a checkpoint written on a GPU
    kit.save_atomic(state, tmp_path / "c.pt")
    tiny_trainer().load(tmp_path / "c.pt").fit()


def test_a_cuda_run_saves_and_restores_cudas_random_state(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.arange(4, dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(states))
    trainer = tiny_trainer()
    trainer.device = torch.device("cuda")  # what state() and load() look at (the model stays on the CPU)
    state = trainer.state()
    assert torch.equal(state["rng"]["cuda"][0], torch.arange(4, dtype=torch.uint8))
    kit.save_atomic(state, tmp_path / "c.pt")
    trainer.load(tmp_path / "c.pt")
    assert len(calls) == 1 and torch.equal(calls[0][0], torch.arange(4, dtype=torch.uint8))


class Reads:
    """Counts every read of a tensor's value by the CPU (what waits for a GPU) and CUDA synchronisations."""

    NAMES = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))
        monkeypatch.setattr(torch.cuda, "synchronize", self._counting(lambda *a, **k: None))

    def _counting(self, original):
        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        return counted


def fused_trainer(steps, plain=False, **fields):
    """A trainer with the fused AdamW that CUDA gets: the path a GPU run takes, on the CPU."""
    trainer = tiny_trainer(steps=steps, plain=plain, **fields)
    trainer.optimizer = kit.configure_optimizer(trainer.model, trainer.config, fused=True)
    assert trainer.skips_on_device
    return trainer


def test_a_training_step_reads_no_device_value_and_the_history_is_the_same(monkeypatch):
    eager = fused_trainer(steps=20, plain=True)
    eager.read_every = 1  # read after every step: the history to compare with
    eager.fit()
    trainer = fused_trainer(steps=20, plain=True)
    trainer.read_every = 10
    trainer.fit(until=10)  # the first read happens at step 10 (and counts only from here on)
    reads = Reads(monkeypatch)
    trainer.fit()  # 10 steps more
    assert reads.count <= 2, reads.count  # one read of the losses and gradient norms (and a no-op sync on CUDA)
    assert trainer.history["train_loss"] == eager.history["train_loss"]
    assert trainer.history["grad_norm"] == eager.history["grad_norm"]
    assert trainer.history["lr"] == eager.history["lr"] and trainer.history["step"] == list(range(20))
    for a, b in zip(trainer.model.parameters(), eager.model.parameters()):
        assert torch.equal(a, b)


def test_the_plain_optimizer_reads_one_cpu_value_per_step_and_agrees_with_the_fused_one():
    plain = tiny_trainer(steps=8)
    assert not plain.skips_on_device
    plain.fit()
    fused = fused_trainer(steps=8)  # the same seed, the same dropout
    fused.fit()
    assert plain.history["train_loss"][:2] == fused.history["train_loss"][:2]
    assert plain.history["train_loss"] == pytest.approx(fused.history["train_loss"], rel=1e-4)


def test_a_non_finite_step_is_skipped_on_the_device_and_recorded_at_the_next_read():
    trainer = fused_trainer(steps=6)
    normal = trainer.batch_at

    def loss_of(model, batch):  # step 2's loss is NaN
        x, y = batch
        loss = kit.sequence_loss(model(x), y)
        return loss * math.nan if torch.equal(x, normal(2)[0]) else loss

    trainer.loss_of = loss_of
    trainer.fit(until=2)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    adam_steps = [s["step"].clone() for s in trainer.optimizer.state.values()]
    trainer.train_step(2)  # the NaN step, not read: the fused optimizer was told to change nothing
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert all(torch.equal(s["step"], n) for s, n in zip(trainer.optimizer.state.values(), adam_steps))
    assert trainer.train_step(3)[0].isfinite() and not torch.equal(before[0], trainer.model.parameters().__next__())
    trainer = fused_trainer(steps=6)
    trainer.loss_of = loss_of
    with pytest.warns(UserWarning, match="step 2"):
        trainer.fit()
    assert trainer.history["skipped"] == [2] and math.isnan(trainer.history["train_loss"][2])
    assert trainer.history["grad_norm"][2] is None and trainer.history["grad_norm"][3] is not None
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
