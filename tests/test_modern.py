"""utils.modern (chapter 15): each piece equal to an independent computation, the model to chapter 11's GPT
with every switch off, and the KV cache."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.generate import generate
from utils.models import GPT, GPTConfig
from utils.modern import (
    GroupedQueryAttention,
    Llama,
    LlamaConfig,
    RMSNorm,
    SwiGLU,
    apply_rope,
    grouped_query_attention,
    pairs_to_half,
    permute_pairs_to_half,
    rope_angles,
    rope_frequencies,
    swiglu_hidden_size,
)


def test_rms_norm_equals_torch_rms_norm_with_a_trained_gain():
    torch.manual_seed(0)
    for eps in (1e-6, 1e-3):
        ours, theirs = RMSNorm(24, eps=eps), nn.RMSNorm(24, eps=eps)
        with torch.no_grad():
            ours.weight.copy_(torch.randn(24))
            theirs.weight.copy_(ours.weight)
        x = 3 * torch.randn(5, 7, 24) + 1  # a mean far from 0: RMSNorm must not subtract it
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ours(x), F.layer_norm(x, (24,), ours.weight, None, eps), atol=1e-2)


def test_rms_norm_in_bfloat16_keeps_float32_statistics():
    x = (torch.randn(4, 64) * 300).bfloat16()
    ours = RMSNorm(64)
    expected = nn.RMSNorm(64, eps=1e-6)(x.float())
    assert ours(x).dtype == torch.bfloat16
    torch.testing.assert_close(ours(x).float(), expected, atol=2e-2, rtol=1e-2)


def test_rms_norm_refuses_a_wrong_width():
    with pytest.raises(ValueError, match=r"RMSNorm\(8\).*\(2, 5\)"):
        RMSNorm(8)(torch.randn(2, 5))


def _rotated(head_size, layout, m, theta=10000.0):
    return rope_angles(torch.tensor([m]), head_size, theta, torch.float64)


@pytest.mark.parametrize("layout", ["half", "pairs"])
def test_rope_score_depends_only_on_the_distance(layout):
    """q at m, k at n: (R_m q)·(R_n k) is the same for every (m, n) with the same m − n, and differs across m − n."""
    torch.manual_seed(0)
    hs, theta = 16, 500.0
    q, k = torch.randn(hs, dtype=torch.float64), torch.randn(hs, dtype=torch.float64)
    positions = torch.arange(0, 200, dtype=torch.long)
    cos, sin = rope_angles(positions, hs, theta, torch.float64)  # (200, hs/2)
    q_rot = apply_rope(q.expand(200, hs), cos, sin, layout)  # (200, hs): q at every position
    k_rot = apply_rope(k.expand(200, hs), cos, sin, layout)
    scores = q_rot @ k_rot.T  # (m, n)
    by_distance = {}
    for m in range(0, 200, 7):
        for n in range(0, 200, 11):
            by_distance.setdefault(m - n, []).append(scores[m, n].item())
    checked = 0
    for values in by_distance.values():
        if len(values) > 1:
            assert max(values) - min(values) < 1e-10
            checked += 1
    assert checked > 20
    assert abs(scores[5, 3] - scores[5, 4]) > 1e-3  # a different distance, a different score
    # the rotation keeps lengths, and position 0 is no rotation
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm().expand(200))
    torch.testing.assert_close(q_rot[0], q)


def test_rope_pairs_rotate_by_the_angle_position_times_frequency():
    """Independent of apply_rope: channel pair i of a position-m vector turned by m·θ^(−2i/d) as a complex product."""
    torch.manual_seed(1)
    hs, m = 8, 13
    x = torch.randn(hs, dtype=torch.float64)
    cos, sin = _rotated(hs, "pairs", m)
    z = torch.view_as_complex(x.view(hs // 2, 2).contiguous())
    angle = m * 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    expected = torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten()
    torch.testing.assert_close(apply_rope(x[None], cos, sin, "pairs")[0], expected)
    # the half layout pairs channel i with i + d/2
    y = torch.randn(hs, dtype=torch.float64)
    z = torch.complex(y[: hs // 2], y[hs // 2:]) * torch.polar(torch.ones_like(angle), angle)
    torch.testing.assert_close(apply_rope(y[None], cos, sin, "half")[0], torch.cat([z.real, z.imag]))


def test_the_permutation_maps_one_layout_to_the_other():
    torch.manual_seed(2)
    hs, n_heads, C = 8, 3, 24
    p = pairs_to_half(hs)
    assert p.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    x = torch.randn(2, n_heads, 10, hs)
    cos, sin = rope_angles(torch.arange(10), hs)
    torch.testing.assert_close(apply_rope(x, cos, sin, "pairs")[..., p], apply_rope(x[..., p], cos, sin, "half"))
    assert not torch.allclose(apply_rope(x, cos, sin, "pairs"), apply_rope(x, cos, sin, "half"))
    # permuting a projection's rows head by head: the same attention scores in the other layout
    w_q, w_k, h = torch.randn(n_heads * hs, C), torch.randn(n_heads * hs, C), torch.randn(10, C)

    def scores(wq, wk, layout):
        q = (h @ wq.T).view(10, n_heads, hs).transpose(0, 1)  # (n_heads, T, hs)
        k = (h @ wk.T).view(10, n_heads, hs).transpose(0, 1)
        return apply_rope(q, cos, sin, layout) @ apply_rope(k, cos, sin, layout).transpose(-2, -1)

    half = scores(permute_pairs_to_half(w_q, n_heads), permute_pairs_to_half(w_k, n_heads), "half")
    torch.testing.assert_close(half, scores(w_q, w_k, "pairs"), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(w_q, w_k, "half"), scores(w_q, w_k, "pairs"), atol=1e-2)


def test_rope_frequencies_and_bad_sizes():
    torch.testing.assert_close(rope_frequencies(4, 100.0), torch.tensor([1.0, 0.1]))
    with pytest.raises(ValueError, match="even"):
        rope_frequencies(7)
    cos, sin = rope_angles(torch.arange(3), 8)
    with pytest.raises(ValueError, match=r"\(T, head_size/2\) = \(4, 4\)"):
        apply_rope(torch.randn(1, 4, 8), cos, sin)
    with pytest.raises(ValueError, match="layout"):
        apply_rope(torch.randn(3, 8), cos, sin, "interleaved")


def test_swiglu_has_about_the_relu_networks_parameters_and_computes_the_gate():
    C = 96
    assert swiglu_hidden_size(C) == 256 and swiglu_hidden_size(64) == 176
    relu = 2 * C * 4 * C
    swiglu = sum(p.numel() for p in SwiGLU(C).parameters())
    assert abs(swiglu - relu) / relu < 0.01
    assert sum(p.numel() for p in SwiGLU(C, d_ff=4 * C).parameters()) == 1.5 * relu  # 4C would be 50 % more
    torch.manual_seed(3)
    f, x = SwiGLU(8, d_ff=12), torch.randn(5, 8)
    a, b = x @ f.gate_proj.weight.T, x @ f.up_proj.weight.T
    expected = (a / (1 + torch.exp(-a)) * b) @ f.down_proj.weight.T
    torch.testing.assert_close(f(x), expected)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4, 8])
def test_grouped_query_attention_equals_sdpa_enable_gqa(n_kv_heads):
    torch.manual_seed(4)
    q = torch.randn(2, 8, 7, 16)
    k, v = torch.randn(2, n_kv_heads, 9, 16), torch.randn(2, n_kv_heads, 9, 16)
    mask = torch.rand(7, 9) > 0.3
    mask[:, 0] = True
    for kwargs in ({}, {"attn_mask": mask}, {"is_causal": True}):
        ours = grouped_query_attention(q, k, v, **kwargs)
        theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    if 1 < n_kv_heads < 8:  # head h reads key/value head h // group, not h % n_kv_heads
        wrong = F.scaled_dot_product_attention(q, k.repeat(1, 8 // n_kv_heads, 1, 1),
                                               v.repeat(1, 8 // n_kv_heads, 1, 1))
        assert not torch.allclose(grouped_query_attention(q, k, v), wrong, atol=1e-3)


def test_grouped_query_attention_refuses_bad_head_counts():
    with pytest.raises(ValueError, match="divisor"):
        grouped_query_attention(torch.randn(1, 6, 2, 4), torch.randn(1, 4, 2, 4), torch.randn(1, 4, 2, 4))
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        GroupedQueryAttention(32, 4, 3)


def test_config_refuses_bad_settings_with_the_name():
    for fields, match in ((dict(norm="batch"), "norm"), (dict(n_kv_heads=3), "n_kv_heads"),
                          (dict(C=36, n_heads=4), "even head_size"), (dict(tie_weights=1), "tie_weights"),
                          (dict(rope_theta=float("nan")), "rope_theta"), (dict(dropout=1.5), "dropout")):
        with pytest.raises(ValueError, match=match):
            LlamaConfig(vocab_size=10, **fields)
    with pytest.raises(ValueError, match="bias=True"):
        Llama(LlamaConfig(vocab_size=10, feed_forward="relu"))


def test_with_every_switch_at_chapter_11s_choice_the_model_is_the_gpt():
    torch.manual_seed(5)
    gpt = GPT(GPTConfig(vocab_size=30, block_size=16, C=32, n_heads=4, n_layers=2, d_ff=64)).eval()
    ours = Llama(LlamaConfig(vocab_size=30, block_size=16, C=32, n_heads=4, n_layers=2, d_ff=64, norm="layer",
                             positional="learned", feed_forward="relu", bias=True)).eval()
    renamed = {}
    for name, tensor in gpt.state_dict().items():
        for old, new in (("stack.blocks", "blocks"), ("self_attention", "attention"), ("stack.norm", "norm"),
                         ("attention_residual.norm", "attention_norm"),
                         ("feed_forward_residual.norm", "feed_forward_norm")):
            name = name.replace(old, new)
        renamed[name] = tensor
    ours.load_state_dict(renamed)  # strict: the same parameters, one to one
    idx = torch.randint(0, 30, (3, 16))
    torch.testing.assert_close(ours(idx), gpt(idx), atol=1e-6, rtol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in gpt.parameters())


def test_utils_models_keeps_the_model_too():
    import utils.models

    assert utils.models.Llama is Llama and utils.models.LlamaConfig is LlamaConfig
    with pytest.raises(AttributeError, match="Lama"):
        utils.models.Lama  # noqa: B018


def test_llama_starts_near_log_v_and_trains_with_no_bias_anywhere():
    torch.manual_seed(6)
    model = Llama(LlamaConfig(vocab_size=65, n_kv_heads=2))
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    assert model.head.weight is model.token_embedding.weight
    idx, targets = torch.randint(0, 65, (2, 4, 64))  # targets apart from the inputs (a tied head favours the input)
    loss = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
    assert abs(loss.item() - math.log(65)) < 0.05
    untied = Llama(LlamaConfig(vocab_size=65, tie_weights=False))
    assert untied.head.weight is not untied.token_embedding.weight


@pytest.mark.parametrize("layout", ["half", "pairs"])
def test_cached_logits_equal_uncached_at_every_step(layout):
    torch.manual_seed(7)
    model = Llama(LlamaConfig(vocab_size=40, block_size=32, C=32, n_heads=4, n_kv_heads=2, n_layers=3,
                              rope_layout=layout, rope_theta=300.0)).eval()
    with torch.no_grad():  # trained-looking weights: random gains, so that no layer is near the identity
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    idx = torch.randint(0, 40, (2, 30))
    cache = model.new_cache()
    with torch.no_grad():
        full = model(idx)  # (2, 30, V)
        pieces = [model(idx[:, :5], cache=cache)]  # a prompt of 5, then 1, 3 (several new after cached), then 1s
        for a, b in ((5, 6), (6, 9), *((t, t + 1) for t in range(9, 30))):
            pieces.append(model(idx[:, a:b], cache=cache))
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)
    k = cache[0].k
    assert tuple(k.shape) == (2, 2, 30, 8)  # (B, n_kv_heads, T, head_size): 2 key/value heads, not 4
    attention = model.blocks[0].attention
    with torch.no_grad():
        h = model.blocks[0].attention_norm(model.token_embedding(idx))
        raw = attention.k_proj(h).view(2, 30, 2, 8).transpose(1, 2)
        rotated = apply_rope(raw, *model.rope(0, 30, h.device, h.dtype), layout)
    torch.testing.assert_close(k, rotated)  # stored already rotated
    assert not torch.allclose(k[:, :, 1:], raw[:, :, 1:], atol=1e-3)


def test_the_model_runs_with_generate_and_its_cache():
    torch.manual_seed(8)
    model = Llama(LlamaConfig(vocab_size=20, block_size=16, C=16, n_heads=2, n_kv_heads=1)).eval()
    prompt = torch.randint(0, 20, (1, 3))
    plain = generate(model, prompt, 10, temperature=0)
    cached = generate(model, prompt, 10, temperature=0, use_cache=True)
    assert torch.equal(plain, cached) and plain.shape == (1, 13)


def test_forward_refuses_bad_input_with_the_shapes():
    model = Llama(LlamaConfig(vocab_size=20, block_size=8, C=16, n_heads=2))
    with pytest.raises(ValueError, match="block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="20"):
        model(torch.full((1, 3), 20))
    cache = model.new_cache()
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="6 cached positions"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="one per block"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache[:1])
