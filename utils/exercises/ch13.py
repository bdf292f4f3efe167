"""Checkers for chapter 13's exercises: causal attention over key blocks, int8 weights, the KV cache's savings,
one product for q, k and v."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.attention import MultiHeadAttention, causal_mask
from utils.exercises import checker, expect, expect_close, expect_shape


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


def _reference_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weights with one absmax scale per output row, in float64; an all-zero row gets scale 1."""
    weight = weight.double()
    absmax = weight.abs().amax(dim=1, keepdim=True)  # (out, 1)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    return (weight / scale).round().clamp(-127, 127), scale


@checker("Exercise 13.2 — int8 weights")
def check_int8_quantization(quantize_int8, int8_linear) -> None:
    """``quantize_int8(weight)`` → ``(q, scale)``; ``int8_linear(x, q, scale, bias)`` → ``x @ (q * scale).T + bias``.

    q is ``torch.int8`` of the weight's shape, in [-127, 127]: each output row divided by
    its own scale, the row's largest absolute value / 127, and rounded to the nearest
    integer. ``scale`` is (out, 1); a row of zeros gets q = 0 and a positive scale.
    """
    g = torch.Generator().manual_seed(13)
    magnitudes = torch.tensor([[0.02], [0.5], [3.0], [0.0], [1.0], [40.0]])  # row 3: all zeros
    weights = (torch.randn(6, 10, generator=g) * magnitudes, 0.05 * torch.randn(32, 48, generator=g))
    for weight in weights:
        out, fan_in = weight.shape
        what = f"the ({out}, {fan_in}) weight"
        original = weight.clone()
        result = quantize_int8(weight)
        expect(isinstance(result, tuple | list) and len(result) == 2,
               f"quantize_int8 should return the pair (q, scale); got {type(result).__name__}")
        q, scale = result
        expect(torch.equal(weight, original), "quantize_int8 changed the weight in place; leave it as it was")
        expect_shape(q, (out, fan_in), f"q for {what}")
        expect(q.dtype == torch.int8, f"q is {q.dtype}: store it as torch.int8 (one byte a number, "
                                      "where the 4x saving comes from), e.g. .to(torch.int8) after rounding")
        expect(isinstance(scale, torch.Tensor) and scale.is_floating_point(),
               f"scale should be a floating-point tensor, got {getattr(scale, 'dtype', type(scale).__name__)}")
        expect(scale.numel() != 1, f"one scale for the whole of {what}: each output row needs its own, the "
                                   "row's largest |w| / 127 (amax(dim=1, keepdim=True))")
        expect(tuple(scale.shape) != (1, fan_in), f"{what}: one scale per input column; the rows are the "
                                                  "outputs: take the largest |w| over dim=1")
        expect_shape(scale, (out, 1), f"scale for {what} (keepdim=True, so that it broadcasts over a row)")
        expected_q, expected_scale = _reference_quantize(weight)
        scale, q = scale.detach().double(), q.long()
        zero = weight.abs().amax(dim=1) == 0
        for row in torch.nonzero(zero).flatten().tolist():
            expect(bool(torch.isfinite(scale[row]).all() and (scale[row] > 0).all()),
                   f"row {row} of {what} is all zeros and its scale is {scale[row].item():g}: w / 0 is NaN, "
                   "whose cast to int8 is undefined; give an all-zero row a positive scale (e.g. 1)")
            expect(bool((q[row] == 0).all()), f"row {row} of {what} is all zeros, so its q must be 0")
        live = ~zero
        absmax = weight.double().abs().amax(dim=1, keepdim=True)[live]
        by_128 = torch.allclose(scale[live], absmax / 128, rtol=1e-5)
        if int(q.min()) < -127 or by_128:
            expect(False, f"{what}: " + ("the scale is the row's largest |w| / 128" if by_128 else
                                         f"q reaches {int(q.min())}") + "; divide by 127, so that q spans the "
                   "symmetric [-127, 127] (+absmax to 127, -absmax to -127; a 128 would wrap to -128 in int8), "
                   "and clamp to it")
        expect(int(q.max()) <= 127, f"{what}: q reaches {int(q.max())}: clamp it to [-127, 127]")
        if out > 1 and torch.allclose(scale, scale[0].expand_as(scale)):
            expect(False, f"every row of {what} has the same scale {scale[0].item():.4g}: each output row "
                          "needs its own, the row's largest |w| / 127 (amax(dim=1, keepdim=True))")
        expect_close(scale[live], expected_scale[live], f"the scales of {what}'s non-zero rows (each row's "
                                                        "largest |w| / 127)", atol=0, rtol=1e-5)
        ratio = weight.double() / expected_scale
        near_half = (ratio - ratio.floor() - 0.5).abs() < 1e-3  # float32 may round either way there
        wrong = (q != expected_q) & ~(near_half & ((q - expected_q).abs() <= 1))
        if wrong.any():
            near_integer = (ratio - ratio.round()).abs() < 1e-3  # float32 may land on either side
            for cut, name in ((ratio.trunc(), "truncated toward zero"), (ratio.floor(), "rounded down")):
                same = (q == cut) | (near_integer & ((q - cut).abs() <= 1))
                expect(not bool(same[wrong].all()),
                       f"q of {what} is {name}: w / scale must be rounded to the nearest integer "
                       "(torch.round) before the cast to int8, which drops the fraction")
            where = tuple(int(i) for i in torch.nonzero(wrong)[0])
            expect(False, f"q of {what} at {where} is {int(q[where])}, expected {int(expected_q[where])} "
                          f"(w = {weight[where].item():.5g}, scale = {expected_scale[where[0], 0].item():.5g})")

    weight = weights[0]
    q, scale = (t.to(torch.float32) for t in _reference_quantize(weight))
    q = q.to(torch.int8)
    x, bias = torch.randn(2, 5, 10, generator=g), torch.randn(6, generator=g)
    got = int8_linear(x, q.clone(), scale.clone(), bias.clone())
    x64, q64, scale64, bias64 = x.double(), q.double(), scale.double(), bias.double()
    expected = x64 @ (q64 * scale64).T + bias64
    expect_shape(got, (2, 5, 6), "int8_linear's output (x is (2, 5, 10), q is (6, 10))")
    got64 = got.detach().double()
    mistakes = (
        (x64 @ q64.T + bias64, "the scale is missing: the weight is q * scale (q alone is the weight / scale)"),
        (x64 @ (q64 / scale64).T + bias64, "divide by the scale to quantize, multiply by it to get the weight "
                                           "back: the weight is q * scale"),
        (x64 @ (q64 * scale64).T, "the bias is missing: add it after the product"),
    )
    for wrong, message in mistakes:
        expect(not torch.allclose(got64, wrong, rtol=1e-4, atol=1e-5), f"int8_linear: {message}")
    expect_close(got, expected, "int8_linear's output (compare x @ (q * scale).T + bias in float64)")


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
