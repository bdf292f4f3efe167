"""Chapters 11 and 12: the command line ``python -m utils.train gpt|translate [options]``.

This module reads and checks everything a user typed, before any work starts, and
then calls the task with plain values:

* the options (``--preset``, ``--steps``, ``--device``, ... and each task's own);
* the preset, a table in the task module (``utils.shakespeare.PRESETS``,
  ``utils.translation.PRESETS``), with ``--set SECTION.FIELD=VALUE`` applied
  (:func:`apply_settings`) and every setting checked by the task's ``check_settings``;
* the paths: ``--out`` (default ``runs/TASK-PRESET``), with ``--resume`` and
  ``--overwrite`` (:func:`checkpoint_path_of`).

Then ``run(preset, ...)`` of the task trains, writes ``checkpoint.pt`` and
``metrics.json`` and returns a summary, which is printed as the last line: one JSON
object. Bad input prints one line on stderr and exits with code 2. The task modules
know nothing of this module or of argparse.

How ``--device cuda`` travels: argparse reads it here, :func:`main` passes
``device="cuda"`` to the task's ``run``, which puts it in the run's
:class:`~utils.trainer.TrainConfig`; the :class:`~utils.trainer.Trainer` resolves it
(:func:`~utils.trainer.resolve_device`) and moves the model there.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from utils import distributed
from utils.checkpoints import CheckpointError

TASKS = {"gpt": "utils.shakespeare", "translate": "utils.translation", "instruct": "utils.instruct"}
HELPS = {"gpt": "chapter 11: a character-level GPT on Tiny Shakespeare",
         "translate": "chapter 12: a German-to-English Transformer on Multi30k",
         "instruct": "chapter 17: a decoder-only model pretrained on Multi30k's captions, then "
                     "instruction-tuned to translate German to English (fully or with --lora RANK)"}


class UsageError(Exception):
    """Bad command-line input: printed on one line, exit code 2."""


# Settings that a command-line option owns: ``--set`` refuses them and names the option.
COMMAND_LINE_SETTINGS = {"train.device": "use --device", "train.compile": "use --compile", "train.seed": "use --seed"}
TASK_OWNED_SETTINGS = {
    "gpt": {},
    "translate": {"train.steps": "use --steps, --epochs or --minutes",
                  "train.eval_every": "the translate task validates once per epoch",
                  "train.batch_size": "the translate task batches by length: set data.max_tokens (padded "
                                      "positions per batch) instead"},
    "instruct": {"train.steps": "use --steps",
                 "train.eval_every": "the instruct task validates once per epoch",
                 "train.batch_size": "the instruct task batches by length: set data.max_tokens instead",
                 "pretrain.device": "use --device", "pretrain.compile": "use --compile",
                 "pretrain.seed": "use --seed"},
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu",
                        help="the sizes of model and run: 'cpu' (minutes on a laptop) or 'gpu' (default: cpu)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps to train for (default: the preset's); with --resume, the total")
    parser.add_argument("--out", default=None,
                        help="folder for checkpoint.pt and metrics.json (default: runs/TASK-PRESET)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt (same task and model) instead of starting afresh")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even when OUT already holds a checkpoint (it is replaced)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train (default: auto, i.e. cuda, then mps, then cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (faster steps on a GPU after a slow start; slower on a CPU)")
    parser.add_argument("--seed", type=int, default=1337, help="seed for weights and batches (default: 1337)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change one setting of the preset, e.g. --set train.lr=2e-3 --set model.C=128 "
                             "(sections: model and train; translate also has data and decode; instruct has "
                             "data, model, pretrain, train, lora and decode)")


def add_gpt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluate on the whole validation split and write a checkpoint every so many steps "
                             "(default: the preset's)")
    parser.add_argument("--arch", default="gpt", choices=["gpt", "llama"],
                        help="the model: chapter 11's GPT, or chapter 15's Llama-style block (RMSNorm, RoPE, SwiGLU, "
                             "grouped-query attention) at the preset's size, trained the same way (default: gpt)")


def add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training pairs (default: the preset's fixed number of steps; "
                             "--steps wins)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="train for about this many minutes (validation included) instead of a fixed number "
                             "of steps: the step count is planned from a few timed steps and re-planned every 100 "
                             "steps from the speed measured so far, so the schedule ends on time; the result then "
                             "depends on the machine (--epochs and --steps win)")
    add_decoding_arguments(parser)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the tasks that translate (translate, instruct)."""
    parser.add_argument("--beam", type=int, default=None,
                        help="beam width for the validation and test translations (default: the preset's; "
                             "1 is greedy)")
    parser.add_argument("--test-sentences", type=int, default=None,
                        help="translate only the first N validation and test sentences (quick checks; the BLEU is "
                             "then not the benchmark's)")


