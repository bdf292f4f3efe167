"""utils.train: batches, the loss, and a loop that really lowers it."""

import math

import pytest
import torch
from torch import nn

from utils.train import estimate_loss, get_batch, language_model_loss, train_language_model


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    x, y = get_batch(data, block_size=8, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 1)


def test_get_batch_errors_name_the_problem():
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(2, 10, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError, match="too few"):
        get_batch(torch.arange(5), 8, 2)


def test_language_model_loss_matches_cross_entropy_and_checks_shapes():
    logits = torch.randn(2, 3, 7)
    targets = torch.randint(7, (2, 3))
    manual = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).mean()
    assert torch.allclose(language_model_loss(logits, targets), manual)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        language_model_loss(logits, targets.T)


class Bigram(nn.Module):
    def __init__(self, V):
        super().__init__()
        self.table = nn.Embedding(V, V)
        nn.init.zeros_(self.table.weight)

    def forward(self, idx):
        return self.table(idx)


def test_training_lowers_the_loss_below_uniform():
    torch.manual_seed(0)
    pattern = torch.tensor([0, 1, 2, 3, 4]).repeat(200)  # a perfectly predictable sequence
    model = Bigram(5)
    splits = {"train": pattern[:900], "val": pattern[900:]}
    before = estimate_loss(model, splits, block_size=8, batch_size=4)
    assert before["val"] == pytest.approx(math.log(5), abs=1e-5)  # all-zero logits: uniform
    history = train_language_model(model, splits["train"], splits["val"], steps=200, block_size=8, batch_size=8,
                                   lr=0.1, eval_every=50, eval_iters=5)
    assert history["eval_step"] == [0, 50, 100, 150, 199]
    assert history["val"][-1] < 0.1 < history["val"][0]


def test_progress_bar_hides_when_tqdm_disable_is_set(monkeypatch):
    from utils.train import progress

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress(range(3)).disable
    monkeypatch.setenv("TQDM_DISABLE", "0")
    bar = progress(range(3), file=open("/dev/null", "w"))
    assert not bar.disable
    assert list(bar) == [0, 1, 2]
