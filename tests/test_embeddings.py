"""utils.embeddings: the bigram language model's shapes, start, optimum and errors."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from utils.embeddings import BigramLanguageModel
from utils.train import sequence_loss


def test_bigram_maps_ids_to_one_row_of_logits_per_token():
    V = 11
    model = BigramLanguageModel(V)
    assert sum(p.numel() for p in model.parameters()) == V * V
    with torch.no_grad():
        model.logits_table.weight.copy_(torch.randn(V, V))
    ids = torch.randint(V, (3, 7))
    logits = model(ids)
    assert logits.shape == (3, 7, V)
    assert torch.equal(logits, model.logits_table.weight[ids])  # row ids[b, t] of the table
    assert torch.equal(logits[0, 2], logits[1, 5]) or ids[0, 2] != ids[1, 5]


def test_untrained_bigram_is_uniform_with_loss_ln_V():
    V = 65
    model = BigramLanguageModel(V)
    ids = torch.randint(V, (4, 16))
    probs = torch.softmax(model(ids), dim=-1)
    assert torch.allclose(probs, torch.full_like(probs, 1 / V))
    assert math.isclose(sequence_loss(model(ids), torch.randint(V, (4, 16))).item(), math.log(V), rel_tol=1e-6)


def test_trained_bigram_learns_the_transition_frequencies():
    V = 4
    transitions = [[0.1, 0.6, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.5, 0.5]]
    draw = random.Random(0)
    ids = [0]
    for _ in range(2000):  # a Markov chain: the next token depends on the current one only
        ids.append(draw.choices(range(V), weights=transitions[ids[-1]])[0])
    ids = torch.tensor(ids)
    counts = torch.zeros(V, V).index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    frequencies = counts / counts.sum(dim=1, keepdim=True)  # the maximum-likelihood bigram table

    model = BigramLanguageModel(V)
    for _ in range(300):  # plain full-batch gradient descent
        loss = F.cross_entropy(model(ids[None, :-1])[0], ids[1:])
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            model.logits_table.weight -= 10.0 * model.logits_table.weight.grad
    learned = torch.softmax(model.logits_table.weight.detach(), dim=-1)
    assert torch.allclose(learned, frequencies, atol=0.02)


def test_bad_ids_give_clear_errors():
    model = BigramLanguageModel(5)
    with pytest.raises(ValueError, match=r"\(B, T\).*\(4,\)"):
        model(torch.arange(4))
    with pytest.raises(ValueError, match="integers.*float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[0, 5\).*from 0 to 7"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="vocab_size"):
        BigramLanguageModel(0)
    assert model(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 5)


def test_bigram_vocab_size_must_be_an_integer():  # issue 11
    for bad in (65.0, "65", None):
        with pytest.raises(ValueError, match="vocab_size must be an integer"):
            BigramLanguageModel(bad)
