"""Chapter 12's figures: ``python -m utils.train translate`` on Multi30k, German → English.

Runs the book's command line for a preset (start-up, tokenizer training, training,
validation and the translation of all 1,000 test sentences included in its seconds)
and prints a table: sacreBLEU on test_2016_flickr with greedy decoding and with beam
search, the validation loss, the steps and epochs trained and the seconds of the
whole command. With ``--anchor`` it first runs the previous cpu preset in the same
way, back to back on the same machine: 3 + 3 layers of C = 192 (d_ff = 768) with
label smoothing 0.1 (``--set`` overrides of the cpu preset). On 28 November 2026 that
pair ran the other way round, the 2 + 2-layer, C = 128 shape without label smoothing
as the anchor, and the anchor won (36.85 BLEU against 35.29): it became the preset.

    python benchmarks/translate.py                      # the cpu preset (about 10 minutes)
    python benchmarks/translate.py --anchor             # the previous preset first, then the preset
    python benchmarks/translate.py --preset gpu --device cuda

Each preset trains a fixed number of steps (the cpu preset 4,000), so its BLEU is the
same on every machine with the same thread count; only the seconds depend on the
machine and its load (printed). ``-- --minutes 8.75`` trains for a time budget instead.
``bleu_val`` is the validation split's BLEU with the same decoding: the score to choose
settings on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_gpt import load, machine  # benchmarks/train_gpt.py: the machine's name and load

ROOT = Path(__file__).resolve().parent.parent

ANCHOR = ["--set", "model.C=192", "--set", "model.n_encoder_layers=3", "--set", "model.n_decoder_layers=3",
          "--set", "model.d_ff=768", "--set", "train.label_smoothing=0.1"]


def translate_run(preset: str, device: str, extra: list[str]) -> dict:
    """One run of the command line; its summary (the last stdout line) plus the wall-clock seconds."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "utils.train", "translate", "--preset", preset, "--device", device,
                   "--out", out, *extra]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "wall_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--anchor", action="store_true", help="run the previous cpu preset first, for a ratio")
    parser.add_argument("extra", nargs="*", help="more options for utils.train (after --)")
    args = parser.parse_args()

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}; "
          f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; load average before: {load()}")
    runs = []
    if args.anchor:
        runs.append(("previous preset (3 + 3 layers, C = 192, smoothing 0.1)", translate_run(
            args.preset, args.device, ANCHOR + args.extra)))
    runs.append((f"--preset {args.preset}", translate_run(args.preset, args.device, args.extra)))
    print(f"load average after: {load()}\n")
    print("| run | device | steps (epochs) | val loss | val BLEU | BLEU greedy | BLEU beam | seconds (whole command) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in runs:
        print(f"| {name} | {s['device']} | {s['steps']:,} ({s['epochs']}) | {s['val_loss']:.3f} | {s['bleu_val']:.2f} | "
              f"{s['bleu_greedy']:.2f} | {s['bleu']:.2f} (beam {s['beam']}) | {s['seconds']:.0f} |")
    print(f"\nsacreBLEU on test_2016_flickr, {runs[-1][1]['bleu_signature']}")


if __name__ == "__main__":
    main()
