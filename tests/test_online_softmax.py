"""utils.attention.blockwise_attention: the online softmax over key blocks equals PyTorch's attention."""

import pytest
import torch
import torch.nn.functional as F

from utils.attention import attention, blockwise_attention


@pytest.mark.parametrize("block_size", [1, 3, 16, 64, 1000])
def test_blockwise_attention_equals_scaled_dot_product_attention(block_size):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 7, 8, generator=g)
    k, v = torch.randn(2, 3, 50, 8, generator=g), torch.randn(2, 3, 50, 5, generator=g)  # d_v != d_k
    expected = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(blockwise_attention(q, k, v, block_size), expected, atol=1e-6)


def test_blockwise_attention_survives_scores_whose_exp_overflows():
    """Scores near 1,000: exp() overflows float32, the running maximum keeps every term <= 1."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    q, k = 30 * q, 30 * k  # scores of several hundred
    assert torch.isinf(torch.exp((q @ k.mT / 2).float())).any()  # the naive softmax would overflow
    expected, _ = attention(q, k, v)  # float64, explicit
    got = blockwise_attention(q.float(), k.float(), v.float(), block_size=2)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_blockwise_attention_rescales_when_a_later_block_raises_the_maximum():
    """The largest score sits in the last block: without exp(m_old - m_new) the first blocks count too much."""
    q = torch.ones(1, 1, 2)
    k = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])
    v = torch.tensor([[[1.0], [1.0], [0.0]]])
    expected = F.scaled_dot_product_attention(q, k, v)
    assert expected.item() < 0.01
    assert torch.allclose(blockwise_attention(q, k, v, block_size=1), expected, atol=1e-6)


def test_blockwise_attention_gradients_match():
    g = torch.Generator().manual_seed(2)
    inputs = [torch.randn(2, 6, 4, generator=g, requires_grad=True) for _ in range(3)]
    blockwise_attention(*inputs, block_size=4).square().sum().backward()
    ours = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    F.scaled_dot_product_attention(*inputs).square().sum().backward()
    assert all(torch.allclose(a, t.grad, atol=1e-5) for a, t in zip(ours, inputs))


def test_blockwise_attention_names_bad_input():
    q = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        blockwise_attention(q, q, q, block_size=0)
    with pytest.raises(ValueError, match="same last dimension"):
        blockwise_attention(q, torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="at least one key"):
        blockwise_attention(q, torch.randn(1, 0, 4), torch.randn(1, 0, 4))
