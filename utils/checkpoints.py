"""Chapter 11: checkpoints, and the files of a run.

A checkpoint holds everything needed to resume a run exactly: the weights, the
optimizer's moments, the step, the settings, the history and the random state.
It is written atomically (a temporary file, then a rename), read back with
``torch.load(weights_only=True)`` (no code in the file can run) and checked before
use: a damaged file, a checkpoint of another model or task, or fields of the wrong
kind raise :class:`CheckpointError` naming the file.

* :func:`save_atomic`, :func:`load_checkpoint`, :class:`CheckpointError`;
* :func:`write_json_atomic` and :func:`write_metrics` — a run's ``metrics.json``.

:class:`utils.trainer.Trainer` writes and reads its checkpoints with these. Under
torchrun (chapter 14) only rank 0 writes. Everything here is also importable from
:mod:`utils.train`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from utils import distributed
from utils.data import write_atomically

CHECKPOINT_FORMAT = "llm-from-scratch checkpoint"
CHECKPOINT_VERSION = 1


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
    problem = structure_problem(checkpoint)
    if problem:
        raise CheckpointError(f"{path} is damaged: {problem}")
    for key, expected in (metadata or {}).items():
        found = checkpoint["metadata"].get(key)
        if found != expected:
            raise CheckpointError(f"{path} was made for another {key}: it has {_short(found)}, this run has "
                                  f"{_short(expected)}")
    return checkpoint


CPU_RNG_BYTES = torch.get_rng_state().numel()  # the size of the CPU generator's state (5,056 bytes)


def structure_problem(checkpoint: dict) -> str | None:
    """What is wrong with the fields of a checkpoint, in words, or None: each field of the kind the trainer reads.

    Checked before anything is used, so that a damaged file is a :class:`CheckpointError`
    naming it, never a ``TypeError`` or ``RuntimeError`` from deep inside PyTorch.
    """
    def is_dict_of(value, kinds, keys=str) -> bool:
        return isinstance(value, dict) and all(isinstance(k, keys) and isinstance(v, kinds) for k, v in value.items())

    if not is_dict_of(checkpoint["model"], torch.Tensor):
        return "'model' must map parameter names to tensors"
    optimizer = checkpoint["optimizer"]
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in optimizer["param_groups"])):
        return "'optimizer' must be an optimizer's state_dict (a 'state' dict and a list of 'param_groups')"
    step = checkpoint["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step must be an integer >= 0, got {step!r}"
    config = checkpoint["config"]
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        return "'config' must be a dict of settings"
    if "steps" in config and (isinstance(config["steps"], bool) or not isinstance(config["steps"], int)):
        return f"config's steps must be an integer, got {config['steps']!r}"
    if not isinstance(checkpoint["metadata"], dict):
        return "'metadata' must be a dict"
    if "history" in checkpoint and not is_dict_of(checkpoint["history"], list):
        return "'history' must map names to lists"
    if "scaler" in checkpoint and not isinstance(checkpoint["scaler"], dict):
        return "'scaler' must be a GradScaler's state_dict (a dict)"
    rng = checkpoint.get("rng", {})
    if not isinstance(rng, dict):
        return "'rng' must be a dict of random states"
    states = {"cpu": [rng["cpu"]]} if "cpu" in rng else {}
    if "cuda" in rng:
        if not isinstance(rng["cuda"], list | tuple):
            return "rng's 'cuda' must be a list of states, one per GPU"
        states["cuda"] = list(rng["cuda"])
    for device, device_states in states.items():
        for state in device_states:
            if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.ndim == 1):
                return f"rng's {device!r} state must be a 1-D tensor of bytes (uint8)"
            if device == "cpu" and state.numel() != CPU_RNG_BYTES:
                return f"rng's 'cpu' state has {state.numel()} bytes, not {CPU_RNG_BYTES}"
    return None


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_metrics(out: Path, summary: dict, train_config, model_config, history: dict) -> Path:
    """OUT/metrics.json of a command-line run: its summary, both configs and the loss history."""
    return write_json_atomic({"summary": summary, "train_config": dataclasses.asdict(train_config),
                              "model_config": dataclasses.asdict(model_config), "history": history,
                              "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, Path(out) / "metrics.json")
