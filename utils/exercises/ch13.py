"""Checkers for chapter 13's exercises: causal attention over key blocks, a gradient scaler, the KV cache's savings,
one product for q, k and v."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.attention import MultiHeadAttention, causal_mask
from utils.exercises import checker, expect, expect_close, expect_shape

GROWTH_INTERVAL = 3  # good steps in a row before the scale doubles (GradScaler's default is 2000)


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, align: str | None) -> torch.Tensor:
    """Explicit softmax attention in float64, causal (aligned as asked) or not: the independent reference."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (..., T_q, T_k)
    if align is not None:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], align=align), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _blockwise_mistake(q, k, v, block_size: int, *, rescale: bool = True, normalise: bool = True) -> torch.Tensor:
    """A causal online softmax with one step left out, to recognise that mistake in an answer."""
    T_q, T_k = q.shape[-2], k.shape[-2]
    allowed = causal_mask(T_q, T_k)
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))
    total, out = q.new_zeros((*q.shape[:-1], 1)), q.new_zeros((*q.shape[:-1], v.shape[-1]))
    for start in range(0, T_k, block_size):
        s = q @ k[..., start:start + block_size, :].transpose(-2, -1) / q.shape[-1] ** 0.5
        s = s.masked_fill(~allowed[:, start:start + block_size], float("-inf"))
        new_m = torch.maximum(m, s.amax(-1, keepdim=True))
        factor = torch.exp(m - new_m) if rescale else torch.ones_like(m)
        w = torch.exp(s - new_m)
        total, out, m = total * factor + w.sum(-1, keepdim=True), out * factor + w @ v[..., start:start + block_size, :], new_m
    return out / total if normalise else out


@checker("Exercise 13.1 — causal attention over key blocks")
def check_causal_blockwise_attention(causal_blockwise_attention) -> None:
    """``causal_blockwise_attention(q, k, v, block_size)``: causal attention, bottom-right aligned, block by block.

    q (..., T_q, d), k and v (..., T_k, d) with T_q <= T_k; the queries are the last T_q
    positions. The result must equal softmax attention with the bottom-right causal mask,
    and no (T_q, T_k) matrix of scores may be computed at once.
    """
    from torch.overrides import TorchFunctionMode

    class WholeMatrices(TorchFunctionMode):
        """Records floating-point results of shape (..., T_q, T_k) and calls of PyTorch's fused attention."""

        def __init__(self, T_q: int, T_k: int):
            super().__init__()
            self.shape, self.whole, self.fused = (T_q, T_k), 0, 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is F.scaled_dot_product_attention:
                self.fused += 1
            result = func(*args, **(kwargs or {}))
            if (isinstance(result, torch.Tensor) and result.is_floating_point() and result.ndim >= 2
                    and tuple(result.shape[-2:]) == self.shape):
                self.whole += 1
            return result

    g = torch.Generator().manual_seed(13)
    for T_q, T_k, block_size in ((6, 6, 2), (1, 9, 4), (3, 10, 4), (5, 12, 5), (4, 4, 8)):
        q = torch.randn(2, 3, T_q, 8, generator=g)
        k, v = torch.randn(2, 3, T_k, 8, generator=g), torch.randn(2, 3, T_k, 8, generator=g)
        what = f"T_q={T_q}, T_k={T_k}, block_size={block_size}"
        watch = WholeMatrices(T_q, T_k)
        with torch.no_grad(), watch:
            got = causal_blockwise_attention(q, k, v, block_size)
        expect(watch.fused == 0, "F.scaled_dot_product_attention does the blocks for you: write the loop over "
                                 "key blocks yourself")
        expect_shape(got, (2, 3, T_q, 8), f"the output ({what})")
        expected = _reference_attention(q, k, v, "bottom_right")
        if not torch.allclose(got.double(), expected, atol=1e-5):
            mistakes = (
                (_reference_attention(q, k, v, "top_left"), "the causal mask is aligned top-left (query t sees "
                 "keys s <= t); the queries are the last T_q positions, so query t sees s <= t + T_k - T_q"),
                (_reference_attention(q, k, v, None), "no causal mask: query t must not see the keys after it"),
                (_blockwise_mistake(q, k, v, block_size, rescale=False), "when a block raises a query's "
                 "maximum, what was summed under the old maximum must be multiplied by exp(m_old - m_new), "
                 "both the running sum and the running output"),
                (_blockwise_mistake(q, k, v, block_size, normalise=False), "divide the running output by the "
                 "running sum of exp(score - m) at the end"),
            )
            for wrong, message in mistakes:
                if T_q < T_k or "aligned" not in message:
                    expect(not torch.allclose(got.double(), wrong.double(), atol=1e-5), f"{what}: {message}")
            expect_close(got, expected, f"the output ({what}; compare softmax attention with the bottom-right "
                                        "causal mask, in float64)")
        expect(T_k <= block_size or watch.whole == 0,
               f"{what}: a ({T_q}, {T_k}) matrix was computed at once; compute the scores of one block of "
               f"{block_size} keys at a time (k[..., start:start + block_size, :])")


