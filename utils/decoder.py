"""The Transformer decoder: its block and the stack of N blocks (chapter 09).

A decoder block has three sublayers, each wrapped in a residual connection with
LayerNorm (chapter 07)::

    post-norm (the paper):  x = norm1(x + dropout(masked_self_attention(x)))
                            x = norm2(x + dropout(cross_attention(x, memory)))
                            x = norm3(x + dropout(feed_forward(x)))

(pre-norm moves each norm in front of its sublayer, as in chapter 08). The masked
self-attention lets target position t see positions ≤ t only (chapter 05); the
cross-attention takes its queries from the decoder and its keys and values from
the encoder's output, the *memory* (chapter 06). Every piece is imported, none is
written again: :class:`~utils.attention.MultiHeadAttention`,
:class:`~utils.layers.FeedForward`, :class:`~utils.layers.Residual`.

That is exactly ``nn.TransformerDecoderLayer`` (``activation="relu"``,
``batch_first=True``), dropout included; :func:`copy_decoder_layer_from_torch` and
:func:`copy_decoder_from_torch` load PyTorch's weights so chapter 09 can prove the
two equal. :class:`Decoder` stacks ``n_layers`` blocks and, like chapter 08's
``Encoder``, ends with one more LayerNorm when ``norm_first``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import KVCache, MultiHeadAttention, copy_weights_from_torch
from utils.checks import check_int
from utils.layers import FeedForward, LayerNorm, Residual, copy_layer_norm_from_torch


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to the memory, feed-forward: (B, T_dec, C) → (B, T_dec, C)."""

    def __init__(self, C: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.C = C
        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(C, n_heads, dropout=dropout)
        self.self_attention_residual = Residual(C, dropout, norm_first)
        self.cross_attention = MultiHeadAttention(C, n_heads, dropout=dropout)
        self.cross_attention_residual = Residual(C, dropout, norm_first)
        self.feed_forward = FeedForward(C, d_ff, dropout)
        self.feed_forward_residual = Residual(C, dropout, norm_first)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        return_weights: bool = False,
        cache: tuple[KVCache, KVCache] | None = None,
    ):
        """x (B, T_dec, C), memory (B, T_enc, C); padding masks (B, T_dec) and (B, T_enc), True = padding.

        Returns (B, T_dec, C); with ``return_weights=True`` also the attention weights
        ``{"self": (B, n_heads, T_dec, T_dec), "cross": (B, n_heads, T_dec, T_enc)}``.
        ``cache`` (chapter 13): a pair of :class:`~utils.attention.KVCache`, for the
        self-attention (extended with x's keys and values; ``tgt_key_padding_mask`` then
        covers the cached positions too) and the cross-attention (the memory's, computed once).
        """
        self_cache, cross_cache = (None, None) if cache is None else cache
        if x.ndim != 3 or x.shape[-1] != self.C:
            raise ValueError(f"decoder input has shape {tuple(x.shape)}; expected (B, T_dec, {self.C})")
        if memory.ndim != 3 or memory.shape[0] != x.shape[0] or memory.shape[-1] != self.C:
            raise ValueError(
                f"memory (the encoder output) has shape {tuple(memory.shape)}; expected (B, T_enc, C) = "
                f"({x.shape[0]}, T_enc, {self.C}) to match the decoder input of shape {tuple(x.shape)}"
            )
        weights = {}

        def attend(name: str, attention: MultiHeadAttention, **kwargs):
            def sublayer(h: torch.Tensor) -> torch.Tensor:
                if not return_weights:
                    return attention(h, **kwargs)
                out, weights[name] = attention(h, **kwargs, return_weights=True)
                return out

            return sublayer

        x = self.self_attention_residual(  # position t sees target positions <= t only
            x, attend("self", self.self_attention, causal=True, key_padding_mask=tgt_key_padding_mask,
                      cache=self_cache))
        x = self.cross_attention_residual(  # queries from x, keys and values from the memory
            x, attend("cross", self.cross_attention, key_value=memory, key_padding_mask=memory_key_padding_mask,
                      cache=cross_cache))
        x = self.feed_forward_residual(x, self.feed_forward)  # (B, T_dec, C)
        return (x, weights) if return_weights else x


