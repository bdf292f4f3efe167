"""Generation speed with and without the KV cache (chapter 13).

    python -m benchmarks.generate [--tokens 500] [--device cpu|cuda|mps] [--batch-size 1]
                                  [--checkpoint runs/gpt-cpu/checkpoint.pt] [--no-gpu-shape]

Times ``utils.generate.generate`` writing ``--tokens`` tokens greedily from a
one-token prompt, with ``use_cache=False``, with ``use_cache=True, packed=False``
(the cache, each step through the model's modules) and with ``use_cache=True`` (the
cache, each step through :class:`utils.models.PackedGPT`: the book's default), for chapter 11's
two model shapes (V = 65 characters, random weights: the time of a step does not
depend on their values):

* the CPU preset's shape with ``block_size=512``, which holds all 500 tokens: the
  cache's own regime, where the uncached loop recomputes the whole text at every step;
* the CPU preset's shape with its own ``block_size=64``: the uncached loop recomputes
  the last 64 tokens at every step, and the cached loop slides its window by half a
  block, so the uncached work never grows past 64 tokens a step;
* the GPU preset's shape (6 blocks, C = 384, ``block_size=256``; ``--no-gpu-shape``
  skips it, it is the slowest row on a CPU).

Every timing is :func:`utils.profiling.time_call`'s: on a GPU the queued work is
waited for before the clock stops. ``--checkpoint`` adds a row for a model trained by
``python -m utils.train gpt``.
Prints a table and the machine's load, since a busy machine inflates every figure
(compare the ratios), then the rows as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from utils.generate import generate
from utils.models import GPT, GPTConfig
from utils.profiling import time_call
from utils.shakespeare import PRESETS, model_from_checkpoint
from utils.train import CheckpointError, resolve_device

SHAPES = {preset: {name: value for name, value in PRESETS[preset]["model"].items() if name != "dropout"}
          for preset in PRESETS}
VOCAB_SIZE = 65  # Tiny Shakespeare's characters


def time_generation(model: GPT, tokens: int, batch_size: int, use_cache: bool, device,
                    packed: bool = True) -> tuple[float, torch.Tensor]:
    """Seconds to generate ``tokens`` tokens (the GPU's queued work waited for) and the ids."""
    prompt = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    generate(model, prompt, 5, temperature=0, use_cache=use_cache, packed=packed)  # warm-up
    return time_call(lambda: generate(model, prompt, tokens, temperature=0, use_cache=use_cache, packed=packed),
                     device)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=500, help="tokens to generate (default 500)")
    parser.add_argument("--batch-size", type=int, default=1, help="sequences generated at once (default 1)")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--checkpoint", default=None, help="also time this trained chapter 11 model")
    parser.add_argument("--no-gpu-shape", action="store_true", help="skip the GPU preset's shape")
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.batch_size < 1:
        parser.error(f"--tokens and --batch-size must be >= 1, got {args.tokens} and {args.batch_size}")
    try:
        device = resolve_device(args.device or "auto")
    except ValueError as error:
        parser.error(str(error))
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s), "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{args.tokens} tokens, batch {args.batch_size}, greedy, from a 1-token prompt")
    print(f"{'model':<22} {'uncached s':>11} {'cached, modules s':>18} {'cached s':>9} {'speed-up':>9} "
          f"{'cached tokens/s':>16}")
    rows_to_time = [("cpu preset, block 512", "cpu", 512), ("cpu preset, block 64", "cpu", None)]
    if not args.no_gpu_shape:
        rows_to_time.append(("gpu preset, block 256", "gpu", None))
    models = {}
    for name, preset, block_size in rows_to_time:
        torch.manual_seed(0)
        shape = {**SHAPES[preset], **({"block_size": block_size} if block_size else {})}
        models[name] = GPT(GPTConfig(vocab_size=VOCAB_SIZE, **shape))
    if args.checkpoint:
        try:
            model, _ = model_from_checkpoint(args.checkpoint)
        except CheckpointError as error:
            parser.error(str(error))
        models[f"trained, block {model.config.block_size}"] = model
    rows = []
    for name, model in models.items():
        model = model.to(device).eval()
        block_size = model.config.block_size
        uncached, uncached_out = time_generation(model, args.tokens, args.batch_size, False, device)
        modules, modules_out = time_generation(model, args.tokens, args.batch_size, True, device, packed=False)
        cached, cached_out = time_generation(model, args.tokens, args.batch_size, True, device)
        if args.tokens < block_size:  # the loops see the same context: the same tokens
            assert torch.equal(uncached_out, cached_out), "cached and uncached generation differ"
            assert torch.equal(modules_out, cached_out), "the packed and the module steps differ"
        rows.append(dict(model=name, uncached_s=uncached, cached_modules_s=modules, cached_s=cached,
                         speed_up=uncached / cached, speed_up_modules=uncached / modules))
        print(f"{name:<22} {uncached:>11.2f} {modules:>11.2f} ({uncached / modules:.1f}x) {cached:>9.2f} "
              f"{uncached / cached:>8.1f}x {args.tokens * args.batch_size / cached:>16,.0f}")
    print(json.dumps({"device": str(device), "tokens": args.tokens, "batch_size": args.batch_size, "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