@checker("Exercise 13.2 — a gradient scaler by hand")
def check_scaled_step(scaled_step) -> None:
    """``scaled_step(loss, optimizer, state)`` does one step as ``torch.amp.GradScaler`` would; returns True if taken.

    ``state`` holds ``"scale"`` and ``"good_steps"``: backward of ``loss * scale``, the
    gradients divided by the scale; if any is inf or NaN the step is skipped, the
    scale halved and ``good_steps`` reset; otherwise the optimizer steps and after
    ``GROWTH_INTERVAL`` (3) good steps in a row the scale doubles and the count restarts.
    """
    torch.manual_seed(13)
    x = torch.randn(8, 3)
    ours, reference = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    reference.load_state_dict(ours.state_dict())
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.05)  # SGD: a step shows the gradient's size
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=GROWTH_INTERVAL)
    state = {"scale": 2.0**10, "good_steps": 0}
    factors = (1.0, 1.0, float("inf"), 1.0, 1.0, 1.0, 1.0, float("nan"), 1.0, 1.0)  # inf, NaN: an overflow
    for step, factor in enumerate(factors):
        scale_before, before = state["scale"], ours.weight.detach().clone()
        optimizer.zero_grad(set_to_none=True)
        taken = scaled_step((ours(x).square() * factor).mean(), optimizer, state)
        reference_optimizer.zero_grad(set_to_none=True)
        scaler.scale((reference(x).square() * factor).mean()).backward()
        scaler.step(reference_optimizer)
        scaler.update()
        overflow = factor != 1.0
        what = f"step {step} ({'a gradient was ' + str(factor) if overflow else 'finite gradients'})"
        expect(taken in (True, False), f"{what}: return True when the optimizer stepped, False when skipped; "
                                       f"got {taken!r}")
        expect(taken != overflow, f"{what}: " + ("a gradient was inf or NaN, so skip the step and return False"
                                                  if overflow else "nothing overflowed: step, and return True"))
        weight, expected_weight = ours.weight.detach(), reference.weight.detach()
        expect(bool(torch.isfinite(weight).all()), f"{what}: the weights became inf or NaN; never call "
                                                    "optimizer.step() when a gradient is not finite")
        if not torch.allclose(weight, expected_weight, atol=1e-6):
            unscaled = before + scale_before * (expected_weight - before)  # the step, `scale` times too long
            expect(not torch.allclose(weight, unscaled, rtol=1e-3, atol=1e-5),
                   f"{what}: your step was {scale_before:g} times too long: divide every gradient by the "
                   "scale before optimizer.step()")
            expect_close(weight, expected_weight, f"{what}: the weights (compare torch.amp.GradScaler's)")
        expect(state.get("scale") == scaler.get_scale(),
               f"{what}: the scale should now be {scaler.get_scale():g}, yours is {state.get('scale')!r} "
               "(halve it after a skipped step; double it after "
               f"{GROWTH_INTERVAL} good steps in a row, counting again from 0 after a skip or a doubling)")


@checker("Exercise 13.3 — counting the keys a generation computes")
def check_key_count(keys_computed) -> None:
    """``keys_computed(prompt_length, new_tokens, n_layers, cached)``: key vectors computed to write the tokens."""
    cases = ((1, 1, 1), (5, 1, 2), (1, 10, 1), (8, 20, 4), (100, 500, 4))
    for prompt, new, layers in cases:
        uncached = layers * sum(prompt + i for i in range(new))  # step i runs the model on prompt + i tokens
        cached = layers * (prompt + new - 1)  # the prompt once, then each new token but the last
        got_uncached = keys_computed(prompt, new, layers, False)
        got_cached = keys_computed(prompt, new, layers, True)
        expect(got_uncached == uncached,
               f"without a cache, prompt {prompt}, {new} new tokens, {layers} layer(s): expected {uncached:,} "
               f"keys, got {got_uncached}. Step i runs the whole model on prompt + i tokens, in every layer")
        if got_cached == layers * (prompt + new):
            expect(False, f"with a cache ({prompt}, {new}, {layers}): {got_cached} counts one token too many; "
                   "the last generated token is never fed back to the model")
        expect(got_cached == cached,
               f"with a cache, prompt {prompt}, {new} new tokens, {layers} layer(s): expected {cached:,} keys, "
               f"got {got_cached}. The prompt's keys are computed once, then one key per fed token and layer")


@checker("Exercise 13.4 — one product for q, k and v")
def check_packed_qkv(packed_qkv) -> None:
    """``packed_qkv(mha, x)`` → ``(q, k, v)``, each (B, T, C), from one product with the stacked (3C, C) weight."""
    torch.manual_seed(13)
    C = 12
    mha = MultiHeadAttention(C, 3).eval()
    x = torch.randn(2, 5, C)
    calls = []
    linear = F.linear

    def counted_linear(*args, **kwargs):
        calls.append(1)
        return linear(*args, **kwargs)

    F.linear = counted_linear  # nn.Linear calls it too: three module calls count three products
    try:
        with torch.no_grad():
            result = packed_qkv(mha, x)
    finally:
        F.linear = linear
    expect(isinstance(result, tuple | list) and len(result) == 3,
           f"return the three tensors (q, k, v); got {type(result).__name__}"
           + (f" of length {len(result)}" if isinstance(result, tuple | list) else ""))
    with torch.no_grad():
        wanted = [p(x) for p in (mha.q_proj, mha.k_proj, mha.v_proj)]
        without_bias = [x @ p.weight.T for p in (mha.q_proj, mha.k_proj, mha.v_proj)]
    for name, got in zip("qkv", result):
        expect_shape(got, (2, 5, C), f"{name} (x is (2, 5, {C}))")
    q, k, _ = result
    if torch.allclose(q, wanted[1], atol=1e-5) and torch.allclose(k, wanted[0], atol=1e-5):
        expect(False, "q and k are swapped: stack the weights in the order q_proj, k_proj, v_proj")
    if all(torch.allclose(got, want, atol=1e-5) for got, want in zip(result, without_bias)):
        expect(False, "the biases are missing: stack the three biases into one (3C,) vector too")
    for name, got, want in zip("qkv", result, wanted):
        expect_close(got, want, f"{name} (compare mha.{name}_proj(x))")
    expect(len(calls) <= 1, f"F.linear ran {len(calls)} times: stack the three weights into one (3C, C) matrix "
           "(torch.cat) and multiply once, then split the result")
