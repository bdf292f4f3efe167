"""The two complete models, assembled from the kept modules (chapter 10).

* :class:`Transformer` — the encoder–decoder of Vaswani et al. (2017), for
  translation: source ids ``(B, T_enc)`` and decoder input ids ``(B, T_dec)`` →
  logits ``(B, T_dec, V)``.
* :class:`GPT` — the decoder-only language model (Radford et al., 2019): ids
  ``(B, T)`` → next-token logits ``(B, T, V)``. Its stack is chapter 08's
  :class:`~utils.encoder.Encoder` run with ``causal=True``: a decoder without
  cross-attention *is* an encoder block that cannot see the future.

Nothing is written twice: embeddings are ``nn.Embedding`` (chapter 02), positions
come from :mod:`utils.positional` (chapter 03), the stacks from
:mod:`utils.encoder` (chapter 08) and :mod:`utils.decoder` (chapter 09). What is new
here is the output head, ``Linear(C → V)``, whose weight can be *tied* to the
token embedding (Press & Wolf, 2017): the same ``(V, C)`` matrix reads tokens in
and scores them out, saving ``V × C`` parameters.

Each model takes a config dataclass; ``Config.preset("cpu" | "gpu", ...)`` gives a
small model that trains in seconds on a laptop, or a bigger one for a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import KVCache, causal_mask
from utils.checks import check_int, check_number, check_token_ids
from utils.decoder import Decoder, copy_decoder_layer_from_torch
from utils.encoder import Encoder, copy_encoder_layer_from_torch
from utils.layers import ACTIVATIONS, LayerNorm, activation_function, copy_layer_norm_from_torch, layer_norm
from utils.positional import positional_encoding
from utils.train import sequence_loss  # noqa: F401  (the book's one loss, kept in chapter 02's module)


def add_positions(positions: nn.Module, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """``positions(x)`` for tokens at positions ``start, start + 1, ...`` (after a KV cache, chapter 13)."""
    if start == 0:
        return positions(x)
    T = x.shape[1]
    if start + T > positions.max_len:
        raise ValueError(f"{start} cached positions + T={T} new tokens exceed the {positions.max_len} positions "
                         "the model has; start a new cache from the last tokens")
    return positions.dropout(x + positions.positions[start:start + T])  # (B, T, C)


def count_parameters(module: nn.Module) -> int:
    """Trainable numbers in ``module``; a tied (shared) tensor is counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class _Preset:
    """``preset(name, **fields)``: a named set of sizes, overridden by ``fields``.

    The sizes are the ``model`` part of the book's one table of presets
    (:mod:`utils.presets`, table ``TABLE``), the models chapters 11 and 12 train.
    """

    TABLE = ""  # the name of this model's table in utils.presets

    def __post_init__(self):
        from dataclasses import fields

        for field in fields(self):  # sizes: whole numbers, checked here rather than deep in nn.Linear
            value = getattr(self, field.name)
            if str(field.type) in ("int", "int | None") and not (value is None and "None" in str(field.type)):
                check_int(field.name, value, minimum=0 if field.name == "pad_id" else 1)
        for name in ("norm_first", "tie_weights"):  # a truthy string or 1 would pass silently otherwise
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")

    @classmethod
    def presets(cls) -> dict[str, dict]:
        """Each preset's name and its sizes (this config's fields)."""
        from utils import presets  # pure data; read here so that chapter 10 does not depend on chapter 11

        return {name: dict(preset["model"]) for name, preset in getattr(presets, cls.TABLE).items()}

    @classmethod
    def preset(cls, name: str, **fields):
        presets = cls.presets()
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return cls(**{**presets[name], **fields})


# --- the encoder–decoder Transformer -------------------------------------------------


@dataclass
class TransformerConfig(_Preset):
    """Sizes of the encoder–decoder Transformer; the defaults are the small CPU preset."""

    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int = 64  # longest source or target sequence
    C: int = 32
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int | None = None  # None: 4C
    dropout: float = 0.0
    norm_first: bool = False  # the paper's post-norm
    final_norm: bool = False  # a LayerNorm after post-norm stacks too, as nn.Transformer has (pre-norm stacks always end with one)
    tie_weights: bool = True  # the output layer shares the target embedding's (V, C) weight
    positional: str = "sinusoidal"
    pad_id: int | None = 0  # padding token: masked in attention, ignored in the loss

    TABLE = "TRANSLATOR"  # presets: utils.presets.TRANSLATOR (cpu: 2 + 2 layers, C = 128; gpu: the paper's base)


