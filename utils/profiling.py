"""Measuring speed and memory: the tools of chapter 13.

* :func:`timed` and :func:`time_call` — the book's one stopwatch: wall-clock
  seconds with the GPU's queued work waited for before and after (CUDA launches
  kernels and returns at once, so an unsynchronised timing measures the launches);
* :func:`seconds_per_call` — the median wall time of a function (after warm-up
  calls), timed by :func:`timed`;
* :func:`top_operations` — the operators that took the most time in a
  ``torch.profiler`` run, as rows of a table;
* :func:`saved_for_backward_bytes` — the memory autograd keeps for the backward
  pass while a forward runs: the activation memory of training, counted
  exactly (each storage once), on any device;
* :func:`sdpa_kernel_name` — which kernel ``F.scaled_dot_product_attention``
  really ran, read from the profiler's trace (a fact, not a guess from the rules).

Timings on a shared machine are noisy: compare two timings taken side by side,
and report ratios with the seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from utils.checks import check_int

# The profiler's C++ side logs "profiler_start/stop" lines to stderr unless told otherwise.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued work (CUDA, MPS); nothing to wait for on the CPU.

    ``device=None`` waits for CUDA if this process has used it (it never starts CUDA).
    """
    kind = torch.device(device).type if device is not None else None
    if kind == "cuda" or (kind is None and torch.cuda.is_available() and torch.cuda.is_initialized()):
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    """What :func:`timed` measured: ``seconds`` (NaN until the block has ended)."""

    seconds: float = math.nan


@contextlib.contextmanager
def timed(device: torch.device | str | None = None) -> Iterator[Timing]:
    """``with timed(device) as t: work()``, then ``t.seconds``: the block's wall-clock seconds.

    The device's queued work is waited for before the clock starts (so earlier work
    is not counted) and before it stops (so this work is): on a GPU, where PyTorch
    returns as soon as a kernel is launched, that is the difference between timing
    the work and timing its launch. On the CPU both waits are free.
    """
    timing = Timing()
    synchronize(device)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        synchronize(device)
        timing.seconds = time.perf_counter() - start


def time_call(fn: Callable[[], object], device: torch.device | str | None = None) -> tuple[float, object]:
    """``(seconds, fn())``, timed by :func:`timed`."""
    with timed(device) as timing:
        result = fn()
    return timing.seconds, result


def seconds_per_call(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, device=None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` calls, after ``warmup`` calls."""
    repeat, warmup = check_int("repeat", repeat, minimum=1), check_int("warmup", warmup, minimum=0)
    for _ in range(warmup):
        fn()
    return statistics.median(time_call(fn, device)[0] for _ in range(repeat))


def operator_calls(profile: torch.profiler.profile) -> int:
    """How many PyTorch operators (``aten::`` events, nested ones included) the profile recorded."""
    return sum(e.count for e in profile.key_averages() if e.key.startswith("aten::"))


def top_operations(profile: torch.profiler.profile, n: int = 8) -> list[tuple[str, int, float]]:
    """The ``n`` operators with the most self time: (name, calls, share of all self time)."""
    events = [e for e in profile.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    if total <= 0:
        raise ValueError("the profile recorded no aten operators")
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.count, e.self_cpu_time_total / total) for e in events[:n]]


def saved_for_backward_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs (each storage once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def sdpa_kernel_name(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> str:
    """The ATen kernel ``F.scaled_dot_product_attention(q, k, v, **kwargs)`` dispatches to on these inputs."""
    with torch.profiler.profile() as profile:
        F.scaled_dot_product_attention(q, k, v, **kwargs)
        synchronize(q.device)
    names = [e.key for e in profile.key_averages()
             if e.key.startswith("aten::_") and "attention" in e.key and "backward" not in e.key]
    if not names:  # the math fallback is plain matmul and softmax, no kernel of its own
        return "math (matmul + softmax)"
    return min(names, key=len)
