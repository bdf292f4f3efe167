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
runs it for the encoder–decoder Transformer, stopping at ``<EOS>``. With
``use_cache=True`` both loops keep each layer's keys and values between steps (the
KV cache of chapter 13) and feed the model only the newest token.
Filters set the logits of excluded tokens to ``-inf``, so softmax gives them
probability exactly 0. The decoding loops take the device from the model
(:func:`model_device`): ids built on the CPU may be handed to a model on a GPU, and
the result stays on the model's device.
Temperature, filters and softmax work in float32 (top-p's running sum in float64)
whatever the logits' dtype: in half precision (a GPU under autocast) ``logits / 1e-4``
overflows and a running sum of probabilities is off by a percent, so fp16 and bf16
logits give the float32 answer.
"""

from __future__ import annotations

import math

import torch

from utils.checks import check_int, check_number, check_token_ids


def model_device(model, default: torch.device | str | None = None) -> torch.device:
    """The device of the model's first parameter (or buffer); ``default`` (else the CPU) without any."""
    for tensors in (getattr(model, "parameters", None), getattr(model, "buffers", None)):
        for tensor in tensors() if tensors is not None else ():
            return tensor.device
    return torch.device(default if default is not None else "cpu")


def _checked_to(ids: torch.Tensor, device: torch.device, vocab_size: int | None, name: str) -> torch.Tensor:
    """ids moved to ``device``, their values checked first while they are still on the CPU.

    The model checks them too, but only on the CPU: reading a GPU tensor's values back
    would cost a host sync at every step (see :func:`utils.checks.check_token_ids`).
    """
    if vocab_size is not None:
        check_token_ids(ids, vocab_size, name)
    return ids.to(device)


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 1:
        raise ValueError(f"logits must be a tensor (..., V), got {getattr(logits, 'shape', type(logits))}")
    if not torch.is_floating_point(logits):
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token: logits (..., V) -> ids (...). NaN logits raise (argmax would pick them)."""
    _check_logits(logits)
    if torch.isnan(logits).any():
        row = tuple(torch.isnan(logits).any(dim=-1).nonzero()[0].tolist())
        raise ValueError(f"the logits of row {row} contain NaN: there is no most likely token")
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature (temperature > 0), in float32: < 1 sharpens, > 1 flattens the softmax.

    Each row's maximum is subtracted first (the softmax is the same): the largest
    logit becomes 0 and stays 0, the others become negative and, as the temperature
    goes to 0, tend to -inf. So a tiny temperature (1e-38, whose quotients would
    overflow to inf, or one below float32's range) gives greedy's answer, not NaN.
    """
    _check_logits(logits)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0 here (0 means greedy), got {temperature!r}")
    logits = logits.float()  # in fp16, logits / 1e-4 would overflow to inf
    shifted = logits - logits.amax(dim=-1, keepdim=True)  # <= 0; a row of -inf or NaN stays NaN (refused later)
    # 0 / T is 0, also where T underflows to 0 in float32 (0 / 0 would be NaN)
    return torch.where(shifted == 0, shifted, shifted / temperature)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (exactly k, ties broken by torch.topk); the rest become -inf."""
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top-k needs an integer k >= 1, got {k!r}")
    k = min(k, logits.shape[-1])
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, torch.topk(logits, k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass is >= p.

    Sort the probabilities from large to small; token number i (in that order) is
    kept when the mass of the tokens *before* it is still below p. So the most
    likely token is always kept, and the kept prefix is the shortest one that
    reaches p. ``p = 1`` keeps every token. The probabilities and their running sum
    are computed in float64 whatever the logits' dtype (float32 on Apple's MPS, which
    has no float64); the logits returned keep their dtype.
    """
    _check_logits(logits)
    if not (isinstance(p, (int, float)) and 0 < p <= 1):
        raise ValueError(f"top-p needs 0 < p <= 1, got {p!r}")
    if p == 1:
        # Every token: a float32 running sum over 50,257 probabilities reaches 1.0
        # before the last ones are added, and would drop them.
        return logits.clone()
    # A float32 running sum over 50,257 probabilities drifts by more than 1e-6: enough to
    # stop short of p. float64 where the device has it.
    exact = torch.float32 if logits.device.type == "mps" else torch.float64
    sorted_logits, order = torch.sort(logits.to(exact), dim=-1, descending=True)  # (..., V)
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
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return greedy(logits)
    logits = apply_temperature(logits, temperature)  # float32 from here on
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if not torch.isfinite(probs).all():
        bad = (~torch.isfinite(probs)).any(dim=-1).nonzero()[0, 0].item()
        raise ValueError(f"the logits of row {bad} are NaN, +inf or all -inf: there is no distribution to sample")
    where = generator.device if generator is not None else probs.device
    ids = torch.multinomial(probs.to(where), num_samples=1, generator=generator)  # (B, 1)
    return ids[:, 0].to(logits.device)


def _check_sampling(temperature, top_k, top_p) -> None:
    """The sampling arguments, checked before anything runs (also when 0 tokens are asked for)."""
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                                             and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not (isinstance(top_p, (int, float)) and 0 < top_p <= 1)):
        raise ValueError(f"top_p must be None or a number with 0 < top_p <= 1, got {top_p!r}")


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
    use_cache: bool = False,
    packed: bool = True,
) -> torch.Tensor:
    """Extend ids (B, T) by up to ``max_new_tokens`` tokens with a decoder-only model.

    The model maps ids (B, T) to logits (B, T, V); only the last position's logits
    are used. The context is cropped to the last ``block_size`` tokens (default:
    ``model.config.block_size`` when the model has one). With ``eos_id``, the loop
    stops once every row has produced it (rows that finished early are filled with
    ``eos_id``). Returns ids (B, T + number of new tokens). The model is put in
    eval mode and given back in its own mode afterwards, even when a step fails.

    ``use_cache=True`` (chapter 13) needs a model with ``new_cache()`` and
    ``model(ids, cache=...)``, like :class:`~utils.models.GPT`: the prompt (its last
    ``block_size`` tokens) fills the cache once, then each step feeds only the newest
    token. The logits equal the uncached loop's while the text fits in ``block_size``.
    Once the cache holds ``block_size`` positions there is no position left for the
    next token, so the window slides by half a block: a new cache is filled from the
    last ``block_size // 2`` tokens. From there on each prediction sees between half a
    block and a block of context, where the uncached loop always sees the last
    ``block_size`` tokens (and pays for recomputing all of them at every step). For
    a :class:`~utils.models.GPT` the cached steps run through
    :class:`~utils.models.PackedGPT` (``packed=False``: through the model's own
    modules): the same logits, with fewer and larger operations per token.
    """
    if not isinstance(idx, torch.Tensor) or idx.ndim != 2:
        raise ValueError(f"idx must be token ids of shape (B, T), got {tuple(getattr(idx, 'shape', ())) or idx!r}")
    if idx.shape[1] == 0:
        raise ValueError(f"idx has shape {tuple(idx.shape)}: give every row at least one token to continue")
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is not None:
        block_size = check_int("block_size", block_size, minimum=1)
    if eos_id is not None:
        eos_id = check_int("eos_id", eos_id, minimum=0)
    _check_sampling(temperature, top_k, top_p)
    if use_cache and (block_size is None or not hasattr(model, "new_cache")):
        raise ValueError("use_cache=True needs a model with new_cache() and a block_size (e.g. utils.models.GPT)")
    # a prompt built on the CPU, a model on the GPU
    idx = _checked_to(idx, model_device(model, idx.device), getattr(getattr(model, "config", None), "vocab_size", None),
                      "idx")
    was_training = model.training
    model.eval()
    try:
        step = model
        if use_cache:
            from utils.models import GPT, PackedGPT  # here: utils.models imports utils.train, which is heavier

            if packed and type(model) is GPT and PackedGPT.unpackable_layer(model) is None:
                step = PackedGPT(model)  # the same logits with fewer, larger operations per token
        finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        cache, cached = None, 0  # the KV cache, and how many positions it holds
        for _ in range(max_new_tokens):
            if not use_cache:
                context = idx if block_size is None else idx[:, -block_size:]  # (B, <= block_size)
                logits = model(context)[:, -1, :]  # (B, V): the prediction for the next position
            else:
                if cache is None:  # the prompt fills the cache
                    cache, cached, new = model.new_cache(), 0, idx[:, -block_size:]
                elif cached == block_size:  # no position left for the next token: slide by half a block
                    cache, cached, new = model.new_cache(), 0, idx[:, -max(1, block_size // 2):]
                else:
                    new = idx[:, -1:]  # (B, 1): only the newest token; the past is in the cache
                logits = step(new, cache=cache)[:, -1, :]  # (B, V)
                cached += new.shape[1]
            next_id = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)
                finished |= next_id == eos_id
            idx = torch.cat([idx, next_id[:, None]], dim=1)  # (B, T + 1)
            if eos_id is not None and finished.all():
                break
    finally:
        model.train(was_training)
    return idx


@torch.no_grad()
def greedy_translate(
    model: torch.nn.Module,
    src: torch.Tensor,
    *,
    sos_id: int,
    eos_id: int,
    pad_id: int | None = None,
    max_new_tokens: int = 50,
    src_key_padding_mask: torch.Tensor | None = None,
    use_cache: bool = False,
) -> torch.Tensor:
    """Greedy decoding with an encoder–decoder model, stopping at ``<EOS>``.

    ``model.encode(src, src_key_padding_mask)`` gives the memory (B, T_enc, C) once;
    ``model.decode(tgt_in, memory, memory_key_padding_mask=...)`` gives logits
    (B, T_dec, V) for the target so far. Starts every row with ``sos_id`` and adds
    the most likely token until each row has produced ``eos_id`` or ``max_new_tokens``
    new tokens were made, and never more than the model's own ``config.max_len`` (the
    longest decoder input it accepts). Returns ids (B, 1 + n) beginning with
    ``<SOS>``; after a row's ``<EOS>`` come padding tokens.

    ``pad_id`` defaults to the model's ``config.pad_id``: source ids equal to it are
    masked, unless ``src_key_padding_mask`` is given. A model whose ``pad_id`` is
    None has no padding; its finished rows are filled with ``eos_id``.

    ``use_cache=True`` (chapter 13) needs ``model.new_cache()`` and
    ``model.decode(..., cache=...)``, like :class:`~utils.models.Transformer`: each
    step feeds only the newest token, and the cross-attention's keys and values are
    computed from the memory once per sentence; the result is the same.
    """
    if not isinstance(src, torch.Tensor) or src.ndim != 2:
        raise ValueError(f"src must be token ids of shape (B, T_enc), got {tuple(getattr(src, 'shape', ())) or src!r}")
    sos_id, eos_id = check_int("sos_id", sos_id, minimum=0), check_int("eos_id", eos_id, minimum=0)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "max_len", None) is not None:
        max_new_tokens = min(max_new_tokens, config.max_len)  # the decoder reads at most config.max_len
    model_pad_id = getattr(config, "pad_id", None)
    if pad_id is None:
        if config is None or not hasattr(config, "pad_id"):
            raise ValueError("this model has no config.pad_id: pass pad_id (the id of <PAD>)")
        pad_id = model_pad_id
    elif config is not None and hasattr(config, "pad_id") and pad_id != model_pad_id:
        raise ValueError(f"pad_id={pad_id} differs from the model's config.pad_id={model_pad_id}; "
                         "leave pad_id out to use the model's")
    if pad_id is not None:
        pad_id = check_int("pad_id", pad_id, minimum=0)
    device = model_device(model, src.device)  # a batch built on the CPU, a model on the GPU
    src = _checked_to(src, device, getattr(config, "src_vocab_size", None), "src")
    if src_key_padding_mask is not None:
        src_key_padding_mask = src_key_padding_mask.to(device)
    if src_key_padding_mask is None and pad_id is not None:
        src_key_padding_mask = src == pad_id  # (B, T_enc), True at padding
    fill_id = eos_id if pad_id is None else pad_id  # what finished rows get
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_key_padding_mask=src_key_padding_mask)  # (B, T_enc, C)
        out = torch.full((src.shape[0], 1), sos_id, dtype=torch.long, device=device)  # (B, 1)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=device)
        cache = model.new_cache() if use_cache else None
        for _ in range(max_new_tokens):
            if use_cache:  # only the newest token; the earlier ones' keys and values are in the cache
                logits = model.decode(out[:, -1:], memory, memory_key_padding_mask=src_key_padding_mask, cache=cache)
            else:
                logits = model.decode(out, memory, memory_key_padding_mask=src_key_padding_mask)
            logits = logits[:, -1, :]  # (B, V)
            next_id = greedy(logits).masked_fill(finished, fill_id)  # (B,)
            out = torch.cat([out, next_id[:, None]], dim=1)
            finished |= next_id == eos_id
            if finished.all():
                break
    finally:
        model.train(was_training)
    return out


