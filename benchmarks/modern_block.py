"""Chapter 15's race: chapter 11's cpu preset against each of Llama's four changes, alone and together.

Every run trains a character-level model on Tiny Shakespeare with chapter 11's
cpu preset (2 blocks, C = 64, 4 heads, context 64, batches of 32, AdamW at a peak
of 2e-2, 100 warm-up steps, cosine over the run) and the same trainer, for the
same number of steps, and scores the whole validation split every ``--eval-every``
steps. The rows (``VARIANTS``):

* ``gpt`` — :class:`utils.models.GPT`, chapter 11's model itself;
* ``rmsnorm``, ``rope``, ``swiglu``, ``gqa`` — the GPT with one change
  (:class:`utils.modern.Llama` with one switch of :class:`~utils.modern.LlamaConfig`
  moved; with none moved it computes what the GPT computes, tests/test_modern.py);
* ``all four`` — the four changes, the GPT's biases kept;
* ``llama`` — the four changes and no biases: Llama's block;
* ``llama, MHA`` — Llama's block with as many key/value heads as query heads.

    python benchmarks/modern_block.py race --seeds 0 1 2            # writes benchmarks/modern_block.json
    python benchmarks/modern_block.py race --seeds 0 1 2 --steps 2000 --json FILE
    python benchmarks/modern_block.py speed                         # CPU ms per step of each variant
    python benchmarks/modern_block.py anchor --nanogpt ../nanoGPT --variant "llama, MHA" --steps 2000

``race`` runs one process on one thread, run after run, and appends each result to
the JSON file as it finishes (a run already in the file is not repeated, so an
interrupted race resumes). ``anchor`` runs, back to back, the wall-clock time of a
whole command training one variant (start-up and evaluation included) and of
nanoGPT's CPU recipe (benchmarks/train_gpt.py's, scored on the whole split too), and
the CPU time each command used (its processes' user + system seconds), which a busy
machine disturbs far less than the wall clock.

The machine's load changes the seconds, not the losses: every variant takes the
same number of steps with the same batches, so the losses are reproducible; the
seconds per step are reported with the load average measured around each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_JSON = ROOT / "benchmarks" / "modern_block.json"

# Chapter 11's switches (the GPT) and each variant's changes to them (LlamaConfig fields).
GPT_CHOICES = dict(norm="layer", positional="learned", feed_forward="relu", n_kv_heads=4, bias=True, d_ff=256)
VARIANTS: dict[str, dict | None] = {
    "gpt": None,  # utils.models.GPT itself
    "rmsnorm": dict(norm="rms"),
    "rope": dict(positional="rope"),
    "swiglu": dict(feed_forward="swiglu", d_ff=None),
    "gqa": dict(n_kv_heads=2),
    "all four": dict(norm="rms", positional="rope", feed_forward="swiglu", d_ff=None, n_kv_heads=2),
    "llama": dict(norm="rms", positional="rope", feed_forward="swiglu", d_ff=None, n_kv_heads=2, bias=False),
    "llama, MHA": dict(norm="rms", positional="rope", feed_forward="swiglu", d_ff=None, bias=False),
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_model(variant: str, vocab_size: int, model_fields: dict):
    from utils.models import GPT, GPTConfig
    from utils.modern import Llama, LlamaConfig

    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")
    changes = VARIANTS[variant]
    if changes is None:
        return GPT(GPTConfig(vocab_size=vocab_size, **model_fields))
    fields = {k: v for k, v in model_fields.items() if k in ("block_size", "C", "n_heads", "n_layers", "dropout")}
    return Llama(LlamaConfig(vocab_size=vocab_size, **fields, **{**GPT_CHOICES, **changes}))


def train_one(variant: str, seed: int, steps: int | None, eval_every: int) -> dict:
    """Train one variant with chapter 11's cpu preset; returns its losses, seconds and load."""
    import torch

    from utils.models import count_parameters
    from utils.shakespeare import PRESETS, evaluate, load_data
    from utils.train import TrainConfig, Trainer, random_windows

    preset = PRESETS["cpu"]
    _, train_ids, val_ids = load_data()
    train = {**preset["train"], "device": "cpu", "seed": seed, "eval_every": eval_every}
    if steps is not None:
        train["steps"] = steps
    config = TrainConfig(**train)
    torch.manual_seed(seed)
    model = build_model(variant, 65, preset["model"])
    load_before = load_average()
    trainer = Trainer(model, config, batch_at=random_windows(train_ids, model.config.block_size, config.batch_size,
                                                             seed),
                      evaluate=lambda m: evaluate(m, val_ids))
    history = trainer.fit()
    losses = history["train_loss"]
    return {
        "variant": variant, "seed": seed, "steps": config.steps, "parameters": count_parameters(model),
        "val_loss": round(history["val_loss"][-1], 4),
        "eval_step": history["eval_step"], "val_curve": [round(v, 4) for v in history["val_loss"]],
        # the training loss, averaged over windows of 10 steps (the figure's thin lines)
        "train_curve": [round(sum(losses[i:i + 10]) / len(losses[i:i + 10]), 4) for i in range(0, len(losses), 10)],
        "train_seconds": round(trainer.train_seconds, 2),
        "seconds_per_step": round(trainer.train_seconds / config.steps, 4),
        "load_before": load_before, "load_after": load_average(),
    }


