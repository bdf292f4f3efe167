"""Chapter 17's figures: the decoder-only model against chapter 12's encoder–decoder, back to back.

Runs ``python -m utils.train instruct --preset cpu`` (pretraining, instruction tuning,
the translation of the validation and test splits) and then chapter 12's
``python -m utils.train translate --preset cpu`` on the same machine, and prints both
sacreBLEU scores on test_2016_flickr (greedy and beam), the validation BLEU (the score
settings are chosen on) and the seconds of each whole command. The goal of chapter 17
is a decoder-only model at >= 35 BLEU within 10 minutes on the book's 2-core CPU; the
table says how far it is.

    python benchmarks/instruct.py                    # both runs, about 20 minutes on 2 cores
    python benchmarks/instruct.py --skip-anchor      # the decoder-only run alone
    python benchmarks/instruct.py -- --lora 16       # options for the instruct run (after --)

The runs are written where the commands write them by default, ``runs/instruct-cpu``
and ``runs/translate-cpu`` (chapter 17's page reads them); a folder that already holds
a checkpoint is refused unless ``--overwrite`` is given. Each preset trains a fixed
number of steps, so its BLEU is the same on every machine with the same thread count;
the seconds depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from train_gpt import load, machine  # benchmarks/train_gpt.py: the machine's name and load

ROOT = Path(__file__).resolve().parent.parent


def command_run(task: str, preset: str, device: str, out: Path, overwrite: bool, extra: list[str]) -> dict:
    """One run of the command line; its summary (the last stdout line) plus the wall-clock seconds."""
    command = [sys.executable, "-m", "utils.train", task, "--preset", preset, "--device", device, "--out", str(out),
               *(["--overwrite"] if overwrite else []), *extra]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "wall_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="where the two runs' folders go (default: runs/)")
    parser.add_argument("--overwrite", action="store_true", help="replace runs already in those folders")
    parser.add_argument("--skip-anchor", action="store_true", help="run the decoder-only model only")
    parser.add_argument("extra", nargs="*", help="more options for the instruct run (after --)")
    args = parser.parse_args()
    runs_dir = Path(args.runs)
    folders = {"instruct": runs_dir / f"instruct-{args.preset}", "translate": runs_dir / f"translate-{args.preset}"}
    for task, folder in folders.items():
        if task == "translate" and args.skip_anchor:
            continue
        if (folder / "checkpoint.pt").exists() and not args.overwrite:
            raise SystemExit(f"error: {folder} already holds a run; pass --overwrite to replace it")

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}; "
          f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; load average before: {load()}")
    runs = [("decoder-only (instruct)", command_run("instruct", args.preset, args.device, folders["instruct"],
                                                     args.overwrite, args.extra))]
    if not args.skip_anchor:
        runs.append(("encoder–decoder (translate)", command_run("translate", args.preset, args.device,
                                                                folders["translate"], args.overwrite, [])))
    print(f"load average after: {load()}\n")
    print("| model | parameters | steps | val BLEU | BLEU greedy | BLEU beam | seconds (whole command) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in runs:
        print(f"| {name} | {s['parameters']:,} | {s['steps']:,} | {s['bleu_val']:.2f} | {s['bleu_greedy']:.2f} | "
              f"{s['bleu']:.2f} (beam {s['beam']}) | {s['seconds']:.0f} |")
    print(f"\nsacreBLEU on test_2016_flickr, {runs[0][1]['bleu_signature']}")
    for name, s in runs:
        print(f"{name}: {json.dumps(s)}")


if __name__ == "__main__":
    main()
