"""The KV cache (chapter 13): the bottom-right causal mask, and cached logits equal to uncached ones."""

import pytest
import torch
import torch.nn.functional as F

from utils.attention import KVCache, MultiHeadAttention, attention, causal_mask
from utils.generate import generate, greedy_translate
from utils.models import GPT, GPTConfig, PackedGPT, Transformer, TransformerConfig

V = 40
PAD, SOS, EOS = 0, 1, 2


# --- the causal mask's two alignments -------------------------------------------------------


@pytest.mark.parametrize("T_q, T_k", [(1, 1), (4, 4), (1, 6), (3, 7), (5, 3)])
def test_causal_mask_alignments(T_q, T_k):
    t, s = torch.arange(T_q)[:, None], torch.arange(T_k)[None, :]
    assert torch.equal(causal_mask(T_q, T_k), s <= t + T_k - T_q)  # bottom-right, the default
    assert torch.equal(causal_mask(T_q, T_k, align="top_left"), s <= t)
    if T_q == T_k:
        assert torch.equal(causal_mask(T_q, T_k), causal_mask(T_q, T_k, align="top_left"))
    if T_q < T_k:  # the last query sees every key; the top-left mask hides most keys from it
        assert causal_mask(T_q, T_k)[-1].all() and not causal_mask(T_q, T_k, align="top_left")[-1].all()


def test_causal_mask_rejects_an_unknown_alignment():
    with pytest.raises(ValueError, match="bottom_right"):
        causal_mask(2, 3, align="bottom-right")


def test_sdpa_is_causal_aligns_top_left():
    """What chapter 05 says of PyTorch's flag: is_causal=True is our top-left mask, not the bottom-right one."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    flag = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    top_left, _ = attention(q, k, v, causal_mask(3, 7, align="top_left"))
    bottom_right, _ = attention(q, k, v, causal_mask(3, 7))
    assert torch.allclose(flag, top_left, atol=1e-6)
    assert not torch.allclose(flag, bottom_right, atol=1e-3)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("T_q", [1, 2, 5])
def test_queries_at_the_end_see_what_they_would_see_in_the_full_sequence(fused, T_q):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, fused=fused).eval()
    x = torch.randn(3, 9, 16)
    full = mha(x, causal=True)  # (B, 9, C)
    cache = KVCache()
    mha(x[:, :-T_q], causal=True, cache=cache)  # the first 9 - T_q positions fill the cache
    last = mha(x[:, -T_q:], causal=True, cache=cache)  # (B, T_q, C), bottom-right causal over 9 keys
    assert len(cache) == 9
    assert (last - full[:, -T_q:]).abs().max() <= 1e-5


def test_fused_and_explicit_agree_on_rectangular_causal_attention_with_empty_rows():
    torch.manual_seed(0)
    fused, explicit = MultiHeadAttention(16, 4, fused=True).eval(), MultiHeadAttention(16, 4, fused=False).eval()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, 16)
    for T_cached in (0, 2):  # 5 queries after 2 cached keys, and 5 queries over 3 keys (2 empty rows)
        caches = [KVCache(), KVCache()]
        if T_cached:
            for mha, cache in zip((fused, explicit), caches):
                mha(x[:, :T_cached], causal=True, cache=cache)
        a = fused(x, causal=True, cache=caches[0])
        b = explicit(x, causal=True, cache=caches[1])
        assert torch.isfinite(a).all() and (a - b).abs().max() <= 1e-5
    out, weights = explicit(x[:, :3], key_value=x[:, :1], causal=True, return_weights=True)  # T_q=3 > T_k=1
    assert weights[..., :2, :].eq(0).all() and weights[..., 2, :].eq(1).all()  # rows 0, 1 empty; row 2 sees key 0


def test_cache_rejects_a_key_padding_mask_that_misses_the_cached_keys():
    mha = MultiHeadAttention(16, 4).eval()
    cache = KVCache()
    mha(torch.randn(2, 4, 16), causal=True, cache=cache)
    with pytest.raises(ValueError, match=r"\(B, T_k\) = \(2, 5\)"):
        mha(torch.randn(2, 1, 16), causal=True, cache=cache, key_padding_mask=torch.zeros(2, 1, dtype=torch.bool))


def test_cache_select_keeps_chosen_rows():
    cache = KVCache()
    k, v = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 4, 8)
    cache.extend(k, v)
    cache.select(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.k, k[[2, 2, 0]]) and torch.equal(cache.v, v[[2, 2, 0]])
    with pytest.raises(ValueError, match="same B"):
        cache.extend(torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))


# --- GPT: logits with the cache equal logits without it, at every step -----------------------


def gpt(**fields):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=16, C=32, n_heads=4, n_layers=2, **fields)).eval()


@pytest.mark.parametrize("fields", [{}, {"positional": "sinusoidal", "norm_first": False}, {"dropout": 0.2}])
@pytest.mark.parametrize("prompt_length", [1, 3, 8])
def test_gpt_logits_with_the_cache_equal_logits_without_it(fields, prompt_length):
    model = gpt(**fields)
    ids = torch.randint(0, V, (3, 16), generator=torch.Generator().manual_seed(prompt_length))
    cache = model.new_cache()
    with torch.no_grad():
        model(ids[:, :prompt_length], cache=cache)
        for t in range(prompt_length, 16):
            cached = model(ids[:, t:t + 1], cache=cache)[:, -1]  # (B, V): one new token
            full = model(ids[:, :t + 1])[:, -1]  # (B, V): the whole sequence again
            assert (cached - full).abs().max() <= 1e-5, f"step {t}"
    assert len(cache[0]) == 16
    with pytest.raises(ValueError, match="16 cached positions"):
        model(ids[:, :1], cache=cache)  # no position left


@pytest.mark.parametrize("prompt_length", [1, 4, 16, 23])
def test_cached_generate_equals_uncached_while_the_text_fits(prompt_length):
    model = gpt()
    prompt = torch.randint(0, V, (2, prompt_length), generator=torch.Generator().manual_seed(1))
    new = max(1, 16 - min(prompt_length, 16))  # stays within block_size (after cropping a long prompt)
    uncached = generate(model, prompt, new, temperature=0)
    assert torch.equal(generate(model, prompt, new, temperature=0, use_cache=True), uncached)
    sampled = [generate(model, prompt, new, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3),
                        use_cache=use_cache) for use_cache in (False, True)]
    assert torch.equal(*sampled)


@pytest.mark.parametrize("prompt_length", [3, 20])
def test_cached_generate_slides_its_window_by_half_a_block(prompt_length):
    """Past block_size, the cached loop's context is [window start, now): it restarts at the last block_size // 2."""
    model, block_size = gpt(), 16
    idx = torch.randint(0, V, (2, prompt_length), generator=torch.Generator().manual_seed(2))
    got = generate(model, idx, 40, temperature=0, use_cache=True)
    start = max(0, prompt_length - block_size)  # where the expected loop's context begins
    with torch.no_grad():
        for _ in range(40):
            if idx.shape[1] - start > block_size:
                start = idx.shape[1] - block_size // 2
            next_id = model(idx[:, start:])[:, -1].argmax(-1)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
    assert torch.equal(got, idx)


