"""utils.generate: each decoding strategy has its defining property."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from utils.generate import (
    apply_temperature,
    generate,
    greedy,
    greedy_translate,
    sample_next,
    top_k_filter,
    top_p_filter,
)


def draws(logits, n, seed=0, **kwargs):
    """n samples from each row of logits (B, V) -> ids (n, B)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([sample_next(logits, generator=generator, **kwargs) for _ in range(n)])


def test_greedy_is_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [5.0, 4.9, 0.0]])
    assert greedy(logits).tolist() == [1, 0]
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


def test_temperature_towards_zero_gives_greedy_and_high_temperature_flattens():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(1)) * 3
    for seed in range(20):
        assert torch.equal(draws(logits, 1, seed=seed, temperature=1e-3)[0], greedy(logits))
    entropies = []
    for temperature in (0.5, 1.0, 2.0, 5.0):
        probs = torch.softmax(apply_temperature(logits, temperature), dim=-1)
        entropies.append(-(probs * probs.log()).sum(-1).mean().item())
    assert entropies == sorted(entropies)  # hotter is flatter
    samples = draws(logits, 300, temperature=1.0)
    assert (samples != greedy(logits)).any()  # at temperature 1 it really samples
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1.0)


def test_top_k_never_samples_outside_the_k_most_likely_but_uses_all_of_them():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(2))
    k = 5
    allowed = torch.topk(logits, k, dim=-1).indices  # (4, k)
    samples = draws(logits, 1000, top_k=k, temperature=2.0)  # (n, 4)
    for row in range(4):
        seen = set(samples[:, row].tolist())
        assert seen <= set(allowed[row].tolist())
        assert len(seen) == k  # not secretly greedy: every one of the k is drawn
    filtered = top_k_filter(logits, k)
    assert torch.equal(torch.isfinite(filtered).sum(-1), torch.full((4,), k))
    assert torch.equal(top_k_filter(logits, 1000), logits)  # k >= V keeps everything
    with pytest.raises(ValueError, match="k >= 1"):
        top_k_filter(logits, 0)


def test_top_p_keeps_the_smallest_prefix_with_mass_at_least_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05 (shuffled on purpose)
    logits = probs.log()
    kept = lambda p: set(torch.nonzero(torch.isfinite(top_p_filter(logits, p))).flatten().tolist())
    assert kept(0.3) == {1}  # the top token alone already has 0.5 >= 0.3
    assert kept(0.7) == {1, 3}  # 0.5 < 0.7 <= 0.8
    assert kept(0.9) == {1, 3, 2}  # 0.8 < 0.9 <= 0.95
    assert kept(0.99) == {0, 1, 2, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="0 < p <= 1"):
            top_p_filter(logits, bad)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.05, 0.99), V=st.integers(2, 40))
def test_top_p_property(seed, p, V):
    logits = torch.randn(V, generator=torch.Generator().manual_seed(seed)) * 2
    probs = torch.softmax(logits, -1)
    keep = torch.isfinite(top_p_filter(logits, p))
    mass = probs[keep].sum().item()
    assert mass >= p - 1e-6  # enough mass
    assert mass - probs[keep].min().item() < p + 1e-6  # dropping the smallest kept token falls below p: smallest set
    if (~keep).any():
        assert probs[keep].min() >= probs[~keep].max()  # the kept tokens are the most likely ones


def test_top_p_sampling_stays_inside_the_nucleus_and_uses_all_of_it():
    probs = torch.tensor([[0.4, 0.05, 0.3, 0.2, 0.05]])
    samples = draws(probs.log(), 2000, top_p=0.85)  # nucleus: 0.4 + 0.3 + 0.2 = 0.9
    assert set(samples.flatten().tolist()) == {0, 2, 3}
    frequencies = torch.bincount(samples.flatten(), minlength=5).float() / samples.numel()
    assert torch.allclose(frequencies[[0, 2, 3]], torch.tensor([0.4, 0.3, 0.2]) / 0.9, atol=0.04)  # renormalised


def test_sampling_matches_the_softmax_probabilities():
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    samples = draws(logits, 4000, seed=3).flatten()
    frequencies = torch.bincount(samples, minlength=3).float() / samples.numel()
    assert torch.allclose(frequencies, torch.softmax(logits[0], -1), atol=0.03)


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(3, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(draws(logits, 10, seed=7, top_k=8, top_p=0.9), draws(logits, 10, seed=7, top_k=8, top_p=0.9))


class CountingModel(nn.Module):
    """Predicts (last token + 1) mod V with certainty, and refuses contexts longer than block_size."""

    def __init__(self, V=10, block_size=4):
        super().__init__()
        self.V, self.block_size = V, block_size

    def forward(self, idx):
        B, T = idx.shape
        assert T <= self.block_size, f"context of {T} tokens > block_size {self.block_size}"
        return torch.nn.functional.one_hot((idx + 1) % self.V, self.V).float() * 20  # (B, T, V)


def test_generate_appends_tokens_crops_the_context_and_stops_at_eos():
    model = CountingModel()
    idx = torch.tensor([[0], [5]])
    out = generate(model, idx, 6, block_size=4, temperature=0)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5, 6], [5, 6, 7, 8, 9, 0, 1]]
    with pytest.raises(AssertionError, match="block_size"):
        generate(model, idx, 6, temperature=0)  # no cropping: the model sees 5 tokens
    stopped = generate(model, idx, 20, block_size=4, temperature=0, eos_id=7)
    assert stopped.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [5, 6, 7, 7, 7, 7, 7, 7]]
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        generate(model, torch.tensor([1, 2]), 3)


class CopyTranslator(nn.Module):
    """A fake encoder-decoder: it 'translates' by copying the source, then says <EOS> (id 2)."""

    def encode(self, src, src_key_padding_mask=None):
        self.calls = 0
        return src.float()[..., None]  # (B, T_enc, 1)

    def decode(self, tgt_in, memory, memory_key_padding_mask=None):
        self.calls += 1
        B, T = tgt_in.shape
        src = memory[..., 0].long()
        lengths = (~memory_key_padding_mask).sum(-1)  # (B,)
        next_ids = torch.where(T - 1 < lengths, src[:, min(T - 1, src.shape[1] - 1)], torch.full_like(lengths, 2))
        return torch.nn.functional.one_hot(next_ids, 10).float()[:, None, :].expand(B, T, 10)


def test_greedy_translate_stops_at_eos_and_pads_finished_rows():
    model = CopyTranslator()
    src = torch.tensor([[5, 6, 7], [8, 0, 0]])  # the second sentence is padded with 0
    out = greedy_translate(model, src, sos_id=1, eos_id=2, pad_id=0, max_len=10)
    assert out.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]
    assert model.calls == 4  # stopped as soon as every row had its <EOS>, not after max_len steps
    short = greedy_translate(model, src, sos_id=1, eos_id=2, max_len=2)
    assert short.shape == (2, 3)
