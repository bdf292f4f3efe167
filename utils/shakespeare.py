"""Chapter 11's task: a character-level GPT trained on Tiny Shakespeare.

* the data: chapter 01's character tokenizer on Tiny Shakespeare, the first 90 %
  of the text for training and the last 10 % for validation (:func:`load_data`);
* two presets, each a model size and a training run (:data:`PRESETS`): ``cpu``
  trains in well under a minute on two CPU cores, ``gpu`` is nanoGPT's
  "baby GPT" size for one GPU, on a shorter schedule;
* the validation loss on the *whole* validation split (:func:`evaluate`), so the
  figure is exact rather than estimated from a few random batches;
* :func:`sample`, and :func:`run`, the ``gpt`` task of ``python -m utils.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from utils.data import load_tiny_shakespeare, train_val_split
from utils.generate import generate
from utils.models import GPT, GPTConfig, count_parameters
from utils.tokenizers import CharTokenizer, Tokenizer
from utils.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    UsageError,
    apply_settings,
    checkpoint_path_of,
    load_checkpoint,
    random_windows,
    whole_split_loss,
    write_metrics,
)

TASK = "gpt"

# Each preset: the model's sizes (GPTConfig fields) and the run (TrainConfig fields).
PRESETS: dict[str, dict[str, dict]] = {
    # Tuned on 2 CPU cores for the lowest exact validation loss in about 20 s of training (README, "Training"):
    # on a CPU a smaller model that takes more steps beats a larger one that takes fewer. Half of nanoGPT's CPU
    # depth (2 blocks) and half its width (C = 64, d_ff = 4C), batches of 32 windows, a peak learning rate of
    # 2e-2 (twenty times nanoGPT's) after 100 warm-up steps, and the cosine run down over 1,000 steps.
    "cpu": {
        "model": dict(block_size=64, C=64, n_heads=4, n_layers=2, d_ff=256, dropout=0.0),
        "train": dict(steps=1000, batch_size=32, lr=2e-2, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
                      betas=(0.9, 0.99), grad_clip=1.0, eval_every=1000),
    },
    # nanoGPT's baby GPT shape for Tiny Shakespeare (6 layers, 6 heads, C = 384, context 256, batches of 64),
    # on a shorter run: 1,500 steps at a peak of 2e-3 with dropout 0.1 instead of nanoGPT's 5,000 at 1e-3 with
    # 0.2. Of eight schedules run side by side on an H200 (README, "Training"), it was the shortest to end at or
    # below nanoGPT's best validation loss (1.4697): 1.454 there, 1.449 from the command line.
    "gpu": {
        "model": dict(block_size=256, C=384, n_heads=6, n_layers=6, dropout=0.1),
        "train": dict(steps=1500, batch_size=64, lr=2e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
                      betas=(0.9, 0.99), grad_clip=1.0, eval_every=500),
    },
}

# What ``--set SECTION.FIELD=VALUE`` may change: the model's sizes and the run's settings.
SETTINGS = {
    "model": tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"),
    "train": tuple(f.name for f in dataclasses.fields(TrainConfig)),
}


def load_data() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """The character tokenizer (V = 65) and the training and validation ids (first 90 % / last 10 %)."""
    text = load_tiny_shakespeare()
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids)
    return tokenizer, train_ids, val_ids


def configs(preset: str | dict, vocab_size: int, **train_overrides) -> tuple[GPTConfig, TrainConfig]:
    """The model and training configs of a preset (a name or a dict like ``PRESETS["cpu"]``);
    ``train_overrides`` replace TrainConfig fields."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    model_config = GPTConfig(vocab_size=vocab_size, **preset["model"])
    train_config = TrainConfig(**{**preset["train"], **train_overrides})
    return model_config, train_config


def evaluate(model: torch.nn.Module, val_ids: torch.Tensor) -> dict[str, float]:
    """``{"val_loss": ...}``: the mean cross-entropy over every character of the validation split."""
    return {"val_loss": whole_split_loss(model, val_ids, model.config.block_size)}


def sample(
    model: GPT, tokenizer: Tokenizer, prompt: str = "\n", n: int = 300, temperature: float = 1.0, seed: int = 0
) -> str:
    """``n`` characters written by the model after ``prompt`` (reproducible for a given seed)."""
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], device=device)  # (1, T)
    out = generate(model, idx, n, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    return tokenizer.decode(out[0, len(prompt):].tolist())


def metadata(model_config: GPTConfig, tokenizer: Tokenizer) -> dict:
    """What a checkpoint of this task must match to be resumed: the task, the model's sizes, the tokenizer."""
    return {"task": TASK, "model": dataclasses.asdict(model_config), "tokenizer": tokenizer.to_dict()}


def model_from_checkpoint(path: str | Path) -> tuple[GPT, CharTokenizer]:
    """Rebuild a trained model and its tokenizer from a checkpoint written by this task."""
    checkpoint = load_checkpoint(path, {"task": TASK})
    try:
        model = GPT(GPTConfig(**checkpoint["metadata"]["model"]))
        tokenizer = CharTokenizer.from_dict(checkpoint["metadata"]["tokenizer"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path} is damaged: {error}") from None
    return model.eval(), tokenizer


# --- the command line: python -m utils.train gpt ... --------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this task beyond the common ones (utils.train adds --preset, --steps, ...)."""
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluate on the whole validation split and write a checkpoint every so many steps "
                             "(default: the preset's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even when OUT already holds a checkpoint (it is replaced)")


def run(args: argparse.Namespace) -> dict:
    """Train (or resume) the GPT of a preset; writes OUT/checkpoint.pt and OUT/metrics.json; returns the summary."""
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    checkpoint_path = checkpoint_path_of(args, TASK)
    out = checkpoint_path.parent
    if args.eval_every is not None and args.eval_every < 1:
        raise UsageError(f"--eval-every must be >= 1, got {args.eval_every}")

    tokenizer, train_ids, val_ids = load_data()
    overrides = {"device": args.device, "compile": args.compile, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.eval_every is not None:
        overrides["eval_every"] = args.eval_every
    preset = apply_settings(PRESETS[args.preset], args.set, SETTINGS)
    model_config, train_config = configs(preset, tokenizer.vocab_size, **overrides)

    torch.manual_seed(train_config.seed)
    model = GPT(model_config)
    trainer = Trainer(
        model,
        train_config,
        batch_at=random_windows(train_ids, model_config.block_size, train_config.batch_size, train_config.seed),
        evaluate=lambda m: evaluate(m, val_ids),
        metadata=metadata(model_config, tokenizer),
        out_dir=out,
    )
    if args.resume:
        trainer.load(checkpoint_path)  # a checkpoint of another model or a damaged file: CheckpointError, exit 2
    start_step = trainer.step
    history = trainer.fit()
    if not history["eval_step"] or history["eval_step"][-1] != trainer.step:
        trainer.run_evaluation()  # e.g. --steps 0, or a resumed run that was already complete

    steps_run = trainer.step - start_step
    tokens = steps_run * train_config.accumulation_steps * train_config.batch_size * model_config.block_size
    summary = {
        "preset": args.preset,
        **({"settings": args.set} if args.set else {}),
        "device": trainer.device.type,
        "precision": trainer.precision,
        "steps": trainer.step,
        "parameters": count_parameters(model),
        "train_seconds": round(trainer.train_seconds, 2),
        "train_tokens_per_second": round(tokens / trainer.train_seconds) if trainer.train_seconds > 0 else None,
        "val_loss": round(history["val_loss"][-1], 4),
        "checkpoint": str(checkpoint_path),
    }
    write_metrics(out, summary, train_config, model_config, history)
    return summary
