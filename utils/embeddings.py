"""Embeddings: token ids to vectors, and the book's first language model (chapter 02).

An embedding table of shape ``(V, C)`` turns each token id into a learnable row of
``C`` numbers: ids ``(B, T)`` become vectors ``(B, T, C)``. It is a lookup, the
same as multiplying one-hot vectors by the table, only faster.

:class:`BigramLanguageModel` is the smallest language model there is: a ``(V, V)``
table whose row ``i`` holds the logits of the token that follows token ``i``. It
sees one token of context and nothing else; every later model must beat its loss.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.checks import check_int


class BigramLanguageModel(nn.Module):
    """ids ``(B, T)`` -> logits ``(B, T, V)``: the next token's logits depend on the current token only.

    The table starts at zero, so the untrained model predicts every token with
    probability ``1/V`` and its loss is exactly ``ln V``.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        if check_int("vocab_size", vocab_size) < 1:
            raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
        self.vocab_size = vocab_size
        self.logits_table = nn.Embedding(vocab_size, vocab_size)  # (V, V): row i = logits after token i
        nn.init.zeros_(self.logits_table.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2:
            raise ValueError(f"expected token ids of shape (B, T), got shape {tuple(ids.shape)}")
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be integers (torch.long), got dtype {ids.dtype}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}) for vocab_size={self.vocab_size}; "
                f"got values from {ids.min().item()} to {ids.max().item()}"
            )
        return self.logits_table(ids)  # (B, T, V)
