"""Attention: every token gathers information from the tokens it may see (chapters 04–06).

Chapter 04 builds scaled dot-product attention and multi-head attention, chapter 05
adds masks (the causal mask and padding masks), chapter 06 uses the same module
as cross-attention. One module serves all three:

* :func:`causal_mask` — the (T_q, T_k) boolean mask, True where query t may see key s ≤ t
  (aligned bottom-right when T_q < T_k: the queries are the last T_q positions);
* :func:`attention` — the explicit ``softmax(q kᵀ / √d_k) v`` on (..., T, d) tensors,
  the teaching path, which also returns the weights;
* :class:`MultiHeadAttention` — projections, heads, masks, and two equal paths:
  ``fused=True`` calls ``F.scaled_dot_product_attention`` (fast), ``fused=False``
  calls :func:`attention` (readable, and the only one that can return weights);
* :func:`copy_weights_from_torch` — load ``nn.MultiheadAttention``'s weights, so the
  chapters can prove the module equal to PyTorch's.
* :func:`blockwise_attention` — the same attention over blocks of keys with an online
  softmax (chapter 13): FlashAttention's idea, never holding the whole (T_q, T_k) matrix.

Masks follow two conventions, each the one its users expect: a ``mask`` given to
:func:`attention` is **True where a query may attend**; a ``key_padding_mask``
given to :class:`MultiHeadAttention` is **True where a key is padding** (PyTorch's
convention). A query row whose every key is masked has nothing to average: it gets
weights 0 and attention output 0 (so the module returns ``out_proj``'s bias there),
never NaN, on both paths and in the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from utils.checks import check_int


def causal_mask(
    T_q: int, T_k: int | None = None, device: torch.device | str | None = None, *, align: str = "bottom_right"
) -> torch.Tensor:
    """Boolean (T_q, T_k), True where query t may attend to key s: the lower triangle when T_q = T_k.

    With fewer queries than keys the queries are the *last* T_q positions of the
    sequence (new tokens after a KV cache of T_k − T_q), so query t sits at position
    t + T_k − T_q and may see key s ≤ t + T_k − T_q: the triangle is aligned
    ``"bottom_right"`` (the default). ``align="top_left"`` gives s ≤ t, the
    alignment of ``F.scaled_dot_product_attention(..., is_causal=True)``; the two
    agree exactly when T_q = T_k.
    """
    T_k = T_q if T_k is None else T_k
    if check_int("T_q", T_q) < 0 or check_int("T_k", T_k) < 0:
        raise ValueError(f"causal_mask needs non-negative lengths, got T_q={T_q}, T_k={T_k}")
    if align not in ("bottom_right", "top_left"):
        raise ValueError(f"align must be 'bottom_right' or 'top_left', got {align!r}")
    diagonal = T_k - T_q if align == "bottom_right" else 0
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"q, k, v must be (..., T, d); got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must have the same last dimension d_k")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same number of keys T_k")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dimensions (...) of q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} "
            f"do not broadcast: {tuple(q.shape[:-2])}, {tuple(k.shape[:-2])}, {tuple(v.shape[:-2])}"
        ) from None
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}")
        scores_shape = (*batch, q.shape[-2], k.shape[-2])
        try:
            torch.broadcast_shapes(mask.shape, scores_shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape {scores_shape} "
                f"(..., T_q, T_k) of q {tuple(q.shape)} and k {tuple(k.shape)}"
            ) from None


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, written out: ``softmax(q kᵀ / √d_k) v``.

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v); ``mask`` bool,
    broadcastable to (..., T_q, T_k), True = may attend; ``dropout`` (e.g. an
    ``nn.Dropout``) is applied to the weights. Returns ``(out, weights)``:
    out (..., T_q, d_v) and the weights actually used (..., T_q, T_k). A query
    whose every key is masked gets weights 0 and output 0.
    """
    _check_qkv(q, k, v, mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if mask is not None:
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): does the row see any key?
        scores = scores.masked_fill(~mask, float("-inf"))
        # A row with no visible key would be softmax(-inf, ..., -inf) = NaN. Give it finite
        # scores instead, and zero its weights below (gradients stay finite too).
        scores = scores.masked_fill(~has_key, 0.0)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), each row sums to 1
    if mask is not None:
        weights = weights.masked_fill(~has_key, 0.0)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


