"""utils.models: both models assembled from the kept modules, equal to nn.Transformer, and trainable."""

import math

import pytest
import torch
from torch import nn

from utils.decoder import DecoderBlock
from utils.encoder import EncoderBlock
from utils.generate import generate, greedy_translate
from utils.models import (
    GPT,
    GPTConfig,
    Transformer,
    TransformerConfig,
    copy_transformer_from_torch,
    count_parameters,
    sequence_loss,
)

V, C = 30, 32
PAD, SOS, EOS = 0, 1, 2


def small_transformer(**fields):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(src_vocab_size=V + 5, tgt_vocab_size=V, **fields))


def small_gpt(**fields):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=8, **fields))


def test_models_are_built_from_the_kept_blocks():
    transformer, gpt = small_transformer(), small_gpt()
    assert all(isinstance(b, EncoderBlock) for b in transformer.encoder.blocks)
    assert all(isinstance(b, DecoderBlock) for b in transformer.decoder.blocks)
    assert all(isinstance(b, EncoderBlock) for b in gpt.stack.blocks)


def test_shapes_follow_the_notation_table():
    model = small_transformer()
    src, tgt_in = torch.randint(3, V, (4, 7)), torch.randint(3, V, (4, 5))
    memory = model.encode(src)
    assert memory.shape == (4, 7, C)  # (B, T_enc, C)
    assert model.decode(tgt_in, memory).shape == (4, 5, V)  # (B, T_dec, V)
    assert model(src, tgt_in).shape == (4, 5, V)
    gpt = small_gpt()
    assert gpt(torch.randint(V, (4, 8))).shape == (4, 8, V)  # (B, T, V)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match=r"T=9 .* block_size=8"):
        small_gpt()(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        small_gpt()(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"same B; got \(2, 3\) and \(3, 3\)"):
        small_transformer()(torch.ones(2, 3, dtype=torch.long), torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len=64"):
        small_transformer().encode(torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        GPTConfig.preset("tpu", vocab_size=V)
    for fields, message in [({"norm_first": "no"}, "norm_first must be True or False, got 'no'"),
                            ({"tie_weights": 1}, "tie_weights must be True or False, got 1"),
                            ({"dropout": "abc"}, r"dropout must be a number in \[0, 1\), got 'abc'"),
                            ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0")]:
        with pytest.raises(ValueError, match=message):
            GPTConfig(vocab_size=V, **fields)
        with pytest.raises(ValueError, match=message):
            TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, **fields)


def test_presets_are_one_word_apart():
    from utils import presets

    cpu, gpu = GPTConfig.preset("cpu", vocab_size=V), GPTConfig.preset("gpu", vocab_size=V)
    for name, config in (("cpu", cpu), ("gpu", gpu)):  # the model the command line trains
        assert {field: getattr(config, field) for field in presets.GPT[name]["model"]} == presets.GPT[name]["model"]
    assert (cpu.C, gpu.C) == (64, 384) and gpu.n_layers > cpu.n_layers
    base = TransformerConfig.preset("gpu", src_vocab_size=V, tgt_vocab_size=V, n_encoder_layers=1)
    assert (base.C, base.n_heads, base.d_ff, base.n_encoder_layers) == (512, 8, 2048, 1)  # fields override


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_stacks_equal_nn_transformer(norm_first):
    torch.manual_seed(1)
    theirs = nn.Transformer(C, 4, 2, 3, 64, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = Transformer(TransformerConfig(V, V, C=C, n_heads=4, n_encoder_layers=2, n_decoder_layers=3, d_ff=64,
                                         norm_first=norm_first, final_norm=True))
    copy_transformer_from_torch(ours, theirs).eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 7, C, generator=g), torch.randn(3, 5, C, generator=g)
    src_padding = torch.zeros(3, 7, dtype=torch.bool)
    src_padding[1, 5:] = True
    tgt_padding = torch.zeros(3, 5, dtype=torch.bool)
    tgt_padding[2, 3:] = True
    # (Gradients stay on: with them off, nn.Transformer's encoder may take a fast path that zeroes padded rows.)
    expected = theirs(x, y, tgt_mask=torch.ones(5, 5, dtype=torch.bool).triu(1), src_key_padding_mask=src_padding,
                      tgt_key_padding_mask=tgt_padding, memory_key_padding_mask=src_padding)
    got = ours.run_decoder(y, ours.run_encoder(x, src_padding), tgt_key_padding_mask=tgt_padding,
                           memory_key_padding_mask=src_padding)
    assert (got - expected).abs().max().item() <= 1e-5


def test_copying_from_nn_transformer_needs_the_final_norms():
    theirs = nn.Transformer(C, 4, 2, 2, 64, dropout=0.0, batch_first=True)
    with pytest.raises(ValueError, match="final_norm=True"):
        copy_transformer_from_torch(small_transformer(d_ff=64), theirs)
    with pytest.raises(ValueError, match="layer counts"):
        copy_transformer_from_torch(small_transformer(d_ff=64, final_norm=True, n_decoder_layers=1), theirs)


@pytest.mark.parametrize("build", [small_transformer, small_gpt], ids=["transformer", "gpt"])
def test_weight_tying_shares_one_matrix_and_saves_V_times_C(build):
    tied, untied = build(), build(tie_weights=False)
    embedding = tied.tgt_embedding if isinstance(tied, Transformer) else tied.token_embedding
    assert tied.head.weight is embedding.weight
    assert count_parameters(untied) - count_parameters(tied) == V * C
    assert not torch.equal(untied.head.weight, (untied.tgt_embedding if build is small_transformer
                                                else untied.token_embedding).weight)


def test_gpt_is_causal_and_transformer_ignores_source_padding():
    gpt = small_gpt().eval()
    idx = torch.randint(V, (2, 8))
    logits = gpt(idx)
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % V
    assert torch.equal(gpt(changed)[:, :5], logits[:, :5])
    assert not torch.allclose(gpt(changed)[:, 5:], logits[:, 5:])
    model = small_transformer().eval()
    src = torch.tensor([[5, 6, 7, PAD, PAD]])
    tgt_in = torch.tensor([[SOS, 8, 9]])
    other_padding = torch.tensor([[5, 6, 7, 11, 12]])
    assert torch.allclose(model(src, tgt_in, src_key_padding_mask=src == PAD),
                          model(other_padding, tgt_in, src_key_padding_mask=src == PAD), atol=1e-6)


def test_sequence_loss_is_minus_log_p_of_the_targets_over_real_tokens():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, V, generator=g)
    targets = torch.randint(3, V, (2, 4), generator=g)
    targets[1, 2:] = PAD
    log_p = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    real = targets != PAD
    assert torch.allclose(sequence_loss(logits, targets, pad_id=PAD), -log_p[real].mean())
    assert torch.allclose(sequence_loss(logits, targets), -log_p.mean())
    eps = 0.1
    smoothed = -((1 - eps) * log_p + eps * torch.log_softmax(logits, -1).mean(-1))
    assert torch.allclose(sequence_loss(logits, targets, pad_id=PAD, label_smoothing=eps), smoothed[real].mean())
    with pytest.raises(ValueError, match=r"\(2, 4, 30\) and \(4, 2\)"):
        sequence_loss(logits, targets.T)


def memorise(model, loss_of_batch, steps=300, lr=3e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(1, steps + 1):
        loss = loss_of_batch()
        if loss.item() < 0.1:
            return step, loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps, loss.item()


def test_gpt_memorises_a_tiny_batch_and_then_generates_it():
    model = small_gpt()
    g = torch.Generator().manual_seed(4)
    order = torch.randperm(V - 3, generator=g) + 3
    data = torch.stack([order.roll(7 * i)[:9] for i in range(4)])  # (4, 9): no token repeats within a row
    assert len(set(data[:, 0].tolist())) == 4  # each row's first token tells the rows apart
    x, y = data[:, :-1], data[:, 1:]  # next-token targets
    assert sequence_loss(model(x), y).item() == pytest.approx(math.log(V), abs=0.3)  # untrained: about log V
    step, loss = memorise(model, lambda: sequence_loss(model(x), y))
    assert loss < 0.1 and step <= 300
    assert torch.equal(generate(model, data[:, :1], 8, temperature=0), data)


def test_transformer_memorises_a_tiny_batch_and_then_translates_it():
    model = small_transformer()
    g = torch.Generator().manual_seed(3)
    src = torch.randint(3, V + 5, (4, 8), generator=g)
    tgt = torch.randint(3, V, (4, 7), generator=g)
    src[0, 6:] = PAD  # one shorter source sentence
    tgt_in = torch.cat([torch.full((4, 1), SOS), tgt], dim=1)  # (B, T_dec): <SOS> + target
    labels = torch.cat([tgt, torch.full((4, 1), EOS)], dim=1)  # (B, T_dec): target + <EOS>
    step, loss = memorise(model, lambda: sequence_loss(model(src, tgt_in), labels, pad_id=PAD))
    assert loss < 0.1 and step <= 300
    translated = greedy_translate(model, src, sos_id=SOS, eos_id=EOS, pad_id=PAD, max_new_tokens=12)
    assert torch.equal(translated, torch.cat([tgt_in, torch.full((4, 1), EOS)], dim=1))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_generation_runs_on_any_device(device):
    gpt = small_gpt().to(device)
    prompt = torch.randint(3, V, (2, 3), device=device)
    cpu_generator = torch.Generator().manual_seed(0)  # a CPU generator works with logits on any device
    out = generate(gpt, prompt, 10, temperature=0.8, top_k=10, top_p=0.9, generator=cpu_generator)
    assert out.shape == (2, 13) and out.device.type == device
    assert torch.equal(out[:, :3], prompt)
    again = generate(gpt, prompt, 10, temperature=0.8, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    model = small_transformer().to(device)
    translated = greedy_translate(model, torch.randint(3, V, (2, 5), device=device), sos_id=SOS, eos_id=EOS, max_new_tokens=6)
    assert translated.device.type == device and translated.shape[0] == 2 and translated.shape[1] <= 7


# --- issue 11: bad token ids are refused on the way in -------------------------------


@pytest.mark.parametrize("bad", [-1, V, V + 7])
def test_gpt_refuses_token_ids_outside_the_vocabulary_naming_the_id_and_V(bad):
    idx = torch.randint(V, (2, 5))
    idx[1, 3] = bad
    with pytest.raises(ValueError, match=rf"token id {bad} at position \(1, 3\), outside \[0, {V}\)"):
        small_gpt()(idx)
    with pytest.raises(ValueError, match="integer token ids"):
        small_gpt()(idx.float())


def test_transformer_refuses_token_ids_outside_each_vocabulary():
    model = small_transformer()  # source vocabulary V + 5, target vocabulary V
    src, tgt_in = torch.randint(V + 5, (2, 4)), torch.randint(V, (2, 3))
    assert model(src, tgt_in).shape == (2, 3, V)  # ids up to V + 4 are fine in the source
    with pytest.raises(ValueError, match=rf"src holds token id {V + 5} .*\[0, {V + 5}\)"):
        model(torch.full((2, 4), V + 5), tgt_in)
    with pytest.raises(ValueError, match=rf"tgt_in holds token id {V} .*\[0, {V}\)"):
        model(src, torch.full((2, 3), V))
    with pytest.raises(ValueError, match=r"src holds token id -3"):
        model.encode(torch.full((1, 2), -3))


def test_configs_with_sizes_that_are_not_integers_are_named():  # issue 11
    with pytest.raises(ValueError, match="vocab_size must be an integer, got 65.0"):
        GPT(GPTConfig(vocab_size=65.0))
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        GPT(GPTConfig(vocab_size=V, block_size=0))
    with pytest.raises(ValueError, match="tgt_vocab_size must be an integer"):
        Transformer(TransformerConfig(src_vocab_size=V, tgt_vocab_size="30"))
    with pytest.raises(ValueError, match=r"pad_id=30 is not an id of both vocabularies .*pad_id=None"):
        Transformer(TransformerConfig(src_vocab_size=V + 5, tgt_vocab_size=V, pad_id=V))
    assert Transformer(TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, pad_id=None)).config.pad_id is None
