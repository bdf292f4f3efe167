"""Chapter 11's task: a character-level GPT trained on Tiny Shakespeare.

* the data: chapter 01's character tokenizer on Tiny Shakespeare, the first 90 %
  of the text for training and the last 10 % for validation (:func:`load_data`);
* two presets, each a model size and a training run (:data:`PRESETS`): ``cpu``
  trains in well under a minute on two CPU cores, ``gpu`` is nanoGPT's
  "baby GPT" size for one GPU, on a shorter schedule;
* the validation loss on the *whole* validation split (:func:`evaluate`), so the
  figure is exact rather than estimated from a few random batches;
* :func:`sample`, and :func:`run`, the ``gpt`` task of ``python -m utils.train``
  (:mod:`utils.command_line` reads the options and calls :func:`run` with plain values).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from utils import presets
from utils.checkpoints import CheckpointError, load_checkpoint, write_metrics
from utils.data import load_tiny_shakespeare, train_val_split
from utils.generate import generate
from utils.models import GPT, GPTConfig, count_parameters
from utils.modern import Llama, LlamaConfig
from utils.tokenizers import CharTokenizer, Tokenizer
from utils.trainer import TrainConfig, Trainer, random_windows, whole_split_loss

TASK = "gpt"

# Each preset: the model's sizes (GPTConfig fields) and the run (TrainConfig fields).
PRESETS = presets.GPT  # cpu and gpu: each a model (GPTConfig fields) and a run (TrainConfig fields)

# What ``--set SECTION.FIELD=VALUE`` may change: the model's sizes and the run's settings.
SETTINGS = {
    "model": tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"),
    "train": tuple(f.name for f in dataclasses.fields(TrainConfig)),
}

# ``--arch llama`` (chapter 15): utils.modern's Llama-style model (RMSNorm, RoPE, SwiGLU, grouped-query attention)
# at the sizes of LlamaConfig.preset(NAME), trained by the same runs as the GPT's presets.
MODELS = {"gpt": (GPT, GPTConfig), "llama": (Llama, LlamaConfig)}
ARCH_PRESETS = {"llama": presets.LLAMA}  # the Llama-style model's cpu and gpu presets (chapter 15)
ARCH_SETTINGS = {"llama": {"model": tuple(f.name for f in dataclasses.fields(LlamaConfig) if f.name != "vocab_size"),
                           "train": SETTINGS["train"]}}


def load_data() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """The character tokenizer (V = 65) and the training and validation ids (first 90 % / last 10 %)."""
    text = load_tiny_shakespeare()
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids)
    return tokenizer, train_ids, val_ids


def configs(preset: str | dict, vocab_size: int, arch: str = "gpt", **train_overrides) -> tuple[GPTConfig, TrainConfig]:
    """The model and training configs of a preset (a name or a dict like ``PRESETS["cpu"]``);
    ``train_overrides`` replace TrainConfig fields."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    model_config = MODELS[arch][1](vocab_size=vocab_size, **preset["model"])
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


def metadata(model_config: GPTConfig | LlamaConfig, tokenizer: Tokenizer) -> dict:
    """What a checkpoint of this task must match to be resumed: the task, the model's sizes, the tokenizer."""
    arch = {"arch": "llama"} if isinstance(model_config, LlamaConfig) else {}  # a GPT's checkpoints say nothing
    return {"task": TASK, **arch, "model": dataclasses.asdict(model_config), "tokenizer": tokenizer.to_dict()}


def model_from_checkpoint(path: str | Path) -> tuple[GPT, CharTokenizer]:
    """Rebuild a trained model and its tokenizer from a checkpoint written by this task."""
    checkpoint = load_checkpoint(path, {"task": TASK})
    try:
        model_class, config_class = MODELS[checkpoint["metadata"].get("arch", "gpt")]
        model = model_class(config_class(**checkpoint["metadata"]["model"]))
        tokenizer = CharTokenizer.from_dict(checkpoint["metadata"]["tokenizer"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"{path} is damaged: {' '.join(str(error).split())[:200]}") from None
    return model.eval(), tokenizer


# --- the task of python -m utils.train gpt ----------------------------------------------------------


def check_settings(preset: dict[str, dict], arch: str = "gpt") -> None:
    """Every setting of a preset (after ``--set``) checked before any work starts: a ValueError naming it.

    The configs check their own fields; the model is then built on the ``meta`` device
    (shapes only, no memory), which runs its own checks (C divisible by n_heads, ...).
    """
    try:
        model_config = MODELS[arch][1](vocab_size=65, **preset["model"])  # V: the data's 65 characters
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}") from None
    try:
        TrainConfig(**preset["train"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"train: {error}") from None
    with torch.device("meta"):
        MODELS[arch][0](model_config)


def run(
    preset: dict[str, dict],
    *,
    preset_name: str,
    out: str | Path,
    resume: bool = False,
    device: str = "auto",
    compile: bool = False,
    seed: int = 1337,
    steps: int | None = None,
    eval_every: int | None = None,
    settings: list[str] | None = None,
    arch: str = "gpt",
) -> dict:
    """Train (or resume) the GPT of a preset; writes OUT/checkpoint.pt and OUT/metrics.json; returns the summary.

    ``preset`` is a dict like ``PRESETS["cpu"]`` (the command line applies ``--set`` to it);
    ``steps`` and ``eval_every`` replace the preset's; ``settings`` are recorded in the summary.
    ``arch="llama"`` trains chapter 15's Llama-style model instead (a preset of :data:`ARCH_PRESETS`).
    """
    out = Path(out)
    checkpoint_path = out / "checkpoint.pt"
    tokenizer, train_ids, val_ids = load_data()
    overrides = {"device": device, "compile": compile, "seed": seed}
    if steps is not None:
        overrides["steps"] = steps
    if eval_every is not None:
        overrides["eval_every"] = eval_every
    model_config, train_config = configs(preset, tokenizer.vocab_size, arch, **overrides)

    torch.manual_seed(train_config.seed)
    model = MODELS[arch][0](model_config)  # GPT, or with --arch llama chapter 15's Llama
    trainer = Trainer(
        model,
        train_config,
        batch_at=random_windows(train_ids, model_config.block_size, train_config.batch_size, train_config.seed),
        evaluate=lambda m: evaluate(m, val_ids),
        metadata=metadata(model_config, tokenizer),
        out_dir=out,
    )
    if resume:
        trainer.load(checkpoint_path)  # a checkpoint of another model or a damaged file: CheckpointError, exit 2
    start_step = trainer.step
    history = trainer.fit()
    if not history["eval_step"] or history["eval_step"][-1] != trainer.step:
        trainer.run_evaluation()  # e.g. --steps 0, or a resumed run that was already complete

    steps_run = trainer.step - start_step
    tokens = steps_run * train_config.accumulation_steps * train_config.batch_size * model_config.block_size
    summary = {
        "preset": preset_name,
        "arch": arch,
        **({"settings": list(settings)} if settings else {}),
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
