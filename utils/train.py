"""Training, in four rooms; this module gathers their names and runs the command line.

* :mod:`utils.loop` (chapter 02) — the loss, batches and a plain loop:
  :func:`sequence_loss`, :func:`get_batch`, :func:`estimate_loss`, :func:`train`, ...
* :mod:`utils.trainer` (chapter 11) — the kit of real runs: :class:`TrainConfig`,
  :func:`learning_rate`, :func:`configure_optimizer`, devices and precision, the
  :class:`Trainer`, :func:`random_windows`, :func:`whole_split_loss`;
* :mod:`utils.checkpoints` (chapter 11) — :func:`load_checkpoint`, :func:`save_atomic`,
  :class:`CheckpointError`, a run's ``metrics.json``;
* :mod:`utils.command_line` (chapters 11 and 12) — ``python -m utils.train gpt|translate``.

Every name is importable from here, as the chapters do (``from utils.train import
Trainer``). Chapter 14 runs the trainer in W processes through one seam,
:class:`utils.distributed.DataParallel`.
"""

from __future__ import annotations

import sys

from utils.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_atomic,
    write_json_atomic,
    write_metrics,
)
from utils.command_line import (
    COMMAND_LINE_SETTINGS,
    TASKS,
    UsageError,
    add_common_arguments,
    apply_settings,
    build_parser,
    checkpoint_path_of,
    main,
    process_seconds,
)
from utils.loop import estimate_loss, evaluating, get_batch, progress, sequence_loss, train, train_language_model
from utils.trainer import (
    MAX_SKIPPED_IN_A_ROW,
    PRECISION_VARIABLE,
    PRECISIONS,
    READ_EVERY,
    SCHEDULES,
    OneProcess,
    TrainConfig,
    Trainer,
    autocast,
    configure_optimizer,
    decay_groups,
    default_loss_of,
    learning_rate,
    precision_from_environment,
    random_windows,
    resolve_device,
    resolve_precision,
    to_device,
    whole_split_loss,
)

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "COMMAND_LINE_SETTINGS", "MAX_SKIPPED_IN_A_ROW", "PRECISIONS",
    "PRECISION_VARIABLE", "READ_EVERY", "SCHEDULES", "TASKS", "CheckpointError", "OneProcess", "TrainConfig",
    "Trainer", "UsageError", "add_common_arguments", "apply_settings", "autocast", "build_parser",
    "checkpoint_path_of", "configure_optimizer", "decay_groups", "default_loss_of", "estimate_loss", "evaluating",
    "get_batch", "learning_rate", "load_checkpoint", "main", "precision_from_environment", "process_seconds",
    "progress", "random_windows", "resolve_device", "resolve_precision", "save_atomic", "sequence_loss", "to_device",
    "train", "train_language_model", "whole_split_loss", "write_json_atomic", "write_metrics",
]

if __name__ == "__main__":
    sys.exit(main())
