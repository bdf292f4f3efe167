"""utils.decoder: equal to PyTorch's decoder layer and stack, causal through the whole stack."""

import pytest
import torch
from torch import nn

from utils.decoder import Decoder, DecoderBlock, copy_decoder_from_torch, copy_decoder_layer_from_torch

B, T_dec, T_enc, C, n_heads, d_ff = 3, 6, 5, 16, 4, 24


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T_dec, C, generator=g)
    memory = torch.randn(B, T_enc, C, generator=g)
    tgt_padding = torch.zeros(B, T_dec, dtype=torch.bool)
    tgt_padding[1, 4:] = True  # right padding: every query still sees position 0
    memory_padding = torch.zeros(B, T_enc, dtype=torch.bool)
    memory_padding[2, 3:] = True
    return x, memory, tgt_padding, memory_padding


def torch_causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).triu(1)  # PyTorch's convention: True = may NOT attend


def torch_layer(norm_first):
    return nn.TransformerDecoderLayer(C, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first)


@pytest.mark.parametrize("norm_first", [False, True])
def test_block_equals_nn_transformer_decoder_layer(norm_first):
    torch.manual_seed(0)
    theirs = torch_layer(norm_first).eval()
    ours = copy_decoder_layer_from_torch(DecoderBlock(C, n_heads, d_ff, norm_first=norm_first), theirs).eval()
    x, memory, tgt_padding, memory_padding = inputs()
    expected = theirs(x, memory, tgt_mask=torch_causal_mask(T_dec), tgt_is_causal=True,
                      tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding)
    got = ours(x, memory, tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding)
    assert got.shape == (B, T_dec, C)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_nn_transformer_decoder(norm_first):
    torch.manual_seed(1)
    theirs = nn.TransformerDecoder(torch_layer(norm_first), 3, norm=nn.LayerNorm(C) if norm_first else None).eval()
    ours = copy_decoder_from_torch(Decoder(3, C, n_heads, d_ff, norm_first=norm_first), theirs).eval()
    assert (ours.norm is None) == (not norm_first)
    x, memory, tgt_padding, memory_padding = inputs(1)
    expected = theirs(x, memory, tgt_mask=torch_causal_mask(T_dec),
                      tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding)
    got = ours(x, memory, tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding)
    assert (got - expected).abs().max().item() <= 1e-5
    untied = nn.TransformerDecoder(torch_layer(norm_first), 3, norm=nn.LayerNorm(C) if norm_first else None)
    assert (ours(x, memory) - untied.eval()(x, memory, tgt_is_causal=True,
                                            tgt_mask=torch_causal_mask(T_dec))
            ).abs().max() > 1e-2  # other weights give other outputs: the comparison has teeth


@pytest.mark.parametrize("norm_first", [False, True])
def test_the_decoder_stack_never_looks_ahead(norm_first):
    torch.manual_seed(2)
    decoder = Decoder(3, C, n_heads, d_ff, norm_first=norm_first).eval()
    x, memory, _, _ = inputs(2)
    out = decoder(x, memory)
    for t in range(T_dec - 1):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(B, T_dec - t - 1, C)  # rewrite the future
        after = decoder(changed, memory)
        assert torch.equal(after[:, : t + 1], out[:, : t + 1])  # the past is untouched, bit for bit
        assert not torch.allclose(after[:, t + 1 :], out[:, t + 1 :])
    x = x.clone().requires_grad_(True)
    t = 2
    weights = torch.randn(C)  # a random readout (plain .sum() of a LayerNorm output has zero gradient)
    (decoder(x, memory)[:, t] @ weights).sum().backward()
    assert torch.all(x.grad[:, t + 1 :] == 0)  # exactly zero: output t does not depend on later inputs
    assert torch.all(x.grad[:, : t + 1].abs().sum(-1) > 0)


def test_every_position_reads_the_memory_but_never_its_padding():
    torch.manual_seed(3)
    decoder = Decoder(2, C, n_heads, d_ff).eval()
    x, memory, _, memory_padding = inputs(3)
    out = decoder(x, memory, memory_key_padding_mask=memory_padding)
    other_memory = memory + torch.randn_like(memory)
    assert (decoder(x, other_memory, memory_key_padding_mask=memory_padding) - out).abs().amin(-1).gt(0).all()
    changed_padding = memory.clone()
    changed_padding[2, 3:] = 100.0
    assert torch.equal(decoder(x, changed_padding, memory_key_padding_mask=memory_padding), out)


