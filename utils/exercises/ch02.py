"""Checkers for chapter 02's exercises (embeddings and the bigram model)."""

from __future__ import annotations

import math

import torch

from utils.exercises import ExerciseFailed, checker, expect, expect_close, expect_number, expect_shape


@checker("Exercise 2.1 — an embedding without nn.Embedding")
def check_embed_with_one_hot(embed_with_one_hot) -> None:
    """``embed_with_one_hot(ids, weight)``: ids (B, T), weight (V, C) -> one_hot(ids) @ weight, (B, T, C)."""
    generator = torch.Generator().manual_seed(0)
    for B, T, V, C in ((2, 5, 11, 3), (1, 4, 65, 8)):
        weight = torch.randn(V, C, generator=generator)
        ids = torch.randint(V // 2, (B, T), generator=generator)  # the largest id is well below V - 1
        try:
            vectors = embed_with_one_hot(ids, weight)
        except NotImplementedError:
            raise  # not attempted yet (NotImplementedError is a RuntimeError)
        except RuntimeError as error:
            raise ExerciseFailed(
                f"with ids of shape {tuple(ids.shape)} (largest id {ids.max().item()}) and a weight of shape "
                f"({V}, {C}) your code raised: {error}. Does your one-hot vector have V = {V} entries? "
                "F.one_hot(ids) alone makes it only as long as the largest id + 1: pass num_classes=V"
            ) from None
        expect_shape(vectors, (B, T, C), f"embed_with_one_hot(ids of shape {(B, T)}, weight of shape {(V, C)})")
        expect(vectors.is_floating_point(), f"the vectors should be floats like the weight, got dtype {vectors.dtype}")
        expect_close(vectors, weight[ids], "your vectors")


@checker("Exercise 2.2 — counting bigrams")
def check_bigram_counts(bigram_counts) -> None:
    """``bigram_counts(ids, V)``: (V, V) tensor, entry [i, j] = how often token j directly follows token i."""
    ids = torch.tensor([0, 1, 1, 2, 0, 1, 3, 3, 3, 0])
    V = 5
    expected = torch.zeros(V, V)
    for current, following in zip(ids[:-1].tolist(), ids[1:].tolist()):
        expected[current, following] += 1
    counts = bigram_counts(ids, V)
    expect_shape(counts, (V, V), f"bigram_counts(ids, V={V})")
    counts = counts.detach().float().cpu()
    expect(counts.sum().item() == len(ids) - 1,
           f"a sequence of {len(ids)} tokens has {len(ids) - 1} neighbouring pairs, but your counts add up "
           f"to {counts.sum().item():g}")
    expect(not torch.equal(counts, expected.T) or torch.equal(expected, expected.T),
           "rows and columns are swapped: row i is the current token, column j the token that follows it")
    expect_close(counts, expected, f"bigram_counts of {ids.tolist()}")


@checker("Exercise 2.3 — the loss of a probability table")
def check_table_loss(table_loss) -> None:
    """``table_loss(probs, ids)``: mean of -ln probs[ids[t], ids[t + 1]] over the sequence's pairs."""
    generator = torch.Generator().manual_seed(0)
    V = 6
    probs = torch.softmax(torch.randn(V, V, generator=generator), dim=-1)
    ids = torch.randint(V, (50,), generator=generator)
    expected = -torch.log(probs[ids[:-1], ids[1:]]).mean().item()
    value = expect_number(table_loss(probs, ids), "table_loss")
    expect(not math.isclose(value, -expected, rel_tol=1e-4),
           f"you returned {value:.4f}, the negative of the loss: the loss is -ln p, a positive number")
    expect(not math.isclose(value, expected / math.log(2), rel_tol=1e-4),
           f"you returned {value:.4f}, the loss in bits (log2); the book measures it in nats (natural log)")
    transposed = -torch.log(probs[ids[1:], ids[:-1]]).mean().item()
    expect(not math.isclose(value, transposed, rel_tol=1e-4),
           "you looked up probs[next, current]; row = current token, column = next token: probs[current, next]")
    expect(math.isclose(value, expected, rel_tol=1e-4),
           f"you returned {value:.4f}, expected {expected:.4f} = mean of -ln probs[ids[t], ids[t+1]]")
    uniform = expect_number(table_loss(torch.full((V, V), 1 / V), ids), "table_loss")
    expect(math.isclose(uniform, math.log(V), rel_tol=1e-4),
           f"a uniform table should cost ln V = {math.log(V):.4f}, you returned {uniform:.4f}")
