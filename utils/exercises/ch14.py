"""Checkers for chapter 14's exercises: a ring all-reduce, the loss per token over ranks, a new order every epoch."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from utils.exercises import ExerciseFailed, checker, expect, expect_close


@checker("Exercise 14.1 — ring all-reduce by hand")
def check_ring_all_reduce(ring_all_reduce) -> None:
    """``ring_all_reduce(tensors, send)``: W ranks' 1-D tensors → W copies of their mean, neighbours only.

    ``send(source, destination, tensor)`` carries a tensor from rank ``source`` to
    rank ``destination = source + 1 (mod W)`` and returns the copy that arrives.
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
                raise ExerciseFailed(f"rank {r} holds the sum of the gradients; divide by W = {world} for the mean")
            expect_close(result, expected, f"rank {r}'s result with {world} ranks")
        chunk = length // world
        for r in range(world):
            expect(sent[r] == 2 * (world - 1) * chunk,
                   f"with {world} ranks and {length} numbers each, rank {r} sent {sent[r]} numbers; the ring "
                   f"sends one chunk of {chunk} per step, {world - 1} steps to sum and {world - 1} to share: "
                   f"{2 * (world - 1) * chunk} numbers")


def _mean_in_every_rank(mean_per_token, means: list[float], tokens: list[int]) -> dict:
    """Runs in each process: the learner's function on this rank's figures; never raises."""
    from utils import distributed

    r = distributed.rank()
    calls = []
    all_reduce = dist.all_reduce

    def counted_all_reduce(*args, **kwargs):
        calls.append(1)
        return all_reduce(*args, **kwargs)

    dist.all_reduce = counted_all_reduce
    try:
        value = mean_per_token(torch.tensor(means[r]), tokens[r])
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else f"a tensor of shape {tuple(value.shape)}"
        return {"value": value if isinstance(value, (int, float, str)) else repr(value), "all_reduces": len(calls)}
    except NotImplementedError:
        return {"not_started": True}
    except Exception as error:  # noqa: BLE001 (reported to the reader in the parent process)
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        dist.all_reduce = all_reduce


@checker("Exercise 14.2 — the loss per token over all ranks")
def check_mean_per_token(mean_per_token) -> None:
    """``mean_per_token(rank_mean, rank_tokens)``, run in every rank: the mean loss per token over all ranks' tokens.

    ``rank_mean`` is this rank's mean loss per token (a one-element tensor) over its
    ``rank_tokens`` tokens (an int); every rank must return the same number, the loss
    one process would get from all the tokens together.
    """
    from utils import distributed

    for means, tokens in (([1.0, 3.0], [10, 30]), ([2.0, 2.5, 0.5], [7, 1, 12])):
        world = len(means)
        expected = sum(m * n for m, n in zip(means, tokens)) / sum(tokens)
        results = distributed.start_processes(_mean_in_every_rank, world, mean_per_token, means, tokens)
        if any(r.get("not_started") for r in results):
            raise NotImplementedError
        for r, result in enumerate(results):
            expect("error" not in result, f"rank {r} raised {result.get('error')}")
        values = [result["value"] for result in results]
        what = f"{world} ranks with mean losses {means} over {tokens} tokens"
        for r, value in enumerate(values):
            expect(isinstance(value, (int, float)), f"{what}: rank {r} returned {value}; return one number")
        if any(result["all_reduces"] == 0 for result in results) and values == means:
            expect(False, f"{what}: each rank returned its own mean; the ranks must exchange their figures "
                          "(dist.all_reduce)")
        if all(math.isclose(v, sum(means) / world, rel_tol=1e-5) for v in values):
            expect(False, f"{what}: you averaged the ranks' means, {sum(means) / world:.4g}: a rank with few "
                          f"tokens counts as much as one with many. Weight each mean by its tokens: "
                          f"{expected:.4g}")
        if all(math.isclose(v, sum(m * n for m, n in zip(means, tokens)), rel_tol=1e-5) for v in values):
            expect(False, f"{what}: that is the sum of the losses; divide by the total number of tokens")
        for r, value in enumerate(values):
            expect(math.isclose(value, expected, rel_tol=1e-5),
                   f"{what}: rank {r} returned {value:.6g}, expected {expected:.6g} (sum of mean x tokens over "
                   "the ranks, divided by the sum of the tokens)")


@checker("Exercise 14.3 — a new order every epoch")
def check_epoch_indices(epoch_indices) -> None:
    """``epoch_indices(n, epoch, rank, world_size, seed)``: this rank's example indices for one epoch.

    The same as ``DistributedSampler(range(n), world_size, rank, shuffle=True, seed=seed)``
    after ``set_epoch(epoch)``: one permutation of ``range(n)`` per epoch, drawn by
    ``torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))`` on every
    rank, padded with its own start to a multiple of W, rank r taking places r, r + W, ...
    """
    from torch.utils.data import DistributedSampler

    for n, world, seed in ((10, 2, 0), (7, 2, 3), (10, 4, 1), (5, 3, 0)):
        for epoch in (0, 1, 2):
            shares = [list(epoch_indices(n, epoch, r, world, seed)) for r in range(world)]
            expected = []
            for r in range(world):
                sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=seed)
                sampler.set_epoch(epoch)
                expected.append(list(sampler))
            what = f"n={n}, {world} ranks, epoch {epoch}, seed {seed}"
            if shares == expected:
                continue
            counts = [len(share) for share in shares]
            expect(len(set(counts)) == 1, f"{what}: the ranks got {counts} indices; every rank needs "
                                          f"ceil({n} / {world}) = {math.ceil(n / world)} (pad the permutation "
                                          "with its own start), or one waits forever at the next all-reduce")
            everything = [i for share in shares for i in share]
            missing = sorted(set(range(n)) - set(everything))
            expect(not missing, f"{what}: examples {missing} went to no rank: every rank must shuffle with the "
                                "same generator (seed + epoch, never the rank), so that the ranks cut one "
                                "permutation into disjoint shares")
            if epoch > 0:
                earlier = [list(epoch_indices(n, 0, r, world, seed)) for r in range(world)]
                expect(shares != earlier, f"{what}: the same order as epoch 0; seed the generator with "
                                          "seed + epoch, as set_epoch does, for a new order every epoch")
            expect(False, f"{what}: rank shares {shares}, DistributedSampler's {expected} (one "
                          "torch.randperm per epoch, padded with its start to a multiple of W; rank r takes "
                          "places r, r + W, r + 2W, ...)")
