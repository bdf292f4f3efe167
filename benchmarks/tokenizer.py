"""GPT-2's tokenizer: the book's against tiktoken on all of Tiny Shakespeare (chapter 16).

    python -m benchmarks.tokenizer [--repeats 5]

Encodes the whole text (1,115,394 characters, 338,025 GPT-2 tokens) with
``utils.tokenizers.gpt2_tokenizer()``'s code and with ``tiktoken.Encoding`` built
from the same ranks file and pattern (``encode_ordinary``, one thread), the two
interleaved ``--repeats`` times. Ours is timed twice per repeat: a fresh tokenizer
(empty chunk cache: every distinct chunk is merged once) and the same tokenizer
again (every chunk found in the cache). The pre-tokenizer alone (the ``regex``
package's ``findall``) is timed too: it is the floor of any Python tokenizer that
splits first. Prints min and median seconds, the ratios to tiktoken, whether the
ids are identical, and the machine's load average (a busy machine inflates every
figure; the ratios of interleaved runs carry over better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import tiktoken

from utils.data import load_tiny_shakespeare
from utils.tokenizers import END_OF_TEXT, END_OF_TEXT_ID, GPT2_PATTERN, GPT2Tokenizer, gpt2_tokenizer, split_gpt2_chunks


def seconds(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each (default 5)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    text = load_tiny_shakespeare()
    ranks = gpt2_tokenizer().ranks
    reference = tiktoken.Encoding("r50k_offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={END_OF_TEXT: END_OF_TEXT_ID})
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"tiktoken": [], "ours, empty cache": [], "ours, warm cache": [],
                                     "pre-tokenizer alone": []}
    identical = True
    for _ in range(args.repeats):
        t, expected = seconds(lambda: reference.encode_ordinary(text))
        times["tiktoken"].append(t)
        encode = GPT2Tokenizer(ranks).encode  # a fresh chunk cache
        t, ids = seconds(lambda: encode(text))  # noqa: B023 (called at once)
        times["ours, empty cache"].append(t)
        identical &= ids == expected
        t, ids = seconds(lambda: encode(text))  # noqa: B023
        times["ours, warm cache"].append(t)
        identical &= ids == expected
        times["pre-tokenizer alone"].append(seconds(lambda: split_gpt2_chunks(text))[0])
    load_after = os.getloadavg()
    print(f"Tiny Shakespeare: {len(text):,} characters -> {len(expected):,} tokens; "
          f"{len(set(split_gpt2_chunks(text))):,} distinct chunks of {len(split_gpt2_chunks(text)):,}")
    print(f"tiktoken {tiktoken.__version__}, {args.repeats} interleaved repeats, one thread; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores")
    print("| encoder | min s | median s | median / tiktoken |\n| --- | ---: | ---: | ---: |")
    base = statistics.median(times["tiktoken"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {min(values):.3f} | {median:.3f} | {median / base:.2f}x |")
    print(f"identical ids: {identical}")
    return {"identical": identical, **{name: statistics.median(values) for name, values in times.items()}}


if __name__ == "__main__":
    main()
