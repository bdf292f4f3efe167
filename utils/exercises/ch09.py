"""Checkers for chapter 09's exercises (the decoder)."""

from __future__ import annotations

import torch

from utils.decoder import DecoderBlock
from utils.exercises import checker, expect, expect_shape


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
        got = int(decoder_block_parameters(C, d_ff))
        encoder_block = expected - (4 * C * C + 4 * C) - 2 * C
        expect(got != encoder_block,
               f"C={C}, d_ff={d_ff}: {got} is an encoder block's count; a decoder block adds a second "
               "attention (cross-attention) and a third LayerNorm")
        expect(got == expected, f"C={C}, d_ff={d_ff}: you counted {got:,}, a DecoderBlock has {expected:,} "
                                "(two attentions with biases, the feed-forward network, three LayerNorms)")
