"""Chapter 14's exercises: the reference solutions pass, plausible wrong answers are caught."""

import math

import pytest
import torch
import torch.distributed as dist

from utils.exercises import ExerciseFailed
from utils.exercises.ch14 import check_epoch_indices, check_mean_per_token, check_ring_all_reduce


def gather_to_rank_0(tensors, send):
    total = sum(send(r, 0, t) for r, t in enumerate(tensors))
    return [total / len(tensors) for _ in tensors]


def pass_whole_tensors(tensors, send):
    """A ring, but each step carries the whole running sum: W - 1 full tensors per rank, not 2(W - 1)/W."""
    W = len(tensors)
    total = tensors[0]
    for r in range(W - 1):
        total = send(r, r + 1, total) + tensors[r + 1]
    copies = [total]
    for r in range(W - 1, 0, -1):
        copies.append(send(r, (r + 1) % W, copies[-1]))
    return [total / W] * W


def ring_sum(tensors, send):
    W = len(tensors)
    chunks = [list(t.chunk(W)) for t in tensors]
    for s in range(W - 1):
        arriving = [send(r, (r + 1) % W, chunks[r][(r - s) % W]) for r in range(W)]
        for r in range(W):
            chunks[(r + 1) % W][(r - s) % W] = chunks[(r + 1) % W][(r - s) % W] + arriving[r]
    for s in range(W - 1):
        arriving = [send(r, (r + 1) % W, chunks[r][(r + 1 - s) % W]) for r in range(W)]
        for r in range(W):
            chunks[(r + 1) % W][(r + 1 - s) % W] = arriving[r]
    return [torch.cat(c) for c in chunks]


def test_ring_all_reduce_checker_rejects_a_star_whole_tensors_and_the_sum():
    with pytest.raises(ExerciseFailed, match=r"rank 0 sent to rank 0; in a ring"):
        check_ring_all_reduce(gather_to_rank_0)
    with pytest.raises(ExerciseFailed, match="one chunk of"):
        check_ring_all_reduce(pass_whole_tensors)
    with pytest.raises(ExerciseFailed, match="divide by W"):
        check_ring_all_reduce(ring_sum)
    check_ring_all_reduce(lambda tensors, send: [r / len(tensors) for r in ring_sum(tensors, send)])


def per_token_with(*, weight=True, exchange=True, divide=True):
    def mean_per_token(rank_mean, rank_tokens):
        if not exchange:
            return rank_mean.item()
        totals = torch.stack([rank_mean.double() * (rank_tokens if weight else 1),
                              torch.tensor(float(rank_tokens if weight else 1))])
        dist.all_reduce(totals)
        return (totals[0] / totals[1]).item() if divide else totals[0].item()

    return mean_per_token


def test_mean_per_token_checker_runs_in_processes_and_names_the_mean_of_means():
    check_mean_per_token(per_token_with())
    with pytest.raises(ExerciseFailed, match="averaged the ranks' means"):
        check_mean_per_token(per_token_with(weight=False))
    with pytest.raises(ExerciseFailed, match="each rank returned its own mean"):
        check_mean_per_token(per_token_with(exchange=False))
    with pytest.raises(ExerciseFailed, match="sum of the losses"):
        check_mean_per_token(per_token_with(divide=False))
    with pytest.raises(ExerciseFailed, match="rank 0 raised ZeroDivisionError"):
        check_mean_per_token(lambda rank_mean, rank_tokens: 1 / 0)


def indices_with(*, epoch_seed=True, rank_seed=False, pad=True, strided=True):
    def epoch_indices(n, epoch, rank, world_size, seed=0):
        g = torch.Generator().manual_seed(seed + (epoch if epoch_seed else 0) + (rank if rank_seed else 0))
        order = torch.randperm(n, generator=g).tolist()
        total = math.ceil(n / world_size) * world_size
        if pad:
            order += order[: total - n]
        if strided:
            return order[rank::world_size]
        share = total // world_size
        return order[rank * share:(rank + 1) * share]

    return epoch_indices


def test_epoch_indices_checker_compares_with_distributed_sampler_and_names_each_mistake():
    check_epoch_indices(indices_with())
    with pytest.raises(ExerciseFailed, match="the same order as epoch 0"):
        check_epoch_indices(indices_with(epoch_seed=False))
    with pytest.raises(ExerciseFailed, match="never the rank"):
        check_epoch_indices(indices_with(rank_seed=True))
    with pytest.raises(ExerciseFailed, match=r"the ranks got \[4, 3\] indices"):
        check_epoch_indices(indices_with(pad=False))
    with pytest.raises(ExerciseFailed, match=r"rank r takes places r, r \+ W"):
        check_epoch_indices(indices_with(strided=False))
