"""Training loops shared by every chapter that trains something (chapter 02 on).

A language model in this book maps token ids ``(B, T)`` to logits ``(B, T, V)``;
the loss is the cross-entropy between those logits and the next tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def progress(iterable, **kwargs):
    """A ``tqdm.auto`` progress bar (a widget in Jupyter, text elsewhere).

    Setting the environment variable ``TQDM_DISABLE=1`` hides it: the book's stored
    notebook outputs are made that way (``make notebooks``), because a bar's rate and
    timing differ on every run. tqdm's notebook bar ignores that variable by itself.
    """
    kwargs.setdefault("disable", os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"))
    return tqdm(iterable, **kwargs)


def get_batch(
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token tensor: inputs ``x`` (B, T) and next-token targets ``y`` (B, T)."""
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, too few for windows of block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in starts])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in starts])
    return x.to(device), y.to(device)


def language_model_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T)."""
    B, T, V = logits.shape
    if targets.shape != (B, T):
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}")
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=ignore_index)


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module,
    splits: dict[str, torch.Tensor],
    block_size: int,
    batch_size: int,
    eval_iters: int = 20,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` fixed random batches of each split (same batches every call)."""
    was_training = model.training
    model.eval()
    result = {}
    for name, data in splits.items():
        generator = torch.Generator().manual_seed(seed)
        losses = [
            language_model_loss(model(x), y).item()
            for x, y in (get_batch(data, block_size, batch_size, device, generator) for _ in range(eval_iters))
        ]
        result[name] = sum(losses) / len(losses)
    model.train(was_training)
    return result


def train(
    model: torch.nn.Module,
    loss_of_step: Callable[[int], torch.Tensor],
    steps: int,
    optimizer: torch.optim.Optimizer,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 100,
    clip_grad_norm: float | None = 1.0,
    description: str = "training",
) -> dict[str, list]:
    """A plain training loop with a progress bar.

    ``loss_of_step(step)`` returns the loss of one batch; ``evaluate()`` (optional)
    returns named losses, recorded every ``eval_every`` steps and after the last.
    Returns the history: ``{"step": [...], "loss": [...], "eval_step": [...], <eval names>: [...]}``.
    """
    history: dict[str, list] = {"step": [], "loss": [], "eval_step": []}
    model.train()
    bar = progress(range(steps), desc=description)
    for step in bar:
        loss = loss_of_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        history["step"].append(step)
        history["loss"].append(loss.item())
        if evaluate is not None and (step % eval_every == 0 or step == steps - 1):
            history["eval_step"].append(step)
            for name, value in evaluate().items():
                history.setdefault(name, []).append(value)
            bar.set_postfix({k: f"{history[k][-1]:.3f}" for k in history if k not in ("step", "loss", "eval_step")})
    return history


def train_language_model(
    model: torch.nn.Module,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    *,
    steps: int,
    block_size: int,
    batch_size: int,
    lr: float = 1e-3,
    eval_every: int = 100,
    eval_iters: int = 20,
    device: torch.device | str = "cpu",
    seed: int = 0,
    clip_grad_norm: float | None = 1.0,
) -> dict[str, list]:
    """Train next-token prediction on random windows of ``train_data`` with AdamW."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def loss_of_step(step: int) -> torch.Tensor:
        x, y = get_batch(train_data, block_size, batch_size, device, generator)
        return language_model_loss(model(x), y)

    def evaluate() -> dict[str, float]:
        splits = {"train": train_data, "val": val_data}
        return estimate_loss(model, splits, block_size, batch_size, eval_iters, device)

    return train(model, loss_of_step, steps, optimizer, evaluate=evaluate, eval_every=eval_every,
                 clip_grad_norm=clip_grad_norm, description="training")
