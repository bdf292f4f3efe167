"""utils.positional: the sinusoidal formula and its properties, and both encodings' interface."""

import math

import pytest
import torch
from torch import nn

from utils.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    positional_encoding,
    sinusoidal_positions,
)


@pytest.mark.parametrize("C", [8, 7, 1])
def test_sinusoidal_positions_follow_the_papers_formula(C):
    T, base = 12, 10000.0
    expected = torch.zeros(T, C)
    for pos in range(T):
        for i in range(C):
            angle = pos / base ** (2 * (i // 2) / C)
            expected[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    assert torch.allclose(sinusoidal_positions(T, C), expected, atol=1e-6)


def test_sinusoidal_positions_base_changes_the_frequencies():
    pe = sinusoidal_positions(5, 4, base=100.0)
    assert torch.allclose(pe[3, 2], torch.tensor(math.sin(3 / 100.0 ** (2 / 4))))
    assert not torch.allclose(pe, sinusoidal_positions(5, 4))


def test_sinusoidal_values_are_bounded_and_start_at_sin0_cos0():
    pe = sinusoidal_positions(500, 64)
    assert pe.shape == (500, 64) and pe.dtype == torch.float32
    assert pe.abs().max() <= 1.0
    assert torch.equal(pe[0, 0::2], torch.zeros(32)) and torch.equal(pe[0, 1::2], torch.ones(32))


def test_dot_product_depends_only_on_the_offset():
    T, C = 200, 32
    pe = sinusoidal_positions(T, C).double()
    gram = pe @ pe.T  # (T, T)
    frequency = 10000.0 ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)
    offsets = torch.arange(T, dtype=torch.float64)
    predicted = torch.cos(offsets[:, None] * frequency).sum(-1)  # sum_i cos(k * w_i)
    for k in (0, 1, 5, 77):
        assert torch.allclose(torch.diagonal(gram, offset=k), predicted[k].expand(T - k), atol=1e-4)


def test_shift_by_k_is_a_fixed_rotation_per_frequency_pair():
    T, C, k = 100, 16, 7
    pe = sinusoidal_positions(T, C).double()
    frequency = 10000.0 ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)
    M = torch.zeros(C, C, dtype=torch.float64)
    for i, w in enumerate(frequency):
        c, s = math.cos(k * w), math.sin(k * w)
        # (sin, cos)(a + b) = [[cos b, sin b], [-sin b, cos b]] @ (sin a, cos a)
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    assert torch.allclose(pe[k:], pe[:-k] @ M.T, atol=1e-4)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_both_encodings_add_their_positions_to_the_input(kind):
    B, T, C, max_len = 3, 10, 16, 32
    module = positional_encoding(kind, C, max_len)
    x = torch.randn(B, T, C)
    out = module(x)
    assert out.shape == (B, T, C)
    assert module.positions.shape == (max_len, C)
    assert torch.allclose(out, x + module.positions[:T])
    assert torch.allclose(out[1] - x[1], out[2] - x[2], atol=1e-6)  # the same positions for every sequence


def test_sinusoidal_module_has_no_parameters_and_uses_the_formula():
    module = SinusoidalPositionalEncoding(16, 64)
    assert sum(p.numel() for p in module.parameters()) == 0
    assert torch.equal(module.positions, sinusoidal_positions(64, 16))
    assert "positions" not in module.state_dict()  # recomputed, not stored
    assert module(torch.zeros(1, 64, 16)).shape == (1, 64, 16)


def test_learned_module_has_one_trainable_vector_per_position():
    module = LearnedPositionalEmbedding(16, 64)
    assert sum(p.numel() for p in module.parameters()) == 64 * 16
    assert module.positions is module.embedding.weight
    module(torch.zeros(2, 5, 16)).sum().backward()
    grad = module.embedding.weight.grad
    assert torch.equal(grad[:5], torch.full((5, 16), 2.0))  # each of B=2 sequences adds 1
    assert torch.equal(grad[5:], torch.zeros(59, 16))  # positions beyond T get no gradient


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_dropout_acts_in_training_only(kind):
    module = positional_encoding(kind, 8, 16, dropout=0.5)
    x = torch.randn(4, 16, 8)
    torch.manual_seed(0)
    trained = module.train()(x)
    assert (trained == 0).float().mean() > 0.3
    module.eval()
    assert torch.allclose(module(x), x + module.positions[:16])


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_bad_input_gives_clear_errors(kind):
    module = positional_encoding(kind, 8, 16)
    with pytest.raises(ValueError, match=r"T=17 .*\(2, 17, 8\).*max_len=16"):
        module(torch.zeros(2, 17, 8))
    with pytest.raises(ValueError, match=r"C=6 .*\(2, 4, 6\).*C=8"):
        module(torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"\(B, T, C\).*\(4, 8\)"):
        module(torch.zeros(4, 8))


def test_factory_builds_each_kind_and_rejects_others():
    assert isinstance(positional_encoding("sinusoidal", 8, 16), SinusoidalPositionalEncoding)
    learned = positional_encoding("learned", 8, 16, dropout=0.1)
    assert isinstance(learned, LearnedPositionalEmbedding) and learned.dropout.p == 0.1
    with pytest.raises(ValueError, match="'rotary'"):
        positional_encoding("rotary", 8, 16)
    with pytest.raises(ValueError, match="max_len"):
        SinusoidalPositionalEncoding(8, 0)


def test_modules_move_with_their_model():
    model = nn.Sequential(SinusoidalPositionalEncoding(8, 16)).to(torch.float64)
    assert model[0].positions.dtype == torch.float64
    assert model(torch.zeros(1, 4, 8, dtype=torch.float64)).dtype == torch.float64


def test_sizes_and_base_are_checked_by_name():  # issue 11
    with pytest.raises(ValueError, match="T must be an integer, got 4.5"):
        sinusoidal_positions(4.5, 8)
    with pytest.raises(ValueError, match="C must be an integer"):
        sinusoidal_positions(4, "8")
    for base in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="base must be a finite positive number"):
            sinusoidal_positions(4, 8, base)
    with pytest.raises(ValueError, match="max_len must be an integer, got 10.0"):
        SinusoidalPositionalEncoding(8, 10.0)
    with pytest.raises(ValueError, match="C must be an integer"):
        LearnedPositionalEmbedding(8.5, 10)