# --- beam search for the encoder–decoder (chapter 12) -----------------------------------


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wu et al. (2016)'s length normaliser ((5 + length) / 6) ** alpha; alpha = 0 gives 1."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def translation_scores(
    model: torch.nn.Module,
    src: torch.Tensor,
    out: torch.Tensor,
    *,
    eos_id: int,
    pad_id: int = 0,
    alpha: float = 0.0,
    src_key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's score of given translations ``out`` (B, 1 + n), which begin with ``<SOS>``.

    The sum of log p(token) over the tokens up to and including each row's first
    ``<EOS>`` (all n when it has none), divided by :func:`length_penalty` of that
    count: the quantity :func:`beam_translate` maximises. Computed by teacher
    forcing, independently of any search. Returns (B,), on the model's device.
    """
    eos_id, pad_id = check_int("eos_id", eos_id, minimum=0), check_int("pad_id", pad_id, minimum=0)
    alpha = check_number("alpha", alpha)
    device = model_device(model, src.device)
    config = getattr(model, "config", None)
    src = _checked_to(src, device, getattr(config, "src_vocab_size", None), "src")
    out = _checked_to(out, device, getattr(config, "tgt_vocab_size", None), "out")
    if src_key_padding_mask is not None:
        src_key_padding_mask = src_key_padding_mask.to(device)
    if src_key_padding_mask is None:
        src_key_padding_mask = src == pad_id  # (B, T_enc)
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_key_padding_mask=src_key_padding_mask)  # (B, T_enc, C)
        logits = model.decode(out[:, :-1], memory, memory_key_padding_mask=src_key_padding_mask)  # (B, n, V)
    finally:
        model.train(was_training)
    targets = out[:, 1:]  # (B, n)
    log_p = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, n)
    is_eos = (targets == eos_id).long()
    counted = (is_eos.cumsum(1) - is_eos) == 0  # up to and including the first <EOS>
    return (log_p * counted).sum(1) / length_penalty(counted.sum(1).float(), alpha)


@torch.no_grad()
def beam_translate(
    model: torch.nn.Module,
    src: torch.Tensor,
    *,
    sos_id: int,
    eos_id: int,
    pad_id: int = 0,
    beam_size: int = 4,
    alpha: float = 0.6,
    max_new_tokens: int = 50,
    src_key_padding_mask: torch.Tensor | None = None,
    return_scores: bool = False,
    use_cache: bool = False,
):
    """Beam search with an encoder–decoder model, all B sentences at once.

    Each sentence keeps its ``beam_size`` best partial translations (K *beams*).
    At every step each beam proposes its V continuations; of the K·V candidates
    the K with the highest score survive, the score being the sum of log
    probabilities divided by the length penalty ((5 + n) / 6)^alpha (Wu et al.,
    2016), so that short translations are not favoured merely for having fewer
    factors below 1. A beam that has produced ``<EOS>`` has *ended*: it keeps its
    score and competes with the others as it is. The loop stops when every beam
    of every sentence has ended (or after ``max_new_tokens``), and each sentence
    returns its best beam. A live beam that can no longer beat the best ended one
    (its score can only fall to ``sum / length_penalty(max_new_tokens)`` at best)
    ends early: it could never be the answer, and the cut saves most of the steps.
    That bound needs ``alpha >= 0`` (a penalty that does not shrink with length);
    a negative ``alpha`` is refused.

    With ``beam_size=1`` this is greedy decoding. A wider beam is a heuristic too:
    it can drop the greedy path early and end with a lower score than greedy. This is
    a plain beam search, so that happens, and a comparison with greedy shows it.

    Returns ids (B, 1 + n) beginning with ``<SOS>``, ``pad_id`` after each row's
    ``<EOS>``, on the model's device; with ``return_scores=True`` also the scores (B,).

    ``use_cache=True`` keeps each decoder layer's keys and values (chapter 13's KV
    cache) and feeds only the newest token; after each step the cache rows follow
    their beams (``KVCache.select``). The result is the same, in far fewer operations.
    """
    if not isinstance(src, torch.Tensor) or src.ndim != 2:
        raise ValueError(f"src must be token ids of shape (B, T_enc), got {tuple(getattr(src, 'shape', ())) or src!r}")
    beam_size = check_int("beam_size", beam_size, minimum=1)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
    sos_id, eos_id = check_int("sos_id", sos_id, minimum=0), check_int("eos_id", eos_id, minimum=0)
    pad_id = check_int("pad_id", pad_id, minimum=0)
    # the early stop below is exact only when the penalty does not shrink with length
    alpha = check_number("alpha", alpha, minimum=0)
    config = getattr(model, "config", None)
    if getattr(config, "max_len", None) is not None:
        max_new_tokens = min(max_new_tokens, config.max_len)  # the decoder reads at most max_len tokens
    device = model_device(model, src.device)  # a batch built on the CPU, a model on the GPU
    src = _checked_to(src, device, getattr(config, "src_vocab_size", None), "src")
    if src_key_padding_mask is not None:
        src_key_padding_mask = src_key_padding_mask.to(device)
    if src_key_padding_mask is None:
        src_key_padding_mask = src == pad_id  # (B, T_enc), True at padding
    B, K = src.shape[0], beam_size
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_key_padding_mask=src_key_padding_mask)  # (B, T_enc, C)
        memory = memory.repeat_interleave(K, dim=0)  # (B*K, T_enc, C): one copy per beam
        memory_mask = src_key_padding_mask.repeat_interleave(K, dim=0)  # (B*K, T_enc)
        ids = torch.full((B, K, 1), sos_id, dtype=torch.long, device=device)  # (B, K, t)
        log_p_sum = torch.zeros(B, K, device=device)
        log_p_sum[:, 1:] = float("-inf")  # at first only beam 0 exists: no K copies of one prefix
        lengths = torch.zeros(B, K, device=device)  # tokens made, <EOS> included
        ended = log_p_sum.isinf()  # (B, K); empty beams count as ended
        cache = model.new_cache() if use_cache else None
        for _ in range(max_new_tokens):
            if ended.all():
                break
            new = ids.view(B * K, -1)[:, -1:] if use_cache else ids.view(B * K, -1)  # (B*K, 1 or t)
            logits = model.decode(new, memory, memory_key_padding_mask=memory_mask, cache=cache)[:, -1]
            log_p = torch.log_softmax(logits.float(), dim=-1).view(B, K, -1)  # (B, K, V)
            V = log_p.shape[-1]
            # an ended beam has one continuation, padding, which changes nothing
            log_p = log_p.masked_fill(ended[..., None], float("-inf"))
            log_p[..., pad_id] = log_p[..., pad_id].masked_fill(ended, 0.0)
            candidate_sum = (log_p_sum[..., None] + log_p).view(B, K * V)  # (B, K*V)
            candidate_length = (lengths + (~ended).float())[..., None].expand(B, K, V).reshape(B, K * V)
            candidate_score = candidate_sum / length_penalty(candidate_length, alpha)
            best = candidate_score.topk(K, dim=-1).indices  # (B, K)
            beam, token = best // V, best % V  # which beam each survivor extends, with which token
            ids = torch.cat([ids.gather(1, beam[..., None].expand(-1, -1, ids.shape[-1])), token[..., None]], -1)
            if use_cache:  # row b*K + k of the cache now belongs to the beam it was extended from
                rows = (torch.arange(B, device=device)[:, None] * K + beam).view(-1)  # (B*K,)
                for self_cache, _ in cache:
                    self_cache.select(rows)
            log_p_sum = candidate_sum.gather(1, best)
            lengths = candidate_length.gather(1, best)
            ended = ended.gather(1, beam) | (token == eos_id) | log_p_sum.isinf()
            # A live beam's sum of log probabilities can only fall, so its score can never rise
            # above sum / length_penalty(longest possible) (alpha >= 0): once that is below the
            # best ended beam's score it can never be chosen, and it stops.
            best_ended = (log_p_sum / length_penalty(lengths, alpha)).masked_fill(~ended, float("-inf")).amax(-1)
            ceiling = log_p_sum / length_penalty(torch.full_like(lengths, max_new_tokens), alpha)
            ended |= ceiling < best_ended[:, None]
        scores = log_p_sum / length_penalty(lengths, alpha)  # (B, K)
        top = scores.argmax(dim=-1)  # (B,)
        out = ids[torch.arange(B, device=device), top]  # (B, 1 + n)
        out_scores = scores[torch.arange(B, device=device), top]
    finally:
        model.train(was_training)
    return (out, out_scores) if return_scores else out


# --- the command line (chapter 16) ------------------------------------------------------------
#
#   python -m utils.generate --pretrained FOLDER "prompt" [--max-new-tokens N --temperature T
#                            --top-k K --top-p P --seed S]
#
# writes a continuation of the prompt with a checkpoint folder in the Hugging Face layout
# (GPT-2 or Llama), read into the book's own model and run with its KV cache. Every
# setting is checked before anything is loaded; a bad setting or folder is one line on
# stderr and exit code 2.


def _checked_arguments(argv: list[str] | None):
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):  # argparse prints its usage first; one line is enough here
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    parser = OneLineParser(
        prog="python -m utils.generate",
        description="Continue a prompt with a pretrained checkpoint folder (config.json + model.safetensors, "
                    "GPT-2 or Llama) run by the book's own model and KV cache.")
    parser.add_argument("prompt", help='the text to continue ("" starts from <|endoftext|> with GPT-2)')
    parser.add_argument("--pretrained", required=True, metavar="FOLDER",
                        help="a checkpoint folder in the Hugging Face layout, e.g. one downloaded with huggingface_hub")
    parser.add_argument("--max-new-tokens", type=int, default=50, metavar="N", help="tokens to write (default 50)")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="softmax temperature; 0 means greedy (default 1)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, metavar="P",
                        help="nucleus sampling: the smallest set of tokens with probability >= P")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sampling (default 0)")
    args = parser.parse_args(argv)
    problems = []
    if args.max_new_tokens < 0:
        problems.append(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        problems.append(f"--temperature must be a finite number >= 0 (0 means greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        problems.append(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        problems.append(f"--top-p must be in (0, 1], got {args.top_p}")
    if problems:
        parser.error(problems[0])
    return args, parser


def _prompt_tokenizer(folder, model):
    """The tokenizer for a checkpoint folder: the book's GPT-2 tokenizer for GPT-2's 50,257 ids, else the
    folder's ``tokenizer.json`` (read by Hugging Face's ``tokenizers``). Returns (encode, decode)."""
    from pathlib import Path

    from utils.tokenizers import gpt2_tokenizer

    vocab_size = model.config.vocab_size
    path = Path(folder) / "tokenizer.json"
    if vocab_size == 50257 and (type(model).__name__ == "GPT" or not path.is_file()):
        tokenizer = gpt2_tokenizer()
        return tokenizer.encode, tokenizer.decode
    if not path.is_file():
        raise ValueError(f"{path}: missing, and the model's {vocab_size:,} token ids are not GPT-2's 50,257: "
                         "no tokenizer for the prompt")
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # the library raises its own exception types
        raise ValueError(f"{path}: not a readable tokenizer ({str(error).splitlines()[0]})") from None
    return (lambda text: tokenizer.encode(text, add_special_tokens=False).ids), tokenizer.decode


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.generate``: print the prompt and the continuation; 0, or 2 for bad input."""
    import json
    import sys
    from pathlib import Path

    from utils.pretrained import PretrainedError, load_pretrained

    args, parser = _checked_arguments(argv)
    try:
        model = load_pretrained(args.pretrained)
        encode, decode = _prompt_tokenizer(args.pretrained, model)
    except (PretrainedError, ValueError) as error:
        parser.error(str(error).splitlines()[0])
    config = model.config
    eos_id = json.loads((Path(args.pretrained) / "config.json").read_text()).get("eos_token_id")
    eos_id = eos_id[0] if isinstance(eos_id, list) and eos_id else eos_id  # some configs list several
    if not (isinstance(eos_id, int) and 0 <= eos_id < config.vocab_size):
        eos_id = None
    ids = encode(args.prompt)
    if not ids:
        if eos_id is None:
            parser.error("the prompt is empty and the model has no <|endoftext|> to start from; give some text")
        ids = [eos_id]
    if max(ids) >= config.vocab_size:
        parser.error(f"the prompt's token id {max(ids)} is outside the model's {config.vocab_size:,} ids")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    out = generate(model, torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
                   top_k=args.top_k, top_p=args.top_p, eos_id=eos_id, use_cache=True,
                   generator=torch.Generator().manual_seed(args.seed))
    new = out[0, len(ids):].tolist()
    if eos_id is not None and eos_id in new:
        new = new[:new.index(eos_id)]
    sys.stdout.write(decode((ids if args.prompt else []) + new) + "\n")  # one decode: spaces between pieces
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