def test_generate_with_cache_needs_a_model_with_one():
    with pytest.raises(ValueError, match="new_cache"):
        generate(torch.nn.Identity(), torch.zeros(1, 2, dtype=torch.long), 1, use_cache=True)


# --- PackedGPT: the same forward pass in fewer operations -------------------------------------

PACKED_SHAPES = [{}, {"positional": "sinusoidal", "norm_first": False}, {"dropout": 0.2, "tie_weights": False},
                 {"d_ff": 48, "norm_first": False, "tie_weights": False}]


@pytest.mark.parametrize("fields", PACKED_SHAPES)
def test_packed_gpt_gives_the_models_logits_with_and_without_a_cache(fields):
    model = gpt(**fields)
    ids = torch.randint(0, V, (3, 16), generator=torch.Generator().manual_seed(4))
    packed = PackedGPT(model)
    with torch.no_grad():
        full = model(ids)  # (B, T, V)
        assert (packed(ids) - full).abs().max() <= 1e-6  # no cache: the whole sequence at once
        cache, module_cache = model.new_cache(), model.new_cache()
        for start, end in ((0, 5), (5, 6), (6, 9), (9, 10), (10, 16)):  # a prompt, single tokens, chunks
            logits = packed(ids[:, start:end], cache=cache)
            assert (logits - full[:, start:end]).abs().max() <= 1e-5, (start, end)
            assert (logits - model(ids[:, start:end], cache=module_cache)).abs().max() <= 1e-5, (start, end)
            assert len(cache[0]) == end
    for ours, theirs in zip(cache, module_cache):  # the same keys and values kept
        assert (ours.k - theirs.k).abs().max() <= 1e-5 and (ours.v - theirs.v).abs().max() <= 1e-5


