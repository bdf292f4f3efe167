"""utils.layers (chapter 07): LayerNorm, FeedForward and Residual."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from utils.layers import FeedForward, LayerNorm, Residual, layer_norm_formula


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values, so a gain of 1 or a bias of 0 cannot hide a bug."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return module


@pytest.mark.parametrize("shape", [(2, 5, 8), (3, 4), (1, 1, 1, 16)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layer_norm_equals_torch_values_and_gradients(shape, eps):
    C = shape[-1]
    ours = randomised(LayerNorm(C, eps=eps))
    theirs = nn.LayerNorm(C, eps=eps)
    theirs.load_state_dict(ours.state_dict())  # same parameter names
    x = (torch.randn(shape) * 3 + 1).requires_grad_()
    x_theirs = x.detach().clone().requires_grad_()
    out, expected = ours(x), theirs(x_theirs)
    assert (out - expected).abs().max().item() <= 1e-5
    upstream = torch.randn(shape)
    out.backward(upstream)
    expected.backward(upstream)
    assert torch.allclose(x.grad, x_theirs.grad, atol=1e-5)
    assert torch.allclose(ours.weight.grad, theirs.weight.grad, atol=1e-5)
    assert torch.allclose(ours.bias.grad, theirs.bias.grad, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 8), (3, 4), (1, 1, 1, 16)])
def test_the_written_out_formula_equals_the_fused_module_values_and_gradients(shape):
    C = shape[-1]
    module = randomised(LayerNorm(C))
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 1).requires_grad_()
    x_formula = x.detach().clone().requires_grad_()
    weight = module.weight.detach().double().requires_grad_()
    bias = module.bias.detach().double().requires_grad_()
    out = module.double()(x)
    expected = layer_norm_formula(x_formula, weight, bias, module.eps)
    assert (out - expected).abs().max().item() <= 1e-12
    upstream = torch.randn(shape, dtype=torch.float64)
    out.backward(upstream)
    expected.backward(upstream)
    assert torch.allclose(x.grad, x_formula.grad, atol=1e-12)
    assert torch.allclose(module.weight.grad, weight.grad, atol=1e-12)
    assert torch.allclose(module.bias.grad, bias.grad, atol=1e-12)


def test_the_formula_uses_the_biased_variance():
    x = torch.tensor([[1.0, 3.0]])  # mean 2, biased variance 1 (the unbiased one would be 2)
    assert torch.allclose(layer_norm_formula(x, torch.ones(2), torch.zeros(2), 0.0), torch.tensor([[-1.0, 1.0]]))


def test_layer_norm_uses_the_biased_variance():
    x = torch.tensor([[1.0, 3.0]])  # mean 2, biased variance 1 (the unbiased one would be 2)
    out = LayerNorm(2, eps=0.0)(x)
    assert torch.allclose(out, torch.tensor([[-1.0, 1.0]]))


@settings(max_examples=25, deadline=None)
@given(
    C=st.integers(2, 32),
    scale=st.floats(1e-2, 1e3),
    shift=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_fresh_layer_norm_gives_mean_zero_variance_one_whatever_the_scale(C, scale, shift, seed):
    x = torch.randn(3, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale + shift
    out = LayerNorm(C, eps=0.0).double()(x)
    assert torch.allclose(out.mean(-1), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_layer_norm_rejects_the_wrong_width():
    with pytest.raises(ValueError, match=r"LayerNorm\(8\).*\(2, 3, 4\)"):
        LayerNorm(8)(torch.randn(2, 3, 4))


def test_feed_forward_shapes_and_default_width():
    ff = FeedForward(16)
    assert ff.d_ff == 64
    assert ff.linear1.weight.shape == (64, 16) and ff.linear2.weight.shape == (16, 64)
    assert FeedForward(16, d_ff=24).linear1.out_features == 24
    assert ff(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_feed_forward_is_linear_relu_linear():
    ff = randomised(FeedForward(8, d_ff=20))
    x = torch.randn(2, 3, 8)
    expected = F.linear(torch.relu(F.linear(x, ff.linear1.weight, ff.linear1.bias)), ff.linear2.weight, ff.linear2.bias)
    assert (ff(x) - expected).abs().max().item() <= 1e-5
    without_relu = F.linear(F.linear(x, ff.linear1.weight, ff.linear1.bias), ff.linear2.weight, ff.linear2.bias)
    assert (ff(x) - without_relu).abs().max().item() > 1e-2  # the nonlinearity is really there


def test_feed_forward_is_position_wise():
    ff = randomised(FeedForward(8)).eval()
    x = torch.randn(2, 6, 8)
    whole = ff(x)
    one_at_a_time = torch.stack([torch.stack([ff(x[b, t]) for t in range(6)]) for b in range(2)])
    assert (whole - one_at_a_time).abs().max().item() <= 1e-5
    changed = x.clone()
    changed[:, 0] += 1.0  # changing one position leaves every other position's output alone
    assert torch.equal(ff(changed)[:, 1:], whole[:, 1:])


def test_feed_forward_dropout_acts_in_training_only():
    ff = randomised(FeedForward(8, dropout=0.5))
    x = torch.randn(4, 10, 8)
    ff.train()
    assert not torch.allclose(ff(x), ff(x))
    ff.eval()
    assert torch.equal(ff(x), ff(x))


def test_feed_forward_dropout_sits_between_relu_and_linear2():
    ff = randomised(FeedForward(8, dropout=0.5)).train()
    x = torch.randn(4, 10, 8)
    seen = []
    ff.linear2.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    ff(x)
    hidden = torch.relu(ff.linear1(x))
    dropped, kept = seen[0] == 0, (seen[0] - 2 * hidden).abs() < 1e-5  # kept units are scaled by 1 / (1 - p)
    assert torch.all(dropped | kept)
    assert (dropped & (hidden > 0)).any() and (kept & (hidden > 0)).any()


def test_feed_forward_rejects_the_wrong_width():
    with pytest.raises(ValueError, match=r"C=8.*\(2, 4\)"):
        FeedForward(8)(torch.randn(2, 4))


def sublayer(h: torch.Tensor) -> torch.Tensor:
    return torch.tanh(2 * h + 0.5)


def test_residual_post_norm_is_norm_of_sum():
    residual = randomised(Residual(8, norm_first=False))
    x = torch.randn(2, 5, 8)
    expected = F.layer_norm(x + sublayer(x), (8,), residual.norm.weight, residual.norm.bias)
    assert (residual(x, sublayer) - expected).abs().max().item() <= 1e-5


def test_residual_pre_norm_adds_the_sublayer_of_the_normalised_input():
    residual = randomised(Residual(8, norm_first=True))
    x = torch.randn(2, 5, 8)
    expected = x + sublayer(F.layer_norm(x, (8,), residual.norm.weight, residual.norm.bias))
    assert (residual(x, sublayer) - expected).abs().max().item() <= 1e-5


def test_pre_norm_keeps_an_identity_path_post_norm_does_not():
    x = torch.randn(2, 5, 8) * 10 + 3
    zero = lambda h: torch.zeros_like(h)
    assert torch.equal(Residual(8, norm_first=True)(x, zero), x)
    post = Residual(8, norm_first=False)(x, zero)
    assert torch.allclose(post, F.layer_norm(x, (8,)), atol=1e-5)


def test_residual_dropout_drops_the_sublayer_output_not_the_skip_path():
    residual = Residual(8, dropout=0.5, norm_first=True).train()
    x = torch.randn(4, 10, 8)
    ones = lambda h: torch.ones_like(h)
    added = residual(x, ones) - x  # each entry is 0 (dropped) or 1 / (1 - p) = 2 (kept, rescaled)
    assert torch.all((added.abs() < 1e-6) | ((added - 2).abs() < 1e-5))
    assert (added.abs() < 1e-6).any() and ((added - 2).abs() < 1e-5).any()
    residual.eval()
    assert torch.allclose(residual(x, ones) - x, torch.ones_like(x))


def test_residual_rejects_a_sublayer_that_changes_the_shape():
    with pytest.raises(ValueError, match=r"\(2, 3, 8\) to \(2, 3, 4\)"):
        Residual(8)(torch.randn(2, 3, 8), lambda h: h[..., :4])


# --- issue 11: half precision and wrong sizes ---------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layer_norm_in_half_precision_gives_the_float32_answer(dtype):
    # Activations far from zero: in fp16, (x - mean)² overflows past |x - mean| ≈ 256.
    x = (torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(0)) * 300 + 1000).to(dtype)
    expected = F.layer_norm(x.float(), (64,))
    for norm in (LayerNorm(64), LayerNorm(64).to(dtype)):  # autocast keeps float32 weights; .half() does not
        out = norm(x)
        assert out.dtype == dtype
        assert torch.allclose(out.float(), expected, atol=0.02), (out.float() - expected).abs().max()
    assert LayerNorm(64)(x.double()).dtype == torch.float64  # only half precision is promoted


def test_layers_name_sizes_that_are_not_integers():
    with pytest.raises(ValueError, match="C must be an integer, got 32.0"):
        LayerNorm(32.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        LayerNorm(8, eps=-1e-5)
    with pytest.raises(ValueError, match="d_ff must be an integer, got 2.5"):
        FeedForward(8, 2.5)
    with pytest.raises(ValueError, match="C must be >= 1"):
        FeedForward(0)
