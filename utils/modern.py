"""The modern decoder block: from GPT-2 to Llama (chapter 15).

Every open model a reader meets today (Llama, Qwen, Mistral, Gemma, OLMo) keeps
the GPT of chapter 11 and changes four of its pieces:

* :class:`RMSNorm` instead of LayerNorm (Zhang & Sennrich, 2019): divide by the
  root mean square, no mean subtracted, no bias;
* rotary position embeddings, RoPE (Su et al., 2021), instead of added
  positions: :func:`rope_angles` and :func:`apply_rope` turn each pair of query
  and key channels by an angle proportional to the position, in either of the two
  layouts in use (``"half"``, Llama's code; ``"pairs"``, the paper's and Meta's
  original code), and :func:`pairs_to_half` is the permutation between them;
* :class:`SwiGLU`, the gated feed-forward (Shazeer, 2020), with
  :func:`swiglu_hidden_size` ≈ 8C/3 so it has the ReLU network's parameter count;
* :class:`GroupedQueryAttention` (Ainslie et al., 2023): fewer key/value heads than
  query heads (one: multi-query attention, Shazeer, 2019), with chapter 13's KV
  cache holding only the key/value heads, keys stored already rotated.

:class:`Llama` with :class:`LlamaConfig` assembles them (Touvron et al., 2023):
pre-norm blocks, no biases, a final RMSNorm, a tied or untied head. Each of the
four changes is a switch of :class:`LlamaConfig` (``norm``, ``positional``,
``feed_forward``, ``n_kv_heads``, and ``bias``), so the chapter's race can try one
at a time: with every switch set to chapter 11's choice the model computes what
:class:`utils.models.GPT` computes (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from utils import presets
from utils.attention import KVCache, causal_mask
from utils.checks import check_int, check_number, check_token_ids
from utils.layers import FeedForward, LayerNorm
from utils.positional import LearnedPositionalEmbedding

# --- RMSNorm -------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / sqrt(mean(x²) + eps) · weight`` over the last dimension, (..., C) → (..., C).

    In half precision the statistics are computed in float32 (and the result cast
    back), as for chapter 07's LayerNorm.
    """
    half = x.dtype in (torch.float16, torch.bfloat16)
    h = x.float() if half else x
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)  # (..., C): root mean square 1
    return (weight * h).to(x.dtype) if half else weight * h


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learnable gain, (..., C) → (..., C); equals ``nn.RMSNorm``.

    LayerNorm subtracts the mean, divides by the standard deviation, then scales
    and shifts. RMSNorm keeps only the division (by the root mean square, which
    is the standard deviation when the mean is 0) and the scale: one statistic
    instead of two, and no bias.
    """

    def __init__(self, C: int, eps: float = 1e-6):
        super().__init__()
        self.C = check_int("C", C, minimum=1)
        self.eps = check_number("eps", eps, minimum=0)
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.C:
            raise ValueError(f"RMSNorm({self.C}) got input of shape {tuple(x.shape)}: its last dimension must be "
                             f"{self.C}")
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.C}, eps={self.eps}"


# --- rotary position embeddings ------------------------------------------------------------

ROPE_LAYOUTS = ("half", "pairs")


def rope_frequencies(head_size: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The angle per position of each channel pair, ``theta^(-2i / head_size)``, i = 0 … head_size/2 − 1.

    In float32 this is computed exactly as Llama's code in ``transformers`` computes it.
    """
    head_size = check_int("head_size", head_size, minimum=2)
    if head_size % 2:
        raise ValueError(f"RoPE turns channels in pairs: head_size must be even, got {head_size}")
    check_number("theta", theta, minimum=1e-12)
    return 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=dtype) / head_size))  # (head_size/2,)


