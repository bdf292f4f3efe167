"""utils.attention: equal to PyTorch's attention, causal, and never NaN on masked rows."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.attention import MultiHeadAttention, attention, causal_mask, copy_weights_from_torch

B, T, C, n_heads = 2, 7, 16, 4
TOL = 1e-5


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def pair(bias=True, seed=0):
    """Our module (explicit path) and nn.MultiheadAttention with the same weights."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(C, n_heads, bias=bias, batch_first=True).eval()
    ours = copy_weights_from_torch(MultiHeadAttention(C, n_heads, bias=bias, fused=False), theirs).eval()
    return ours, theirs


def grads(module, inputs):
    return [p.grad.clone() for p in module.parameters()] + [x.grad.clone() for x in inputs]


def torch_grads_in_our_order(theirs, inputs):
    """nn.MultiheadAttention's gradients laid out like ours: q, k, v, out weights and biases, then inputs."""
    wq, wk, wv = theirs.in_proj_weight.grad.chunk(3)
    result = []
    if theirs.in_proj_bias is not None:
        bq, bk, bv = theirs.in_proj_bias.grad.chunk(3)
        result = [wq, bq, wk, bk, wv, bv, theirs.out_proj.weight.grad, theirs.out_proj.bias.grad]
    else:
        result = [wq, wk, wv, theirs.out_proj.weight.grad]
    return result + [x.grad.clone() for x in inputs]


# --- causal_mask and the explicit attention function --------------------------------------------


def test_causal_mask_is_the_lower_triangle():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    assert all(mask[t, s].item() == (s <= t) for t in range(4) for s in range(4))
    assert causal_mask(2, 5).shape == (2, 5)
    assert causal_mask(3, 5)[0].tolist() == [True, True, True, False, False]  # bottom-right: query 0 is position 2
    assert causal_mask(3, 5, align="top_left")[0].tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="T_q=-1"):
        causal_mask(-1)


@pytest.mark.parametrize("kind", ["none", "causal", "random"])
def test_attention_equals_scaled_dot_product_attention_with_gradients(kind):
    torch.manual_seed(1)
    q, k, v = (torch.randn(B, n_heads, T, 8, requires_grad=True) for _ in range(3))
    mask = {"none": None, "causal": causal_mask(T),
            "random": (torch.rand(B, 1, T, T) > 0.3) | torch.eye(T, dtype=torch.bool)}[kind]
    ours, weights = attention(q, k, v, mask)
    ours.square().sum().backward()
    our_grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    theirs.square().sum().backward()
    assert max_diff(ours, theirs) <= TOL
    for a, x in zip(our_grads, (q, k, v)):
        assert max_diff(a, x.grad) <= TOL
    assert torch.allclose(weights.sum(-1), torch.ones(B, n_heads, T), atol=1e-6)
    assert (weights >= 0).all() and (weights <= 1).all()
    if mask is not None:
        assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()


def test_attention_scales_by_the_square_root_of_d_k():
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 2)
    _, weights = attention(q, k, v)
    assert torch.allclose(weights, torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1))


def test_attention_fully_masked_row_gives_zero_and_finite_gradients():
    q, k, v = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, weights = attention(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros(4)) and torch.equal(weights[1], torch.zeros(3))
    assert torch.allclose(out[0], v[0]) and not out.isnan().any()
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    assert torch.equal(q.grad[1], torch.zeros(4))  # the empty row depends on nothing


