"""Chapter 14's exercises: the reference solutions pass, plausible wrong answers are caught."""

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch14 import check_ring_all_reduce, check_share_batches, check_training_memory


def gather_to_rank_0(tensors, send):
    total = sum(send(r, 0, t) for r, t in enumerate(tensors))
    return [total / len(tensors) for _ in tensors]


def pass_whole_tensors(tensors, send):
    """A ring, but each step carries the whole running sum: N - 1 full tensors per rank, not 2(N - 1)/N."""
    N = len(tensors)
    total = tensors[0]
    for r in range(N - 1):
        total = send(r, r + 1, total) + tensors[r + 1]
    copies = [total]
    for r in range(N - 1, 0, -1):
        copies.append(send(r, (r + 1) % N, copies[-1]))
    return [total / N] * N


def ring_sum(tensors, send):
    N = len(tensors)
    chunks = [list(t.chunk(N)) for t in tensors]
    for s in range(N - 1):
        arriving = [send(r, (r + 1) % N, chunks[r][(r - s) % N]) for r in range(N)]
        for r in range(N):
            chunks[(r + 1) % N][(r - s) % N] = chunks[(r + 1) % N][(r - s) % N] + arriving[r]
    for s in range(N - 1):
        arriving = [send(r, (r + 1) % N, chunks[r][(r + 1 - s) % N]) for r in range(N)]
        for r in range(N):
            chunks[(r + 1) % N][(r + 1 - s) % N] = arriving[r]
    return [torch.cat(c) for c in chunks]


def test_ring_all_reduce_checker_rejects_a_star_whole_tensors_and_the_sum():
    with pytest.raises(ExerciseFailed, match=r"rank 0 sent to rank 0; in a ring"):
        check_ring_all_reduce(gather_to_rank_0)
    with pytest.raises(ExerciseFailed, match="one chunk of"):
        check_ring_all_reduce(pass_whole_tensors)
    with pytest.raises(ExerciseFailed, match="divide by N"):
        check_ring_all_reduce(ring_sum)
    check_ring_all_reduce(lambda tensors, send: [r / len(tensors) for r in ring_sum(tensors, send)])


def test_share_batches_checker_rejects_dropping_and_unequal_shares():
    with pytest.raises(ExerciseFailed, match="went to no rank"):
        check_share_batches(lambda batches, r, n: batches[r::n][: len(batches) // n])
    with pytest.raises(ExerciseFailed, match="wait forever"):
        check_share_batches(lambda batches, r, n: batches[r::n])
    with pytest.raises(ExerciseFailed, match="ceil"):
        check_share_batches(lambda batches, r, n: batches)


def test_training_memory_checker_rejects_forgotten_adam_state_and_wrong_sharding():
    with pytest.raises(ExerciseFailed, match="two more numbers"):
        check_training_memory(lambda n, world, shard: 8 * n)
    with pytest.raises(ExerciseFailed, match="not one"):
        check_training_memory(lambda n, world, shard: 12 * n)
    with pytest.raises(ExerciseFailed, match="sharding 'optimizer'"):
        check_training_memory(lambda n, world, shard: 16 * n if shard == "nothing" else 16 * n / world)
