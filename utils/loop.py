"""Chapter 02: the loss, the batches and a plain training loop.

A language model in this book maps token ids ``(B, T)`` to logits ``(B, T, V)``;
the loss is the cross-entropy between those logits and the next tokens. Chapter 02
builds the first, plain pieces, which every later chapter uses:

* :func:`sequence_loss` — THE loss of the book: mean cross-entropy of logits
  ``(B, T, V)`` against targets ``(B, T)``, skipping ignored (padding) targets;
* :func:`get_batch` — random windows of a token stream, and targets shifted by one;
* :func:`estimate_loss` — the mean loss of a few fixed random batches;
* :func:`train` and :func:`train_language_model` — a plain loop with a progress bar.

Chapter 11 builds the trainer of real runs on them (:mod:`utils.trainer`).
Everything here is also importable from :mod:`utils.train`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator

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


def sequence_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T), over targets that are not ``ignore_index``.

    ``label_smoothing`` ε trains against (1 - ε) on the target plus ε spread evenly
    over all V tokens (Szegedy et al., 2016), as ``F.cross_entropy`` does.
    ``pad_id`` is another name for ``ignore_index`` (chapter 10's). When *every*
    target is ignored there is nothing to average and the result is NaN, as with
    ``F.cross_entropy``; the training loops skip such a step (see :class:`Trainer`).
    """
    if logits.ndim != 3 or targets.ndim != 2 or tuple(targets.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"logits must be (B, T, V) and targets (B, T) with the same B and T; got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if torch.is_floating_point(targets) or torch.is_complex(targets):
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    if pad_id is not None and ignore_index is not None and pad_id != ignore_index:
        raise ValueError(f"pad_id={pad_id} and ignore_index={ignore_index} name the same thing; give one")
    ignore = ignore_index if ignore_index is not None else pad_id
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T),
                           ignore_index=-100 if ignore is None else ignore, label_smoothing=label_smoothing)


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
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]  # (B, T)
    y = data[starts[:, None] + offsets + 1]  # (B, T): the same windows, one token later
    return x.to(device), y.to(device)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with evaluating(model):`` eval mode and no gradients; the previous mode comes back afterwards, errors included."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


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
    result = {}
    with evaluating(model):
        for name, data in splits.items():
            generator = torch.Generator().manual_seed(seed)
            losses = [
                sequence_loss(model(x), y).item()
                for x, y in (get_batch(data, block_size, batch_size, device, generator) for _ in range(eval_iters))
            ]
            result[name] = sum(losses) / len(losses)
    return result


def _check_positive_int(value, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


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
    A step whose loss is not finite (NaN or infinite, e.g. a batch whose targets are
    all padding) changes no weight: it is skipped and listed in ``history["skipped"]``.
    Returns the history: ``{"step": [...], "loss": [...], "eval_step": [...], <eval names>: [...], "skipped": [...]}``.
    """
    _check_positive_int(steps, "steps", minimum=0)
    _check_positive_int(eval_every, "eval_every")
    history: dict[str, list] = {"step": [], "loss": [], "eval_step": [], "skipped": []}
    model.train()
    bar = progress(range(steps), desc=description)
    for step in bar:
        loss = loss_of_step(step)
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        if math.isfinite(value):
            loss.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
        else:
            history["skipped"].append(step)
        history["step"].append(step)
        history["loss"].append(value)
        if evaluate is not None and (step % eval_every == 0 or step == steps - 1):
            history["eval_step"].append(step)
            for name, value in evaluate().items():
                history.setdefault(name, []).append(value)
            bar.set_postfix({k: f"{history[k][-1]:.3f}" for k in history
                             if k not in ("step", "loss", "eval_step", "skipped")})
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
        return sequence_loss(model(x), y)

    def evaluate() -> dict[str, float]:
        splits = {"train": train_data, "val": val_data}
        return estimate_loss(model, splits, block_size, batch_size, eval_iters, device)

    return train(model, loss_of_step, steps, optimizer, evaluate=evaluate, eval_every=eval_every,
                 clip_grad_norm=clip_grad_norm, description="training")
