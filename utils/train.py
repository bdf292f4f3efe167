"""Training: the loss, the batches and the loops that train the book's models (chapters 02 and 11).

A language model in this book maps token ids ``(B, T)`` to logits ``(B, T, V)``;
the loss is the cross-entropy between those logits and the next tokens.

Chapter 02 keeps the first, plain pieces:

* :func:`sequence_loss` — THE loss of the book: mean cross-entropy of logits
  ``(B, T, V)`` against targets ``(B, T)``, skipping ignored (padding) targets;
* :func:`get_batch` — random windows of a token stream, and targets shifted by one;
* :func:`estimate_loss` — the mean loss of a few fixed random batches;
* :func:`train` and :func:`train_language_model` — a plain loop with a progress bar.

Chapter 11 adds the kit that trains real models (chapters 11–14 use it):

* :class:`TrainConfig` — every setting of a run, in one dataclass;
* :func:`learning_rate` — warm-up, then cosine decay (or inverse square root, or constant);
* :func:`configure_optimizer` — AdamW with weight decay on weight matrices only;
* :class:`Trainer` — gradient accumulation, clipping, mixed precision (autocast),
  optional ``torch.compile``, evaluation, a progress bar with the current losses,
  and checkpoints that resume a run exactly;
* :func:`random_windows` / :func:`whole_split_loss` — training batches and an exact
  validation loss for a language model on one long token stream;
* the command line ``python -m utils.train gpt|translate ...`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from utils import distributed  # chapter 14: the same loop in N processes under torchrun
from utils.data import write_atomically

# --- chapter 02: the loss, batches and a plain loop ----------------------------------------


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


# --- chapter 11: the training kit -----------------------------------------------------------

SCHEDULES = ("cosine", "inverse_sqrt", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Every setting of a training run. The defaults are a reasonable small run; tasks set their own."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per micro-batch
    accumulation_steps: int = 1  # micro-batches per optimizer step (their gradients add up)
    lr: float = 1e-3  # peak learning rate, reached at the end of the warm-up
    min_lr: float = 1e-4  # where the cosine ends
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" | "inverse_sqrt" | "constant"
    weight_decay: float = 0.1  # on weight matrices only (configure_optimizer)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0  # largest gradient norm; None: no clipping
    label_smoothing: float = 0.0
    eval_every: int = 100  # evaluate (and checkpoint) every so many steps, and after the last
    seed: int = 1337
    device: str = "auto"  # auto: cuda -> mps -> cpu
    precision: str = "auto"  # auto: bf16 on CUDA GPUs of compute capability >= 8.0, fp16 + GradScaler below; fp32 on CPU/MPS
    compile: bool = False  # torch.compile the model

    def __post_init__(self):
        betas = self.betas
        if not (isinstance(betas, tuple | list) and len(betas) == 2 and all(_is_number(b) for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = tuple(betas)  # a list after a round trip through a checkpoint
        for name in ("weight_decay", "label_smoothing"):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        if self.grad_clip is not None and not _is_number(self.grad_clip):
            raise ValueError(f"grad_clip must be a number > 0 or None (no clipping), got {self.grad_clip!r}")
        for name in ("steps", "warmup_steps", "seed"):
            _check_positive_int(getattr(self, name), name, minimum=0)
        for name in ("batch_size", "accumulation_steps", "eval_every"):
            _check_positive_int(getattr(self, name), name)
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if not (isinstance(self.min_lr, int | float) and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"min_lr must be between 0 and lr={self.lr}, got {self.min_lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0, 1, ..., config.steps - 1).

    Warm-up: rises linearly to ``lr`` over ``warmup_steps`` steps (step 0 already
    gets ``lr / warmup_steps``). Then

    * ``"cosine"``: falls along half a cosine from ``lr`` to ``min_lr`` at the last step;
    * ``"inverse_sqrt"``: ``lr · sqrt(warmup_steps / (step + 1))``, the schedule of
      Vaswani et al. (2017) with its peak at ``lr``;
    * ``"constant"``: stays at ``lr``.
    """
    c = config
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "inverse_sqrt":
        return c.lr * math.sqrt(max(c.warmup_steps, 1) / (step + 1))
    decay_steps = c.steps - 1 - c.warmup_steps  # from the peak to the last step
    progress_ = min(1.0, (step - c.warmup_steps) / decay_steps) if decay_steps > 0 else 1.0
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * progress_))