class Transformer(nn.Module):
    """The encoder–decoder Transformer: (src (B, T_enc), tgt_in (B, T_dec)) → logits (B, T_dec, V_tgt).

    * :meth:`encode` — source ids → memory (B, T_enc, C), once per sentence;
    * :meth:`decode` — decoder input ids and memory → logits (B, T_dec, V);
    * :meth:`run_encoder` / :meth:`run_decoder` — the two stacks alone, on vectors
      (what ``nn.Transformer`` computes), for comparing with PyTorch.

    Token embeddings are multiplied by √C before positions are added (section 3.4
    of the paper); they start with standard deviation 1/√C, so the product has
    unit scale, like the sinusoidal positions.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        c = config
        for name in ("src_vocab_size", "tgt_vocab_size", "max_len"):
            check_int(name, getattr(c, name), minimum=1)
        if c.pad_id is not None and not 0 <= check_int("pad_id", c.pad_id) < min(c.src_vocab_size, c.tgt_vocab_size):
            raise ValueError(f"pad_id={c.pad_id} is not an id of both vocabularies (src_vocab_size={c.src_vocab_size}, "
                             f"tgt_vocab_size={c.tgt_vocab_size}); use pad_id=None for a model without padding")
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.C)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.C)
        for embedding in (self.src_embedding, self.tgt_embedding):
            nn.init.normal_(embedding.weight, std=c.C**-0.5)
        self.src_positions = positional_encoding(c.positional, c.C, c.max_len, c.dropout)
        self.tgt_positions = positional_encoding(c.positional, c.C, c.max_len, c.dropout)
        self.encoder = Encoder(c.n_encoder_layers, c.C, c.n_heads, c.d_ff, c.dropout, c.norm_first)
        self.decoder = Decoder(c.n_decoder_layers, c.C, c.n_heads, c.d_ff, c.dropout, c.norm_first)
        extra_norms = c.final_norm and not c.norm_first
        self.encoder_norm = LayerNorm(c.C) if extra_norms else None
        self.decoder_norm = LayerNorm(c.C) if extra_norms else None
        self.head = nn.Linear(c.C, c.tgt_vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.tgt_embedding.weight  # one (V, C) tensor, two uses

    def _embed(
        self, ids: torch.Tensor, embedding: nn.Embedding, positions: nn.Module, what: str, start: int = 0
    ) -> torch.Tensor:
        """Token ids (B, T) at positions ``start, start + 1, ...`` → vectors (B, T, C)."""
        if ids.ndim != 2:
            raise ValueError(f"{what} must be token ids of shape (B, T), got shape {tuple(ids.shape)}")
        if start == 0 and ids.shape[1] > self.config.max_len:
            raise ValueError(f"{what} has T={ids.shape[1]} tokens (shape {tuple(ids.shape)}), more than "
                             f"max_len={self.config.max_len}")
        check_token_ids(ids, embedding.num_embeddings, what)  # on a GPU a bad id would break the session
        return add_positions(positions, embedding(ids) * math.sqrt(self.config.C), start)  # (B, T, C)

    def run_encoder(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder stack on vectors (B, T_enc, C) → memory (B, T_enc, C)."""
        x = self.encoder(x, key_padding_mask=key_padding_mask)
        return x if self.encoder_norm is None else self.encoder_norm(x)

    def run_decoder(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: list[tuple[KVCache, KVCache]] | None = None,
    ) -> torch.Tensor:
        """The decoder stack on vectors (B, T_dec, C) and memory (B, T_enc, C) → (B, T_dec, C)."""
        y = self.decoder(y, memory, tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask, cache=cache)
        return y if self.decoder_norm is None else self.decoder_norm(y)

    def encode(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids (B, T_enc) → memory (B, T_enc, C)."""
        return self.run_encoder(self._embed(src, self.src_embedding, self.src_positions, "src"), src_key_padding_mask)

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        *,
        tgt_key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: list[tuple[KVCache, KVCache]] | None = None,
    ) -> torch.Tensor:
        """Decoder input ids (B, T_dec) and memory (B, T_enc, C) → logits (B, T_dec, V_tgt).

        With a ``cache`` from :meth:`new_cache` (chapter 13), ``tgt_in`` holds only the
        tokens after the cached ones, and the memory's keys and values are computed on
        the first call only.
        """
        start = 0 if cache is None else len(cache[0][0])  # positions already in the cache
        y = self._embed(tgt_in, self.tgt_embedding, self.tgt_positions, "tgt_in", start)  # (B, T_dec, C)
        y = self.run_decoder(y, memory, tgt_key_padding_mask=tgt_key_padding_mask,
                             memory_key_padding_mask=memory_key_padding_mask, cache=cache)
        return self.head(y)  # (B, T_dec, V)

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """An empty KV cache for :meth:`decode`: a (self-attention, cross-attention) pair per decoder block."""
        return [(KVCache(), KVCache()) for _ in self.decoder.blocks]

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        *,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T_dec, V_tgt). Padding masks default to ``ids == pad_id`` (True = padding)."""
        if src.ndim != 2 or tgt_in.ndim != 2 or src.shape[0] != tgt_in.shape[0]:
            raise ValueError(f"src (B, T_enc) and tgt_in (B, T_dec) need the same B; got {tuple(src.shape)} "
                             f"and {tuple(tgt_in.shape)}")
        pad_id = self.config.pad_id
        if src_key_padding_mask is None and pad_id is not None:
            src_key_padding_mask = src == pad_id  # (B, T_enc)
        if tgt_key_padding_mask is None and pad_id is not None:
            tgt_key_padding_mask = tgt_in == pad_id  # (B, T_dec)
        memory = self.encode(src, src_key_padding_mask)  # (B, T_enc, C)
        return self.decode(tgt_in, memory, tgt_key_padding_mask=tgt_key_padding_mask,
                           memory_key_padding_mask=src_key_padding_mask)


@torch.no_grad()
def copy_transformer_from_torch(ours: Transformer, theirs: nn.Transformer) -> Transformer:
    """Load an ``nn.Transformer``'s weights (both stacks and their final norms) into ours; returns ours.

    ``nn.Transformer`` has no embeddings and no output layer, only the two stacks,
    and it always ends each stack with a LayerNorm: build ours with
    ``final_norm=True`` (pre-norm stacks have that norm anyway).
    """
    c = ours.config
    if theirs.encoder.layers[0].norm_first != c.norm_first:
        raise ValueError(f"norm_first differs: ours {c.norm_first}, theirs {theirs.encoder.layers[0].norm_first}")
    if (len(theirs.encoder.layers), len(theirs.decoder.layers)) != (c.n_encoder_layers, c.n_decoder_layers):
        raise ValueError(f"layer counts differ: ours {c.n_encoder_layers} + {c.n_decoder_layers}, "
                         f"theirs {len(theirs.encoder.layers)} + {len(theirs.decoder.layers)}")
    if not (c.norm_first or c.final_norm):
        raise ValueError("nn.Transformer ends both stacks with a LayerNorm; build ours with final_norm=True")
    for block, layer in zip(ours.encoder.blocks, theirs.encoder.layers):
        copy_encoder_layer_from_torch(block, layer)
    for block, layer in zip(ours.decoder.blocks, theirs.decoder.layers):
        copy_decoder_layer_from_torch(block, layer)
    copy_layer_norm_from_torch(ours.encoder.norm if c.norm_first else ours.encoder_norm, theirs.encoder.norm)
    copy_layer_norm_from_torch(ours.decoder.norm if c.norm_first else ours.decoder_norm, theirs.decoder.norm)
    return ours


# --- the decoder-only language model --------------------------------------------------


@dataclass
class GPTConfig(_Preset):
    """Sizes of the decoder-only language model; the defaults are the small CPU preset."""

    vocab_size: int
    block_size: int = 64  # the longest context
    C: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int | None = None  # None: 4C
    dropout: float = 0.0
    norm_first: bool = True  # pre-norm, as in GPT-2
    tie_weights: bool = True
    positional: str = "learned"
    # GPT-2's own choices (chapter 16): activation="gelu_tanh"; its LayerNorms' eps is 1e-5, as ours
    activation: str = "relu"  # the feed-forward network's: "relu", "gelu" or "gelu_tanh"
    norm_eps: float = 1e-5  # every LayerNorm's epsilon

    TABLE = "GPT"  # presets: utils.presets.GPT (cpu: 2 blocks, C = 64; gpu: 6 blocks, C = 384)


class GPT(nn.Module):
    """A decoder-only language model: ids (B, T) → next-token logits (B, T, V), T ≤ block_size.

    Token embedding, positions, ``n_layers`` causal blocks (chapter 08's
    ``EncoderBlock`` with ``causal=True``), a final LayerNorm when pre-norm, and the
    output layer. The weights start as GPT-2's do (:func:`init_gpt2_`), so the
    untrained model's loss is close to log V.

    GPT-2 itself (chapter 16) is this model with ``activation="gelu_tanh"``,
    ``block_size=1024`` and its sizes: biases, learned positions, pre-norm, LayerNorm
    ε = 1e-5 and the tied head are the defaults.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        c = config
        for name in ("vocab_size", "block_size"):
            check_int(name, getattr(c, name), minimum=1)
        activation_function(c.activation)  # one clear line for an unknown name
        check_number("norm_eps", c.norm_eps, minimum=0)
        self.token_embedding = nn.Embedding(c.vocab_size, c.C)
        self.positions = positional_encoding(c.positional, c.C, c.block_size, c.dropout)
        self.stack = Encoder(c.n_layers, c.C, c.n_heads, c.d_ff, c.dropout, c.norm_first)  # run with causal=True
        for block in self.stack.blocks:  # chapter 08's blocks are built with ReLU and eps 1e-5
            block.feed_forward.activation = ACTIVATIONS[c.activation][1]()
        for module in self.stack.modules():
            if isinstance(module, LayerNorm):
                module.eps = c.norm_eps
        self.head = nn.Linear(c.C, c.vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.token_embedding.weight
        init_gpt2_(self)

    def forward(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """ids (B, T) → logits (B, T, V). With a ``cache`` from :meth:`new_cache` (chapter 13),
        ``idx`` holds only the tokens after the cached ones, and the cache is extended with them."""
        if idx.ndim != 2:
            raise ValueError(f"idx must be token ids of shape (B, T), got shape {tuple(idx.shape)}")
        start = 0 if cache is None else len(cache[0])  # positions already in the cache
        if start + idx.shape[1] > self.config.block_size:
            cached = f"{start} cached positions + " if start else ""
            raise ValueError(f"{cached}T={idx.shape[1]} tokens (shape {tuple(idx.shape)}) exceed block_size="
                             f"{self.config.block_size}; crop the context to the last block_size tokens")
        check_token_ids(idx, self.config.vocab_size, "idx")  # on a GPU a bad id would break the session
        x = add_positions(self.positions, self.token_embedding(idx), start)  # (B, T, C)
        x = self.stack(x, causal=True, cache=cache)  # (B, T, C); ends with a LayerNorm when pre-norm
        return self.head(x)  # (B, T, V)

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache for :meth:`forward`: one :class:`~utils.attention.KVCache` per block."""
        return [KVCache() for _ in self.stack.blocks]


class PackedGPT:
    """A trained :class:`GPT`'s forward pass for generation, in a few large operations (chapter 13).

    ``PackedGPT(model)(idx, cache)`` returns what ``model(idx, cache=cache)`` returns in
    eval mode (the same logits up to float rounding, and the same ``KVCache`` filled),
    with less work per token. At batch 1 a cached step is hundreds of tiny
    operators, and their fixed costs (Python, module calls, dispatch; on a GPU one
    kernel launch each) outweigh the arithmetic. So this class:

    * packs each block's three projections into one (3C, C) matrix: one product for
      q, k and v, instead of three;
    * calls the functions (``F.linear``, :func:`~utils.layers.layer_norm`,
      ``F.scaled_dot_product_attention``) directly, with no module calls, no
      dropout (eval mode) and no per-layer shape checks (the input is checked once).

    The weights are read when the object is made: make a new one after training
    further. :func:`utils.generate.generate` uses it for ``use_cache=True``.
    """

    @staticmethod
    def unpackable_layer(model: GPT) -> str | None:
        """The name of the first linear layer that is not a plain ``nn.Linear`` (e.g. one with a
        LoRA adapter, chapter 17), whose weight alone is not what it computes; None if all are."""
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and type(module) is not nn.Linear:
                return name
            if name and not isinstance(module, nn.Linear) and hasattr(module, "base") and \
                    isinstance(module.base, nn.Linear):
                return name
        return None

    def __init__(self, model: GPT):
        if type(model) is not GPT:
            raise TypeError(f"PackedGPT packs a utils.models.GPT, got {type(model).__name__}")
        layer = PackedGPT.unpackable_layer(model)
        if layer is not None:
            raise TypeError(f"PackedGPT reads plain nn.Linear weights, but {layer!r} is a "
                            f"{type(model.get_submodule(layer)).__name__}: merge it into its weight first "
                            "(utils.lora.unload_lora), or generate with packed=False")
        if model.training:
            raise ValueError("PackedGPT runs a model in eval mode (no dropout); call model.eval() first")
        self.model, self.config = model, model.config
        self.norm_first = model.config.norm_first
        self.blocks = []
        for block in model.stack.blocks:
            attention, feed_forward = block.self_attention, block.feed_forward
            projections = (attention.q_proj, attention.k_proj, attention.v_proj)
            norm1, norm2 = block.attention_residual.norm, block.feed_forward_residual.norm
            self.blocks.append((  # the tensors themselves: reading a module's attribute costs time too
                (norm1.weight, norm1.bias, norm1.eps),
                torch.cat([p.weight for p in projections]).detach(),  # (3C, C): q, k, v in one matrix
                torch.cat([p.bias for p in projections]).detach(),  # (3C,)
                attention.out_proj.weight, attention.out_proj.bias, attention.n_heads,
                (norm2.weight, norm2.bias, norm2.eps),
                feed_forward.linear1.weight, feed_forward.linear1.bias,
                feed_forward.linear2.weight, feed_forward.linear2.bias,
            ))
        self.final_norm = None if model.stack.norm is None else (
            model.stack.norm.weight, model.stack.norm.bias, model.stack.norm.eps)
        self.activation = activation_function(model.config.activation)  # F.relu, or GPT-2's GELU
        self.token_table, self.position_table = model.token_embedding.weight, model.positions.positions
        self.head_weight = model.head.weight

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, the model's own (:meth:`GPT.new_cache`)."""
        return self.model.new_cache()

    def __call__(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """ids (B, T) after the ``cache``'s positions → logits (B, T, V); the cache is extended."""
        c = self.config
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2:
            raise ValueError(f"idx must be token ids of shape (B, T), got {tuple(getattr(idx, 'shape', ())) or idx!r}")
        if cache is not None and len(cache) != len(self.blocks):
            raise ValueError(f"cache has {len(cache)} entries; expected one per block ({len(self.blocks)})")
        start = 0 if cache is None else len(cache[0])
        B, T = idx.shape
        if start + T > c.block_size:
            raise ValueError(f"{start} cached positions + T={T} tokens exceed block_size={c.block_size}")
        check_token_ids(idx, c.vocab_size, "idx")
        x = F.embedding(idx, self.token_table) + self.position_table[start:start + T]  # (B, T, C)
        for i, (norm1, qkv_weight, qkv_bias, out_weight, out_bias, n_heads, norm2, weight1, bias1, weight2,
                bias2) in enumerate(self.blocks):
            h = layer_norm(x, *norm1) if self.norm_first else x
            q, k, v = F.linear(h, qkv_weight, qkv_bias).view(B, T, 3, n_heads, -1).unbind(2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, n_heads, T, head_size)
            if cache is not None:
                k, v = cache[i].extend(k, v)  # (B, n_heads, start + T, head_size)
            if T == 1 or start == 0:  # one query sees every key; no cache: the square causal mask
                out = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
            else:  # new queries after cached keys: the bottom-right mask
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, start + T, x.device))
            out = F.linear(out.transpose(1, 2).reshape(B, T, c.C), out_weight, out_bias)  # (B, T, C)
            x = x + out if self.norm_first else layer_norm(x + out, *norm1)
            h = layer_norm(x, *norm2) if self.norm_first else x
            out = F.linear(self.activation(F.linear(h, weight1, bias1)), weight2, bias2)  # (B, T, C)
            x = x + out if self.norm_first else layer_norm(x + out, *norm2)
        if self.final_norm is not None:
            x = layer_norm(x, *self.final_norm)
        return F.linear(x, self.head_weight)  # (B, T, V)


@torch.no_grad()
def init_gpt2_(model: GPT, std: float = 0.02) -> GPT:
    """GPT-2's initialisation (Radford et al., 2019), in place; returns the model (chapter 11).

    Every ``Linear`` weight and embedding table is drawn from N(0, std²), biases
    are 0 and LayerNorms are left at gain 1, bias 0. The two projections that write
    into the residual stream in each block (attention's ``out_proj`` and the
    feed-forward ``linear2``) get std / √(2 · n_layers): the stream adds 2 · n_layers
    such outputs, and their sum should keep the scale of one.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    residual_std = std / math.sqrt(2 * model.config.n_layers)
    for block in model.stack.blocks:
        nn.init.normal_(block.self_attention.out_proj.weight, std=residual_std)
        nn.init.normal_(block.feed_forward.linear2.weight, std=residual_std)
    return model


def __getattr__(name: str):
    """``utils.models.Llama`` and ``utils.models.LlamaConfig``: chapter 15's model, kept in :mod:`utils.modern`.

    Looked up on first use rather than imported at the top, so that :mod:`utils.modern`
    (a later chapter) may import from this module without an import cycle.
    """
    if name in ("Llama", "LlamaConfig"):
        from utils import modern

        return getattr(modern, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
