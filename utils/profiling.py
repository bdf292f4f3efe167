"""Measuring speed and memory: the tools of chapter 13.

* :func:`seconds_per_call` — the median wall time of a function (after warm-up
  calls, synchronising the GPU so its queued work is counted);
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

import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# The profiler's C++ side logs "profiler_start/stop" lines to stderr unless told otherwise.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (CUDA, MPS); nothing to wait for on the CPU."""
    kind = torch.device(device).type if device is not None else None
    if kind == "cuda" or (kind is None and torch.cuda.is_available()):
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def seconds_per_call(fn: Callable[[], object], repeat: int = 5, warmup: int = 1, device=None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` calls, after ``warmup`` calls."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