class KVCache:
    """The keys and values one attention layer has computed so far (chapter 13).

    When a model writes one token at a time, the keys and values of the earlier
    tokens do not change; keeping them saves recomputing them at every step.
    ``k`` and ``v`` are (B, n_heads, T_past, head_size), or None while empty.
    Self-attention *appends* the new tokens' keys and values (:meth:`extend`);
    cross-attention fills the cache once from the encoder's memory and then reuses it.

    The keys and values live in buffers with room to spare, which double when full:
    appending one token writes one position, instead of copying every cached one
    into a new tensor as ``torch.cat`` would at each step. ``k`` and ``v`` are views
    of the filled part. (When gradients are being recorded, e.g. a cache used in
    training, appending falls back to ``torch.cat``: writing into a buffer that an
    earlier step's backward pass needs would break it.)
    """

    def __init__(self):
        self._k: torch.Tensor | None = None  # (B, n_heads, capacity, head_size)
        self._v: torch.Tensor | None = None
        self._length = 0  # positions filled

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, : self._length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, : self._length]

    def __len__(self) -> int:
        return self._length

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, n_heads, T_new, head_size); return all keys and values so far."""
        if self._k is not None and (k.shape[:2] != self._k.shape[:2] or k.shape[-1] != self._k.shape[-1]):
            raise ValueError(f"new keys {tuple(k.shape)} do not extend the cached {tuple(self.k.shape)} "
                             "(B, n_heads, T, head_size): same B, n_heads and head_size needed")
        needed = self._length + k.shape[-2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            self._k = k if self._k is None else torch.cat([self.k, k], dim=-2)  # (B, n_heads, T_past + T_new, hs)
            self._v = v if self._v is None else torch.cat([self.v, v], dim=-2)
            self._length = needed
            return self.k, self.v
        if self._k is None or needed > self._k.shape[-2] or self._k.dtype != k.dtype:
            capacity = max(needed, 2 * (0 if self._k is None else self._k.shape[-2]))
            grown_k = k.new_empty(*k.shape[:2], capacity, k.shape[-1])
            grown_v = v.new_empty(*v.shape[:2], capacity, v.shape[-1])
            if self._length:
                grown_k[:, :, : self._length] = self.k
                grown_v[:, :, : self._length] = self.v
            self._k, self._v = grown_k, grown_v
        self._k[:, :, self._length : needed] = k
        self._v[:, :, self._length : needed] = v
        self._length = needed
        return self.k, self.v

    def select(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (indices, repeats allowed), e.g. the surviving hypotheses of a beam."""
        if self._k is not None:
            self._k, self._v = self._k[rows], self._v[rows]

    def __repr__(self) -> str:
        shape = None if self._k is None else tuple(self.k.shape)
        return f"KVCache(k, v of shape {shape})"


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self-, masked self- and cross-attention (Vaswani et al., 2017).

    ``forward(query, key_value=None, *, causal=False, key_padding_mask=None, return_weights=False)``:
    query (B, T_q, C); key_value (B, T_k, C), or None to attend over ``query`` itself;
    ``causal=True`` lets query t see keys s ≤ t only; ``key_padding_mask`` (B, T_k) bool,
    True = padding (never attended to). Returns (B, T_q, C), or ``(out, weights)`` with
    weights (B, n_heads, T_q, T_k) when ``return_weights=True`` (always the explicit path).

    ``cache`` (a :class:`KVCache`, chapter 13): self-attention (``key_value=None``)
    appends the new tokens' keys and values to it and attends over all of them, the
    queries being the last T_q positions (so ``causal`` aligns bottom-right, and
    ``key_padding_mask`` covers every key, cached ones included); cross-attention
    projects ``key_value`` once, into an empty cache, and reuses it afterwards.
    """

    def __init__(self, C: int, n_heads: int, dropout: float = 0.0, bias: bool = True, fused: bool = True):
        super().__init__()
        C, n_heads = check_int("C", C), check_int("n_heads", n_heads)
        if n_heads < 1 or C < 1:
            raise ValueError(f"need C >= 1 and n_heads >= 1, got C={C}, n_heads={n_heads}")
        if C % n_heads != 0:
            raise ValueError(f"C={C} is not divisible by n_heads={n_heads}: each head gets C / n_heads channels")
        self.C = C
        self.n_heads = n_heads
        self.head_size = C // n_heads
        self.fused = fused
        self.q_proj = nn.Linear(C, C, bias=bias)
        self.k_proj = nn.Linear(C, C, bias=bias)
        self.v_proj = nn.Linear(C, C, bias=bias)
        self.out_proj = nn.Linear(C, C, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"C={self.C}, n_heads={self.n_heads}, head_size={self.head_size}, fused={self.fused}"

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_heads, self.head_size).transpose(1, 2)  # (B, n_heads, T, head_size)

    def _check_inputs(self, query, key_value, key_padding_mask, T_cached: int = 0) -> None:
        if query.ndim != 3 or query.shape[-1] != self.C:
            raise ValueError(f"query has shape {tuple(query.shape)}; expected (B, T_q, {self.C}) for C={self.C}")
        if key_value.ndim != 3 or key_value.shape[-1] != self.C or key_value.shape[0] != query.shape[0]:
            raise ValueError(
                f"key_value has shape {tuple(key_value.shape)}; expected (B, T_k, {self.C}) with the "
                f"query's batch size B={query.shape[0]} (query shape {tuple(query.shape)})"
            )
        if key_padding_mask is not None:
            expected = (key_value.shape[0], T_cached + key_value.shape[1])  # cached keys count too
            if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != expected:
                raise ValueError(
                    f"key_padding_mask must be bool of shape (B, T_k) = {expected} with True = padding; "
                    f"got {key_padding_mask.dtype} of shape {tuple(key_padding_mask.shape)}"
                )

    def _mask(self, T_q: int, T_k: int, causal: bool, key_padding_mask: torch.Tensor | None, device):
        """The combined bool mask, True = may attend, broadcastable to (B, n_heads, T_q, T_k); or None."""
        mask = causal_mask(T_q, T_k, device=device) if causal else None  # (T_q, T_k), bottom-right aligned
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
            mask = keep if mask is None else mask & keep  # (B, 1, T_q, T_k)
        return mask

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor | None = None,
        *,
        causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
    ):
        is_self_attention = key_value is None
        key_value = query if key_value is None else key_value
        T_cached = len(cache) if cache is not None and is_self_attention else 0
        self._check_inputs(query, key_value, key_padding_mask, T_cached)
        B, T_q, C = query.shape
        q = self._split_heads(self.q_proj(query))  # (B, n_heads, T_q, head_size)
        if cache is not None and not is_self_attention and len(cache) > 0:
            k, v = cache.k, cache.v  # cross-attention: the memory's keys and values, computed once
        else:
            k = self._split_heads(self.k_proj(key_value))  # (B, n_heads, T_new, head_size)
            v = self._split_heads(self.v_proj(key_value))  # (B, n_heads, T_new, head_size)
            if cache is not None:
                k, v = cache.extend(k, v)  # (B, n_heads, T_k, head_size), cached keys first
        T_k = k.shape[-2]

        weights = None
        if self.fused and not return_weights:
            out = self._fused(q, k, v, causal, key_padding_mask)
        else:
            mask = self._mask(T_q, T_k, causal, key_padding_mask, query.device)
            out, weights = attention(q, k, v, mask, self.dropout)
        out = out.transpose(1, 2).reshape(B, T_q, C)  # (B, T_q, C): the heads side by side again
        out = self.out_proj(out)
        return (out, weights) if return_weights else out

    def _fused(self, q, k, v, causal, key_padding_mask) -> torch.Tensor:
        """``F.scaled_dot_product_attention``, with fully masked rows set to 0 as on the explicit path."""
        dropout_p = self.dropout.p if self.training else 0.0
        T_q, T_k = q.shape[-2], k.shape[-2]
        if key_padding_mask is None and (not causal or T_q == 1 or T_q == T_k):
            # The kernel's own causal mask aligns top-left (s <= t), ours bottom-right: they agree
            # when T_q = T_k, and a single last query sees every key. No row is ever empty here.
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal and T_q > 1)
        mask = self._mask(q.shape[-2], k.shape[-2], causal, key_padding_mask, q.device)  # (B, 1, T_q, T_k)
        has_key = mask.any(dim=-1, keepdim=True)  # (B, 1, T_q, 1)
        # Kernels differ on empty rows (0 or NaN); let such rows see every key, then zero them.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key, dropout_p=dropout_p)
        return out.masked_fill(~has_key, 0.0)  # (B, n_heads, T_q, head_size)


@torch.no_grad()
def copy_weights_from_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy an ``nn.MultiheadAttention``'s weights into ours (same C, n_heads and bias); returns ours.

    PyTorch stacks the three input projections into one ``in_proj_weight`` (3C, C),
    in the order query, key, value; we keep three ``nn.Linear``.
    """
    if theirs.embed_dim != ours.C or theirs.num_heads != ours.n_heads:
        raise ValueError(
            f"shapes differ: ours has C={ours.C}, n_heads={ours.n_heads}; "
            f"theirs has embed_dim={theirs.embed_dim}, num_heads={theirs.num_heads}"
        )
    if theirs.bias_k is not None or theirs.add_zero_attn:
        raise ValueError("add_bias_kv and add_zero_attn have no counterpart in our MultiHeadAttention")
    ours_bias = ours.q_proj.bias is not None
    if ours_bias != (theirs.in_proj_bias is not None) or ours_bias != (theirs.out_proj.bias is not None):
        raise ValueError(f"one module has biases and the other not (ours bias={ours_bias})")
    if not theirs._qkv_same_embed_dim:
        raise ValueError(f"theirs has kdim={theirs.kdim}, vdim={theirs.vdim}; ours needs both equal to C={ours.C}")
    weights = theirs.in_proj_weight.chunk(3)  # 3 × (C, C): query, key, value
    biases = theirs.in_proj_bias.chunk(3) if ours_bias else (None, None, None)
    for linear, weight, bias in zip((ours.q_proj, ours.k_proj, ours.v_proj), weights, biases):
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    ours.out_proj.weight.copy_(theirs.out_proj.weight)
    if ours_bias:
        ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int = 64) -> torch.Tensor:
    """``softmax(q kᵀ / √d_k) v`` over blocks of keys with an online softmax, FlashAttention's idea (chapter 13).

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v); no mask. Only (T_q, block_size)
    scores exist at a time: a running maximum ``m``, a running sum of ``exp(score − m)``
    and a running weighted sum of values are kept per query, and whatever was summed
    under an older, smaller maximum is rescaled by ``exp(m_old − m_new)`` when a block
    raises it. The result equals ``F.scaled_dot_product_attention(q, k, v)`` to rounding.
    """
    block_size = check_int("block_size", block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    _check_qkv(q, k, v, None)
    if k.shape[-2] == 0:
        raise ValueError("blockwise_attention needs at least one key (T_k = 0)")
    scale = 1.0 / math.sqrt(q.shape[-1])
    running_max = q.new_full((*q.shape[:-1], 1), -math.inf)  # (..., T_q, 1)
    running_sum = q.new_zeros((*q.shape[:-1], 1))  # Σ exp(score − running_max)
    out = q.new_zeros((*q.shape[:-1], v.shape[-1]))  # Σ exp(score − running_max) · v, (..., T_q, d_v)
    for start in range(0, k.shape[-2], block_size):
        scores = q @ k[..., start:start + block_size, :].transpose(-2, -1) * scale  # (..., T_q, block)
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
        rescale = torch.exp(running_max - new_max)  # < 1 when this block raised the maximum
        weights = torch.exp(scores - new_max)  # (..., T_q, block), each ≤ 1: no overflow
        running_sum = running_sum * rescale + weights.sum(dim=-1, keepdim=True)
        out = out * rescale + weights @ v[..., start:start + block_size, :]
        running_max = new_max
    return out / running_sum  # (..., T_q, d_v)
