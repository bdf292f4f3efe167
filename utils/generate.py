"""Decoding: turning next-token logits into tokens, one at a time (chapter 10).

A trained model gives, at every step, logits ``(B, V)`` for the next token. How we
pick from them is the *decoding strategy*:

* :func:`greedy` takes the most likely token (deterministic);
* temperature divides the logits before the softmax: below 1 it sharpens the
  distribution, above 1 it flattens it, and as it goes to 0 sampling becomes greedy;
* :func:`top_k_filter` keeps only the ``k`` most likely tokens;
* :func:`top_p_filter` (nucleus sampling, Holtzman et al., 2020) keeps the smallest
  set of most likely tokens whose probabilities add up to at least ``p``.

:func:`sample_next` combines them; :func:`generate` runs the loop for a decoder-only
language model (ids ``(B, T)`` → logits ``(B, T, V)``); :func:`greedy_translate`
runs it for the encoder–decoder Transformer, stopping at ``<EOS>``.
Filters set the logits of excluded tokens to ``-inf``, so softmax gives them
probability exactly 0. Everything runs on whatever device the logits live on.
"""

from __future__ import annotations

import torch


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 1:
        raise ValueError(f"logits must be a tensor (..., V), got {getattr(logits, 'shape', type(logits))}")
    if not torch.is_floating_point(logits):
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token: logits (..., V) -> ids (...)."""
    _check_logits(logits)
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature (temperature > 0): < 1 sharpens, > 1 flattens the softmax."""
    _check_logits(logits)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 here (0 means greedy), got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (exactly k, ties broken by torch.topk); the rest become -inf."""
    _check_logits(logits)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top-k needs an integer k >= 1, got {k!r}")
    k = min(k, logits.shape[-1])
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, torch.topk(logits, k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass is >= p.

    Sort the probabilities from large to small; token number i (in that order) is
    kept when the mass of the tokens *before* it is still below p. So the most
    likely token is always kept, and the kept prefix is the shortest one that
    reaches p.
    """
    _check_logits(logits)
    if not 0 < p <= 1:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (..., V)
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False  # never drop the most likely token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row of logits (B, V) -> ids (B,).

    ``temperature=0`` means greedy. Temperature is applied first, then top-k, then
    top-p. ``generator`` makes the draw reproducible; it may live on another device
    than the logits (a CPU generator works with CUDA logits).
    """
    _check_logits(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample_next expects logits of shape (B, V), got {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return greedy(logits)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
    where = generator.device if generator is not None else probs.device
    ids = torch.multinomial(probs.to(where), num_samples=1, generator=generator)  # (B, 1)
    return ids[:, 0].to(logits.device)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    block_size: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ids (B, T) by up to ``max_new_tokens`` tokens with a decoder-only model.

    The model maps ids (B, T) to logits (B, T, V); only the last position's logits
    are used. The context is cropped to the last ``block_size`` tokens (default:
    ``model.config.block_size`` when the model has one). With ``eos_id``, the loop
    stops once every row has produced it (rows that finished early are filled with
    ``eos_id``). Returns ids (B, T + number of new tokens).
    """
    if idx.ndim != 2:
        raise ValueError(f"idx must be token ids of shape (B, T), got {tuple(idx.shape)}")
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
    was_training = model.training
    model.eval()
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        context = idx if block_size is None else idx[:, -block_size:]  # (B, <= block_size)
        logits = model(context)[:, -1, :]  # (B, V): the prediction for the next position
        next_id = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if eos_id is not None:
            next_id = next_id.masked_fill(finished, eos_id)
            finished |= next_id == eos_id
        idx = torch.cat([idx, next_id[:, None]], dim=1)  # (B, T + 1)
        if eos_id is not None and finished.all():
            break
    model.train(was_training)
    return idx


@torch.no_grad()
def greedy_translate(
    model: torch.nn.Module,
    src: torch.Tensor,
    *,
    sos_id: int,
    eos_id: int,
    pad_id: int = 0,
    max_len: int = 50,
    src_key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy decoding with an encoder–decoder model, stopping at ``<EOS>``.

    ``model.encode(src, src_key_padding_mask)`` gives the memory (B, T_enc, C) once;
    ``model.decode(tgt_in, memory, memory_key_padding_mask=...)`` gives logits
    (B, T_dec, V) for the target so far. Starts every row with ``sos_id`` and adds
    the most likely token until each row has produced ``eos_id`` or ``max_len`` new
    tokens were made. Returns ids (B, 1 + n) beginning with ``<SOS>``; after a row's
    ``<EOS>`` come ``pad_id`` tokens.
    """
    if src.ndim != 2:
        raise ValueError(f"src must be token ids of shape (B, T_enc), got {tuple(src.shape)}")
    if src_key_padding_mask is None:
        src_key_padding_mask = src == pad_id  # (B, T_enc), True at padding
    was_training = model.training
    model.eval()
    memory = model.encode(src, src_key_padding_mask=src_key_padding_mask)  # (B, T_enc, C)
    out = torch.full((src.shape[0], 1), sos_id, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = model.decode(out, memory, memory_key_padding_mask=src_key_padding_mask)[:, -1, :]  # (B, V)
        next_id = greedy(logits).masked_fill(finished, pad_id)  # (B,)
        out = torch.cat([out, next_id[:, None]], dim=1)
        finished |= next_id == eos_id
        if finished.all():
            break
    model.train(was_training)
    return out
