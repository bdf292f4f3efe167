"""The Transformer encoder: its block and the stack of N blocks (chapter 08).

An encoder block is multi-head self-attention (chapters 04–05) and the position-wise
feed-forward network (chapter 07), each wrapped in a residual connection with
LayerNorm (chapter 07)::

    post-norm (the paper):  x = norm1(x + dropout(self_attention(x)))
                            x = norm2(x + dropout(feed_forward(x)))
    pre-norm:               x = x + dropout(self_attention(norm1(x)))
                            x = x + dropout(feed_forward(norm2(x)))

That is exactly ``nn.TransformerEncoderLayer`` (``activation="relu"``,
``batch_first=True``), dropout included, and :func:`copy_encoder_layer_from_torch`
/ :func:`copy_encoder_from_torch` load PyTorch's weights so chapter 08 can prove
the two equal. With ``causal=True`` a block sees only the past: that is the block
of a decoder-only language model (GPT, chapter 10).

:class:`Encoder` stacks ``n_layers`` blocks. A pre-norm stack ends with one more
LayerNorm, because its residual stream is never normalised on the way
(``nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(C))``); a post-norm
stack already ends with one.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.attention import KVCache, MultiHeadAttention, copy_weights_from_torch
from utils.checks import check_int
from utils.layers import FeedForward, LayerNorm, Residual, copy_layer_norm_from_torch


class EncoderBlock(nn.Module):
    """Self-attention then feed-forward, each with a residual connection and LayerNorm: (B, T, C) → (B, T, C)."""

    def __init__(self, C: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(C, n_heads, dropout=dropout)  # dropout on the attention weights
        self.attention_residual = Residual(C, dropout, norm_first)
        self.feed_forward = FeedForward(C, d_ff, dropout)
        self.feed_forward_residual = Residual(C, dropout, norm_first)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, C); ``key_padding_mask`` (B, T) bool, True = padding; ``causal=True`` hides the future.

        ``cache`` (chapter 13): the keys and values of earlier positions, extended with x's.
        """
        x = self.attention_residual(
            x, lambda h: self.self_attention(h, causal=causal, key_padding_mask=key_padding_mask, cache=cache))
        return self.feed_forward_residual(x, self.feed_forward)  # (B, T, C)


class Encoder(nn.Module):
    """A stack of ``n_layers`` encoder blocks, plus a final LayerNorm when ``norm_first``: (B, T, C) → (B, T, C)."""

    def __init__(
        self,
        n_layers: int,
        C: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = False,
    ):
        super().__init__()
        if check_int("n_layers", n_layers) < 1:
            raise ValueError(f"an encoder needs n_layers >= 1, got {n_layers}")
        self.norm_first = norm_first
        self.blocks = nn.ModuleList(EncoderBlock(C, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = LayerNorm(C) if norm_first else None

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """``cache``: one :class:`~utils.attention.KVCache` per block (chapter 13), or None."""
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"cache has {len(cache)} entries; expected one per block ({len(self.blocks)})")
        for i, block in enumerate(self.blocks):
            x = block(x, key_padding_mask=key_padding_mask, causal=causal,
                      cache=None if cache is None else cache[i])  # (B, T, C)
        return x if self.norm is None else self.norm(x)


@torch.no_grad()
def copy_encoder_layer_from_torch(ours: EncoderBlock, theirs: nn.TransformerEncoderLayer) -> EncoderBlock:
    """Load an ``nn.TransformerEncoderLayer``'s weights into our block; returns ours.

    Both must agree on C, n_heads, d_ff and ``norm_first``; theirs must use ReLU and
    biases. (``batch_first`` does not change the weights, but give ``batch_first=True``
    to PyTorch's layer so it reads (B, T, C) like ours.)
    """
    if theirs.norm_first != ours.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, theirs {theirs.norm_first}")
    if getattr(theirs, "activation_relu_or_gelu", 1) != 1:
        raise ValueError(f"theirs uses activation {theirs.activation}; ours uses ReLU")
    if theirs.linear1.bias is None:
        raise ValueError("theirs was built with bias=False; ours has biases")
    if theirs.linear1.weight.shape != ours.feed_forward.linear1.weight.shape:
        raise ValueError(
            f"feed-forward shapes differ: ours linear1 {tuple(ours.feed_forward.linear1.weight.shape)} (d_ff, C), "
            f"theirs {tuple(theirs.linear1.weight.shape)}"
        )
    copy_weights_from_torch(ours.self_attention, theirs.self_attn)
    for name in ("linear1", "linear2"):
        getattr(ours.feed_forward, name).load_state_dict(getattr(theirs, name).state_dict())
    copy_layer_norm_from_torch(ours.attention_residual.norm, theirs.norm1)
    copy_layer_norm_from_torch(ours.feed_forward_residual.norm, theirs.norm2)
    return ours


@torch.no_grad()
def copy_encoder_from_torch(ours: Encoder, theirs: nn.TransformerEncoder) -> Encoder:
    """Load an ``nn.TransformerEncoder``'s weights (every layer, and its final ``norm``) into ours; returns ours.

    Our pre-norm encoder ends with a LayerNorm and our post-norm one does not, so
    build theirs as ``nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(C))``
    for ``norm_first=True`` and without ``norm`` otherwise.
    """
    if len(theirs.layers) != len(ours.blocks):
        raise ValueError(f"layer counts differ: ours has {len(ours.blocks)} blocks, theirs {len(theirs.layers)} layers")
    if (theirs.norm is None) != (ours.norm is None):
        raise ValueError(
            f"final norm differs: ours {'has' if ours.norm is not None else 'has no'} final LayerNorm "
            f"(norm_first={ours.norm_first}), theirs {'has' if theirs.norm is not None else 'has none'}; "
            "pass norm=nn.LayerNorm(C) to nn.TransformerEncoder exactly when norm_first=True"
        )
    for block, layer in zip(ours.blocks, theirs.layers):
        copy_encoder_layer_from_torch(block, layer)
    if ours.norm is not None:
        copy_layer_norm_from_torch(ours.norm, theirs.norm)
    return ours
