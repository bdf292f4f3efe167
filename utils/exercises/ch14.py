"""Checkers for chapter 14's exercises (all-reduce by hand, sharing batches, memory per GPU)."""

from __future__ import annotations

import math

import torch

from utils.exercises import ExerciseFailed, checker, expect, expect_close

BYTES_FP32 = 4


@checker("Exercise 14.1 — ring all-reduce by hand")
def check_ring_all_reduce(ring_all_reduce) -> None:
    """``ring_all_reduce(tensors, send)``: N ranks' 1-D tensors → N copies of their mean, neighbours only.

    ``send(source, destination, tensor)`` carries a tensor from rank ``source`` to
    rank ``destination = source + 1 (mod N)`` and returns the copy that arrives.
    """
    for world, length in ((2, 6), (4, 8), (3, 9)):
        g = torch.Generator().manual_seed(14 + world)
        tensors = [torch.randn(length, generator=g) for _ in range(world)]
        originals = [t.clone() for t in tensors]
        sent = [0] * world

        def send(source: int, destination: int, tensor: torch.Tensor, world=world, sent=sent) -> torch.Tensor:
            if not (0 <= source < world and destination == (source + 1) % world):
                raise ExerciseFailed(f"rank {source} sent to rank {destination}; in a ring of {world} ranks "
                                     f"rank r sends only to rank (r + 1) % {world}")
            sent[source] += tensor.numel()
            return tensor.detach().clone()

        results = ring_all_reduce([t.clone() for t in tensors], send)
        expected = torch.stack(originals).mean(0)
        expect(isinstance(results, (list, tuple)) and len(results) == world,
               f"return one tensor per rank ({world}), got {type(results).__name__}"
               + (f" of length {len(results)}" if isinstance(results, (list, tuple)) else ""))
        total = torch.stack(originals).sum(0)
        for r, result in enumerate(results):
            if isinstance(result, torch.Tensor) and result.shape == total.shape and torch.allclose(result, total,
                                                                                                   atol=1e-5):
                raise ExerciseFailed(f"rank {r} holds the sum of the gradients; divide by N = {world} for the mean")
            expect_close(result, expected, f"rank {r}'s result with {world} ranks")
        chunk = length // world
        for r in range(world):
            expect(sent[r] == 2 * (world - 1) * chunk,
                   f"with {world} ranks and {length} numbers each, rank {r} sent {sent[r]} numbers; the ring "
                   f"sends one chunk of {chunk} per step, {world - 1} steps to sum and {world - 1} to share: "
                   f"{2 * (world - 1) * chunk} numbers")


@checker("Exercise 14.2 — every rank the same number of batches")
def check_share_batches(share_batches) -> None:
    """``share_batches(batches, rank, world_size)``: this rank's list; all batches used, equal counts."""
    for n_batches, world in ((8, 2), (7, 2), (10, 4), (3, 3), (2, 3)):
        batches = [f"batch{i}" for i in range(n_batches)]
        shares = [list(share_batches(list(batches), r, world)) for r in range(world)]
        counts = [len(s) for s in shares]
        missing = sorted(set(batches) - {b for s in shares for b in s}, key=batches.index)
        expect(not missing, f"{n_batches} batches over {world} ranks: {missing} went to no rank; pad the list "
                            "with batches from its start instead of dropping the rest")
        expect(len(set(counts)) == 1,
               f"{n_batches} batches over {world} ranks gave ranks {counts} batches: a rank with fewer finishes "
               "early while the others wait forever for its part of the next all-reduce")
        expect(counts[0] == math.ceil(n_batches / world),
               f"{n_batches} batches over {world} ranks: each rank needs ceil({n_batches} / {world}) = "
               f"{math.ceil(n_batches / world)} batches, you gave {counts[0]}")


@checker("Exercise 14.3 — memory per GPU for training with Adam")
def check_training_memory(training_memory) -> None:
    """``training_memory(n_params, world_size, shard)`` in bytes per GPU, float32, for shard in
    ``"nothing"`` (DDP), ``"optimizer"`` (ZeRO-1), ``"gradients"`` (ZeRO-2), ``"parameters"`` (ZeRO-3, FSDP)."""
    n = 124_439_808
    per_parameter = {"nothing": (4, 4, 8), "optimizer": (4, 4, 0), "gradients": (4, 0, 0), "parameters": (0, 0, 0)}
    got = training_memory(n, 1, "nothing")
    expect(got != 2 * BYTES_FP32 * n, "you counted parameters and gradients only; Adam keeps two more numbers "
                                      "per parameter (the running mean and the running mean square)")
    expect(got != 3 * BYTES_FP32 * n, "Adam keeps two numbers per parameter, not one: m and v")
    for world in (1, 8, 64):
        for shard, kept_whole in per_parameter.items():
            expected = n * (sum(kept_whole) + (16 - sum(kept_whole)) / world)
            answer = training_memory(n, world, shard)
            expect(isinstance(answer, (int, float)), f"return a number of bytes, got {type(answer).__name__}")
            expect(math.isclose(answer, expected, rel_tol=1e-6),
                   f"{n:,} parameters on {world} GPUs sharding {shard!r}: expected {expected / 2**30:.3f} GiB "
                   f"per GPU, you said {answer / 2**30:.3f} GiB (4 bytes each for the weights, the gradients, "
                   "Adam's m and v; a sharded part is split evenly over the GPUs, the rest kept whole)")
