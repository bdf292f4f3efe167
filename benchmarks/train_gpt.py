"""Chapter 11's race: ``python -m utils.train gpt`` against nanoGPT's Tiny Shakespeare recipes.

Runs, back to back on the same machine, the book's command line and the anchor,
nanoGPT's published recipe for the same data (its README's CPU command: 4 layers,
4 heads, C = 128, block 64, batch 12, 2,000 iterations, no dropout; on a GPU its
"baby GPT" config), then prints a table: validation loss, wall-clock seconds of the
whole command (start-up and evaluation included) and training tokens per second.

nanoGPT reports a validation loss estimated from ``eval_iters`` random batches; the
book's is exact (the whole validation split). So that the two compare like for
like, this script also scores nanoGPT's final checkpoint on the whole validation
split, with nanoGPT's own model code.

nanoGPT is not part of the book. Give a checkout of https://github.com/karpathy/nanoGPT
with ``--nanogpt DIR``; the script writes its character data there
(``data/shakespeare_char/{train,val}.bin``, the book's copy of Tiny Shakespeare) when missing.

    python benchmarks/train_gpt.py --nanogpt ../nanoGPT              # CPU preset vs nanoGPT's CPU recipe
    python benchmarks/train_gpt.py --nanogpt ../nanoGPT --preset gpu # on a GPU

Timings depend on the machine and on what else runs on it: report the machine,
its load, and ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NANOGPT_RECIPES = {
    # nanoGPT README, "I only have a macbook": the CPU command for Tiny Shakespeare.
    "cpu": ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
            "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
            "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"],
    # nanoGPT README: the baby GPT on one GPU (its config file as it is, compiled).
    "gpu": ["config/train_shakespeare_char.py"],
}

# Scores a nanoGPT checkpoint on the whole validation split (non-overlapping windows, every target once),
# run inside the nanoGPT checkout with its own model code.
WHOLE_SPLIT_SNIPPET = r"""
import json, sys, numpy as np, torch, torch.nn.functional as F
from model import GPT, GPTConfig
checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
model = GPT(GPTConfig(**checkpoint["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()})
model.eval()
data = torch.from_numpy(np.fromfile("data/shakespeare_char/val.bin", dtype=np.uint16).astype(np.int64))
T, total = model.config.block_size, 0.0
with torch.no_grad():
    for start in range(0, len(data) - 1, T * 64):
        block = data[start : start + T * 64 + 1]
        n = (len(block) - 1) // T
        pieces = [(block[: n * T].view(n, T), block[1 : n * T + 1].view(n, T))] if n else []
        if (len(block) - 1) % T:
            pieces.append((block[n * T : -1][None], block[n * T + 1 :][None]))
        for x, y in pieces:
            logits, _ = model(x, y)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
print(json.dumps({"val_loss_whole_split": total / (len(data) - 1), "iter_num": checkpoint["iter_num"]}))
"""


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def ours(preset: str, env: dict, device: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        seconds, stdout = run([sys.executable, "-m", "utils.train", "gpt", "--preset", preset, "--out", out,
                               "--device", device, *extra], ROOT, env)
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"val_loss": summary["val_loss"], "val_loss_exact": True, "seconds": seconds,
            "tokens_per_second": summary["train_tokens_per_second"], "steps": summary["steps"]}


def prepare_nanogpt_data(nanogpt: Path) -> None:
    folder = nanogpt / "data" / "shakespeare_char"
    if (folder / "train.bin").is_file() and (folder / "val.bin").is_file() and (folder / "meta.pkl").is_file():
        return
    import numpy as np

    from utils.data import load_tiny_shakespeare

    text = load_tiny_shakespeare()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": index}, f)


def nanogpt_run(nanogpt: Path, preset: str, env: dict) -> dict:
    prepare_nanogpt_data(nanogpt)
    with tempfile.TemporaryDirectory() as out:
        # The CPU row scores nanoGPT's last checkpoint; on a GPU its recipe keeps the checkpoint of its best
        # evaluation (it overfits by the end), and that best model is the one scored.
        keep_last = ["--always_save_checkpoint=True"] if preset == "cpu" else []
        seconds, stdout = run([sys.executable, "train.py", *NANOGPT_RECIPES[preset], f"--out_dir={out}",
                               *keep_last], nanogpt, env)
        last_eval = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", stdout)[-1]
        iteration_ms = [float(ms) for ms in re.findall(r"iter \d+: loss [\d.]+, time ([\d.]+)ms", stdout)]
        _, scored = run([sys.executable, "-c", WHOLE_SPLIT_SNIPPET, str(Path(out) / "ckpt.pt")], nanogpt, env)
    whole = json.loads(scored.strip().splitlines()[-1])
    recipe = NANOGPT_RECIPES[preset]
    batch = int(next((a.split("=")[1] for a in recipe if a.startswith("--batch_size=")), 64))
    block = int(next((a.split("=")[1] for a in recipe if a.startswith("--block_size=")), 256))
    steps = int(last_eval[0])
    # nanoGPT times each iteration including its evaluations' share; its first iteration holds the start-up.
    train_seconds = sum(iteration_ms[1:]) / 1000
    return {"val_loss": whole["val_loss_whole_split"], "val_loss_estimate": float(last_eval[2]),
            "scored_iteration": whole["iter_num"],
            "val_loss_exact": True, "seconds": seconds, "steps": steps,
            "tokens_per_second": round((steps - 1) * batch * block / train_seconds) if train_seconds else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout (the anchor); without it, ours only")
    parser.add_argument("--preset", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both runs (default: 2)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (ours, anchor), alternating")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="pass --compile to ours (default: on with --preset gpu, as nanoGPT's GPU config "
                             "compiles; off on the CPU, where compiling costs more than it saves)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="passed on to ours (python -m utils.train gpt --set ...)")
    args = parser.parse_args()
    if args.nanogpt is not None and not (args.nanogpt / "train.py").is_file():
        parser.error(f"--nanogpt {args.nanogpt}: no train.py there; give a checkout of "
                     "https://github.com/karpathy/nanoGPT")
    compile_ = args.preset == "gpu" if args.compile is None else args.compile
    extra = (["--compile"] if compile_ else []) + [f"--set={setting}" for setting in args.set]
    device = "cuda" if args.preset == "gpu" else "cpu"
    if args.preset == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--preset gpu: no CUDA GPU on this machine")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
    print(f"machine: {machine()}; load average before: {load()}; torch threads: {args.threads}")
    rows = []
    for repeat in range(args.repeats):
        name = "utils.train gpt --preset " + args.preset + (" --compile" if compile_ else "")
        rows.append((name, ours(args.preset, env, device, extra)))
        print(f"  round {repeat + 1}: ours done, load {load()}", flush=True)
        if args.nanogpt is not None:
            rows.append(("nanoGPT recipe (" + args.preset + ")", nanogpt_run(args.nanogpt, args.preset, env)))
            print(f"  round {repeat + 1}: nanoGPT done, load {load()}", flush=True)
    print(f"load average after: {load()}")
    print()
    if args.set:
        print("ours with " + " ".join(f"--set {setting}" for setting in args.set))
    print(f"{'run':<40} {'steps':>6} {'val loss (whole split)':>23} {'seconds':>8} {'train tokens/s':>15}")
    for name, r in rows:
        estimate = f" (est. {r['val_loss_estimate']:.3f})" if "val_loss_estimate" in r else ""
        print(f"{name:<40} {r['steps']:>6} {r['val_loss']:>9.4f}{estimate:>14} {r['seconds']:>8.1f} "
              f"{r['tokens_per_second'] or 0:>15,}")
    anchors = [r for n, r in rows if n.startswith("nanoGPT")]
    mine = [r for n, r in rows if not n.startswith("nanoGPT")]
    if anchors:
        ratio = sum(r["seconds"] for r in mine) / sum(r["seconds"] for r in anchors)
        print(f"\nwall time, ours / nanoGPT: {ratio:.2f}")
    print(json.dumps({"machine": machine(), "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
