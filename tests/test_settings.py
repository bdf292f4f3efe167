"""Bad settings and damaged checkpoints (issue 21, classes 1, 2, 3, 6): each one line, exit 2, before any work.

The command line runs in this process, with the tasks' data loaders replaced by ones
that fail: a setting refused before any work starts never reaches them.
"""

import math

import pytest
import torch

from utils import shakespeare, translation
from utils.checkpoints import CheckpointError, load_checkpoint
from utils.train import TrainConfig, Trainer, main, random_windows, sequence_loss


@pytest.fixture
def no_work(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("work started before the settings were checked")

    monkeypatch.setattr(shakespeare, "load_data", started)
    monkeypatch.setattr(translation, "load_multi30k", started)


def refused(capsys, tmp_path, task, *args):
    code = main([task, "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


MODEL_CASES = [
    ("model.C=abc", "C must be an integer, got 'abc'"),
    ("model.C=-4", "C must be >= 1, got -4"),
    ("model.C=64.0", "C must be an integer, got 64.0"),
    ("model.n_heads=0", "n_heads must be >= 1"),
    ("model.n_heads=3", "n_heads"),  # does not divide C
    ("model.d_ff=2.5", "d_ff must be an integer"),
    ("model.block_size=None", "block_size must be an integer"),
]


@pytest.mark.parametrize("setting, message", MODEL_CASES + [
    ("model.n_layers=two", "n_layers must be an integer, got 'two'"),
    ("train.lr=1e999", "lr must be a finite number"),  # class 2: infinity
    ("train.weight_decay=1e999", "weight_decay must be a finite number"),
    ("train.min_lr=-1e999", "min_lr must be a finite number"),
    ("train.grad_clip=1e999", "grad_clip must be a finite number"),
    ("train.betas=(0.9, 1e999)", "betas must be two numbers, finite"),
    ("train.label_smoothing=-0.5", "label_smoothing must be"),
])
def test_gpt_settings_are_checked_before_any_work(capsys, tmp_path, no_work, setting, message):
    err = refused(capsys, tmp_path, "gpt", "--set", setting)
    assert message in err, err


@pytest.mark.parametrize("setting, message", MODEL_CASES[:6] + [
    ("model.n_encoder_layers=-1", "n_encoder_layers must be >= 1"),
    ("model.max_len=0", "max_len must be >= 1"),
    ("data.max_tokens=abc", "data.max_tokens must be an integer"),
    ("data.max_tokens=100", "data.max_tokens must be >= 256"),  # 2 · max_len: a batch holds the longest pair
    ("data.vocab_size=100", "data.vocab_size must be >= 260"),
    ("data.train_pairs=0", "data.train_pairs must be >= 1"),
    ("decode.alpha=abc", "decode.alpha must be a finite number >= 0"),
    ("decode.alpha=-0.5", "decode.alpha must be a finite number >= 0"),
    ("decode.alpha=1e999", "decode.alpha must be a finite number >= 0"),
    ("decode.batch_size=0", "decode.batch_size must be >= 1"),
    ("decode.beam_size=2.5", "decode.beam_size must be an integer"),
    ("train.lr=1e999", "lr must be a finite number"),
    ("train.batch_size=64", "the translate task batches by length"),  # class 3: never read by this task
])
def test_translate_settings_are_checked_before_any_work(capsys, tmp_path, no_work, setting, message):
    err = refused(capsys, tmp_path, "translate", "--set", setting)
    assert message in err, err


def test_a_non_finite_option_is_refused(capsys, tmp_path, no_work):
    assert "--minutes must be > 0" in refused(capsys, tmp_path, "translate", "--minutes", "inf")
    assert "--minutes must be > 0" in refused(capsys, tmp_path, "translate", "--minutes", "nan")


def test_train_config_refuses_infinities_by_name():
    for name, value in [("lr", math.inf), ("min_lr", math.nan), ("weight_decay", math.inf),
                        ("grad_clip", math.inf), ("label_smoothing", math.nan)]:
        with pytest.raises(ValueError, match=f"{name} must be a finite number"):
            TrainConfig(**{name: value})
    with pytest.raises(ValueError, match="betas must be two numbers, finite"):
        TrainConfig(betas=(0.9, math.nan))


# --- class 3: every accepted setting takes effect ---------------------------------------------

V = 11
STREAM = torch.randint(V, (500,), generator=torch.Generator().manual_seed(1))


def test_label_smoothing_reaches_the_default_loss():
    from utils.models import GPT, GPTConfig

    losses = []
    for smoothing in (0.0, 0.3):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=V, block_size=8, C=16, n_heads=2, n_layers=1))
        config = TrainConfig(steps=1, batch_size=4, warmup_steps=0, device="cpu", label_smoothing=smoothing)
        batches = random_windows(STREAM, 8, 4, seed=5)
        with torch.no_grad():
            x, y = batches(0)
            expected = sequence_loss(model(x), y, label_smoothing=smoothing).item()
        trainer = Trainer(model, config, batch_at=batches)
        trainer.fit()
        assert trainer.history["train_loss"][0] == pytest.approx(expected, rel=1e-6)
        losses.append(expected)
    assert losses[0] != losses[1]


# --- class 6: checkpoints whose fields have the wrong type ---------------------------------------


@pytest.fixture
def good_checkpoint(tmp_path):
    from utils.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=8, C=16, n_heads=2, n_layers=1))
    config = TrainConfig(steps=2, batch_size=4, warmup_steps=0, device="cpu", eval_every=1)
    trainer = Trainer(model, config, batch_at=random_windows(STREAM, 8, 4), out_dir=tmp_path / "good",
                      metadata={"task": "test"})
    trainer.fit()
    return trainer, tmp_path / "good" / "checkpoint.pt"


