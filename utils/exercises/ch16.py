"""Checkers for chapter 16's exercises (GPT-2's tokenizer and weights in the book's code)."""

from __future__ import annotations

import math

import torch

from utils.attention import MultiHeadAttention
from utils.exercises import checker, expect, expect_close, expect_shape


def _gpt2_attention(x, c_attn_weight, c_attn_bias, c_proj_weight, c_proj_bias, n_heads):
    """GPT-2's causal self-attention written from its Conv1D weights: x (B, T, C) → (B, T, C)."""
    B, T, C = x.shape
    q, k, v = (x @ c_attn_weight + c_attn_bias).split(C, dim=-1)  # Conv1D: x @ W + b, W is (in, out)
    q, k, v = (t.view(B, T, n_heads, C // n_heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // n_heads)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
    return out @ c_proj_weight + c_proj_bias


@checker("Exercise 16.1 — GPT-2's c_attn by hand")
def check_load_gpt2_attention(load_gpt2_attention) -> None:
    """``load_gpt2_attention(mha, c_attn_weight, c_attn_bias, c_proj_weight, c_proj_bias)`` fills our
    MultiHeadAttention in place with one GPT-2 block's attention weights (Conv1D layout)."""
    torch.manual_seed(16)
    C, n_heads = 12, 3
    c_attn_weight, c_attn_bias = torch.randn(C, 3 * C) / C**0.5, 0.1 * torch.randn(3 * C)
    c_proj_weight, c_proj_bias = torch.randn(C, C) / C**0.5, 0.1 * torch.randn(C)
    mha = MultiHeadAttention(C, n_heads).eval()
    with torch.no_grad():
        load_gpt2_attention(mha, c_attn_weight, c_attn_bias, c_proj_weight, c_proj_bias)
    expect(isinstance(mha, MultiHeadAttention) and mha.q_proj.weight.shape == (C, C),
           f"fill the mha you are given, in place: its q_proj.weight should stay ({C}, {C}), got "
           f"{tuple(mha.q_proj.weight.shape)}")
    thirds = dict(zip("qkv", (w.T for w in c_attn_weight.split(C, dim=1))))  # each (out, in), as ours
    bias_thirds = dict(zip("qkv", c_attn_bias.split(C)))
    if torch.allclose(mha.q_proj.weight, c_attn_weight[:, :C]):
        expect(False, "q_proj.weight holds c_attn_weight[:, :C] as it is: Conv1D stores its weight as (in, out), "
               "nn.Linear as (out, in); transpose each piece (.T)")
    for name, letter in zip(("q_proj", "k_proj", "v_proj"), "qkv"):
        holds = [other for other, weight in thirds.items() if torch.allclose(getattr(mha, name).weight, weight)]
        if holds and holds[0] != letter:
            expect(False, f"{name} holds c_attn's {holds[0]} part: its columns hold q first, then k, then v")
        bias = getattr(mha, name).bias
        if not torch.allclose(bias, bias_thirds[letter]):
            wrong = [other for other, b in bias_thirds.items() if torch.allclose(bias, b)]
            expect(False, f"{name}.bias is c_attn_bias's {wrong[0]} part; q, k, v come in that order" if wrong
                   else f"{name}.bias is not the {letter} third of c_attn_bias: copy the biases too")
    if torch.allclose(mha.out_proj.weight, c_proj_weight) and not torch.allclose(c_proj_weight, c_proj_weight.T):
        expect(False, "out_proj.weight is c_proj_weight as it is: c_proj is a Conv1D too, transpose it")
    expect(torch.allclose(mha.out_proj.bias, c_proj_bias), "out_proj.bias should be c_proj_bias")
    x = torch.randn(2, 5, C)
    with torch.no_grad():
        expected = _gpt2_attention(x, c_attn_weight, c_attn_bias, c_proj_weight, c_proj_bias, n_heads)
        expect_close(mha(x, causal=True), expected, "mha(x, causal=True) after loading (compare GPT-2's attention "
                     "computed from c_attn and c_proj)")


def _complete_prefix(data: bytes) -> str:
    """The longest prefix of ``data`` that is whole UTF-8 characters, decoded."""
    for cut in range(len(data), max(-1, len(data) - 4), -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    raise AssertionError("not UTF-8")


@checker("Exercise 16.2 — a streaming decoder")
def check_stream_decode(stream_decode) -> None:
    """``stream_decode(tokenizer, ids)`` → one string per id: the text that is complete after that id and was
    not shown before, never half a character."""
    from utils.tokenizers import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    for text in ("Hello, world!", "naïve café, 日本語 and 👨‍👩‍👧 😀😀 ok", "🇩🇪 Zürich\n\n  ẞ €5"):
        ids = tokenizer.encode(text)
        pieces = stream_decode(tokenizer, ids)
        expect(isinstance(pieces, list | tuple) and len(pieces) == len(ids),
               f"return one string per token id ({len(ids)} for {text!r}), got "
               f"{type(pieces).__name__}{' of length ' + str(len(pieces)) if isinstance(pieces, list | tuple) else ''}")
        expect(all(isinstance(p, str) for p in pieces), "every piece should be a str")
        if any("\ufffd" in p for p in pieces):
            expect(False, f"a piece for {text!r} holds U+FFFD (�): a token ended inside a character. Keep the "
                   "bytes of an unfinished character until the token that completes it")
        expect("".join(pieces) == text, f"the pieces join to {''.join(pieces)!r}, expected {text!r}")
        for i in range(len(ids)):
            shown = "".join(pieces[:i + 1])
            ready = _complete_prefix(tokenizer.decode_bytes(ids[:i + 1]))
            expect(shown == ready, f"after token {i} of {text!r} you have shown {shown!r}; {ready!r} is complete "
                   "by then: show each character as soon as its last byte has arrived")


@checker("Exercise 16.3 — documents in one row")
def check_document_mask(document_mask) -> None:
    """``document_mask(ids, eot_id)``: ids (B, T) → bool (B, T, T), True where query t may attend key s: s <= t
    and both in the same document; a document ends with (and owns) its <|endoftext|>."""
    eot = 50256
    rows = torch.tensor([
        [11, 12, eot, 13, 14, 15, eot, 16],
        [eot, 21, 22, eot, eot, 23, 24, 25],
        [31, 32, 33, 34, 35, 36, 37, eot],
    ])
    mask = document_mask(rows, eot)
    expect_shape(mask, (3, 8, 8), "document_mask(ids (3, 8), ...)")
    expect(mask.dtype == torch.bool, f"the mask should be bool (True = may attend), got {mask.dtype}")
    is_eot = rows == eot
    document = is_eot.long().cumsum(-1) - is_eot.long()  # (B, T): <|endoftext|>s strictly before
    causal = torch.ones(8, 8, dtype=torch.bool).tril()
    expected = (document[:, :, None] == document[:, None, :]) & causal  # (B, T, T)
    if torch.equal(mask, causal.expand(3, 8, 8)):
        expect(False, "this is the plain causal mask: a token must not see the documents before its own")
    starts_next = is_eot.long().cumsum(-1)
    if torch.equal(mask, (starts_next[:, :, None] == starts_next[:, None, :]) & causal):
        expect(False, "<|endoftext|> opened the next document here; it ends (and belongs to) the document "
               "before it, whose last token predicts it")
    if torch.equal(mask, document[:, :, None] == document[:, None, :]):
        expect(False, "tokens see later tokens of their document: the mask must be causal too (s <= t)")
    expect(torch.equal(mask, expected), f"row 1 should be {expected[1].int().tolist()}, got {mask[1].int().tolist()}")
    one = torch.tensor([[5, 6, 7]])
    expect(torch.equal(document_mask(one, eot), causal[:3, :3][None]),
           "with no <|endoftext|> in a row, the mask is the causal mask")


@checker("Exercise 16.4 — min-p sampling's filter")
def check_min_p_filter(min_p_filter) -> None:
    """``min_p_filter(logits, min_p)``: logits (B, V) with -inf wherever a token's probability is below
    ``min_p`` times the row's largest probability; the rest unchanged."""
    logits = torch.tensor([[2.0, 1.5, 0.0, -1.0, 3.0], [0.0, 0.1, 0.2, -0.9, -0.2], [5.0, 1.0, 4.0, 4.5, 0.0],
                           [9.0, 5.0, 7.0, 8.5, 0.0]])
    original = logits.clone()
    min_p = 0.3
    out = min_p_filter(logits, min_p)
    expect(torch.equal(logits, original), "min_p_filter changed the logits it was given: work on a copy")
    expect_shape(out, tuple(logits.shape), "min_p_filter(logits (4, 5), 0.3)")
    probs = torch.softmax(logits, dim=-1)
    keep = probs >= min_p * probs.amax(dim=-1, keepdim=True)
    expected = logits.masked_fill(~keep, float("-inf"))
    dropped = torch.isinf(out)
    if not torch.equal(dropped, ~keep):  # name the mistake when the answer is wrong
        if torch.equal(dropped, probs < min_p):
            expect(False, "you dropped tokens whose probability is below min_p itself; min-p scales the threshold "
                   "by the most likely token's probability: p < min_p * p_max")
        if torch.equal(dropped, probs < min_p * probs.max()):
            expect(False, "each row has its own most likely token: take the maximum per row (dim=-1)")
        if torch.equal(dropped, logits < min_p * logits.amax(dim=-1, keepdim=True)):
            expect(False, "the threshold is on probabilities (softmax), not on logits")
        expect(False, f"tokens kept: expected {keep.int().tolist()}, got {(~dropped).int().tolist()}")
    expect_close(out.masked_fill(~keep, 0.0), expected.masked_fill(~keep, 0.0), "the kept logits (unchanged)")
    expect(bool(torch.isinf(min_p_filter(torch.zeros(1, 4), 1.0)).logical_not().all()),
           "with equal logits every token has p = p_max: all are kept, even for min_p = 1")
