"""GPT-2 124M's shape writing text: the book's GPT and KV cache against ``transformers`` (chapter 16).

    python -m benchmarks.generate_gpt2 [--tokens 200] [--batch-sizes 1 8] [--repeats 3] [--threads 2]

A ``transformers`` ``GPT2LMHeadModel`` with GPT-2 124M's sizes (12 blocks, C = 768,
50,257 token ids, 1,024 positions) and random weights (the time of a step does not
depend on their values) is copied into the book's GPT with
``utils.pretrained.gpt2_from_transformers``; both write ``--tokens`` tokens greedily
after the same 8-token prompt, ours with ``utils.generate.generate(use_cache=True)``
(:class:`utils.models.PackedGPT` steps), theirs with ``model.generate(do_sample=False,
use_cache=True)``. The two sides run interleaved ``--repeats`` times per batch size,
after one warm-up each, on ``--threads`` threads, in float32 on the CPU. Prints the best
(the fastest run's) and the median tokens per second (batch × new tokens / seconds), whether the tokens are
identical, and the load average (the machine may be shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import transformers

from utils.generate import generate
from utils.pretrained import gpt2_from_transformers


def timed(function) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=200, help="new tokens per sequence (default 200)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="default: 1 8")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print each run's seconds as it ends")
    args = parser.parse_args(argv)
    if min(args.tokens, args.repeats, args.threads, *args.batch_sizes) < 1:
        parser.error("--tokens, --batch-sizes, --repeats and --threads must all be >= 1")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()  # GPT-2 124M's sizes
    ours = gpt2_from_transformers(theirs)
    print(f"torch {torch.__version__}, transformers {transformers.__version__} "
          f"(attention: {theirs.config._attn_implementation}), {torch.get_num_threads()} thread(s), float32, CPU")
    print(f"{sum(p.numel() for p in ours.parameters()) / 1e6:.1f} M parameters; {args.tokens} new tokens, greedy, "
          f"after an 8-token prompt; {args.repeats} interleaved repeats")
    print("| batch | ours tokens/s best / median | transformers tokens/s best / median | median ratio | same tokens "
          "| load average |\n| ---: | ---: | ---: | ---: | :---: | ---: |", flush=True)
    rows = []
    for batch_size in args.batch_sizes:
        prompt = torch.randint(0, 50257, (batch_size, 8), generator=torch.Generator().manual_seed(batch_size))

        def run_ours(n=args.tokens, prompt=prompt):
            return generate(ours, prompt, n, temperature=0, use_cache=True)

        def run_theirs(n=args.tokens, prompt=prompt):
            with torch.no_grad():
                return theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                       min_new_tokens=n, do_sample=False, use_cache=True, eos_token_id=None,
                                       pad_token_id=50256)

        run_ours(5), run_theirs(5)  # warm-up
        loads = [os.getloadavg()[0]]
        seconds: dict[str, list[float]] = {"ours": [], "transformers": []}
        same = True
        for repeat in range(args.repeats):
            t, out_ours = timed(run_ours)
            seconds["ours"].append(t)
            t, out_theirs = timed(run_theirs)
            seconds["transformers"].append(t)
            same &= torch.equal(out_ours, out_theirs)
            if args.verbose:
                print(f"  batch {batch_size}, repeat {repeat}: ours {seconds['ours'][-1]:.1f} s, transformers "
                      f"{t:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        loads.append(os.getloadavg()[0])
        rates = {side: [batch_size * args.tokens / s for s in values] for side, values in seconds.items()}
        row = {"batch": batch_size, **{f"{side}_tokens_per_s": statistics.median(r) for side, r in rates.items()},
               "same_tokens": same, "load": loads}
        ratio = row["ours_tokens_per_s"] / row["transformers_tokens_per_s"]
        print(f"| {batch_size} | {max(rates['ours']):.1f} / {statistics.median(rates['ours']):.1f} | "
              f"{max(rates['transformers']):.1f} / {statistics.median(rates['transformers']):.1f} | {ratio:.2f}x | "
              f"{'yes' if same else 'NO'} | {loads[0]:.1f} → {loads[1]:.1f} |", flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
