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
    for key, expected in (metadata or {}).items():
        found = checkpoint["metadata"].get(key)
        if found != expected:
            raise CheckpointError(f"{path} was made for another {key}: it has {_short(found)}, this run has "
                                  f"{_short(expected)}")
    return checkpoint


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_metrics(out: Path, summary: dict, train_config, model_config, history: dict) -> Path:
    """OUT/metrics.json of a command-line run: its summary, both configs and the loss history."""
    return write_json_atomic({"summary": summary, "train_config": dataclasses.asdict(train_config),
                              "model_config": dataclasses.asdict(model_config), "history": history,
                              "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, Path(out) / "metrics.json")