def rope_angles(
    positions: torch.Tensor, head_size: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles ``position · frequency``, each (T, head_size/2), for integer ``positions`` (T,).

    The angles are computed in float32, as in Llama's code (whatever the model's
    dtype), except for a float64 ``dtype``, where they are computed in float64.
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = rope_frequencies(head_size, theta, work).to(positions.device)  # (head_size/2,)
    angles = positions.to(work)[:, None] * inv_freq[None, :]  # (T, head_size/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Rotate each channel pair of x (..., T, head_size) by its angle; cos, sin (T, head_size/2).

    * ``"pairs"``: the pairs are neighbours, channels (0, 1), (2, 3), … (the paper;
      Meta's original Llama code, as complex numbers);
    * ``"half"``: channel i pairs with channel i + head_size/2 (Llama's code in
      ``transformers``, Qwen, Mistral, …).

    Pair (a, b) at angle φ becomes (a cos φ − b sin φ, b cos φ + a sin φ).
    """
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"layout must be one of {ROPE_LAYOUTS}, got {layout!r}")
    T, half = x.shape[-2], x.shape[-1] // 2
    if tuple(cos.shape) != (T, half) or tuple(sin.shape) != (T, half):
        raise ValueError(f"x of shape {tuple(x.shape)} needs cos and sin of shape (T, head_size/2) = {(T, half)}, "
                         f"got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if layout == "half":
        a, b = x[..., :half], x[..., half:]  # (..., T, head_size/2) each
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)  # (..., T, head_size)
    pairs = x.unflatten(-1, (half, 2))  # (..., T, head_size/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)  # (..., T, head_size)


def pairs_to_half(head_size: int) -> torch.Tensor:
    """The channel order that turns the ``"pairs"`` layout into the ``"half"`` one: 0, 2, 4, …, 1, 3, 5, ….

    ``apply_rope(x, ..., "pairs")[..., p] == apply_rope(x[..., p], ..., "half")`` with
    ``p = pairs_to_half(head_size)``: the first members of the pairs go to the first
    half, the second members to the second half.
    """
    head_size = check_int("head_size", head_size, minimum=2)
    if head_size % 2:
        raise ValueError(f"head_size must be even, got {head_size}")
    return torch.cat([torch.arange(0, head_size, 2), torch.arange(1, head_size, 2)])  # (head_size,)


def permute_pairs_to_half(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """A query or key projection's weight (n_heads · head_size, C) for the ``"pairs"`` layout, its rows
    reordered head by head for the ``"half"`` layout (what converting Meta's checkpoints to
    ``transformers`` does). The attention scores do not change."""
    rows = weight.shape[0]
    if rows % n_heads:
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not split into n_heads={n_heads} heads")
    order = pairs_to_half(rows // n_heads)
    return weight.view(n_heads, rows // n_heads, *weight.shape[1:])[:, order].reshape(weight.shape)


# --- SwiGLU --------------------------------------------------------------------------------


def swiglu_hidden_size(C: int, multiple_of: int = 8) -> int:
    """8C/3 rounded up to a multiple of ``multiple_of``: three (C, d_ff) matrices hold about the
    8C² numbers of the ReLU network's two (C, 4C) ones."""
    C = check_int("C", C, minimum=1)
    multiple_of = check_int("multiple_of", multiple_of, minimum=1)
    return multiple_of * math.ceil(8 * C / 3 / multiple_of)


class SwiGLU(nn.Module):
    """The gated feed-forward network: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, (..., C) → (..., C).

    ``silu(z) = z · sigmoid(z)``. The gate decides, channel by channel, how much of
    the ``up_proj`` value passes. Three matrices instead of two, so the hidden width
    is 8C/3 rather than 4C for the same parameter count (:func:`swiglu_hidden_size`).
    """

    def __init__(self, C: int, d_ff: int | None = None, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        self.C = check_int("C", C, minimum=1)
        self.d_ff = swiglu_hidden_size(C) if d_ff is None else check_int("d_ff", d_ff, minimum=1)
        self.gate_proj = nn.Linear(C, self.d_ff, bias=bias)
        self.up_proj = nn.Linear(C, self.d_ff, bias=bias)
        self.down_proj = nn.Linear(self.d_ff, C, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.C:
            raise ValueError(f"SwiGLU(C={self.C}) got input of shape {tuple(x.shape)}: its last dimension must be "
                             f"{self.C}")
        hidden = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (..., d_ff)
        return self.down_proj(self.dropout(hidden))  # (..., C)


# --- grouped-query attention ---------------------------------------------------------------


def grouped_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
    is_causal: bool = False, dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention with fewer key/value heads than query heads: q (B, n_heads, T_q, hs), k and v
    (B, n_kv_heads, T_k, hs) → (B, n_heads, T_q, hs).

    Query head h reads key/value head ``h // (n_heads / n_kv_heads)``: each key/value
    head is repeated for its group of query heads, then it is ordinary attention.
    Equal to ``F.scaled_dot_product_attention(q, k, v, ..., enable_gqa=True)``.
    """
    n_heads, n_kv_heads = q.shape[1], k.shape[1]
    if k.shape[1] != v.shape[1] or n_heads % n_kv_heads:
        raise ValueError(f"q {tuple(q.shape)} has n_heads={n_heads}; k {tuple(k.shape)} and v {tuple(v.shape)} "
                         "need the same number of key/value heads, a divisor of n_heads")
    group = n_heads // n_kv_heads
    if group > 1:
        k = k.repeat_interleave(group, dim=1)  # (B, n_heads, T_k, hs): head j serves query heads j·group …
        v = v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``n_kv_heads`` key/value heads shared by ``n_heads`` query heads.

    ``n_kv_heads = n_heads`` is chapter 04's multi-head attention, ``n_kv_heads = 1``
    multi-query attention. ``forward(x, rope=None, cache=None)``: x (B, T, C);
    ``rope`` = (cos, sin) for the T positions (then queries and keys are rotated,
    in ``rope_layout``); a :class:`~utils.attention.KVCache` receives the new keys
    (rotated) and values, (B, n_kv_heads, T, head_size): the cache holds the
    key/value heads only, and a rotated key never needs rotating again.
    """

    def __init__(self, C: int, n_heads: int, n_kv_heads: int | None = None, dropout: float = 0.0,
                 bias: bool = False, rope_layout: str = "half"):
        super().__init__()
        C, n_heads = check_int("C", C, minimum=1), check_int("n_heads", n_heads, minimum=1)
        n_kv_heads = n_heads if n_kv_heads is None else check_int("n_kv_heads", n_kv_heads, minimum=1)
        if C % n_heads:
            raise ValueError(f"C={C} is not divisible by n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}: each key/value head "
                             "serves a whole group of query heads")
        if rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {rope_layout!r}")
        self.C, self.n_heads, self.n_kv_heads = C, n_heads, n_kv_heads
        self.head_size = C // n_heads
        self.rope_layout = rope_layout
        self.q_proj = nn.Linear(C, n_heads * self.head_size, bias=bias)
        self.k_proj = nn.Linear(C, n_kv_heads * self.head_size, bias=bias)
        self.v_proj = nn.Linear(C, n_kv_heads * self.head_size, bias=bias)
        self.out_proj = nn.Linear(n_heads * self.head_size, C, bias=bias)
        self.dropout = dropout

    def extra_repr(self) -> str:
        return f"C={self.C}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_size={self.head_size}"

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.C:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (B, T, {self.C})")
        B, T, _ = x.shape
        hs = self.head_size
        q = self.q_proj(x).view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, n_heads, T, hs)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, hs).transpose(1, 2)  # (B, n_kv_heads, T, hs)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, hs).transpose(1, 2)  # (B, n_kv_heads, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope, self.rope_layout), apply_rope(k, *rope, self.rope_layout)
        start = 0
        if cache is not None:
            start = len(cache)
            k, v = cache.extend(k, v)  # (B, n_kv_heads, start + T, hs): rotated keys, cached first
        dropout_p = self.dropout if self.training else 0.0
        if start == 0 or T == 1:  # the square causal mask, or one query that sees every key
            out = grouped_query_attention(q, k, v, is_causal=T > 1, dropout_p=dropout_p)
        else:  # new queries after cached keys: the bottom-right mask of chapter 13
            out = grouped_query_attention(q, k, v, attn_mask=causal_mask(T, start + T, x.device),
                                          dropout_p=dropout_p)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * hs))  # (B, T, C)