def decay_groups(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay, and of those that do not.

    Decay shrinks the weight *matrices* (``Linear`` weights, token embeddings), the
    numbers that multiply an input. Biases, LayerNorm gains and biases (vectors) and
    learned position tables (a bias per position, added, never multiplied) are left
    alone: pulling them towards 0 has no meaning (a gain's neutral value is 1).
    A tied tensor is listed once.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_position_table = "position" in name
        (decay if parameter.ndim >= 2 and not is_position_table else no_decay).append(name)
    return decay, no_decay


def configure_optimizer(model: torch.nn.Module, config: TrainConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, 2019) with two groups: decay on matrices, none on the rest.

    ``fused`` (default: on CUDA) updates every tensor in one kernel, and can be told to skip a step
    without the CPU reading anything (:meth:`Trainer.train_step`).
    """
    decay, no_decay = decay_groups(model)
    parameters = dict(model.named_parameters())
    groups = [
        {"params": [parameters[n] for n in decay], "weight_decay": config.weight_decay},
        {"params": [parameters[n] for n in no_decay], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = all(p.is_cuda for p in parameters.values())
    return torch.optim.AdamW(groups, lr=learning_rate(0, config), betas=config.betas, fused=fused or None)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA, then MPS, then the CPU; a named device must exist on this machine."""
    from utils.environment import pick_device

    if name == "auto":
        return pick_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r}: Apple's MPS is not available on this machine; use cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r}: the book runs on cpu, cuda or mps")
    return device


PRECISION_VARIABLE = "LLM_FROM_SCRATCH_PRECISION"  # fp32 | fp16 | bf16 | auto: replaces every run's precision


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → ``"bf16"`` on a CUDA GPU of compute capability 8.0 or more (A100, H100, RTX 30xx...),
    ``"fp16"`` (with a GradScaler) on an older one (the T4 is 7.5), ``"fp32"`` elsewhere.

    ``torch.cuda.is_bf16_supported()`` is not the test: it also answers True where bf16
    is only emulated, slowly, as on the T4.
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU (it trains with a GradScaler); on {device.type} use "
                         "fp32 or bf16")
    return precision


def precision_from_environment(precision: str) -> str:
    """``precision``, unless the environment variable ``LLM_FROM_SCRATCH_PRECISION`` names another.

    A GPU check forces every chapter's training into one precision with it (e.g. fp16, the T4's).
    """
    value = os.environ.get(PRECISION_VARIABLE, "").strip()
    if not value:
        return precision
    if value not in PRECISIONS:
        raise ValueError(f"{PRECISION_VARIABLE}={value!r}: use one of {', '.join(PRECISIONS)} (or leave it unset)")
    return value


def autocast(device: torch.device, precision: str):
    """The mixed-precision context: matrix products in bf16/fp16, sensitive parts (softmax, losses) in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def to_device(batch, device: torch.device):
    """A batch (a tensor, or a tuple/list of them) on ``device``; anything else is passed through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def default_loss_of(model: torch.nn.Module, batch) -> torch.Tensor:
    """The language-model loss: ``x, y = batch``; ``sequence_loss(model(x), y)``."""
    x, y = batch
    return sequence_loss(model(x), y)


# Checkpoints ------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "llm-from-scratch checkpoint"
CHECKPOINT_VERSION = 1
MAX_SKIPPED_IN_A_ROW = 10  # non-finite steps in a row before training stops
READ_EVERY = 25  # Trainer: steps between two reads of the losses from the device


class CheckpointError(ValueError):
    """A file is not a checkpoint of this book, or not one of this model and task."""


def save_atomic(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda f: torch.save(obj, f))


