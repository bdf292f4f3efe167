"""Translate German sentences with a trained chapter-12 or chapter-17 model.

    python -m utils.translate --checkpoint runs/translate-cpu "Ein Hund läuft im Schnee."
    echo "Zwei Männer spielen Fußball." | python -m utils.translate --checkpoint runs/translate-cpu

``--checkpoint`` is the folder that ``python -m utils.train translate`` or
``python -m utils.train instruct`` wrote (or the ``checkpoint.pt`` file in it): the
encoder–decoder of chapter 12 or the instruction-tuned decoder of chapter 17. Each sentence given as an argument, or else each line
of the standard input, is printed translated, one per line. A missing or damaged
checkpoint, or bad options, print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.translate",
                                     description="Translate German to English with a trained chapter-12 or chapter-17 model.")
    parser.add_argument("--checkpoint", required=True,
                        help="the run's folder (holding checkpoint.pt) or the checkpoint file itself")
    parser.add_argument("--beam", type=int, default=4, help="beam width (1: greedy; default 4)")
    parser.add_argument("--alpha", type=float, default=0.6, help="length-penalty exponent (default 0.6)")
    parser.add_argument("sentences", nargs="*", help="German sentences (default: read lines from stdin)")
    args = parser.parse_args(argv)  # argparse exits with code 2 on bad syntax

    from utils import instruct, translation
    from utils.checkpoints import CheckpointError, load_checkpoint

    tasks = {"translate": translation, "instruct": instruct}

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    try:
        if args.beam < 1:
            raise ValueError(f"--beam must be >= 1, got {args.beam}")
        if not (math.isfinite(args.alpha) and args.alpha >= 0):  # the beam's early stop is exact for alpha >= 0
            raise ValueError(f"--alpha must be a finite number >= 0, got {args.alpha}")
        task = load_checkpoint(path)["metadata"].get("task")
        if task not in tasks:
            raise CheckpointError(f"{path} holds a model of task {task!r}; this command translates with the "
                                  "translate and instruct tasks' checkpoints")
        module = tasks[task]
        model, tokenizer = module.model_from_checkpoint(path)
    except (CheckpointError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    for line in module.translate(model, tokenizer, sentences, beam_size=args.beam, alpha=args.alpha):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
