"""Checkers for chapter 04's exercises (self-attention)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.exercises import checker, expect, expect_close, expect_shape


def _weights(W_Q: torch.Tensor, W_K: torch.Tensor) -> torch.Tensor:
    """Section 3's worked example: x = I (token t is e_t), one head of width 4, in float64."""
    x = torch.eye(4, dtype=torch.float64)
    scores = (x @ W_Q.double()) @ (x @ W_K.double()).T / math.sqrt(4)
    return torch.softmax(scores, dim=-1)  # (T, T)


@checker("Exercise 4.1 — a head that reads the next token")
def check_next_token_head(next_token_head) -> None:
    """``next_token_head()`` -> (W_Q, W_K), (4, 4) each: query t puts >= 0.9 of its weight on key t + 1."""
    result = next_token_head()
    expect(isinstance(result, tuple) and len(result) == 2, "return a tuple (W_Q, W_K)")
    W_Q, W_K = result
    expect_shape(W_Q, (4, 4), "W_Q")
    expect_shape(W_K, (4, 4), "W_K")
    weights = _weights(W_Q, W_K)
    targets = [weights[t, t + 1].item() for t in range(3)]
    previous = [weights[t, t - 1].item() for t in range(1, 4)]
    if min(previous) > 0.5:
        expect(False, "your head reads the PREVIOUS token, like section 3's: the query of token t must ask "
                      "for position t + 1 (e_t @ W_Q = c · e_(t+1))")
    if all(weights[t, t].item() > 0.5 for t in range(3)):
        expect(False, "each token reads itself: the query of t must match the key of t + 1, not its own")
    wins = all(int((weights[t] < weights[t, t + 1] - 1e-9).sum()) == 3 for t in range(3))
    if wins and min(targets) < 0.9:
        expect(False, f"the right keys win, but only with weights {[round(w, 2) for w in targets]}: make the "
                      "matching score larger (scale W_Q up; a score of 4 over the others gives about 0.95)")
    expect(min(targets) >= 0.9,
           f"query t should put at least 0.9 of its weight on key t + 1 (t = 0, 1, 2); yours put "
           f"{[round(w, 3) for w in targets]}")


@checker("Exercise 4.2 — heads laid out another way")
def check_interleaved_heads(interleaved_heads, contiguous_rows) -> None:
    """``interleaved_heads(x, n_heads)``: (B, T, C) -> (B, n_heads, T, head_size), head h holding channels
    h, h + n_heads, h + 2 n_heads, ...; ``contiguous_rows(w, n_heads)`` reorders a projection's output rows so
    that the book's contiguous split of ``x @ w'.T`` equals the interleaved split of ``x @ w.T``."""
    B, T, C, n_heads = 2, 3, 8, 4
    head_size = C // n_heads
    # Channel c of token t in sequence b holds the number 100 b + 10 t + c: every entry is recognisable.
    x = (100 * torch.arange(B)[:, None, None] + 10 * torch.arange(T)[None, :, None]
         + torch.arange(C)[None, None, :]).double()
    heads = interleaved_heads(x, n_heads)
    expect_shape(heads, (B, n_heads, T, head_size), f"interleaved_heads of a {(B, T, C)} tensor, n_heads={n_heads}")
    contiguous = x.view(B, T, n_heads, head_size).transpose(1, 2)
    expect(not torch.equal(heads, contiguous),
           "that is the book's contiguous split (head h holds channels h·head_size onwards); here head h holds "
           "every n_heads-th channel starting at h")
    for b, h, t in ((0, 1, 2), (1, 3, 0), (1, 0, 1)):
        expected = x[b, t, h::n_heads]
        expect(torch.equal(heads[b, h, t], expected),
               f"head {h}, token {t} of sequence {b} should hold channels {list(range(h, C, n_heads))}, "
               f"{expected.tolist()}, but holds {heads[b, h, t].tolist()}")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 12, generator=generator, dtype=torch.float64)
    w = torch.randn(12, 12, generator=generator, dtype=torch.float64)
    n_heads, head_size = 3, 4
    w2 = contiguous_rows(w, n_heads)
    expect_shape(w2, (12, 12), "contiguous_rows(w, 3) of a (12, 12) weight")
    expect(torch.equal(torch.sort(w2.flatten())[0], torch.sort(w.flatten())[0]),
           "contiguous_rows should only reorder the weight's entries, not change them")
    want = torch.stack([(x @ w.T)[..., h::n_heads] for h in range(n_heads)], dim=1)  # (B, n_heads, T, head_size)
    got = (x @ w2.T).view(2, 5, n_heads, head_size).transpose(1, 2)
    if torch.allclose(got, want):
        return
    perm = torch.tensor([h + i * n_heads for h in range(n_heads) for i in range(head_size)])  # new row <- old row
    inverse = torch.argsort(perm)
    expect(not torch.equal(w2, w), "the weight came back unchanged: its output rows need reordering")
    expect(not (torch.equal(w2, w[:, perm]) or torch.equal(w2, w[:, inverse])),
           "you reordered the columns (the inputs); the heads are made of outputs, the rows of w")
    expect(not torch.equal(w2, w[inverse]), "that is the inverse reordering: row h·head_size + i of the new "
                                            "weight should be row h + i·n_heads of w")
    expect(False, "the contiguous split of x @ w'.T does not give the interleaved heads of x @ w.T: row "
                  "h·head_size + i of the new weight should be row h + i·n_heads of w")