def write_json_atomic(data, path: str | Path) -> Path:
    """A JSON file written to a temporary file, then renamed into place (under torchrun by rank 0 only)."""
    path = Path(path)
    if not distributed.is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def load_checkpoint(path: str | Path, metadata: dict | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code runs) and check it.

    ``metadata``: what the caller expects (task, model config, tokenizer, ...): every
    key given must be equal in the checkpoint. Raises :class:`CheckpointError`
    naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged zip, a pickle with code, an empty file...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this book (no {CHECKPOINT_FORMAT!r} header)")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is a checkpoint of version {checkpoint.get('version')!r}; this code reads "
                              f"version {CHECKPOINT_VERSION}")
    for key in ("model", "optimizer", "step", "config", "metadata"):
        if key not in checkpoint:
            raise CheckpointError(f"{path} is damaged: it has no {key!r}")
    for key, expected in (metadata or {}).items():
        found = checkpoint["metadata"].get(key)
        if found != expected:
            raise CheckpointError(f"{path} was made for another {key}: it has {_short(found)}, this run has "
                                  f"{_short(expected)}")
    return checkpoint


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Trainer:
    """Trains ``model`` for ``config.steps`` optimizer steps; ``fit()`` returns the history.

    * ``batch_at(i)`` → a tuple of CPU tensors, micro-batch number ``i``
      (``i = step · accumulation_steps + k``); a pure function of ``i``, so a resumed
      run sees exactly the batches an uninterrupted one would.
    * ``loss_of(model, batch)`` → scalar loss; default :func:`default_loss_of`.
    * ``evaluate(model)`` → dict of floats including ``"val_loss"``; called every
      ``eval_every`` steps and after the last, in eval mode under ``no_grad``
      (training mode comes back afterwards, also after an exception).
    * ``metadata``: a JSON-able dict stored in each checkpoint (task, model config,
      tokenizer); :meth:`load` refuses a checkpoint whose metadata differs.
    * ``out_dir``: where ``checkpoint.pt`` is written after every evaluation.

    A step whose loss is not finite (NaN or infinite: a batch whose targets are all
    padding, or a diverging model) changes no weight: it is skipped, listed in
    ``history["skipped"]`` and warned about; after ``MAX_SKIPPED_IN_A_ROW`` such
    steps in a row, training stops with a ``FloatingPointError`` naming the step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        *,
        batch_at: Callable[[int], tuple],
        loss_of: Callable[[torch.nn.Module, tuple], torch.Tensor] | None = None,
        evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        metadata: dict | None = None,
        out_dir: str | Path | None = None,
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.device = distributed.init_from_environment(resolve_device(config.device))  # torchrun: cuda:LOCAL_RANK
        self.distributed = distributed.world_size() > 1
        precision = precision_from_environment(config.precision)
        try:
            self.precision = resolve_precision(precision, self.device)
        except ValueError as error:
            set_by = f" ({PRECISION_VARIABLE} is set)" if precision != config.precision else ""
            raise ValueError(f"{error}{set_by}") from None
        self.model = model.to(self.device)
        self.batch_at = distributed.rank_batch_at(batch_at)  # rank r of N: micro-batches i·N + r
        self.loss_of = loss_of or default_loss_of
        self.evaluate = evaluate
        self.metadata = dict(metadata or {})
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.is_main = distributed.is_main()  # the process that prints and writes (only rank 0 under DDP)
        self.optimizer = configure_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.step = 0  # optimizer steps taken
        self.history: dict[str, list] = {"step": [], "train_loss": [], "lr": [], "grad_norm": [], "eval_step": [],
                                         "skipped": []}
        self.train_seconds = 0.0  # time in training steps, evaluation excluded
        self.eval_seconds = 0.0
        self.read_every = READ_EVERY  # steps between two reads of the losses on the device (see fit)
        self._unread: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # (step, loss, grad norm), on device
        self._skipped_in_a_row = 0
        self._skipped_now = False
        self._postfix: dict[str, str] = {}
        self._saved_step: int | None = None
        self.forward_model = self._prepare_model(self.model)

    def _prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model the training steps call: DDP when distributed (chapter 14), then torch.compile if asked."""
        if self.distributed:
            model = DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        if self.config.compile:
            return torch.compile(model)
        return model

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoint.pt"

    def run_evaluation(self) -> dict[str, float]:
        """Call ``evaluate(model)`` now (eval mode, no_grad) and record the results at the current step."""
        if self.evaluate is None:
            raise ValueError("this Trainer has no evaluate function")
        start = time.perf_counter()
        with evaluating(self.model), autocast(self.device, self.precision):
            results = {name: float(value) for name, value in self.evaluate(self.model).items()}
        if "val_loss" not in results:
            raise ValueError(f"evaluate(model) must return a dict with 'val_loss'; got keys {sorted(results)}")
        self.eval_seconds += time.perf_counter() - start
        self.history["eval_step"].append(self.step)
        for name, value in results.items():
            self.history.setdefault(name, []).append(value)
        return results

    @property
    def skips_on_device(self) -> bool:
        """True with a fused AdamW (on CUDA): a step whose loss is not finite is skipped by the optimizer itself,
        told by a flag on the device, so the CPU never waits for the GPU to know the loss."""
        return bool(self.optimizer.defaults.get("fused"))

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step from ``accumulation_steps`` micro-batches; returns (loss, gradient norm).

        Both are tensors on the device, not read here: reading a GPU value (``.item()``,
        ``float()``) makes the CPU wait until the GPU has finished, and the GPU then
        waits for the CPU to send the next step. :meth:`fit` reads them every
        ``read_every`` steps, together.
        """
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, c)
        total = torch.zeros((), device=self.device)
        for k in range(c.accumulation_steps):
            batch = to_device(self.batch_at(step * c.accumulation_steps + k), self.device)
            last = k == c.accumulation_steps - 1  # DDP all-reduces the gradients once, after the last
            with contextlib.nullcontext() if last or not self.distributed else self.forward_model.no_sync():
                with autocast(self.device, self.precision):
                    loss = self.loss_of(self.forward_model, batch) / c.accumulation_steps
                self.scaler.scale(loss).backward()  # gradients add up over the micro-batches
            total += loss.detach().float()
        total = distributed.mean_tensor_over_ranks(total)  # every rank then skips, or steps, alike
        grad_norm = None
        # On the CPU, reading the loss costs nothing (no device to wait for): a non-finite step is skipped here.
        self._skipped_now = not self.skips_on_device and not math.isfinite(total.item())
        if not self._skipped_now:
            if c.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
            if self.skips_on_device and not self.scaler.is_enabled():
                self.optimizer.found_inf = (~torch.isfinite(total)).float()  # 1: the fused kernel changes nothing
                self.optimizer.step()
                del self.optimizer.found_inf
            else:  # fp16: the GradScaler skips a step whose gradients are not finite (on the device when fused)
                self.scaler.step(self.optimizer)
                self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm

    def read_history(self) -> None:
        """Read the losses and gradient norms of the steps since the last read (one transfer) into the history.

        A step whose loss is not finite is listed in ``history["skipped"]`` and warned
        about; ``MAX_SKIPPED_IN_A_ROW`` of them in a row stop training.
        """
        if not self._unread:
            return
        h, unread, self._unread = self.history, self._unread, []
        nan = torch.full((), math.nan, device=self.device)
        values = torch.stack([torch.stack((loss.double(), (nan if norm is None else norm).double()))
                              for _, loss, norm in unread]).tolist()  # the one read: (steps, 2)
        for (step, _, norm), (loss, grad_norm) in zip(unread, values):
            finite = math.isfinite(loss)
            if finite:
                self._skipped_in_a_row = 0
            else:
                h["skipped"].append(step)
                self._skipped_in_a_row += 1
                warnings.warn(f"step {step}: the loss is {loss}; the step was skipped (no weight changed)",
                              stacklevel=3)
            h["step"].append(step)
            h["train_loss"].append(loss)
            h["lr"].append(learning_rate(step, self.config))
            h["grad_norm"].append(grad_norm if finite and norm is not None else None)
            if self._skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                raise FloatingPointError(
                    f"step {step}: the loss was not finite in {self._skipped_in_a_row} steps in a row (last {loss}); "
                    "training stopped. Look for batches whose targets are all padding, or lower the learning rate"
                )
        self._postfix["loss"] = f"{h['train_loss'][-1]:.3f}"

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def fit(self, until: int | None = None) -> dict[str, list]:
        """Train from ``self.step`` to ``config.steps`` (or only to step ``until``, as if interrupted there).

        Returns the history (also kept in ``self.history``). With ``out_dir``, a
        checkpoint is written after each evaluation and when ``fit`` returns. The
        losses are read from the device every ``read_every`` steps, at each
        evaluation and at the end (on the CPU also at once after a skipped step).
        """
        c = self.config
        end = c.steps if until is None else until
        if isinstance(end, bool) or not isinstance(end, int) or not self.step <= end <= c.steps:
            raise ValueError(f"until must be an integer step from {self.step} to steps={c.steps}, got {until!r}")
        self.model.train()
        hide = {} if self.is_main else {"disable": True}
        bar = progress(range(self.step, end), initial=self.step, total=c.steps, desc="training", **hide)
        self._synchronize()
        started = time.perf_counter()
        for step in bar:
            loss, grad_norm = self.train_step(step)
            self.step = step + 1
            self._unread.append((step, loss, grad_norm))
            evaluating_now = self.evaluate is not None and (self.step % c.eval_every == 0 or self.step == c.steps)
            if evaluating_now or self._skipped_now or len(self._unread) >= self.read_every or self.step == end:
                self._synchronize()
                self.train_seconds += time.perf_counter() - started
                self.read_history()
                if evaluating_now:
                    self.run_evaluation()
                    self._save_checkpoint()
                    self._postfix["val"] = f"{self.history['val_loss'][-1]:.3f}"
                bar.set_postfix(self._postfix, refresh=False)
                started = time.perf_counter()
        bar.close()
        self._save_checkpoint()
        return self.history

    def fit_for(self, seconds: float, replan_every: int = 100) -> dict[str, list]:
        """Train for about ``seconds`` of wall-clock time, evaluations and checkpoints included.

        ``config.steps`` is the first plan: how many steps are expected to fit. Every
        ``replan_every`` steps the plan is made again from the speed measured so far in
        this call (``config.steps`` changes), so the learning-rate schedule still ends,
        and training stops, when the time is spent, even when the machine slows down or
        speeds up during the run. Each new plan moves the schedule's end a little. The
        step count depends on the machine, so such a run is not reproducible step for
        step; a fixed ``steps`` with :meth:`fit` is. Under DDP every rank follows the
        same plan (the mean of the ranks' plans).
        """
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        _check_positive_int(replan_every, "replan_every")
        start, first = time.perf_counter(), self.step
        while self.step < self.config.steps:
            self.fit(min(self.step + replan_every, self.config.steps))
            elapsed = time.perf_counter() - start
            if self.step >= self.config.steps:
                break
            rate = (self.step - first) / elapsed  # steps per second, evaluations included
            planned = self.step + int(max(0.0, seconds - elapsed) * rate)
            self.config.steps = max(self.step, round(distributed.mean_over_ranks(planned)))
            self.config.warmup_steps = min(self.config.warmup_steps, self.config.steps)
        return self.history

    def _save_checkpoint(self) -> None:
        """Write ``out_dir/checkpoint.pt`` (main process only) unless it already holds this step."""
        if self.checkpoint_path is not None and self.is_main and self._saved_step != self.step:
            self.save(self.checkpoint_path)
            self._saved_step = self.step

    # Checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything a checkpoint holds (tensors, numbers, strings, lists and dicts only)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":  # never on a CPU run: CUDA would be initialised (chapter 14 forks CPU ranks)
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "config": asdict(self.config),
            "metadata": self.metadata,
            "history": self.history,
            "rng": rng,
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (temporary file, then rename): a good file is never half overwritten."""
        return save_atomic(self.state(), path)

    def load(self, path: str | Path) -> Trainer:
        """Resume from a checkpoint of the same model and task: weights, optimizer, scaler, step, history, RNG."""
        checkpoint = load_checkpoint(path, self.metadata)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            wanted = [line for prefix in ("size mismatch", "Missing", "Unexpected") for line in lines
                      if line.startswith(prefix)]  # the most telling first
            detail = (wanted or lines or [""])[0]
            detail = detail if len(detail) <= 160 else detail[:157] + "..."
            raise CheckpointError(f"{path} holds weights of another model: {detail}") from None
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: its optimizer state does not fit this model ({error})") from None
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        step = checkpoint["step"]
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"{path} is damaged: step is {step!r}")
        self.step = step
        self.history = {k: list(v) for k, v in checkpoint.get("history", {}).items()} or self.history
        rng = checkpoint.get("rng", {})
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda" and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return self


