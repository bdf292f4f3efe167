"""Positional encodings: telling the model where each token sits (chapter 03).

Attention treats its input as a set: permute the tokens and the outputs are permuted
the same way. To let word order matter, the book adds a vector that depends only on
the position to every token embedding, before the first block. Two kinds, with one
interface:

* :class:`SinusoidalPositionalEncoding`, the fixed sines and cosines of Vaswani et
  al. (2017), computed by :func:`sinusoidal_positions`; nothing to learn, and
  defined for any position;
* :class:`LearnedPositionalEmbedding`, one learned vector per position, as in GPT;
  ``max_len * C`` parameters, and nothing for positions it never saw.

Both map activations ``x`` of shape ``(B, T, C)`` to ``x + positions[:T]`` (then
dropout), shape ``(B, T, C)``. :func:`positional_encoding` builds either by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.checks import check_int


def sinusoidal_positions(T: int, C: int, base: float = 10000.0) -> torch.Tensor:
    """The (T, C) table of "Attention Is All You Need", section 3.5.

    ``PE[pos, 2i] = sin(pos / base^(2i/C))`` and ``PE[pos, 2i+1] = cos(pos / base^(2i/C))``:
    even dimensions hold sines, odd dimensions cosines, and dimension pair ``i`` turns at
    angular frequency ``base^(-2i/C)``, from one radian per position down to about
    ``1/base``. For an odd ``C`` the last dimension is a sine without its cosine.
    """
    if check_int("T", T) < 0 or check_int("C", C) < 1:
        raise ValueError(f"need T >= 0 positions and C >= 1 dimensions, got T={T}, C={C}")
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0):
        raise ValueError(f"base must be a finite positive number, got {base!r}")
    position = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    frequency = torch.exp(torch.arange(0, C, 2, dtype=torch.float32) * (-math.log(base) / C))  # (ceil(C/2),)
    angle = position * frequency  # (T, ceil(C/2))
    positions = torch.zeros(T, C)
    positions[:, 0::2] = torch.sin(angle)
    positions[:, 1::2] = torch.cos(angle[:, : C // 2])
    return positions


class _AddPositions(nn.Module):
    """What both encodings share: check the input, add ``positions[:T]``, apply dropout."""

    positions: torch.Tensor  # (max_len, C), set by the subclass

    def __init__(self, C: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        if check_int("C", C) < 1 or check_int("max_len", max_len) < 1:
            raise ValueError(f"need C >= 1 and max_len >= 1, got C={C}, max_len={max_len}")
        self.C = C
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"expected activations of shape (B, T, C), got shape {tuple(x.shape)}")
        B, T, C = x.shape
        if C != self.C:
            raise ValueError(f"input width C={C} (shape {tuple(x.shape)}) differs from this encoding's C={self.C}")
        if T > self.max_len:
            raise ValueError(
                f"sequence length T={T} (shape {tuple(x.shape)}) exceeds max_len={self.max_len} "
                f"of {type(self).__name__}"
            )
        return self.dropout(x + self.positions[:T])  # (B, T, C) + (T, C) broadcasts over the batch

    def extra_repr(self) -> str:
        return f"C={self.C}, max_len={self.max_len}"


class SinusoidalPositionalEncoding(_AddPositions):
    """Adds the fixed sinusoidal table: ``(B, T, C) -> (B, T, C)``; no parameters.

    The table is a buffer (it moves with ``.to(device)``) that is not saved in the
    ``state_dict``, since it is recomputed from ``C`` and ``max_len``.
    """

    def __init__(self, C: int, max_len: int, dropout: float = 0.0, base: float = 10000.0):
        super().__init__(C, max_len, dropout)
        self.register_buffer("positions", sinusoidal_positions(max_len, C, base), persistent=False)


class LearnedPositionalEmbedding(_AddPositions):
    """Adds one learned vector per position: ``(B, T, C) -> (B, T, C)``; ``max_len * C`` parameters.

    The vectors are the rows of ``self.embedding``, an ``nn.Embedding(max_len, C)``
    initialised like any embedding table (standard normal); training shapes them.
    """

    def __init__(self, C: int, max_len: int, dropout: float = 0.0):
        super().__init__(C, max_len, dropout)
        self.embedding = nn.Embedding(max_len, C)

    @property
    def positions(self) -> torch.Tensor:
        return self.embedding.weight  # (max_len, C)


def positional_encoding(kind: str, C: int, max_len: int, dropout: float = 0.0) -> nn.Module:
    """``"sinusoidal"`` or ``"learned"`` positions for width ``C`` and up to ``max_len`` tokens."""
    kinds = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEmbedding}
    if kind not in kinds:
        raise ValueError(f"kind must be 'sinusoidal' or 'learned', not {kind!r}")
    return kinds[kind](C, max_len, dropout)
