"""Checkers for chapter 09's exercises (the decoder)."""

from __future__ import annotations

import torch
from torch import nn

from utils.decoder import DecoderBlock, copy_decoder_layer_from_torch
from utils.exercises import checker, expect, expect_close, expect_shape


@checker("Exercise 9.1 — teacher forcing")
def check_teacher_forcing(teacher_forcing) -> None:
    """``teacher_forcing(target_ids, sos_id, eos_id)`` returns (decoder_input, labels)."""
    for target, sos, eos in (([7, 8, 9], 1, 2), ([42], 1, 2), ([5, 6, 7, 8, 9, 10], 11, 12)):
        result = teacher_forcing(list(target), sos, eos)
        expect(isinstance(result, tuple) and len(result) == 2,
               f"return the pair (decoder_input, labels), got {type(result).__name__}")
        decoder_input, labels = (list(x.tolist() if hasattr(x, "tolist") else x) for x in result)
        expected_input, expected_labels = [sos, *target], [*target, eos]
        expect(len(decoder_input) == len(labels) == len(target) + 1,
               f"for a target of {len(target)} tokens both sequences have {len(target) + 1} tokens; "
               f"you gave {len(decoder_input)} and {len(labels)}")
        expect(decoder_input != [*target, eos] or labels != [sos, *target],
               "decoder input and labels are swapped: the input starts with <SOS>, the labels end with <EOS>")
        expect(decoder_input == expected_input,
               f"target {target}: the decoder input is <SOS>={sos} then the target, {expected_input}; "
               f"you gave {decoder_input}")
        expect(labels == expected_labels,
               f"target {target}: the labels are the target then <EOS>={eos}, {expected_labels}; you gave {labels}")


@checker("Exercise 9.2 — the cross-attention mask")
def check_cross_attention_mask(cross_attention_mask) -> None:
    """``cross_attention_mask(src_padding, T_dec)``: bool (B, T_dec, T_enc), True = may attend."""
    src_padding = torch.tensor([[False, False, False, False, True],
                                [False, False, True, True, True]])  # (B=2, T_enc=5)
    for T_dec in (3, 6):
        mask = cross_attention_mask(src_padding.clone(), T_dec)
        expect_shape(mask, (2, T_dec, 5), f"cross_attention_mask(src_padding of shape (2, 5), T_dec={T_dec})")
        expect(mask.dtype == torch.bool, f"the mask should be bool (True = may attend), got {mask.dtype}")
        expected = (~src_padding)[:, None, :].expand(2, T_dec, 5)
        expect(not torch.equal(mask, ~expected),
               "the mask is inverted: here True means the query MAY attend, so padding must be False")
        causal = torch.ones(T_dec, 5, dtype=torch.bool).tril()
        expect(not torch.equal(mask, expected & causal),
               "you applied a causal mask: cross-attention reads the source, which is known in full "
               "before decoding starts, so every target position may see every real source token")
        expect(torch.equal(mask, expected),
               f"with src_padding {src_padding.int().tolist()} every row of the mask should be "
               "True at the real source tokens and False at the padding")


@checker("Exercise 9.3 — parameters of a decoder block")
def check_decoder_parameters(decoder_block_parameters) -> None:
    """``decoder_block_parameters(C, d_ff)`` counts the learnable numbers of one DecoderBlock."""
    for C, d_ff, n_heads in ((32, 128, 4), (512, 2048, 8), (12, 20, 3)):
        expected = sum(p.numel() for p in DecoderBlock(C, n_heads, d_ff).parameters())
        got = decoder_block_parameters(C, d_ff)
        expect(isinstance(got, int | float) and not isinstance(got, bool) and got == int(got),
               f"return the number of parameters as an int; decoder_block_parameters({C}, {d_ff}) "
               f"returned {got!r}")
        got = int(got)
        encoder_block = expected - (4 * C * C + 4 * C) - 2 * C
        expect(got != encoder_block,
               f"C={C}, d_ff={d_ff}: {got} is an encoder block's count; a decoder block adds a second "
               "attention (cross-attention) and a third LayerNorm")
        expect(got == expected, f"C={C}, d_ff={d_ff}: you counted {got:,}, a DecoderBlock has {expected:,} "
                                "(two attentions with biases, the feed-forward network, three LayerNorms)")


