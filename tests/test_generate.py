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
    out = greedy_translate(model, src, sos_id=1, eos_id=2, pad_id=0, max_new_tokens=10)
    assert out.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]
    assert model.calls == 4  # stopped as soon as every row had its <EOS>, not after max_new_tokens steps
    short = greedy_translate(model, src, sos_id=1, eos_id=2, pad_id=0, max_new_tokens=2)
    assert short.shape == (2, 3)


# --- issue 11: bad arguments, failing models and half precision ----------------------


class FailingModel(nn.Module):
    """Raises on its second call, as a model given a bad id would."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.config = type("Config", (), {"max_len": 8, "pad_id": 0})()

    def forward(self, idx):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return torch.zeros(idx.shape[0], idx.shape[1], 10)

    def encode(self, src, src_key_padding_mask=None):
        return self(src)

    def decode(self, tgt_in, memory, memory_key_padding_mask=None):
        return self(tgt_in)


@pytest.mark.parametrize("decode", ["generate", "greedy_translate"])
def test_decoding_loops_give_the_model_back_in_training_mode_even_when_it_fails(decode):
    model = FailingModel().train()
    with pytest.raises(RuntimeError, match="boom"):
        if decode == "generate":
            generate(model, torch.tensor([[1]]), 5)
        else:
            greedy_translate(model, torch.tensor([[3, 4]]), sos_id=1, eos_id=2)
    assert model.training  # dropout would otherwise stay off for the rest of training
    model.eval()
    model.calls = 0
    with pytest.raises(RuntimeError, match="boom"):
        generate(model, torch.tensor([[1]]), 5)
    assert not model.training  # and a model in eval mode stays in eval mode


def test_generate_names_bad_arguments():
    model, idx = CountingModel(), torch.tensor([[0]])
    for bad in (-1, 2.5, "3", None):
        with pytest.raises(ValueError, match="max_new_tokens"):
            generate(model, idx, bad)
    assert generate(model, idx, 0).tolist() == [[0]]  # zero new tokens is a valid request
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, torch.zeros(2, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="block_size"):
        generate(model, idx, 3, block_size=0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, idx, 0, temperature=-1.0)  # checked even when no token is drawn
    with pytest.raises(ValueError, match="temperature"):
        generate(model, idx, 3, temperature=float("nan"))
    with pytest.raises(ValueError, match="top_k"):
        generate(model, idx, 3, top_k=True)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, idx, 3, top_p=0.0)
    with pytest.raises(ValueError, match="eos_id"):
        generate(model, idx, 3, eos_id=-2)


class ConfiguredCopyTranslator(CopyTranslator):
    """The copying translator with a config, as utils.models.Transformer has one."""

    def __init__(self, max_len, pad_id):
        super().__init__()
        self.config = type("Config", (), {"max_len": max_len, "pad_id": pad_id})()

    def decode(self, tgt_in, memory, memory_key_padding_mask=None):
        if tgt_in.shape[1] > self.config.max_len:
            raise ValueError(f"tgt_in has T={tgt_in.shape[1]} tokens, more than max_len={self.config.max_len}")
        return super().decode(tgt_in, memory, memory_key_padding_mask)


def test_greedy_translate_stops_at_the_models_max_len_and_reads_its_pad_id():
    src = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7, 8, 9], [8, 9, 9, 9, 9, 9, 9, 9, 9, 9]])
    model = ConfiguredCopyTranslator(max_len=4, pad_id=9)
    out = greedy_translate(model, src, sos_id=1, eos_id=2)  # the default max_new_tokens=50 is beyond the model's 4
    # Row 0: <SOS> then 4 copied tokens, the model's limit. Row 1: its 9s are padding (the model's
    # pad_id), so it copies 8 and ends; its finished row is filled with 9, not 0.
    assert out.tolist() == [[1, 5, 6, 7, 8], [1, 8, 2, 9, 9]]
    with pytest.raises(ValueError, match=r"pad_id=0 differs from the model's config.pad_id=9"):
        greedy_translate(model, src, sos_id=1, eos_id=2, pad_id=0)
    with pytest.raises(ValueError, match="pass pad_id"):
        greedy_translate(CopyTranslator(), src, sos_id=1, eos_id=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_translate(model, src, sos_id=1, eos_id=2, max_new_tokens=-1)


def test_greedy_translate_without_padding_fills_finished_rows_with_eos():
    model = ConfiguredCopyTranslator(max_len=6, pad_id=None)
    src = torch.tensor([[5, 6, 7], [8, 2, 2]])
    out = greedy_translate(model, src, sos_id=1, eos_id=2, src_key_padding_mask=torch.tensor([[0, 0, 0], [0, 1, 1]]).bool())
    assert out.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 2, 2]]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sampling_in_half_precision_gives_the_float32_answer(dtype):
    logits = (torch.randn(4, 1000, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    exact = logits.float()
    # A tiny temperature overflows fp16 (logits / 1e-4 > 65504): done in float32 it is greedy.
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=torch.Generator().manual_seed(0)),
                       greedy(exact))
    assert apply_temperature(logits, 0.5).dtype == torch.float32
    for p in (0.5, 0.9, 0.99):
        ours = top_p_filter(logits, p)
        assert ours.dtype == dtype  # the logits keep their dtype; the mass is computed in float32
        assert torch.equal(torch.isfinite(ours), torch.isfinite(top_p_filter(exact, p)))
        kept_mass = (torch.softmax(exact, -1) * torch.isfinite(ours)).sum(-1)
        assert (kept_mass >= p - 1e-6).all(), kept_mass
    kwargs = dict(temperature=0.7, top_k=50, top_p=0.9)
    assert torch.equal(draws(logits, 20, seed=5, **kwargs), draws(exact, 20, seed=5, **kwargs))


def test_top_p_of_one_keeps_every_token_of_a_gpt2_sized_vocabulary():
    logits = torch.randn(4, 50_257, generator=torch.Generator().manual_seed(0)) * 3
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert torch.isfinite(top_p_filter(logits.to(dtype), 1.0)).all()
        exact = torch.softmax(logits.to(dtype).double(), -1)
        for p in (0.5, 0.9, 0.99, 0.999):  # a float32 running sum drifted below p at this size
            kept = torch.isfinite(top_p_filter(logits.to(dtype), p))
            mass = (exact * kept).sum(-1)
            smallest_kept = exact.masked_fill(~kept, 1.0).min(-1).values
            assert (mass >= p - 1e-7).all() and (mass - smallest_kept < p).all(), (dtype, p, mass)
    assert sample_next(logits, top_p=1.0, generator=torch.Generator().manual_seed(0)).shape == (4,)


def test_sampling_names_logits_it_cannot_sample_from():
    logits = torch.tensor([[0.0, 1.0], [float("-inf"), float("-inf")]])
    with pytest.raises(ValueError, match="row 1 .* all -inf"):
        sample_next(logits)
    with pytest.raises(ValueError, match="row 0"):
        sample_next(torch.tensor([[float("nan"), 1.0]]))


def test_greedy_refuses_nan_logits_instead_of_picking_them():
    logits = torch.tensor([[0.0, 1.0, 0.5], [0.0, float("nan"), 3.0]])
    with pytest.raises(ValueError, match=r"row \(1,\) contain NaN"):
        greedy(logits)  # argmax would answer 1, the NaN
    with pytest.raises(ValueError, match="contain NaN"):
        sample_next(logits, temperature=0)