# --- the model -----------------------------------------------------------------------------


@dataclass
class LlamaConfig:
    """Sizes and choices of the modern decoder; the defaults are Llama's choices at the CPU size.

    The four switches, each Llama's choice by default and chapter 11's GPT choice
    in brackets: ``norm`` "rms" ("layer"), ``positional`` "rope" ("learned"),
    ``feed_forward`` "swiglu" ("relu"), ``n_kv_heads`` < n_heads (= n_heads); and
    ``bias`` False (True).
    """

    vocab_size: int
    block_size: int = 64  # the longest context
    C: int = 64
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: n_heads (no grouping)
    n_layers: int = 2
    d_ff: int | None = None  # None: 8C/3 rounded up to a multiple of 8 for SwiGLU, 4C for ReLU
    dropout: float = 0.0
    tie_weights: bool = True
    rope_theta: float = 10000.0
    rope_layout: str = "half"
    norm_eps: float = 1e-5
    norm: str = "rms"  # "rms" | "layer"
    positional: str = "rope"  # "rope" | "learned"
    feed_forward: str = "swiglu"  # "swiglu" | "relu"
    bias: bool = False  # biases in every Linear but the head

    # The preset sizes, from the book's one table of presets (utils/presets.py, LLAMA).
    PRESETS = {name: preset["model"] for name, preset in presets.LLAMA.items()}

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "C", "n_heads", "n_layers"):
            check_int(name, getattr(self, name), minimum=1)
        choices = {"norm": ("rms", "layer"), "positional": ("rope", "learned"), "feed_forward": ("swiglu", "relu"),
                   "rope_layout": ROPE_LAYOUTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("tie_weights", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_number("dropout", self.dropout, minimum=0, maximum=0.999)
        check_number("rope_theta", self.rope_theta, minimum=1e-12)
        check_number("norm_eps", self.norm_eps, minimum=0)
        if self.C % self.n_heads or (self.C // self.n_heads) % 2:
            raise ValueError(f"C={self.C} must split into n_heads={self.n_heads} heads of an even head_size "
                             "(RoPE turns channels in pairs)")
        n_kv = self.n_heads if self.n_kv_heads is None else check_int("n_kv_heads", self.n_kv_heads, minimum=1)
        if self.n_heads % n_kv:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={n_kv}")

    @classmethod
    def preset(cls, name: str, **fields) -> LlamaConfig:
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **fields})


class LlamaBlock(nn.Module):
    """A pre-norm block: ``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``."""

    def __init__(self, c: LlamaConfig):
        super().__init__()
        Norm = RMSNorm if c.norm == "rms" else LayerNorm  # noqa: N806  (a class)
        self.attention_norm = Norm(c.C, eps=c.norm_eps)
        self.attention = GroupedQueryAttention(c.C, c.n_heads, c.n_kv_heads, c.dropout, c.bias, c.rope_layout)
        self.feed_forward_norm = Norm(c.C, eps=c.norm_eps)
        if c.feed_forward == "swiglu":
            self.feed_forward = SwiGLU(c.C, c.d_ff, c.dropout, c.bias)
        else:
            if not c.bias:
                raise ValueError("feed_forward='relu' is chapter 07's FeedForward, which has biases: use bias=True")
            self.feed_forward = FeedForward(c.C, c.d_ff, c.dropout)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, rope=None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), rope, cache))  # (B, T, C)
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))  # (B, T, C)