class Decoder(nn.Module):
    """A stack of ``n_layers`` decoder blocks, plus a final LayerNorm when ``norm_first``: (B, T_dec, C) → (B, T_dec, C)."""

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
            raise ValueError(f"a decoder needs n_layers >= 1, got {n_layers}")
        self.norm_first = norm_first
        self.blocks = nn.ModuleList(DecoderBlock(C, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = LayerNorm(C) if norm_first else None

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: list[tuple[KVCache, KVCache]] | None = None,
    ) -> torch.Tensor:
        """Every block reads the same memory (B, T_enc, C), the encoder's final output.

        ``cache``: one (self, cross) pair of :class:`~utils.attention.KVCache` per block (chapter 13), or None.
        """
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"cache has {len(cache)} entries; expected one (self, cross) pair per block "
                             f"({len(self.blocks)})")
        for i, block in enumerate(self.blocks):
            x = block(x, memory, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      cache=None if cache is None else cache[i])  # (B, T_dec, C)
        return x if self.norm is None else self.norm(x)


@torch.no_grad()
def copy_decoder_layer_from_torch(ours: DecoderBlock, theirs: nn.TransformerDecoderLayer) -> DecoderBlock:
    """Load an ``nn.TransformerDecoderLayer``'s weights into our block; returns ours.

    Both must agree on C, n_heads, d_ff and ``norm_first``; theirs must use ReLU and
    biases (build it with ``batch_first=True`` so it reads (B, T, C) like ours).
    PyTorch calls the cross-attention ``multihead_attn``.
    """
    if theirs.norm_first != ours.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, theirs {theirs.norm_first}")
    if not (theirs.activation is F.relu or isinstance(theirs.activation, nn.ReLU)):
        raise ValueError(f"theirs uses activation {theirs.activation}; ours uses ReLU")
    if theirs.linear1.bias is None:
        raise ValueError("theirs was built with bias=False; ours has biases")
    if theirs.linear1.weight.shape != ours.feed_forward.linear1.weight.shape:
        raise ValueError(
            f"feed-forward shapes differ: ours linear1 {tuple(ours.feed_forward.linear1.weight.shape)} (d_ff, C), "
            f"theirs {tuple(theirs.linear1.weight.shape)}"
        )
    copy_weights_from_torch(ours.self_attention, theirs.self_attn)
    copy_weights_from_torch(ours.cross_attention, theirs.multihead_attn)
    for name in ("linear1", "linear2"):
        getattr(ours.feed_forward, name).load_state_dict(getattr(theirs, name).state_dict())
    copy_layer_norm_from_torch(ours.self_attention_residual.norm, theirs.norm1)
    copy_layer_norm_from_torch(ours.cross_attention_residual.norm, theirs.norm2)
    copy_layer_norm_from_torch(ours.feed_forward_residual.norm, theirs.norm3)
    return ours


@torch.no_grad()
def copy_decoder_from_torch(ours: Decoder, theirs: nn.TransformerDecoder) -> Decoder:
    """Load an ``nn.TransformerDecoder``'s weights (every layer, and its final ``norm``) into ours; returns ours.

    As for the encoder: build theirs as ``nn.TransformerDecoder(layer, n_layers, norm=nn.LayerNorm(C))``
    for ``norm_first=True`` and without ``norm`` otherwise.
    """
    if len(theirs.layers) != len(ours.blocks):
        raise ValueError(f"layer counts differ: ours has {len(ours.blocks)} blocks, theirs {len(theirs.layers)} layers")
    if (theirs.norm is None) != (ours.norm is None):
        raise ValueError(
            f"final norm differs: ours {'has' if ours.norm is not None else 'has no'} final LayerNorm "
            f"(norm_first={ours.norm_first}), theirs {'has' if theirs.norm is not None else 'has none'}; "
            "pass norm=nn.LayerNorm(C) to nn.TransformerDecoder exactly when norm_first=True"
        )
    for block, layer in zip(ours.blocks, theirs.layers):
        copy_decoder_layer_from_torch(block, layer)
    if ours.norm is not None:
        copy_layer_norm_from_torch(ours.norm, theirs.norm)
    return ours