@pytest.mark.parametrize("fields", PACKED_SHAPES[:2])
def test_generate_packed_and_through_the_modules_write_the_same_tokens(fields):
    model = gpt(**fields)
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(5))
    sampled = [generate(model, prompt, 40, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(6),
                        use_cache=True, packed=packed) for packed in (True, False)]
    assert torch.equal(*sampled)  # 40 tokens: past block_size = 16, so the window slides twice
    assert torch.equal(generate(model, prompt, 13, temperature=0, use_cache=True),
                       generate(model, prompt, 13, temperature=0))  # and the uncached loop's, while it fits


def test_packed_gpt_refuses_what_it_cannot_run():
    model = gpt(dropout=0.1)
    with pytest.raises(ValueError, match="eval mode"):
        PackedGPT(model.train())
    with pytest.raises(TypeError, match="utils.models.GPT"):
        PackedGPT(torch.nn.Linear(2, 2))
    packed = PackedGPT(model.eval())
    with pytest.raises(ValueError, match=r"token id 40 at position \(0, 1\)"):
        packed(torch.tensor([[3, V]]))
    with pytest.raises(ValueError, match="shape \\(B, T\\)"):
        packed(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape \\(B, T\\)"):
        packed([[1, 2]])
    with pytest.raises(ValueError, match="cache has 1 entries; expected one per block \\(2\\)"):
        packed(torch.zeros(1, 2, dtype=torch.long), cache=model.new_cache()[:1])
    cache = model.new_cache()
    packed(torch.zeros(1, 15, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="15 cached positions \\+ T=2 tokens exceed block_size=16"):
        packed(torch.zeros(1, 2, dtype=torch.long), cache=cache)


def test_packed_gpt_under_cpu_bf16_autocast_stays_close_to_the_modules():
    model = gpt()
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        theirs, ours = model(ids), PackedGPT(model)(ids)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert (ours.float() - theirs.float()).abs().max() <= 0.05  # bf16 keeps about 2 to 3 digits


# --- the translator: self-attention cached, cross-attention computed once --------------------


def translator(**fields):
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=V + 3, tgt_vocab_size=V, C=32, n_heads=4, **fields)
    return Transformer(config).eval()


def source_batch():
    src = torch.randint(3, V + 3, (3, 9), generator=torch.Generator().manual_seed(0))
    src[1, 6:] = PAD  # padded rows, so the memory's padding mask matters
    src[2, 4:] = PAD
    return src


@pytest.mark.parametrize("fields", [{}, {"norm_first": True}, {"final_norm": True, "dropout": 0.1}])
@pytest.mark.parametrize("prefix_length", [1, 4])
def test_translator_logits_with_the_cache_equal_logits_without_it(fields, prefix_length):
    model, src = translator(**fields), source_batch()
    tgt = torch.randint(3, V, (3, 12), generator=torch.Generator().manual_seed(prefix_length))
    padding = src == PAD
    cache = model.new_cache()
    with torch.no_grad():
        memory = model.encode(src, padding)
        model.decode(tgt[:, :prefix_length], memory, memory_key_padding_mask=padding, cache=cache)
        for t in range(prefix_length, 12):
            cached = model.decode(tgt[:, t:t + 1], memory, memory_key_padding_mask=padding, cache=cache)[:, -1]
            full = model.decode(tgt[:, :t + 1], memory, memory_key_padding_mask=padding)[:, -1]
            assert (cached - full).abs().max() <= 1e-5, f"step {t}"


def test_translator_computes_cross_attention_keys_once_per_sentence():
    model, src = translator(), source_batch()
    calls = {"cross": 0, "self": 0}
    for name, attention_of in (("cross", lambda b: b.cross_attention), ("self", lambda b: b.self_attention)):
        for block in model.decoder.blocks:
            attention_of(block).k_proj.register_forward_hook(
                lambda module, args, out, name=name: calls.__setitem__(name, calls[name] + 1))
    out = greedy_translate(model, src, sos_id=SOS, eos_id=EOS, pad_id=PAD, max_new_tokens=10, use_cache=True)
    steps, n_layers = out.shape[1] - 1, len(model.decoder.blocks)
    assert steps > 1 and calls == {"cross": n_layers, "self": steps * n_layers}
    assert torch.equal(out, greedy_translate(model, src, sos_id=SOS, eos_id=EOS, pad_id=PAD, max_new_tokens=10))


# --- reduced precision on the CPU ------------------------------------------------------------


def test_gpt_trains_under_cpu_bf16_autocast():
    model = gpt().train()
    x, y = torch.randint(0, V, (4, 16)), torch.randint(0, V, (4, 16))
    reference = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    assert logits.dtype == torch.bfloat16  # the matrix products ran in bf16 ...
    loss.backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters())
    assert abs(loss.item() - reference.item()) < 0.02  # ... and the loss is still about the float32 one
