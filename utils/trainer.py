"""Chapter 11: the trainer of real runs, and its kit (chapters 11–14 use it).

* :class:`TrainConfig` — every setting of a run, in one dataclass;
* :func:`learning_rate` — warm-up, then cosine decay (or inverse square root, or constant);
* :func:`configure_optimizer` — AdamW with weight decay on weight matrices only;
* :func:`resolve_device`, :func:`resolve_precision`, :func:`autocast` — where a run
  trains and in which precision (bf16 on CUDA GPUs of compute capability 8.0 and up,
  fp16 with a GradScaler on older ones such as the T4, fp32 on the CPU);
* :class:`Trainer` — gradient accumulation, clipping, mixed precision, optional
  ``torch.compile``, evaluation, a progress bar with the current losses, and
  checkpoints that resume a run exactly (:mod:`utils.checkpoints`);
* :func:`random_windows` / :func:`whole_split_loss` — training batches and an exact
  validation loss for a language model on one long token stream.

The trainer runs in one process. Chapter 14 runs it in W processes: it hands the
trainer a :class:`utils.distributed.DataParallel` in place of :class:`OneProcess`,
the one place where ranks reach this module (``processes=``; under torchrun the
trainer finds it itself). Everything here is also importable from :mod:`utils.train`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from utils import distributed  # chapter 14: whole_split_loss's share of the windows; DataParallel
from utils.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, load_checkpoint, save_atomic
from utils.checks import check_number
from utils.loop import _check_positive_int, evaluating, get_batch, progress, sequence_loss

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
        if not (isinstance(betas, tuple | list) and len(betas) == 2 and all(_is_number(b) for b in betas)
                and all(math.isfinite(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers, finite and in [0, 1), got {betas!r}")
        self.betas = tuple(betas)  # a list after a round trip through a checkpoint
        for name in ("steps", "warmup_steps", "seed"):
            _check_positive_int(getattr(self, name), name, minimum=0)
        for name in ("batch_size", "accumulation_steps", "eval_every"):
            _check_positive_int(getattr(self, name), name)
        # Every number finite (1e999 is infinity in Python: the run would "succeed" with a NaN loss).
        check_number("lr", self.lr, minimum=0)
        if not self.lr > 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        check_number("min_lr", self.min_lr, minimum=0, maximum=self.lr)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number("label_smoothing", self.label_smoothing, minimum=0)
        if not self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be a finite number in [0, 1), got {self.label_smoothing!r}")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and math.isfinite(self.grad_clip)
                                               and self.grad_clip > 0):
            raise ValueError(f"grad_clip must be a finite number > 0, or None (no clipping), got {self.grad_clip!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be one of auto, cpu, cuda, mps, got {self.device!r}")


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


def default_loss_of(model: torch.nn.Module, batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """The language-model loss: ``x, y = batch``; ``sequence_loss(model(x), y)``, with label smoothing."""
    x, y = batch
    return sequence_loss(model(x), y, label_smoothing=label_smoothing)


MAX_SKIPPED_IN_A_ROW = 10  # non-finite steps in a row before training stops
READ_EVERY = 25  # Trainer: steps between two reads of the losses from the device


class OneProcess:
    """How a :class:`Trainer` runs as the only process: every method leaves things as they are.

    Chapter 14's :class:`utils.distributed.DataParallel` has the same methods for W
    processes: each rank its own micro-batches, DDP's all-reduce of the gradients, and
    means over the ranks.
    """

    world_size = 1
    is_main = True  # the process that prints and writes

    def __init__(self, device: torch.device):
        self.device = device

    def batches(self, batch_at: Callable[[int], tuple]) -> Callable[[int], tuple]:
        return batch_at  # micro-batch i is batch_at(i)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def accumulating(self, model: torch.nn.Module, last: bool):
        return contextlib.nullcontext()  # gradients add up in place; nothing to exchange

    def mean(self, value):
        return value  # the mean over one process


class Trainer:
    """Trains ``model`` for ``config.steps`` optimizer steps; ``fit()`` returns the history.

    * ``batch_at(i)`` → a tuple of CPU tensors, micro-batch number ``i``
      (``i = step · accumulation_steps + k``); a pure function of ``i``, so a resumed
      run sees exactly the batches an uninterrupted one would.
    * ``loss_of(model, batch)`` → scalar loss; default :func:`default_loss_of` with
      ``config.label_smoothing``.
    * ``evaluate(model)`` → dict of floats including ``"val_loss"``; called every
      ``eval_every`` steps and after the last, in eval mode under ``no_grad``
      (training mode comes back afterwards, also after an exception).
    * ``metadata``: a JSON-able dict stored in each checkpoint (task, model config,
      tokenizer); :meth:`load` refuses a checkpoint whose metadata differs.
    * ``out_dir``: where ``checkpoint.pt`` is written after every evaluation.
    * ``processes``: how the run is shared between processes; :class:`OneProcess` by
      default, or under torchrun chapter 14's :class:`utils.distributed.DataParallel`.

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
        processes: OneProcess | None = None,
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        device = resolve_device(config.device)
        # Chapter 14: under torchrun the process group is joined here and the device may become cuda:LOCAL_RANK.
        self.processes = processes or distributed.launched_processes(device) or OneProcess(device)
        self.device = self.processes.device
        precision = precision_from_environment(config.precision)
        try:
            self.precision = resolve_precision(precision, self.device)
        except ValueError as error:
            set_by = f" ({PRECISION_VARIABLE} is set)" if precision != config.precision else ""
            raise ValueError(f"{error}{set_by}") from None
        self.model = model.to(self.device)
        self.batch_at = self.processes.batches(batch_at)
        # The default loss reads config.label_smoothing; a loss_of of your own applies its own.
        self.loss_of = loss_of or (lambda m, batch: default_loss_of(m, batch, config.label_smoothing))
        self.evaluate = evaluate
        self.metadata = dict(metadata or {})
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.is_main = self.processes.is_main  # the process that prints and writes
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

    @property
    def distributed(self) -> bool:
        return self.processes.world_size > 1

    def _prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model the training steps call (wrapped by DDP in W processes), compiled if asked."""
        model = self.processes.wrap(model)
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
            last = k == c.accumulation_steps - 1
            with self.processes.accumulating(self.forward_model, last):
                with autocast(self.device, self.precision):
                    loss = self.loss_of(self.forward_model, batch) / c.accumulation_steps
                self.scaler.scale(loss).backward()  # gradients add up over the micro-batches
            total += loss.detach().float()
        total = self.processes.mean(total)  # in W processes every rank then skips, or steps, alike
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
            else:  # fp16: the GradScaler skips a step with non-finite gradients; disabled, it just steps
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
            self.config.steps = max(self.step, round(self.processes.mean(planned)))
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
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as error:
            raise CheckpointError(f"{path}: its optimizer state does not fit this model ({error})") from None
        if checkpoint.get("scaler"):
            try:
                self.scaler.load_state_dict(checkpoint["scaler"])
            except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as error:
                raise CheckpointError(f"{path} is damaged: its GradScaler state ({error})") from None
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
    (chapter 14) each of the W processes scores every W-th batch of windows and the
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
