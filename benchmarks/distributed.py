"""Training throughput of 1 process against N data-parallel gloo processes on the CPU (chapter 14).

    python benchmarks/distributed.py [--steps 30] [--processes 2] [--threads 2]

The model and batch are nanoGPT's CPU shape for the GPT (C = 128, 4 layers, context
64, 12 windows of Tiny Shakespeare per micro-batch, AdamW; chapter 11's earlier cpu
preset). Each process
trains on 12 windows per step, so N processes train on N times as many tokens per
step; the figure that matters is tokens per second over all processes. Three runs,
back to back in one invocation so that they share the machine's load:

* 1 process with 1 thread (the anchor),
* 1 process with all ``--threads`` threads (what a single run on this machine uses),
* N processes with ``--threads / N`` threads each, gradients all-reduced by DDP.

On a 2-core CPU, 2 processes are not expected to beat 1 process with 2 threads: the
cores are the same, and the all-reduce and the second copy of the model cost extra.
Data parallelism pays with one GPU per process. Prints one line per configuration,
with its ratio to the anchor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import distributed  # noqa: E402
from utils.data import load_tiny_shakespeare, train_val_split  # noqa: E402
from utils.models import GPT, GPTConfig  # noqa: E402
from utils.tokenizers import CharTokenizer  # noqa: E402
from utils.train import get_batch, sequence_loss  # noqa: E402

MODEL = dict(block_size=64, C=128, n_heads=4, n_layers=4, dropout=0.0)  # nanoGPT's CPU shape
BATCH_SIZE, WARMUP_STEPS = 12, 3


def train_steps(ids: torch.Tensor, vocab_size: int, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps (after a few warm-up steps) in this process, DDP when distributed."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, **MODEL))
    if distributed.world_size() > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(distributed.rank())  # each rank its own windows
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            distributed.barrier()
            start = time.perf_counter()
        x, y = get_batch(ids, MODEL["block_size"], BATCH_SIZE, generator=generator)
        sequence_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    distributed.barrier()
    seconds = time.perf_counter() - start
    tokens = steps * BATCH_SIZE * MODEL["block_size"] * distributed.world_size()
    return {"seconds": seconds, "tokens_per_second": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the three runs (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (default 2, this machine's cores)")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.processes < 1 or args.threads < args.processes:
        parser.error("need --steps >= 1, --repeats >= 1, --processes >= 1 and --threads >= --processes")

    text = load_tiny_shakespeare()
    tokenizer = CharTokenizer.from_text(text)
    ids = train_val_split(torch.tensor(tokenizer.encode(text)))[0]
    per_process = args.threads // args.processes
    configurations = {
        "1 process, 1 thread": lambda: train_steps(ids, tokenizer.vocab_size, args.steps, 1),
        f"1 process, {args.threads} threads": lambda: train_steps(ids, tokenizer.vocab_size, args.steps,
                                                                 args.threads),
        f"{args.processes} processes (DDP), {per_process} thread{'s' * (per_process > 1)} each":
            lambda: distributed.start_processes(train_steps, args.processes, ids, tokenizer.vocab_size,
                                                args.steps, per_process,
                                                # a forked rank must stay on one thread (utils.distributed)
                                                start_method="spawn" if per_process > 1 else None)[0],
    }
    rates: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.repeats):  # interleaved, so that a burst of load hits every configuration alike
        for name, run in configurations.items():
            rates[name].append(run()["tokens_per_second"])
    print(f"torch {torch.__version__}, {args.steps} timed steps of {BATCH_SIZE} x {MODEL['block_size']} tokens "
          f"per process, best and median of {args.repeats} interleaved repeats; the machine's load is shared "
          "by all runs, so compare the ratios")
    anchor = max(rates["1 process, 1 thread"])
    for name, values in rates.items():
        print(f"{name:<36} best {max(values):>7,.0f} tokens/s (x{max(values) / anchor:.2f}), "
              f"median {statistics.median(values):>7,.0f}")

if __name__ == "__main__":
    main()