def race(args) -> None:
    import torch

    torch.set_num_threads(1)
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    results["command"] = "python benchmarks/modern_block.py race " + " ".join(sys.argv[2:])
    done = {(r["variant"], r["seed"], r["steps"]) for r in results["runs"]}
    steps = args.steps or 1000
    for seed in args.seeds:  # seed by seed, so a partial race has every variant
        for variant in args.variants:
            if (variant, seed, steps) in done:
                continue
            run = train_one(variant, seed, steps, args.eval_every)
            results["runs"].append(run)
            results["machine"] = f"{os.cpu_count()} logical cores, 1 torch thread, torch {torch.__version__}"
            path.write_text(json.dumps(results, indent=1) + "\n")
            print(f"{variant:<12} seed {seed}: val {run['val_loss']:.4f}, {run['seconds_per_step'] * 1000:.1f} "
                  f"ms/step, load {run['load_before'][0]}", flush=True)
    print_table(results, steps)


def summarise(results: dict, steps: int = 1000) -> list[dict]:
    """One row per variant: seeds, mean and spread (min–max) of the final whole-split validation loss."""
    rows = []
    for variant in VARIANTS:
        runs = [r for r in results["runs"] if r["variant"] == variant and r["steps"] == steps]
        if not runs:
            continue
        losses = [r["val_loss"] for r in runs]
        per_step = [r["seconds_per_step"] for r in runs]
        rows.append({"variant": variant, "seeds": len(runs), "parameters": runs[0]["parameters"],
                     "mean": sum(losses) / len(losses), "min": min(losses), "max": max(losses),
                     "ms_per_step": 1000 * sum(per_step) / len(per_step),
                     "load": sum(r["load_before"][0] for r in runs) / len(runs)})
    return rows


def print_table(results: dict, steps: int = 1000) -> None:
    rows = summarise(results, steps)
    print(f"{'variant':<12} {'params':>7} {'seeds':>5} {'val mean':>9} {'min–max':>15} {'ms/step':>8} {'load':>5}")
    for r in rows:
        print(f"{r['variant']:<12} {r['parameters']:>7,} {r['seeds']:>5} {r['mean']:>9.4f} "
              f"{r['min']:>7.4f}–{r['max']:.4f} {r['ms_per_step']:>8.1f} {r['load']:>5.2f}")


