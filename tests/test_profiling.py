"""utils.profiling: exact memory counts, the kernel SDPA really ran, and the helpers' bad input."""

import pytest
import torch
import torch.nn.functional as F

from utils.attention import attention, causal_mask
from utils.profiling import (
    operator_calls,
    saved_for_backward_bytes,
    sdpa_kernel_name,
    seconds_per_call,
    top_operations,
)


def test_saved_for_backward_bytes_counts_each_storage_once():
    a = torch.randn(100, 50, requires_grad=True)
    b = torch.randn(50, 20, requires_grad=True)
    # a @ b saves a and b; (a @ b).sin() saves its input: 100*50 + 50*20 + 100*20 floats
    assert saved_for_backward_bytes(lambda: (a @ b).sin()) == 4 * (100 * 50 + 50 * 20 + 100 * 20)
    assert saved_for_backward_bytes(lambda: a * a) == 4 * 100 * 50  # a saved twice, one storage
    with torch.no_grad():
        assert saved_for_backward_bytes(lambda: (a @ b).sin()) == 0


def test_explicit_attention_keeps_the_square_matrices_and_sdpa_does_not():
    q = torch.randn(2, 4, 256, 32, requires_grad=True)
    explicit = saved_for_backward_bytes(lambda: attention(q, q, q, causal_mask(256))[0])
    fused = saved_for_backward_bytes(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True))
    assert explicit > 4 * 2 * 4 * 256 * 256  # at least one float32 (B, n_heads, T, T) tensor
    assert fused < 4 * 2 * 4 * 256 * 256


def test_sdpa_kernel_name_reads_the_kernel_from_the_profiler():
    q = torch.randn(1, 2, 16, 8)
    assert sdpa_kernel_name(q, q, q, is_causal=True).startswith("aten::_scaled_dot_product")
    assert "math" in sdpa_kernel_name(q, q, q, dropout_p=0.5)  # the CPU fused kernel has no dropout


def test_timing_and_profile_helpers():
    calls = []
    assert seconds_per_call(lambda: calls.append(1), repeat=3, warmup=2) >= 0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        seconds_per_call(lambda: None, repeat=0)
    x = torch.randn(64, 64)
    with torch.profiler.profile() as profile:
        for _ in range(3):
            x @ x
    (name, count, share), *_ = top_operations(profile, n=1)
    assert (name, count) == ("aten::mm", 3) and 0 < share <= 1


def test_operator_calls_counts_every_aten_event():
    a, b = torch.ones(3), torch.ones(3)
    with torch.profiler.profile() as profile:
        for _ in range(4):
            torch.add(a, b)
        torch.mul(a, b)
    assert operator_calls(profile) == 5  # 4 adds and a mul, nothing nested


def test_timed_waits_for_the_gpu_before_and_after_and_never_starts_cuda(monkeypatch):
    from utils import profiling

    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: syncs.append("sync"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)

    def work():
        syncs.append("work")
        return 42

    with profiling.timed("cuda") as timing:
        work()
    assert syncs == ["sync", "work", "sync"] and timing.seconds >= 0
    syncs.clear()
    seconds, result = profiling.time_call(work, device=torch.device("cuda"))
    assert syncs == ["sync", "work", "sync"] and result == 42 and seconds >= 0
    syncs.clear()
    profiling.time_call(work, device="cpu")
    profiling.time_call(work)  # CUDA exists but this process never used it: nothing to wait for
    assert syncs == ["work", "work"]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    profiling.time_call(work)  # it did use CUDA: its queued work counts
    assert syncs == ["work", "work", "sync", "work", "sync"]
    syncs.clear()
    assert profiling.seconds_per_call(work, repeat=2, warmup=1, device="cuda") >= 0
    assert syncs == ["work", "sync", "work", "sync", "sync", "work", "sync"]