def test_attention_errors_name_the_shapes():
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"\(2, 5, 8\).*\(2, 5, 6\)"):
        attention(q, torch.randn(2, 5, 6), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"\(2, 4, 8\).*\(2, 5, 8\)"):
        attention(q, torch.randn(2, 4, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="bool"):
        attention(q, q, q, torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(2, 5, 5\)"):
        attention(q, q, q, torch.ones(4, 4, dtype=torch.bool))


def test_attention_batch_shapes_that_do_not_broadcast_are_named():  # issue 11
    q, kv = torch.randn(2, 3, 4, 8), torch.randn(3, 3, 5, 8)
    with pytest.raises(ValueError, match=r"batch dimensions .* do not broadcast: \(2, 3\), \(3, 3\), \(3, 3\)"):
        attention(q, kv, kv)
    with pytest.raises(ValueError, match=r"do not broadcast: \(2, 3\), \(2, 3\), \(4, 3\)"):
        attention(q, q, torch.randn(4, 3, 4, 8))
    out, weights = attention(q, torch.randn(1, 3, 5, 8), torch.randn(2, 1, 5, 8))  # these do broadcast
    assert out.shape == (2, 3, 4, 8) and weights.shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="one dtype, got torch.float32, torch.float64"):
        attention(q, q.double(), q)
    with pytest.raises(ValueError, match="T_q must be an integer"):
        causal_mask(2.5)
    with pytest.raises(ValueError, match="n_heads must be an integer"):
        MultiHeadAttention(32, 4.0)


# --- MultiHeadAttention: its two paths, and PyTorch's module ---------------------------------------


def cases():
    """(name, T_k, causal, key_padding_mask) covering self-, masked, padded and cross-attention."""
    padding = torch.zeros(B, 5, dtype=torch.bool)
    padding[0, 3:] = True
    padding_t = torch.zeros(B, T, dtype=torch.bool)
    padding_t[1, 5:] = True
    return [
        ("self", None, False, None),
        ("causal", None, True, None),
        ("self+padding", None, False, padding_t),
        ("causal+padding", None, True, padding_t),
        ("cross", 5, False, None),
        ("cross+padding", 5, False, padding),
    ]


@pytest.mark.parametrize("name,T_k,causal,padding", cases(), ids=[c[0] for c in cases()])
@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_equals_nn_multihead_attention(name, T_k, causal, padding, bias):
    ours, theirs = pair(bias)
    query = torch.randn(B, T, C, requires_grad=True)
    memory = None if T_k is None else torch.randn(B, T_k, C, requires_grad=True)
    kv = query if memory is None else memory
    inputs = [query] if memory is None else [query, memory]

    out, weights = ours(query, memory, causal=causal, key_padding_mask=padding, return_weights=True)
    out.square().sum().backward()
    our_grads = grads(ours, inputs)
    for x in inputs:
        x.grad = None

    attn_mask = ~causal_mask(T) if causal else None  # PyTorch: True = not allowed
    their_out, their_weights = theirs(query, kv, kv, key_padding_mask=padding, attn_mask=attn_mask,
                                      need_weights=True, average_attn_weights=False)
    their_out.square().sum().backward()
    assert max_diff(out, their_out) <= TOL
    assert max_diff(weights, their_weights) <= TOL
    for a, b in zip(our_grads, torch_grads_in_our_order(theirs, inputs), strict=True):
        assert a.shape == b.shape and max_diff(a, b) <= TOL


@pytest.mark.parametrize("name,T_k,causal,padding", cases(), ids=[c[0] for c in cases()])
def test_fused_and_explicit_paths_agree_with_gradients(name, T_k, causal, padding):
    torch.manual_seed(2)
    explicit = MultiHeadAttention(C, n_heads, fused=False)
    fused = MultiHeadAttention(C, n_heads, fused=True)
    fused.load_state_dict(explicit.state_dict())
    query = torch.randn(B, T, C, requires_grad=True)
    memory = None if T_k is None else torch.randn(B, T_k, C, requires_grad=True)
    inputs = [query] if memory is None else [query, memory]
    results = []
    for module in (explicit, fused):
        for x in inputs:
            x.grad = None
        out = module(query, memory, causal=causal, key_padding_mask=padding)
        out.square().sum().backward()
        results.append((out, grads(module, inputs)))
    (a, grads_a), (b, grads_b) = results
    assert a.shape == (B, T, C)
    assert max_diff(a, b) <= TOL
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert max_diff(ga, gb) <= TOL


@pytest.mark.parametrize("fused", [True, False])
def test_fully_padded_sequence_gives_out_proj_bias_not_nan(fused):
    torch.manual_seed(3)
    module = MultiHeadAttention(C, n_heads, fused=fused)
    query, memory = torch.randn(B, T, C, requires_grad=True), torch.randn(B, 5, C, requires_grad=True)
    padding = torch.zeros(B, 5, dtype=torch.bool)
    padding[1] = True  # the second sequence is all padding
    out = module(query, memory, key_padding_mask=padding)
    assert not out.isnan().any()
    assert torch.allclose(out[1], module.out_proj.bias.expand(T, C))
    out.sum().backward()
    assert torch.isfinite(memory.grad).all() and torch.isfinite(query.grad).all()
    assert torch.equal(memory.grad[1], torch.zeros(5, C))
    if not fused:
        _, weights = module(query, memory, key_padding_mask=padding, return_weights=True)
        assert torch.equal(weights[1], torch.zeros(n_heads, T, 5))
    # Causal + padding: query 0 sees only key 0; pad key 0 and row 0 is empty.
    padding = torch.zeros(B, T, dtype=torch.bool)
    padding[:, 0] = True
    out = module(query, causal=True, key_padding_mask=padding)
    assert not out.isnan().any()
    assert torch.allclose(out[:, 0], module.out_proj.bias.expand(B, C))


@pytest.mark.parametrize("fused", [True, False])
def test_causal_outputs_ignore_the_future(fused):
    torch.manual_seed(4)
    module = MultiHeadAttention(C, n_heads, fused=fused)
    x = torch.randn(1, T, C)
    out = module(x, causal=True)
    for t in range(T):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(1, T - t - 1, C)
        assert torch.allclose(module(changed, causal=True)[:, : t + 1], out[:, : t + 1], atol=1e-6)
    jacobian = torch.autograd.functional.jacobian(lambda inp: module(inp, causal=True), x)  # (1, T, C, 1, T, C)
    influence = jacobian.abs().sum(dim=(0, 2, 3, 5))  # (T_out, T_in)
    assert torch.equal(influence.triu(1), torch.zeros(T, T))  # exactly zero from later inputs
    assert (influence[causal_mask(T)] > 0).all()  # ... and non-zero from earlier ones
    # Without the mask, the future does leak in: the test above can fail.
    assert not torch.allclose(module(x)[:, 0], out[:, 0])


def test_dropout_acts_in_training_only():
    torch.manual_seed(5)
    for fused in (True, False):
        module = MultiHeadAttention(C, n_heads, dropout=0.5, fused=fused)
        x = torch.randn(B, T, C)
        assert not torch.allclose(module(x), module(x))
        module.eval()
        assert torch.equal(module(x), module(x))


def test_weights_are_per_head_and_sum_to_one():
    module = MultiHeadAttention(C, n_heads)
    assert module.head_size == C // n_heads and module.n_heads == n_heads
    out, weights = module(torch.randn(B, T, C), torch.randn(B, 5, C), return_weights=True)
    assert out.shape == (B, T, C) and weights.shape == (B, n_heads, T, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(B, n_heads, T), atol=1e-6)


def test_module_errors_name_the_shapes():
    with pytest.raises(ValueError, match="C=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)
    module = MultiHeadAttention(C, n_heads)
    with pytest.raises(ValueError, match=r"query has shape \(2, 7, 12\).*C=16"):
        module(torch.randn(2, 7, 12))
    with pytest.raises(ValueError, match=r"query has shape \(7, 16\)"):
        module(torch.randn(7, C))
    with pytest.raises(ValueError, match=r"key_value has shape \(3, 5, 16\).*B=2"):
        module(torch.randn(2, 7, C), torch.randn(3, 5, C))
    with pytest.raises(ValueError, match=r"key_padding_mask.*\(2, 5\).*\(2, 7\)"):
        module(torch.randn(2, 7, C), torch.randn(2, 5, C), key_padding_mask=torch.zeros(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        module(torch.randn(2, 7, C), key_padding_mask=torch.zeros(2, 7))


def test_copy_weights_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="n_heads=4.*num_heads=2"):
        copy_weights_from_torch(MultiHeadAttention(C, 4), nn.MultiheadAttention(C, 2))
    with pytest.raises(ValueError, match="biases"):
        copy_weights_from_torch(MultiHeadAttention(C, 4, bias=False), nn.MultiheadAttention(C, 4))
    with pytest.raises(ValueError, match="add_bias_kv"):
        copy_weights_from_torch(MultiHeadAttention(C, 4), nn.MultiheadAttention(C, 4, add_bias_kv=True))
    with pytest.raises(ValueError, match="kdim=8"):
        copy_weights_from_torch(MultiHeadAttention(C, 4), nn.MultiheadAttention(C, 4, kdim=8, vdim=8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_paths_agree_on_cuda():
    torch.manual_seed(6)
    explicit = MultiHeadAttention(C, n_heads, fused=False).cuda()
    fused = MultiHeadAttention(C, n_heads, fused=True).cuda()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(B, T, C, device="cuda")
    padding = torch.zeros(B, T, dtype=torch.bool, device="cuda")
    padding[1] = True
    for kwargs in ({"causal": True}, {"key_padding_mask": padding}, {"causal": True, "key_padding_mask": padding}):
        a, b = explicit(x, **kwargs), fused(x, **kwargs)
        assert not b.isnan().any() and max_diff(a, b) <= 1e-4