def speed(args) -> None:
    """CPU seconds per training step of each variant (``time.process_time`` on one thread).

    A process's CPU time counts only the time it ran, so it is far less sensitive to
    the other jobs on a shared machine than the wall clock (memory and cache contention
    still slow it somewhat). Each variant: a few warm-up steps, then ``--steps`` timed ones,
    repeated ``--repeats`` times; the median repeat is kept.
    """
    import torch

    from utils.shakespeare import PRESETS, load_data
    from utils.train import TrainConfig, Trainer, random_windows

    torch.set_num_threads(1)
    _, train_ids, _ = load_data()
    results = {}
    for variant in args.variants:
        config = TrainConfig(**{**PRESETS["cpu"]["train"], "device": "cpu"})
        torch.manual_seed(0)
        model = build_model(variant, 65, PRESETS["cpu"]["model"])
        trainer = Trainer(model, config, batch_at=random_windows(train_ids, 64, config.batch_size, 0))
        for step in range(5):
            trainer.train_step(step)
        repeats = []
        for _ in range(args.repeats):
            start = time.process_time()
            for step in range(args.steps):
                trainer.train_step(step)
            repeats.append((time.process_time() - start) / args.steps)
        results[variant] = round(1000 * sorted(repeats)[len(repeats) // 2], 2)
        print(f"{variant:<12} {results[variant]:6.1f} CPU ms per step (repeats: "
              f"{', '.join(f'{1000 * r:.1f}' for r in repeats)}; load {load_average()[0]})", flush=True)
    path = Path(args.json)
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    stored["cpu_ms_per_step"] = results
    path.write_text(json.dumps(stored, indent=1) + "\n")


def one(args) -> None:
    """Train one variant and print its result as JSON (``anchor`` times this whole command)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(json.dumps(train_one(args.variant, args.seed, args.steps, args.steps or 1000)))


def child_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's finished children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def anchor(args) -> None:
    from benchmarks.train_gpt import load, machine, nanogpt_run

    if not (args.nanogpt / "train.py").is_file():
        raise SystemExit(f"--nanogpt {args.nanogpt}: no train.py there; give a checkout of "
                         "https://github.com/karpathy/nanoGPT")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
    print(f"machine: {machine()}; load average before: {load()}; torch threads: {args.threads}", flush=True)
    rows = []
    for _ in range(args.repeats):
        command = [sys.executable, "benchmarks/modern_block.py", "one", "--variant", args.variant,
                   "--seed", str(args.seed), *(["--steps", str(args.steps)] if args.steps else [])]
        started, load_before, cpu_before = time.perf_counter(), load(), child_cpu_seconds()
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        ours = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append({"run": f"{args.variant}, {ours['steps']} steps", "val_loss": ours["val_loss"],
                     "seconds": round(seconds, 1), "cpu_seconds": round(child_cpu_seconds() - cpu_before, 1),
                     "load_before": load_before, "load_after": load()})
        print(f"  ours: {rows[-1]}", flush=True)
        load_before, cpu_before = load(), child_cpu_seconds()
        theirs = nanogpt_run(args.nanogpt, "cpu", env)
        rows.append({"run": "nanoGPT CPU recipe, 2000 steps", "val_loss": round(theirs["val_loss"], 4),
                     "seconds": round(theirs["seconds"], 1), "cpu_seconds": round(child_cpu_seconds() - cpu_before, 1),
                     "load_before": load_before, "load_after": load()})
        print(f"  nanoGPT: {rows[-1]}", flush=True)
    print(f"\n{'run':<36} {'val loss (whole split)':>22} {'seconds':>8} {'CPU s':>7}  load before/after")
    for r in rows:
        print(f"{r['run']:<36} {r['val_loss']:>22.4f} {r['seconds']:>8.1f} {r['cpu_seconds']:>7.1f}  "
              f"{r['load_before']} / {r['load_after']}")
    for what in ("seconds", "cpu_seconds"):
        ratio = sum(r[what] for r in rows[0::2]) / sum(r[what] for r in rows[1::2])
        print(f"{'wall time' if what == 'seconds' else 'CPU time'}, ours / nanoGPT: {ratio:.2f}")
    result = {"machine": machine(), "threads": args.threads, "rows": rows,
              "command": "python benchmarks/modern_block.py anchor " + " ".join(sys.argv[2:])}
    if args.json:
        path = Path(args.json)
        stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
        stored.setdefault("anchor", []).append(result)
        path.write_text(json.dumps(stored, indent=1) + "\n")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("race", help="every variant, several seeds, one after another")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: the preset's 1,000)")
    p.add_argument("--eval-every", type=int, default=100, help="whole-split evaluation every so many steps")
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"results file (default: {DEFAULT_JSON.name})")
    p = commands.add_parser("speed", help="CPU seconds per training step of each variant (one thread)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=str(DEFAULT_JSON), help=f"results file (default: {DEFAULT_JSON.name})")
    p = commands.add_parser("one", help="train one variant, print JSON")
    p.add_argument("--variant", default="llama", choices=list(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p = commands.add_parser("anchor", help="one variant against nanoGPT's CPU recipe, back to back")
    p.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    p.add_argument("--variant", default="llama", choices=list(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", default=None, help="also append the result to this results file")
    args = parser.parse_args()
    for name in ("steps",):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    {"race": race, "speed": speed, "one": one, "anchor": anchor}[args.command](args)


if __name__ == "__main__":
    main()