# Language models on one long token stream -------------------------------------------------


def random_windows(data: torch.Tensor, block_size: int, batch_size: int, seed: int = 0) -> Callable[[int], tuple]:
    """``batch_at(i)`` for a token stream: micro-batch ``i`` is ``batch_size`` random windows and their targets.

    The windows of micro-batch ``i`` depend only on ``(seed, i)``, so a resumed run
    draws exactly the batches an uninterrupted one would.
    """
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, too few for windows of block_size={block_size}")

    def batch_at(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        return get_batch(data, block_size, batch_size, generator=generator)

    return batch_at


def whole_split_loss(
    model: torch.nn.Module, data: torch.Tensor, block_size: int, batch_size: int = 256
) -> float:
    """The exact mean cross-entropy of predicting every token of ``data`` from the ones before it.

    The stream is cut into non-overlapping windows of ``block_size`` tokens (the last
    one shorter), so each of the ``len(data) - 1`` targets is scored exactly once,
    with between 0 and ``block_size - 1`` tokens of context before it. Runs in eval
    mode under ``no_grad``; the model's mode is restored afterwards. Under torchrun
    (chapter 14) each of the N processes scores every N-th batch of windows and the
    sums are added up, so all of them get the same whole-split loss in 1/N of the time.
    """
    if data.ndim != 1 or len(data) < 2:
        raise ValueError(f"data must be a 1-D tensor of at least 2 token ids, got shape {tuple(data.shape)}")
    _check_positive_int(block_size, "block_size")
    _check_positive_int(batch_size, "batch_size")
    device = next(model.parameters()).device
    n_targets = len(data) - 1
    n_full = n_targets // block_size
    total = 0.0
    x = data[: n_full * block_size].view(n_full, block_size)  # (n_full, T)
    y = data[1 : n_full * block_size + 1].view(n_full, block_size)  # (n_full, T)
    pieces = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n_full, batch_size)]
    if n_targets % block_size:
        pieces.append((data[n_full * block_size : -1][None], data[n_full * block_size + 1 :][None]))  # (1, rest)
    with evaluating(model):
        for xb, yb in distributed.share_of(pieces):  # under torchrun each rank scores its share
            logits = model(xb.to(device))  # (B, T, V)
            total += F.cross_entropy(logits.float().flatten(0, 1), yb.to(device).flatten(), reduction="sum").item()
    (total,) = distributed.sum_over_ranks(total)  # every rank gets the sum of all shares
    return total / n_targets


