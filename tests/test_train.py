"""utils.train: batches, the loss, and a loop that really lowers it."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.train import estimate_loss, get_batch, train_language_model


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    x, y = get_batch(data, block_size=8, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 1)


def test_get_batch_errors_name_the_problem():
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(2, 10, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError, match="too few"):
        get_batch(torch.arange(5), 8, 2)


class Bigram(nn.Module):
    def __init__(self, V):
        super().__init__()
        self.table = nn.Embedding(V, V)
        nn.init.zeros_(self.table.weight)

    def forward(self, idx):
        return self.table(idx)


def test_training_lowers_the_loss_below_uniform():
    torch.manual_seed(0)
    pattern = torch.tensor([0, 1, 2, 3, 4]).repeat(200)  # a perfectly predictable sequence
    model = Bigram(5)
    splits = {"train": pattern[:900], "val": pattern[900:]}
    before = estimate_loss(model, splits, block_size=8, batch_size=4)
    assert before["val"] == pytest.approx(math.log(5), abs=1e-5)  # all-zero logits: uniform
    history = train_language_model(model, splits["train"], splits["val"], steps=200, block_size=8, batch_size=8,
                                   lr=0.1, eval_every=50, eval_iters=5)
    assert history["eval_step"] == [0, 50, 100, 150, 199]
    assert history["val"][-1] < 0.1 < history["val"][0]


def test_progress_bar_hides_when_tqdm_disable_is_set(monkeypatch):
    from utils.train import progress

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress(range(3)).disable
    monkeypatch.setenv("TQDM_DISABLE", "0")
    bar = progress(range(3), file=open("/dev/null", "w"))
    assert not bar.disable
    assert list(bar) == [0, 1, 2]


# --- chapter 11: the training kit ------------------------------------------------------------

import json  # noqa: E402

from utils.models import GPT, GPTConfig  # noqa: E402
from utils.train import (  # noqa: E402
    CheckpointError,
    TrainConfig,
    Trainer,
    configure_optimizer,
    decay_groups,
    evaluating,
    learning_rate,
    load_checkpoint,
    random_windows,
    save_atomic,
    sequence_loss,
    train,
    whole_split_loss,
)

V = 11


def tiny_gpt(seed=0, dropout=0.0, C=16, dtype=torch.float32):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=8, C=C, n_heads=2, n_layers=2, dropout=dropout)).to(dtype)


def tiny_config(**fields):
    return TrainConfig(**{"steps": 6, "batch_size": 4, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2,
                          "eval_every": 3, "device": "cpu", **fields})


STREAM = torch.randint(V, (500,), generator=torch.Generator().manual_seed(1))


def test_sequence_loss_is_the_mean_over_real_targets_and_names_the_shapes():
    logits, targets = torch.randn(2, 3, V), torch.randint(V, (2, 3))
    targets[0, 0] = 0
    log_p = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    real = targets != 0
    assert torch.allclose(sequence_loss(logits, targets, ignore_index=0), -log_p[real].mean())
    assert torch.allclose(sequence_loss(logits, targets, pad_id=0), -log_p[real].mean())
    assert torch.allclose(sequence_loss(logits, targets), -log_p.mean())
    with pytest.raises(ValueError, match=r"\(6, 11\).*\(2, 3\)"):
        sequence_loss(logits.reshape(6, V), targets)  # 2-D logits: the message names both shapes
    with pytest.raises(ValueError, match="integer"):
        sequence_loss(logits, targets.float())
    with pytest.raises(ValueError, match="same thing"):
        sequence_loss(logits, targets, pad_id=0, ignore_index=1)


def test_models_sequence_loss_is_the_same_function():
    from utils import models

    assert models.sequence_loss is sequence_loss


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise RuntimeError("broken model")


def test_evaluation_restores_train_mode_even_after_an_exception():
    model = Broken().train()
    with pytest.raises(RuntimeError, match="broken"):
        estimate_loss(model, {"val": torch.arange(50)}, block_size=4, batch_size=2)
    assert model.training
    with pytest.raises(RuntimeError, match="broken"), evaluating(model):
        assert not model.training
        model(None)
    assert model.training
    trainer = Trainer(model, tiny_config(), batch_at=lambda i: (torch.zeros(1),), loss_of=lambda m, b: m.w.sum(),
                      evaluate=lambda m: {"val_loss": m(None)})
    with pytest.raises(RuntimeError, match="broken"):
        trainer.run_evaluation()
    assert model.training


def test_train_checks_eval_every_and_steps():
    model = Bigram(5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="eval_every"):
            train(model, lambda s: model(torch.zeros(1, 1, dtype=torch.long)).sum(), 3, optimizer,
                  evaluate=lambda: {}, eval_every=bad)
    with pytest.raises(ValueError, match="steps"):
        train(model, lambda s: model(torch.zeros(1, 1, dtype=torch.long)).sum(), -1, optimizer)


def test_train_skips_a_batch_whose_targets_are_all_padding():
    model = Bigram(5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    x = torch.tensor([[1, 2, 3]])
    padding_only = torch.zeros(1, 3, dtype=torch.long)

    def loss_of_step(step):
        return sequence_loss(model(x), padding_only if step == 1 else x, ignore_index=0)

    history = train(model, loss_of_step, 3, optimizer)
    assert history["skipped"] == [1] and math.isnan(history["loss"][1])
    assert torch.isfinite(model.table.weight).all()


def test_learning_rate_warms_up_then_follows_the_schedule():
    c = TrainConfig(steps=11, lr=1.0, min_lr=0.1, warmup_steps=2, schedule="cosine")
    assert [learning_rate(s, c) for s in (0, 1)] == [0.5, 1.0]  # linear warm-up, peak at the last warm-up step
    assert learning_rate(2, c) == pytest.approx(1.0)  # the cosine starts at the peak...
    assert learning_rate(10, c) == pytest.approx(0.1)  # ...and ends at min_lr on the last step
    assert learning_rate(6, c) == pytest.approx(0.55)  # halfway: the mean of lr and min_lr
    values = [learning_rate(s, c) for s in range(2, 11)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly falling
    assert learning_rate(50, c) == pytest.approx(0.1)  # past the end: min_lr
    c = TrainConfig(steps=100, lr=1.0, min_lr=0.0, warmup_steps=4, schedule="inverse_sqrt")
    assert learning_rate(3, c) == 1.0 and learning_rate(15, c) == pytest.approx(0.5)  # sqrt(4 / 16)
    c = TrainConfig(steps=100, lr=0.3, min_lr=0.0, warmup_steps=0, schedule="constant")
    assert {learning_rate(s, c) for s in range(100)} == {0.3}


def test_train_config_rejects_bad_values_by_name():
    for fields, name in [({"steps": -1}, "steps"), ({"batch_size": 0}, "batch_size"), ({"lr": 0}, "lr"),
                         ({"min_lr": 2.0}, "min_lr"), ({"schedule": "linear"}, "schedule"),
                         ({"eval_every": 0}, "eval_every"), ({"grad_clip": 0}, "grad_clip"),
                         ({"precision": "fp8"}, "precision"), ({"accumulation_steps": 0}, "accumulation_steps"),
                         ({"betas": (0.9, 1.0)}, "betas"), ({"betas": 0.9}, "betas"),
                         ({"betas": (0.9, "a")}, "betas"), ({"weight_decay": "abc"}, "weight_decay"),
                         ({"label_smoothing": "abc"}, "label_smoothing"), ({"grad_clip": "abc"}, "grad_clip")]:
        with pytest.raises(ValueError, match=name):
            TrainConfig(**fields)
    with pytest.raises(ValueError, match="fp16"):
        Trainer(tiny_gpt(), tiny_config(precision="fp16"), batch_at=None)
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            Trainer(tiny_gpt(), tiny_config(device="cuda"), batch_at=None)
        else:
            raise ValueError("CUDA is not available (skipped: this machine has CUDA)")


def test_weight_decay_on_matrices_only():
    model = tiny_gpt()
    decay, no_decay = decay_groups(model)
    assert "token_embedding.weight" in decay and "positions.embedding.weight" in no_decay
    assert "head.weight" not in decay + no_decay  # tied to the token embedding: listed once
    assert all(model.get_parameter(n).ndim == 2 for n in decay)
    assert any(n.endswith("norm.weight") for n in no_decay) and any(n.endswith(".bias") for n in no_decay)
    assert sorted(decay + no_decay) == sorted(n for n, _ in model.named_parameters())
    optimizer = configure_optimizer(model, tiny_config(weight_decay=0.5))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_gradient_accumulation_equals_one_batch_k_times_larger():
    big = random_windows(STREAM, 8, 8, seed=3)  # micro-batch i: 8 windows
    half = lambda i: tuple(t[(i % 2) * 4 : (i % 2) * 4 + 4] for t in big(i // 2))  # its two halves
    results = []
    for batch_at, config in [(big, tiny_config(batch_size=8)),
                             (half, tiny_config(batch_size=4, accumulation_steps=2))]:
        model = tiny_gpt(dtype=torch.float64)
        Trainer(model, config, batch_at=batch_at).fit()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert (results[0] - results[1]).abs().max() < 1e-10


def run_tiny(steps=6, until=None, out_dir=None, resume_from=None, dropout=0.1, **fields):
    model = tiny_gpt(dropout=dropout)
    trainer = Trainer(model, tiny_config(steps=steps, **fields), batch_at=random_windows(STREAM, 8, 4, seed=5),
                      evaluate=lambda m: {"val_loss": whole_split_loss(m, STREAM[:100], 8)},
                      metadata={"task": "test", "C": 16}, out_dir=out_dir)
    if resume_from is not None:
        trainer.load(resume_from)
    trainer.fit(until)
    return trainer


def test_a_resumed_run_ends_with_exactly_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = run_tiny()  # with dropout: the random generator's state is part of the checkpoint
    for until in (3, 4):  # stopped right after an evaluation, and between two
        first = run_tiny(until=until, out_dir=tmp_path / str(until))
        assert first.step == until and (tmp_path / str(until) / "checkpoint.pt").is_file()
    resumed = run_tiny(resume_from=tmp_path / "4" / "checkpoint.pt")
    assert resumed.step == 6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    assert resumed.history["val_loss"] == straight.history["val_loss"]
    checkpoint = torch.load(tmp_path / "3" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3 and checkpoint["metadata"] == {"task": "test", "C": 16}


def test_checkpoints_from_elsewhere_are_refused_with_the_reason(tmp_path):
    good = run_tiny(until=3, out_dir=tmp_path).checkpoint_path
    before = good.read_bytes()
    trainer = Trainer(tiny_gpt(C=32), tiny_config(), batch_at=None, metadata={"task": "test", "C": 16})
    with pytest.raises(CheckpointError, match="another model: size mismatch"):
        trainer.load(good)
    trainer = Trainer(tiny_gpt(), tiny_config(), batch_at=None, metadata={"task": "other"})
    with pytest.raises(CheckpointError, match="another task"):
        trainer.load(good)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(before[: len(before) // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    for path in (corrupt, empty, text):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this book"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "llm-from-scratch checkpoint", "version": 1, "code": Bigram(2)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="not a readable"):  # weights_only: no arbitrary objects
        load_checkpoint(tmp_path / "code.pt")
    assert good.read_bytes() == before


def test_a_failed_save_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = save_atomic({"a": torch.ones(3)}, tmp_path / "c.pt")
    before = path.read_bytes()

    def failing_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def all_padding_loss(model, batch):
    x, y = batch
    return sequence_loss(model(x), torch.zeros_like(y), ignore_index=0)  # no real target: NaN


def test_a_step_whose_targets_are_all_padding_is_skipped_never_nan_weights():
    model = tiny_gpt()
    normal = random_windows(STREAM, 8, 4, seed=0)
    batch_at = lambda i: (torch.full((4, 8), -1), None) if i == 2 else normal(i)

    def loss_of(m, batch):  # micro-batch 2 is all padding
        x, y = batch
        if y is None:
            return all_padding_loss(m, (torch.ones_like(x), torch.zeros_like(x)))
        return sequence_loss(m(x), y)

    trainer = Trainer(model, tiny_config(steps=4), batch_at=batch_at, loss_of=loss_of)
    with pytest.warns(UserWarning, match="step 2"):
        history = trainer.fit()
    assert history["skipped"] == [2] and math.isnan(history["train_loss"][2])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_training_stops_naming_the_step_when_every_batch_is_padding():
    trainer = Trainer(tiny_gpt(), tiny_config(steps=20), batch_at=random_windows(STREAM, 8, 4),
                      loss_of=all_padding_loss)
    with pytest.raises(FloatingPointError, match="step 9"), pytest.warns(UserWarning):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_whole_split_loss_scores_every_target_once():
    model = tiny_gpt()
    data = STREAM[:53]  # 52 targets: six windows of 8 and one of 4
    with torch.no_grad():
        expected = sum(
            F.cross_entropy(model(data[i : i + 8][None])[0], data[i + 1 : i + 9], reduction="sum").item()
            for i in range(0, 48, 8)
        ) + F.cross_entropy(model(data[48:52][None])[0], data[49:53], reduction="sum").item()
    model.train()
    assert whole_split_loss(model, data, 8, batch_size=4) == pytest.approx(expected / 52, rel=1e-6)
    assert model.training


def test_history_and_checkpoint_are_json_and_weights_only_friendly(tmp_path):
    trainer = run_tiny(steps=3, out_dir=tmp_path)
    json.dumps(trainer.history)
    assert trainer.history["eval_step"] == [3] and len(trainer.history["train_loss"]) == 3
    assert trainer.history["lr"][:2] == [pytest.approx(5e-3), pytest.approx(1e-2)]


# --- a time budget: Trainer.fit_for ---------------------------------------------------------


def budget_trainer(steps, seconds_per_step):
    """A tiny trainer whose steps take at least ``seconds_per_step`` (a slow machine, simulated)."""
    import time

    def slow_loss(model, batch):
        time.sleep(seconds_per_step)
        x, y = batch
        return sequence_loss(model(x), y)

    return Trainer(tiny_gpt(), tiny_config(steps=steps, eval_every=10**6, warmup_steps=2),
                   batch_at=random_windows(STREAM, 8, 4, seed=5), loss_of=slow_loss)


def test_fit_for_replans_a_too_long_run_to_end_on_time():
    import time

    trainer = budget_trainer(steps=10_000, seconds_per_step=0.01)  # the first plan: 100 s
    start = time.perf_counter()
    history = trainer.fit_for(1.0, replan_every=10)
    seconds = time.perf_counter() - start
    assert 0.9 < seconds < 2.0, seconds
    assert 20 <= trainer.step < 200 and trainer.config.steps == trainer.step  # the plan shrank to what fitted
    # The schedule was re-planned, so the last step ran at (nearly) the end of the decay.
    assert history["lr"][-1] < 0.2 * trainer.config.lr, history["lr"][-1]


def test_fit_for_stretches_a_too_short_plan_and_checks_its_arguments():
    trainer = budget_trainer(steps=30, seconds_per_step=0.0)  # fast: 30 steps take well under a second
    trainer.fit_for(1.0, replan_every=10)
    assert trainer.step > 30 and trainer.config.steps == trainer.step
    with pytest.raises(ValueError, match="seconds must be > 0"):
        budget_trainer(steps=5, seconds_per_step=0.0).fit_for(0)