def add_instruct_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help="tune with LoRA of this rank on the blocks' linear layers, the pretrained weights "
                             "frozen (default: full fine-tuning)")
    add_decoding_arguments(parser)


# Each task's own options: how to add them, and the names its run() takes them by.
TASK_OPTIONS = {
    "gpt": (add_gpt_arguments, ("eval_every", "arch")),
    "translate": (add_translate_arguments, ("epochs", "minutes", "beam", "test_sentences")),
    "instruct": (add_instruct_arguments, ("lora", "beam", "test_sentences")),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a syntax error is one line on stderr (and exit code 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """``python -m utils.train TASK [options]``: the common options, then each task's own."""
    parser = OneLineParser(
        prog="python -m utils.train",
        description="Train one of the book's models from the command line. The last line printed is one "
                    "JSON object summarising the run (task, preset, device, steps, seconds, val_loss, ...).",
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in TASKS:
        sub = tasks.add_parser(name, help=HELPS[name], description=HELPS[name])
        add_common_arguments(sub)
        TASK_OPTIONS[name][0](sub)
    return parser


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


def checkpoint_path_of(out: str | Path | None, task: str, preset: str, resume: bool = False,
                       overwrite: bool = False) -> Path:
    """OUT/checkpoint.pt of a command-line run, refusing to overwrite or to resume by accident.

    ``out`` defaults to ``runs/TASK-PRESET``. A checkpoint already there needs
    ``resume`` (continue it) or ``overwrite`` (replace it); ``resume`` needs one.
    """
    checkpoint_path = Path(out or f"runs/{task}-{preset}") / "checkpoint.pt"
    if checkpoint_path.exists() and not (resume or overwrite):
        raise UsageError(f"{checkpoint_path} already exists; pass --resume to continue it, --overwrite to "
                         "replace it, or --out to train elsewhere")
    if resume and not checkpoint_path.exists():
        raise UsageError(f"--resume: there is no checkpoint at {checkpoint_path}")
    return checkpoint_path


def check_options(args: argparse.Namespace) -> None:
    """The numbers given as options, each in its range (argparse has checked their types)."""
    if args.steps is not None and args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    minutes = getattr(args, "minutes", None)
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise UsageError(f"--minutes must be > 0, got {minutes}")
    for name in ("eval_every", "epochs", "beam", "test_sentences", "lora"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_device_and_precision(device: str, precision: str) -> None:
    """The device exists on this machine and can train in the precision (``LLM_FROM_SCRATCH_PRECISION`` included).

    On CUDA the precision is settled by the Trainer, which asks the GPU its compute
    capability; asking here would start CUDA on GPU 0 in every torchrun process.
    """
    from utils.trainer import PRECISION_VARIABLE, precision_from_environment, resolve_device, resolve_precision

    device = resolve_device(device)
    chosen = precision_from_environment(precision)
    if device.type != "cuda":
        try:
            resolve_precision(chosen, device)
        except ValueError as error:
            raise UsageError(f"{error}{f' ({PRECISION_VARIABLE} is set)' if chosen != precision else ''}") from None


def task_options(args: argparse.Namespace, module) -> dict:
    """Everything the task's ``run`` takes, as plain values, checked: no argparse beyond this point."""
    arch = getattr(args, "arch", "gpt")  # the gpt task's --arch (chapter 15): its own presets and settings
    presets = module.PRESETS if arch == "gpt" else module.ARCH_PRESETS[arch]
    fields = module.SETTINGS if arch == "gpt" else module.ARCH_SETTINGS[arch]
    if args.preset not in presets:
        raise UsageError(f"unknown preset {args.preset!r}; choose one of {sorted(presets)}")
    check_options(args)
    preset = apply_settings(presets[args.preset], args.set, fields, instead=TASK_OWNED_SETTINGS[args.task])
    if args.task == "instruct":
        module.check_settings(preset, args.lora)  # LoRA's rank fits the model's layers too
    elif arch == "gpt":
        module.check_settings(preset)  # every setting of every section, before any work starts
    else:
        module.check_settings(preset, arch)
    check_device_and_precision(args.device, preset["train"].get("precision", "auto"))
    checkpoint_path = checkpoint_path_of(args.out, args.task, args.preset, args.resume, args.overwrite)
    return dict(preset=preset, preset_name=args.preset, settings=list(args.set), out=checkpoint_path.parent,
                resume=args.resume, device=args.device, compile=args.compile, seed=args.seed, steps=args.steps,
                **{name: getattr(args, name) for name in TASK_OPTIONS[args.task][1]})


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
    args = build_parser().parse_args(argv)  # a syntax error exits with 2 and one line (OneLineParser)
    try:
        module = _task_module(TASKS[args.task], required=False)
        if module is None:
            raise UsageError(f"task {args.task!r} is not available in this checkout ({TASKS[args.task]} is missing)")
        summary = module.run(**task_options(args, module))
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
