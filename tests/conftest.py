"""Fixtures shared by several test modules."""

import pytest

from utils import shakespeare


@pytest.fixture
def small_data(monkeypatch):
    """The gpt task on a slice of Tiny Shakespeare: command-line tests train in a second."""
    tokenizer, train_ids, val_ids = shakespeare.load_data()
    monkeypatch.setattr(shakespeare, "load_data", lambda: (tokenizer, train_ids[:20_000], val_ids[:1_000]))