# --- the command line ----------------------------------------------------------------------

TASKS = {"gpt": "utils.shakespeare", "translate": "utils.translation"}


class UsageError(Exception):
    """Bad command-line input: printed on one line, exit code 2."""


def write_metrics(out: Path, summary: dict, train_config, model_config, history: dict) -> None:
    """OUT/metrics.json of a command-line run: its summary, both configs and the loss history."""
    write_json_atomic({"summary": summary, "train_config": dataclasses.asdict(train_config),
                       "model_config": dataclasses.asdict(model_config), "history": history,
                       "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, out / "metrics.json")


def checkpoint_path_of(args: argparse.Namespace, task: str) -> Path:
    """OUT/checkpoint.pt of a command-line run, refusing to overwrite or to resume by accident.

    ``--out`` defaults to ``runs/TASK-PRESET``. A checkpoint already there needs
    ``--resume`` (continue it) or ``--overwrite`` (replace it); ``--resume`` needs one.
    """
    checkpoint_path = Path(args.out or f"runs/{task}-{args.preset}") / "checkpoint.pt"
    if checkpoint_path.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{checkpoint_path} already exists; pass --resume to continue it, --overwrite to "
                         "replace it, or --out to train elsewhere")
    if args.resume and not checkpoint_path.exists():
        raise UsageError(f"--resume: there is no checkpoint at {checkpoint_path}")
    return checkpoint_path


def build_parser() -> argparse.ArgumentParser:
    """``python -m utils.train TASK [options]``: the common options here, each task adds its own."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.train",
        description="Train one of the book's models from the command line. The last line printed is one "
                    "JSON object summarising the run (task, preset, device, steps, seconds, val_loss, ...).",
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    helps = {"gpt": "chapter 11: a character-level GPT on Tiny Shakespeare",
             "translate": "chapter 12: a German-to-English Transformer on Multi30k"}
    for name, module_name in TASKS.items():
        sub = tasks.add_parser(name, help=helps[name], description=helps[name])
        add_common_arguments(sub)
        module = _task_module(module_name, required=False)
        if module is not None:
            module.add_arguments(sub)
    return parser


# Settings that a common command-line option owns: ``--set`` refuses them and names the option.
COMMAND_LINE_SETTINGS = {"train.device": "use --device", "train.compile": "use --compile", "train.seed": "use --seed"}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu",
                        help="the sizes of model and run: 'cpu' (minutes on a laptop) or 'gpu' (default: cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps to train for (default: the preset's); with --resume, the total")
    parser.add_argument("--out", default=None,
                        help="folder for checkpoint.pt and metrics.json (default: runs/TASK-PRESET)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt (same task and model) instead of starting afresh")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train (default: auto, i.e. cuda, then mps, then cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (faster steps on a GPU after a slow start; slower on a CPU)")
    parser.add_argument("--seed", type=int, default=1337, help="seed for weights and batches (default: 1337)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change one setting of the preset, e.g. --set train.lr=2e-3 --set model.C=128 "
                             "(sections: model and train; translate also has data and decode)")


def apply_settings(
    preset: dict[str, dict], settings: list[str], fields: dict[str, Iterable[str]] | None = None,
    instead: dict[str, str] | None = None,
) -> dict[str, dict]:
    """A copy of ``preset`` with ``--set SECTION.FIELD=VALUE`` settings applied.

    VALUE is read as a Python literal (``2e-3``, ``(0.9, 0.95)``, ``None``), else kept as
    a word (``cosine``). ``fields`` names the settings each section may take; a name
    outside it is refused with the list of valid ones, instead of a later ``TypeError``.
    ``instead`` maps settings that a command-line option or the task itself owns
    (``train.device``) to what to do instead: the option would silently override them.
    """
    instead = {**COMMAND_LINE_SETTINGS, **(instead or {})}
    preset = {section: dict(values) for section, values in preset.items()}
    for setting in settings:
        name, equals, text = setting.partition("=")
        section, dot, field = name.partition(".")
        if not (equals and dot and field) or section not in preset:
            raise UsageError(f"--set {setting!r}: expected SECTION.FIELD=VALUE with SECTION one of {list(preset)}")
        if name in instead:
            raise UsageError(f"--set {setting!r}: {instead[name]}")
        if fields is not None and section in fields and field not in fields[section]:
            settable = sorted(f for f in fields[section] if f"{section}.{f}" not in instead)
            raise UsageError(f"--set {setting!r}: {section} has no setting {field!r}; it has {', '.join(settable)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a plain word, e.g. a schedule's name
        preset[section][field] = value
    return preset



def _task_module(name: str, required: bool = True):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if not required and error.name == name:
            return None
        raise


def process_seconds() -> float:
    """Seconds since this Python process started (start-up and imports included); Linux, else since import."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (0 done, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 and one usage line on bad syntax
    try:
        if args.steps is not None and args.steps < 0:
            raise UsageError(f"--steps must be >= 0, got {args.steps}")
        module = _task_module(TASKS[args.task], required=False)
        if module is None:
            raise UsageError(f"task {args.task!r} is not available in this checkout ({TASKS[args.task]} is missing)")
        summary = module.run(args)
    except (UsageError, CheckpointError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    finally:
        world, is_main = distributed.world_size(), distributed.is_main()
        distributed.shutdown()
    summary = {"task": args.task, **summary, "seconds": round(process_seconds(), 2)}
    if world > 1:  # under torchrun: every process trained as many tokens as the task counted for one
        summary["processes"] = world
        if summary.get("train_tokens_per_second"):
            summary["train_tokens_per_second"] *= world
    if is_main:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    # Run the main() of the imported module ``utils.train``, not of this ``__main__`` copy: task modules
    # import utils.train, and its exception classes must be the ones main() catches.
    from utils.train import main as main_of_module

    sys.exit(main_of_module())