class _Parts(nn.Module):
    """A decoder block's modules with no forward of their own: the exercise writes it."""

    def __init__(self, block: DecoderBlock):
        super().__init__()
        self.self_attention = block.self_attention
        self.cross_attention = block.cross_attention
        self.feed_forward = block.feed_forward
        self.norm1 = block.self_attention_residual.norm
        self.norm2 = block.cross_attention_residual.norm
        self.norm3 = block.feed_forward_residual.norm


@checker("Exercise 9.4 — a decoder block's forward")
def check_decoder_block_forward(decoder_block_forward) -> None:
    """``decoder_block_forward(parts, x, memory, tgt_key_padding_mask, memory_key_padding_mask)``."""
    C, n_heads, T_dec, T_enc = 16, 4, 5, 7
    with torch.random.fork_rng():
        torch.manual_seed(9)
        theirs = nn.TransformerDecoderLayer(C, n_heads, 4 * C, dropout=0.0, batch_first=True).eval()
        with torch.no_grad():  # gains and biases away from 1 and 0, so that a swapped norm shows
            for norm in (theirs.norm1, theirs.norm2, theirs.norm3):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.5)
        x, memory = torch.randn(2, T_dec, C), torch.randn(2, T_enc, C)
    tgt_padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])  # (B, T_dec): True = padding
    src_padding = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])  # (B, T_enc)
    parts = _Parts(copy_decoder_layer_from_torch(DecoderBlock(C, n_heads), theirs).eval())
    real = ~tgt_padding

    def run(x, memory):
        return decoder_block_forward(parts, x.clone(), memory.clone(), tgt_padding, src_padding)

    with torch.no_grad():
        out = run(x, memory)
        expect_shape(out, (2, T_dec, C), f"the block's output for x {tuple(x.shape)}")
        changed = x.clone()
        changed[:, -1] += 5.0  # a different last target token
        expect(torch.allclose(run(changed, memory)[:, :-1], out[:, :-1], atol=1e-5),
               "changing the last target token changed the outputs before it: the decoder's "
               "self-attention must be causal (causal=True)")
        later_source = memory.clone()
        later_source[:, 3] += 5.0  # a different source token 3 (real in both rows)
        expect(not torch.allclose(run(x, later_source)[:, 0], out[:, 0], atol=1e-5),
               "target position 0 did not see source position 3: the cross-attention must not be "
               "causal, every target position may read the whole source")
        garbage = memory.masked_fill(src_padding[:, :, None], 100.0)
        expect(torch.allclose(run(x, garbage)[real], out[real], atol=1e-5),
               "what sits at the padded source positions changed the output: pass "
               "memory_key_padding_mask to the cross-attention")
        torch_causal = torch.ones(T_dec, T_dec, dtype=torch.bool).triu(1)  # True = hidden (PyTorch)
        expected = theirs(x, memory, tgt_mask=torch_causal, tgt_key_padding_mask=tgt_padding,
                          memory_key_padding_mask=src_padding)
        pre = x + parts.self_attention(parts.norm1(x), causal=True, key_padding_mask=tgt_padding)
        pre = pre + parts.cross_attention(parts.norm2(pre), memory, key_padding_mask=src_padding)
        pre = pre + parts.feed_forward(parts.norm3(pre))
        expect(not torch.allclose(out[real], pre[real], atol=1e-4),
               "that is the pre-norm arrangement; this block is post-norm, the paper's: "
               "x = norm(x + sublayer(x)) for each of the three sublayers")
        expect_close(out[real], expected[real],
                     "the output at the real target positions (compared with "
                     "nn.TransformerDecoderLayer; order: masked self-attention, cross-attention, "
                     "feed-forward, each followed by add & norm with norm1, norm2, norm3)", atol=1e-5)