DAMAGES = {
    "model is a list": lambda c: c.update(model=[1, 2]),
    "a weight is a string": lambda c: c["model"].update({next(iter(c["model"])): "weights"}),
    "optimizer is a string": lambda c: c.update(optimizer="adam"),
    "optimizer without param_groups": lambda c: c.update(optimizer={"state": {}}),
    "history is a list": lambda c: c.update(history=[1.0]),
    "a history entry is a number": lambda c: c["history"].update(train_loss=3.0),
    "metadata is a string": lambda c: c.update(metadata="test"),
    "config is a list": lambda c: c.update(config=[1]),
    "config.steps is a string": lambda c: c["config"].update(steps="two"),
    "step is a float": lambda c: c.update(step=2.0),
    "rng is a tensor": lambda c: c.update(rng=torch.zeros(3)),
    "the cpu rng state has the wrong size": lambda c: c["rng"].update(cpu=torch.zeros(7, dtype=torch.uint8)),
    "the cpu rng state has the wrong dtype": lambda c: c["rng"].update(cpu=torch.zeros(5056)),
    "the cuda rng states are not a list": lambda c: c["rng"].update(cuda=torch.zeros(16, dtype=torch.uint8)),
    "scaler is a list": lambda c: c.update(scaler=[1]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_checkpoint_with_fields_of_the_wrong_type_is_a_checkpoint_error_naming_the_file(good_checkpoint,
                                                                                         tmp_path, damage):
    trainer, good = good_checkpoint
    checkpoint = torch.load(good, weights_only=True)
    DAMAGES[damage](checkpoint)
    bad = tmp_path / "bad.pt"
    torch.save(checkpoint, bad)
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=str(bad)):
        trainer.load(bad)


def test_the_command_line_answers_a_damaged_checkpoint_with_exit_2(capsys, tmp_path, monkeypatch):
    tokenizer, train_ids, val_ids = shakespeare.load_data()
    monkeypatch.setattr(shakespeare, "load_data", lambda: (tokenizer, train_ids[:5_000], val_ids[:500]))
    out = tmp_path / "run"
    assert main(["gpt", "--steps", "1", "--out", str(out), "--device", "cpu"]) == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    checkpoint["rng"]["cpu"] = torch.zeros(10, dtype=torch.uint8)
    torch.save(checkpoint, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["gpt", "--steps", "2", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt" in err and "rng" in err and len(err.strip().splitlines()) == 1


def test_the_device_and_its_precision_are_checked_before_any_work(capsys, tmp_path, no_work, monkeypatch):
    err = refused(capsys, tmp_path, "gpt", "--device", "cpu", "--set", "train.precision=fp16")
    assert "precision 'fp16' needs a CUDA GPU" in err
    err = refused(capsys, tmp_path, "translate", "--device", "cpu", "--set", "train.precision=fp8")
    assert "precision must be one of" in err
    monkeypatch.setenv("LLM_FROM_SCRATCH_PRECISION", "fp16")
    err = refused(capsys, tmp_path, "gpt", "--device", "cpu")
    assert "needs a CUDA GPU" in err and "(LLM_FROM_SCRATCH_PRECISION is set)" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA
    assert "CUDA is not available" in refused(capsys, tmp_path, "translate", "--device", "cuda")
