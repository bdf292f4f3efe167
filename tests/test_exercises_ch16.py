"""Chapter 16's checkers: they accept the right answer and name each plausible mistake."""

import codecs

import pytest
import torch

from utils.exercises import ExerciseFailed
from utils.exercises.ch16 import (
    check_document_mask,
    check_load_gpt2_attention,
    check_min_p_filter,
    check_stream_decode,
)


def loader_with(*, transpose=True, order="qkv", biases=True, transpose_proj=True):
    """GPT-2's attention weights into ours, right by default, with one chosen mistake."""

    def load_gpt2_attention(mha, c_attn_weight, c_attn_bias, c_proj_weight, c_proj_bias):
        pieces = dict(zip("qkv", zip(c_attn_weight.split(mha.C, dim=1), c_attn_bias.split(mha.C))))
        for name, letter in zip(("q_proj", "k_proj", "v_proj"), order):
            weight, bias = pieces[letter]
            getattr(mha, name).weight.copy_(weight.T if transpose else weight)
            if biases:
                getattr(mha, name).bias.copy_(bias)
        mha.out_proj.weight.copy_(c_proj_weight.T if transpose_proj else c_proj_weight)
        mha.out_proj.bias.copy_(c_proj_bias)

    return load_gpt2_attention


def test_c_attn_checker_names_each_mistake(capsys):
    check_load_gpt2_attention(loader_with())
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match=r"Conv1D stores its weight as \(in, out\)"):
        check_load_gpt2_attention(loader_with(transpose=False))
    with pytest.raises(ExerciseFailed, match="q_proj holds c_attn.s k part: its columns hold q first"):
        check_load_gpt2_attention(loader_with(order="kqv"))
    with pytest.raises(ExerciseFailed, match="copy the biases too"):
        check_load_gpt2_attention(loader_with(biases=False))
    with pytest.raises(ExerciseFailed, match="c_proj is a Conv1D too"):
        check_load_gpt2_attention(loader_with(transpose_proj=False))
    with pytest.raises(ExerciseFailed, match="k_proj holds c_attn's v part"):
        check_load_gpt2_attention(loader_with(order="qvk"))


def right_stream(tokenizer, ids):
    decoder = codecs.getincrementaldecoder("utf-8")()
    return [decoder.decode(tokenizer.decode_bytes([i])) for i in ids]


def test_stream_checker_names_each_mistake(capsys):
    check_stream_decode(right_stream)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="holds U\\+FFFD"):  # each token decoded alone
        check_stream_decode(lambda tokenizer, ids: [tokenizer.decode([i]) for i in ids])

    def all_at_the_end(tokenizer, ids):
        return [""] * (len(ids) - 1) + [tokenizer.decode(ids)]

    with pytest.raises(ExerciseFailed, match="as soon as its last byte has arrived"):
        check_stream_decode(all_at_the_end)
    with pytest.raises(ExerciseFailed, match="one string per token id"):
        check_stream_decode(lambda tokenizer, ids: [tokenizer.decode(ids)])

    def drops_the_pending_bytes(tokenizer, ids):  # errors="ignore" loses the split character
        return [tokenizer.decode_bytes([i]).decode("utf-8", errors="ignore") for i in ids]

    with pytest.raises(ExerciseFailed, match="the pieces join to"):
        check_stream_decode(drops_the_pending_bytes)


def mask_with(*, eot_opens=False, causal=True, documents=True):
    def document_mask(ids, eot_id):
        is_eot = (ids == eot_id).long()
        document = is_eot.cumsum(-1) - (0 if eot_opens else is_eot)
        T = ids.shape[-1]
        same = document[:, :, None] == document[:, None, :] if documents else torch.ones(ids.shape[0], T, T,
                                                                                         dtype=torch.bool)
        return same & torch.ones(T, T, dtype=torch.bool).tril() if causal else same

    return document_mask


def test_document_mask_checker_names_each_mistake(capsys):
    check_document_mask(mask_with())
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="plain causal mask"):
        check_document_mask(mask_with(documents=False))
    with pytest.raises(ExerciseFailed, match="opened the next document"):
        check_document_mask(mask_with(eot_opens=True))
    with pytest.raises(ExerciseFailed, match="must be causal too"):
        check_document_mask(mask_with(causal=False))
    with pytest.raises(ExerciseFailed, match="should be bool"):
        check_document_mask(lambda ids, eot: mask_with()(ids, eot).float())
    with pytest.raises(ExerciseFailed, match=r"shape \(8, 8\), expected \(3, 8, 8\)"):
        check_document_mask(lambda ids, eot: mask_with()(ids, eot)[0])


def min_p_with(*, scale=True, per_row=True, on="probs", in_place=False):
    def min_p_filter(logits, min_p):
        values = torch.softmax(logits, dim=-1) if on == "probs" else logits
        top = values.amax(dim=-1, keepdim=True) if per_row else values.max()
        drop = values < (min_p * top if scale else min_p)
        if in_place:
            return logits.masked_fill_(drop, float("-inf"))
        return logits.masked_fill(drop, float("-inf"))

    return min_p_filter


def test_min_p_checker_names_each_mistake(capsys):
    check_min_p_filter(min_p_with())
    assert "✓" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="below min_p itself"):
        check_min_p_filter(min_p_with(scale=False))
    with pytest.raises(ExerciseFailed, match="maximum per row"):
        check_min_p_filter(min_p_with(per_row=False))
    with pytest.raises(ExerciseFailed, match="not on logits"):
        check_min_p_filter(min_p_with(on="logits"))
    with pytest.raises(ExerciseFailed, match="work on a copy"):
        check_min_p_filter(min_p_with(in_place=True))
    with pytest.raises(ExerciseFailed, match="tokens kept"):  # top-p instead of min-p
        from utils.generate import top_p_filter

        check_min_p_filter(top_p_filter)
