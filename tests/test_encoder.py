"""utils.encoder (chapter 08): the encoder block and stack, proved equal to PyTorch's."""

import warnings

import pytest
import torch
from torch import nn

from utils.encoder import Encoder, EncoderBlock, copy_encoder_from_torch, copy_encoder_layer_from_torch

B, T, C, n_heads, d_ff = 3, 7, 16, 4, 40


def inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=generator)
    padding = torch.zeros(B, T, dtype=torch.bool)  # True = padding
    padding[1, 5:] = True
    padding[2, 3:] = True
    return x, padding


def torch_layer(norm_first: bool, dropout: float = 0.1, seed: int = 0) -> nn.TransformerEncoderLayer:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(
        C, n_heads, dim_feedforward=d_ff, dropout=dropout, activation="relu", batch_first=True, norm_first=norm_first
    )
    with torch.no_grad():  # LayerNorm starts at gain 1, bias 0: randomise so a swapped or skipped norm shows
        for norm in (layer.norm1, layer.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.5)
    return layer


def torch_encoder(norm_first: bool, n_layers: int = 3, dropout: float = 0.1) -> nn.TransformerEncoder:
    final_norm = nn.LayerNorm(C) if norm_first else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ... norm_first was True"
        encoder = nn.TransformerEncoder(torch_layer(norm_first, dropout), n_layers, norm=final_norm, enable_nested_tensor=False)
    with torch.no_grad():  # nn.TransformerEncoder deep-copies one layer: make the layers differ
        for parameter in encoder.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return encoder


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_block_equals_torch_encoder_layer(norm_first, padded):
    x, padding = inputs()
    mask = padding if padded else None
    theirs = torch_layer(norm_first).eval()
    ours = copy_encoder_layer_from_torch(EncoderBlock(C, n_heads, d_ff, dropout=0.1, norm_first=norm_first), theirs).eval()
    difference = (ours(x, key_padding_mask=mask) - theirs(x, src_key_padding_mask=mask)).abs().max().item()
    assert difference <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_causal_block_equals_torch_encoder_layer_with_a_causal_mask(norm_first):
    x, _ = inputs()
    theirs = torch_layer(norm_first).eval()
    ours = copy_encoder_layer_from_torch(EncoderBlock(C, n_heads, d_ff, norm_first=norm_first), theirs).eval()
    causal = nn.Transformer.generate_square_subsequent_mask(T)
    expected = theirs(x, src_mask=causal, is_causal=True)
    assert (ours(x, causal=True) - expected).abs().max().item() <= 1e-5
    assert (ours(x) - expected).abs().max().item() > 1e-3  # the mask really changes the result


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_encoder_equals_torch_transformer_encoder(norm_first, padded):
    x, padding = inputs()
    mask = padding if padded else None
    theirs = torch_encoder(norm_first).eval()
    ours = copy_encoder_from_torch(Encoder(3, C, n_heads, d_ff, dropout=0.1, norm_first=norm_first), theirs).eval()
    assert (ours.norm is not None) == norm_first
    difference = (ours(x, key_padding_mask=mask) - theirs(x, src_key_padding_mask=mask)).abs().max().item()
    assert difference <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_encoder_gradients_equal_torch(norm_first):
    x, padding = inputs()
    theirs = torch_encoder(norm_first, n_layers=2, dropout=0.0)  # training mode (autograd path), dropout off
    ours = copy_encoder_from_torch(Encoder(2, C, n_heads, d_ff, dropout=0.0, norm_first=norm_first), theirs)
    ours(x, key_padding_mask=padding).pow(2).sum().backward()
    theirs(x, src_key_padding_mask=padding).pow(2).sum().backward()
    ours_grad = ours.blocks[0].feed_forward.linear1.weight.grad
    theirs_grad = theirs.layers[0].linear1.weight.grad
    assert torch.allclose(ours_grad, theirs_grad, atol=1e-4)
    assert torch.allclose(ours.blocks[0].attention_residual.norm.weight.grad, theirs.layers[0].norm1.weight.grad, atol=1e-4)