def test_attention_weights_are_causal_and_skip_padding():
    torch.manual_seed(4)
    block = DecoderBlock(C, n_heads).eval()
    x, memory, tgt_padding, memory_padding = inputs(4)
    out, weights = block(x, memory, tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding,
                         return_weights=True)
    fused = block(x, memory, tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=memory_padding)
    assert torch.allclose(out, fused, atol=1e-5)  # the explicit path (which returns weights) gives the same output
    assert weights["self"].shape == (B, n_heads, T_dec, T_dec)
    assert weights["cross"].shape == (B, n_heads, T_dec, T_enc)
    assert torch.all(weights["self"].triu(1) == 0)
    assert torch.all(weights["self"][1, :, :, 4:] == 0)
    assert torch.all(weights["cross"][2, :, :, 3:] == 0)
    assert torch.allclose(weights["cross"].sum(-1), torch.ones(B, n_heads, T_dec))


def test_dropout_is_active_in_training_only():
    block = DecoderBlock(C, n_heads, dropout=0.5)
    x, memory, _, _ = inputs()
    assert not torch.equal(block.train()(x, memory), block(x, memory))
    assert torch.equal(block.eval()(x, memory), block(x, memory))


def test_bad_input_and_mismatched_copies_give_clear_errors():
    block = DecoderBlock(C, n_heads)
    x, memory, _, _ = inputs()
    with pytest.raises(ValueError, match=r"memory .* \(3, 5, 8\)"):
        block(x, memory[..., :8])
    with pytest.raises(ValueError, match=r"memory .* \(2, 5, 16\)"):
        block(x, memory[:2])
    with pytest.raises(ValueError, match=r"decoder input has shape \(3, 6, 8\)"):
        block(x[..., :8], memory)
    with pytest.raises(ValueError, match="norm_first"):
        copy_decoder_layer_from_torch(block, torch_layer(norm_first=True))
    with pytest.raises(ValueError, match="final norm"):
        copy_decoder_from_torch(Decoder(2, C, n_heads, d_ff), nn.TransformerDecoder(torch_layer(False), 2, norm=nn.LayerNorm(C)))
    with pytest.raises(ValueError, match="layer counts"):
        copy_decoder_from_torch(Decoder(2, C, n_heads, d_ff), nn.TransformerDecoder(torch_layer(False), 3))
    with pytest.raises(ValueError, match="n_layers"):
        Decoder(0, C, n_heads)


def test_dropout_sits_where_torch_puts_it():
    """PyTorch's decoder layer drops in six places: dropout1-3 on the three sublayers' outputs,
    the dropout inside the feed-forward network, and each attention's dropout on its weights."""
    block = DecoderBlock(C, n_heads, d_ff, dropout=0.3)
    places = {name: m.p for name, m in block.named_modules() if isinstance(m, nn.Dropout)}
    assert places == {
        "self_attention.dropout": 0.3,
        "self_attention_residual.dropout": 0.3,
        "cross_attention.dropout": 0.3,
        "cross_attention_residual.dropout": 0.3,
        "feed_forward.dropout": 0.3,
        "feed_forward_residual.dropout": 0.3,
    }
    theirs = nn.TransformerDecoderLayer(C, n_heads, d_ff, dropout=0.3, batch_first=True)
    theirs_places = [name for name, m in theirs.named_modules() if isinstance(m, nn.Dropout)]
    assert len(theirs_places) == 4  # dropout, dropout1-3; the two attentions keep their p as an attribute
    assert theirs.self_attn.dropout == theirs.multihead_attn.dropout == 0.3
    block.train()
    x, memory = torch.randn(2, T_dec, C), torch.randn(2, T_enc, C)
    assert not torch.equal(block(x, memory), block(x, memory))  # dropout is live in training mode
    block.eval()
    assert torch.equal(block(x, memory), block(x, memory))


def test_stack_sizes_must_be_integers():  # issue 11
    with pytest.raises(ValueError, match="n_layers must be an integer, got 2.0"):
        Decoder(2.0, 16, 2)
    with pytest.raises(ValueError, match="n_heads must be an integer"):
        DecoderBlock(16, "2")