@checker("Exercise 4.3 — attention with a relative-position bias")
def check_relative_attention(relative_attention) -> None:
    """``relative_attention(q, k, v, bias_table)``: softmax(q kᵀ/√d + b[s - t]) v; table (n_heads, 2T - 1)."""
    generator = torch.Generator().manual_seed(0)
    B, n_heads, T, d = 2, 3, 5, 4
    q, k, v = (torch.randn(B, n_heads, T, d, generator=generator, dtype=torch.float64) for _ in range(3))
    table = 2 * torch.randn(n_heads, 2 * T - 1, generator=generator, dtype=torch.float64)
    offsets = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # (T, T): s - t
    bias = table[:, offsets + T - 1]  # (n_heads, T, T)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # PyTorch adds it to the scaled scores
    out = relative_attention(q.clone(), k.clone(), v.clone(), table.clone())
    expect_shape(out, (B, n_heads, T, d), "relative_attention(q, k, v, bias_table)")
    out = out.detach().double()
    reversed_bias = table[:, -offsets + T - 1]
    expect(not torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=reversed_bias)),
           "you read the table at t - s; entry s - t + T - 1 is the bias for a key s - t places after the "
           "query (negative offsets: keys in the past)")
    unscaled = torch.softmax((q @ k.transpose(-2, -1) + bias) / math.sqrt(d), dim=-1) @ v
    expect(not torch.allclose(out, unscaled),
           "add the bias to the scores after dividing by √d (q kᵀ / √d + b), not before")
    no_bias = F.scaled_dot_product_attention(q, k, v)
    expect(not torch.allclose(out, no_bias), "your output ignores the bias table")
    after = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) + bias
    expect(not torch.allclose(out, after @ v),
           "the bias goes into the scores, before softmax; added to the weights, rows no longer sum to 1")
    expect_close(out, expected, "your output (compared with F.scaled_dot_product_attention(..., attn_mask=bias))")


def _mqa_reference(x, W_q, W_k, W_v, W_o, n_heads):
    B, T, C = x.shape
    head_size = C // n_heads
    q = (x @ W_q).view(B, T, n_heads, head_size).transpose(1, 2)  # (B, n_heads, T, head_size)
    k = (x @ W_k)[:, None].expand(B, n_heads, T, head_size)  # one key head, shared
    v = (x @ W_v)[:, None].expand(B, n_heads, T, head_size)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(B, T, C) @ W_o


@checker("Exercise 4.4 — multi-query attention")
def check_multi_query_attention(multi_query_attention) -> None:
    """``multi_query_attention(x, W_q, W_k, W_v, W_o, n_heads)``: causal, n_heads queries, one key and value head."""
    generator = torch.Generator().manual_seed(1)
    B, T, C, n_heads = 2, 6, 8, 4
    head_size = C // n_heads
    x = torch.randn(B, T, C, generator=generator, dtype=torch.float64)
    W_q, W_o = (torch.randn(C, C, generator=generator, dtype=torch.float64) / math.sqrt(C) for _ in range(2))
    W_k, W_v = (torch.randn(C, head_size, generator=generator, dtype=torch.float64) / math.sqrt(C)
                for _ in range(2))
    weights = (W_q, W_k, W_v, W_o)
    out = multi_query_attention(x.clone(), *(w.clone() for w in weights), n_heads)
    expect_shape(out, (B, T, C), "multi_query_attention(x, ...)")
    out = out.detach().double()
    expected = _mqa_reference(x, *weights, n_heads)
    expect(not torch.allclose(out, _mqa_reference(x, *weights, n_heads) @ torch.linalg.inv(W_o)),
           "your output skips W_o: after the heads are put side by side, mix them with W_o")
    wrong_split = (x @ W_q).view(B, n_heads, T, head_size)
    k = (x @ W_k)[:, None].expand(B, n_heads, T, head_size)
    v = (x @ W_v)[:, None].expand(B, n_heads, T, head_size)
    mixed = F.scaled_dot_product_attention(wrong_split, k, v, is_causal=True)
    expect(not torch.allclose(out, mixed.transpose(1, 2).reshape(B, T, C) @ W_o),
           "the queries are split into heads with view(B, n_heads, T, head_size), which mixes tokens: "
           "view(B, T, n_heads, head_size).transpose(1, 2), as in the chapter's section 6")
    q = (x @ W_q).view(B, T, n_heads, head_size).transpose(1, 2)
    by_sqrt_C = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(C))
    expect(not torch.allclose(out, by_sqrt_C.transpose(1, 2).reshape(B, T, C) @ W_o),
           f"scale the scores by 1/√head_size = 1/√{head_size}, the width of one query, not by 1/√C")
    first_half = out[:, : T // 2]
    changed = x.clone()
    changed[:, T // 2 :] += 1.0  # change the future only
    again = multi_query_attention(changed, *(w.clone() for w in weights), n_heads).detach().double()
    expect(torch.allclose(again[:, : T // 2], first_half),
           "changing later tokens changed earlier outputs: the attention must be causal (chapter 05's mask, "
           "or is_causal=True)")
    expect_close(out, expected, "your output (compared with SDPA given the key and value head repeated)")