def test_fast_path_zeroes_padding_in_torch_but_real_positions_agree():
    x, padding = inputs()
    theirs = nn.TransformerEncoder(torch_layer(False), 2, enable_nested_tensor=True).eval()
    ours = copy_encoder_from_torch(Encoder(2, C, n_heads, d_ff), theirs).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype feature
        expected = theirs(x, src_key_padding_mask=padding)
        out = ours(x, key_padding_mask=padding)
    assert (out[~padding] - expected[~padding]).abs().max().item() <= 1e-5
    assert torch.all(expected[padding] == 0)  # the fast path's nested tensors leave padding at 0; we compute it


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_padding_leaves_real_positions_unchanged(norm_first):
    torch.manual_seed(0)
    encoder = Encoder(2, C, n_heads, d_ff, norm_first=norm_first).eval()
    x = torch.randn(1, 4, C)
    padded = torch.cat([x, torch.randn(1, 3, C) * 5], dim=1)  # three padding positions of anything
    mask = torch.tensor([[False] * 4 + [True] * 3])
    assert (encoder(padded, key_padding_mask=mask)[:, :4] - encoder(x)).abs().max().item() <= 1e-5
    assert (encoder(padded)[:, :4] - encoder(x)).abs().max().item() > 1e-3  # without the mask the pads leak in


def test_training_mode_dropout_is_active_and_eval_is_deterministic():
    x, _ = inputs()
    encoder = Encoder(2, C, n_heads, d_ff, dropout=0.5)
    encoder.train()
    assert not torch.allclose(encoder(x), encoder(x))
    encoder.eval()
    assert torch.equal(encoder(x), encoder(x))


def test_dropout_sits_where_torch_puts_it():
    block = EncoderBlock(C, n_heads, d_ff, dropout=0.3)
    places = {name: m.p for name, m in block.named_modules() if isinstance(m, nn.Dropout)}
    assert places == {  # dropout1, dropout (inside the FFN), dropout2, and attention's dropout on its weights
        "self_attention.dropout": 0.3,
        "attention_residual.dropout": 0.3,
        "feed_forward.dropout": 0.3,
        "feed_forward_residual.dropout": 0.3,
    }


def test_block_keeps_shape_and_is_contextual():
    torch.manual_seed(0)
    block = EncoderBlock(C, n_heads).eval()
    x, _ = inputs()
    out = block(x)
    assert out.shape == (B, T, C)
    changed = x.clone()
    changed[:, -1] += 1.0
    assert (block(changed)[:, 0] - out[:, 0]).abs().max().item() > 1e-4  # position 0 sees the last token
    assert torch.allclose(block(changed, causal=True)[:, 0], block(x, causal=True)[:, 0], atol=1e-6)  # not if causal


def test_copy_helpers_reject_mismatches():
    with pytest.raises(ValueError, match="norm_first differs"):
        copy_encoder_layer_from_torch(EncoderBlock(C, n_heads, d_ff, norm_first=True), torch_layer(False))
    gelu = nn.TransformerEncoderLayer(C, n_heads, d_ff, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="ReLU"):
        copy_encoder_layer_from_torch(EncoderBlock(C, n_heads, d_ff), gelu)
    with pytest.raises(ValueError, match=r"feed-forward shapes differ.*\(64, 16\).*\(40, 16\)"):
        copy_encoder_layer_from_torch(EncoderBlock(C, n_heads), torch_layer(False))
    with pytest.raises(ValueError, match="final norm differs"):
        copy_encoder_from_torch(Encoder(3, C, n_heads, d_ff, norm_first=True), nn.TransformerEncoder(torch_layer(True), 3, enable_nested_tensor=False))
    with pytest.raises(ValueError, match="layer counts differ: ours has 2 blocks, theirs 3"):
        copy_encoder_from_torch(Encoder(2, C, n_heads, d_ff), torch_encoder(False))
    with pytest.raises(ValueError, match="n_layers >= 1"):
        Encoder(0, C, n_heads)


def test_bad_padding_mask_names_the_shapes():
    x, _ = inputs()
    with pytest.raises(ValueError, match=r"\(3, 7\)"):
        Encoder(1, C, n_heads)(x, key_padding_mask=torch.zeros(3, 6, dtype=torch.bool))


def test_stack_sizes_must_be_integers():  # issue 11
    with pytest.raises(ValueError, match="n_layers must be an integer, got 2.0"):
        Encoder(2.0, 16, 2)
    with pytest.raises(ValueError, match="C must be an integer"):
        EncoderBlock(16.0, 2)