class Llama(nn.Module):
    """The modern decoder-only language model: ids (B, T) → next-token logits (B, T, V), T ≤ block_size.

    Token embedding (plus learned positions only when ``positional="learned"``),
    ``n_layers`` :class:`LlamaBlock`, a final norm and the head (tied to the
    embedding or not). ``forward(idx, cache=None)`` works with chapter 13's cache
    (:meth:`new_cache`) and :func:`utils.generate.generate`. The weights start as
    GPT-2's do (chapter 11), so the race compares architectures, not initialisations.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = c = config
        self.head_size = c.C // c.n_heads
        self.token_embedding = nn.Embedding(c.vocab_size, c.C)
        self.positions = LearnedPositionalEmbedding(c.C, c.block_size) if c.positional == "learned" else None
        self.blocks = nn.ModuleList([LlamaBlock(c) for _ in range(c.n_layers)])
        self.norm = (RMSNorm if c.norm == "rms" else LayerNorm)(c.C, eps=c.norm_eps)
        self.head = nn.Linear(c.C, c.vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.token_embedding.weight
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self, std: float = 0.02) -> None:
        """GPT-2's initialisation (chapter 11's ``init_gpt2_``): N(0, std²), the projections into the residual
        stream std / √(2 · n_layers), biases 0, norms gain 1."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.normal_(block.attention.out_proj.weight, std=std / math.sqrt(2 * self.config.n_layers))
            last = block.feed_forward.down_proj if isinstance(block.feed_forward, SwiGLU) else block.feed_forward.linear2
            nn.init.normal_(last.weight, std=std / math.sqrt(2 * self.config.n_layers))

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache for :meth:`forward`: one :class:`~utils.attention.KVCache` per block."""
        return [KVCache() for _ in self.blocks]

    def rope(self, start: int, T: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin (T, head_size/2) for positions start … start + T − 1 (None without RoPE)."""
        if self.config.positional != "rope":
            return None
        positions = torch.arange(start, start + T, device=device)
        return rope_angles(positions, self.head_size, self.config.rope_theta, dtype)

    def forward(self, idx: torch.Tensor, cache: list[KVCache] | None = None,
                logits_at: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) → logits (B, T, V). With a ``cache`` from :meth:`new_cache`, ``idx`` holds only the tokens
        after the cached ones, and the cache is extended with them.

        ``logits_at`` (bool, (B, T)): the output layer runs only where it is True and the
        logits come back as (N, V), row by row (chapter 17: an assistant is trained on its
        answers' positions only, and the (C, V) output layer is most of a small model's work)."""
        c = self.config
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2:
            raise ValueError(f"idx must be token ids of shape (B, T), got {tuple(getattr(idx, 'shape', ())) or idx!r}")
        if logits_at is not None and (not isinstance(logits_at, torch.Tensor) or logits_at.dtype != torch.bool
                                      or tuple(logits_at.shape) != tuple(idx.shape)):
            raise ValueError(f"logits_at must be a bool tensor of idx's shape {tuple(idx.shape)}, got "
                             f"{getattr(logits_at, 'dtype', type(logits_at).__name__)} "
                             f"{tuple(getattr(logits_at, 'shape', ()))}")
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"cache has {len(cache)} entries; expected one per block ({len(self.blocks)})")
        start = 0 if cache is None else len(cache[0])
        T = idx.shape[1]
        if start + T > c.block_size:
            cached = f"{start} cached positions + " if start else ""
            raise ValueError(f"{cached}T={T} tokens (shape {tuple(idx.shape)}) exceed block_size={c.block_size}; "
                             "crop the context to the last block_size tokens")
        check_token_ids(idx, c.vocab_size, "idx")
        x = self.token_embedding(idx)  # (B, T, C)
        if self.positions is not None:
            x = self.positions.dropout(x + self.positions.positions[start:start + T])  # (B, T, C)
        rope = self.rope(start, T, x.device, x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, None if cache is None else cache[i])  # (B, T, C)
        x = self.norm(x)  # (B, T, C)
        if logits_at is not None:
            x = x[logits_at.to(x.device)]  # (N, C): the positions asked for, row by row
        return self.head(x)  # (B, T, V), or (N, V)
