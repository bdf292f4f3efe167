"""GPT-2's weights in the book's GPT (chapter 16): the same logits and tokens as ``transformers``, offline.

Random GPT-2 models are built from small configs and saved with ``save_pretrained``:
nothing downloads. Every bad folder is one PretrainedError naming the file.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

from utils.generate import generate
from utils.layers import LayerNorm
from utils.models import GPT, GPTConfig, PackedGPT
from utils.pretrained import (
    PretrainedError,
    bits_per_byte,
    gpt2_config_from_dict,
    gpt2_from_transformers,
    load_gpt2,
    load_pretrained,
    split_c_attn,
)

transformers.logging.set_verbosity_error()

# Several layers, a feed-forward width that is not 4C and a LayerNorm epsilon that is not 1e-5,
# so that a loader ignoring n_inner or layer_norm_epsilon fails.
SMALL = dict(vocab_size=300, n_positions=48, n_embd=32, n_layer=3, n_head=4, n_inner=80, layer_norm_epsilon=1e-3,
             bos_token_id=0, eos_token_id=0)


def _hf_gpt2(seed: int = 0, **fields) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**SMALL, **fields})).eval()
    with torch.no_grad():  # LayerNorms start at gain 1, bias 0: make them matter
        for name, parameter in model.named_parameters():
            if "ln_" in name or name.endswith(".bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module")
def hf_model():
    return _hf_gpt2()


@pytest.fixture(scope="module")
def folder(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, SMALL["vocab_size"], (3, 40), generator=torch.Generator().manual_seed(1))


def test_config_maps_every_size(folder):
    config = gpt2_config_from_dict(json.loads((folder / "config.json").read_text()))
    assert (config.vocab_size, config.block_size, config.C, config.n_heads, config.n_layers, config.d_ff) == (
        300, 48, 32, 4, 3, 80)
    assert config.activation == "gelu_tanh" and config.norm_eps == 1e-3 and config.tie_weights
    assert config.dropout == 0.0 and config.norm_first and config.positional == "learned"


def test_loaded_model_gives_the_same_logits(folder, hf_model, ids):
    ours = load_gpt2(folder)
    with torch.no_grad():
        expected = hf_model(ids).logits
        actual = ours(ids)
    assert (actual - expected).abs().max().item() <= 1e-5
    assert not ours.training and ours.head.weight is ours.token_embedding.weight  # tied, as GPT-2
    assert all(m.eps == 1e-3 for m in ours.modules() if isinstance(m, LayerNorm))


def test_float64_agrees_to_1e_10(ids):
    hf_model = _hf_gpt2(seed=3).double()
    ours = gpt2_from_transformers(hf_model)
    assert next(ours.parameters()).dtype == torch.float64
    with torch.no_grad():
        difference = (ours(ids) - hf_model(ids).logits).abs().max().item()
    assert difference <= 1e-10


@pytest.mark.parametrize("use_cache, packed", [(True, True), (True, False), (False, True)])
def test_same_greedy_continuation(folder, hf_model, ids, use_cache, packed):
    ours = load_gpt2(folder)
    prompt = ids[:1, :7]
    expected = hf_model.generate(prompt, max_new_tokens=30, do_sample=False, use_cache=True,
                                 eos_token_id=None, pad_token_id=0)
    actual = generate(ours, prompt, 30, temperature=0, use_cache=use_cache, packed=packed)
    assert torch.equal(actual, expected)
    batch = ids[:, :5]  # a batch of three prompts of equal length
    expected = hf_model.generate(batch, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate(ours, batch, 12, temperature=0, use_cache=use_cache, packed=packed), expected)


def test_packed_step_equals_the_model_with_gpt2_options(folder, ids):
    ours = load_gpt2(folder)
    packed = PackedGPT(ours)
    cache = ours.new_cache()
    with torch.no_grad():
        full = ours(ids[:, :20])
        first = packed(ids[:, :12], cache)
        rest = torch.cat([packed(ids[:, t:t + 1], cache) for t in range(12, 20)], dim=1)
    assert (torch.cat([first, rest], 1) - full).abs().max().item() <= 1e-5


def test_gelu_tanh_option_and_defaults():
    x = torch.linspace(-4, 4, 101)
    tanh_form = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    model = GPT(GPTConfig(vocab_size=10, activation="gelu_tanh", norm_eps=1e-6))
    activation = model.stack.blocks[0].feed_forward.activation
    assert torch.allclose(activation(x), tanh_form, atol=1e-6)
    assert not torch.allclose(activation(x), F.gelu(x), atol=1e-6)  # not the exact erf form
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, LayerNorm))
    default = GPT(GPTConfig(vocab_size=10))
    assert isinstance(default.stack.blocks[0].feed_forward.activation, torch.nn.ReLU)
    assert all(m.eps == 1e-5 for m in default.modules() if isinstance(m, LayerNorm))
    with pytest.raises(ValueError, match="activation must be one of"):
        GPT(GPTConfig(vocab_size=10, activation="swish"))
    with pytest.raises(ValueError, match="norm_eps"):
        GPT(GPTConfig(vocab_size=10, norm_eps=-1.0))


def test_split_c_attn_by_hand():
    C = 4
    weight = torch.arange(C * 3 * C, dtype=torch.float32).view(C, 3 * C)  # (in, out), q | k | v columns
    bias = torch.arange(3 * C, dtype=torch.float32)
    (q_w, q_b), (k_w, k_b), (v_w, v_b) = split_c_attn(weight, bias)
    x = torch.randn(2, C)
    together = x @ weight + bias  # what Conv1D computes
    assert torch.allclose(F.linear(x, q_w, q_b), together[:, :C])
    assert torch.allclose(F.linear(x, k_w, k_b), together[:, C:2 * C])
    assert torch.allclose(F.linear(x, v_w, v_b), together[:, 2 * C:])
    with pytest.raises(ValueError, match="c_attn"):
        split_c_attn(weight.T, bias)


def test_untied_head(tmp_path, ids):
    hf_model = _hf_gpt2(seed=2, tie_word_embeddings=False)
    hf_model.save_pretrained(tmp_path)
    ours = load_gpt2(tmp_path)
    assert ours.head.weight is not ours.token_embedding.weight
    with torch.no_grad():
        assert (ours(ids) - hf_model(ids).logits).abs().max().item() <= 1e-5


def test_original_layout_without_prefix_and_with_mask_buffers(folder, hf_model, tmp_path, ids):
    """The openai-community/gpt2 file names tensors without "transformer." and keeps the causal-mask buffers."""
    tensors = {name.removeprefix("transformer."): tensor for name, tensor in load_file(folder / "model.safetensors")
               .items()}
    for i in range(SMALL["n_layer"]):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 48, 48).tril()
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with torch.no_grad():
        assert (load_gpt2(tmp_path)(ids) - hf_model(ids).logits).abs().max().item() <= 1e-5


def test_half_precision_checkpoint_loads_as_asked(tmp_path, folder):
    tensors = {name: tensor.half() for name, tensor in load_file(folder / "model.safetensors").items()}
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    assert next(load_gpt2(tmp_path).parameters()).dtype == torch.float32
    assert next(load_gpt2(tmp_path, dtype=torch.bfloat16).parameters()).dtype == torch.bfloat16


# --- bad folders: one PretrainedError, one line, naming the file ----------------------------


def _copy(folder, tmp_path, config=None, tensors=None):
    config = json.loads((folder / "config.json").read_text()) if config is None else config
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_file(folder / "model.safetensors") if tensors is None else tensors
    save_file(tensors, tmp_path / "model.safetensors")
    return tmp_path


def _config(folder, **changes):
    return {**json.loads((folder / "config.json").read_text()), **changes}


def _tensors(folder, drop=(), **replace):
    tensors = {k: v for k, v in load_file(folder / "model.safetensors").items() if k not in drop}
    return {**tensors, **{k.replace("__", "."): v for k, v in replace.items()}}


BAD = {
    "activation": (lambda f: {"config": _config(f, activation_function="silu")},
                   "config.json: activation_function='silu'"),
    "inverse layer scaling": (lambda f: {"config": _config(f, scale_attn_by_inverse_layer_idx=True)},
                              "config.json: scale_attn_by_inverse_layer_idx=True"),
    "not gpt2": (lambda f: {"config": _config(f, model_type="bert")}, "config.json: model_type is 'bert'"),
    "missing size": (lambda f: {"config": {k: v for k, v in _config(f).items() if k != "n_embd"}},
                     "config.json: no 'n_embd'"),
    "heads": (lambda f: {"config": _config(f, n_head=5)}, "config.json: C=32 is not divisible by n_heads=5"),
    "wrong shape": (lambda f: {"config": _config(f, n_inner=64)},
                    r"model.safetensors: transformer.h.0.mlp.c_fc.weight has shape \(32, 80\); the config asks for "
                    r"\(32, 64\)"),
    "missing tensor": (lambda f: {"tensors": _tensors(f, drop=("transformer.ln_f.bias",))},
                       "model.safetensors: no tensor 'ln_f.bias'"),
    "extra tensor": (lambda f: {"tensors": _tensors(f, transformer__h__9__mlp__c_fc__weight=torch.zeros(2))},
                     "model.safetensors: 1 tensor.s. that GPT-2 with this config does not have"),
    "untied head that differs": (lambda f: {"tensors": _tensors(f, lm_head__weight=torch.zeros(300, 32))},
                                 "lm_head.weight differs from wte.weight"),
    "more layers than saved": (lambda f: {"config": _config(f, n_layer=4)},
                               "model.safetensors: no tensor 'h.3.attn.c_attn.weight'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoint_is_one_clear_error(case, folder, tmp_path):
    make, message = BAD[case]
    bad = _copy(folder, tmp_path, **make(folder))
    with pytest.raises(PretrainedError, match=message) as error:
        load_gpt2(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_missing_and_damaged_files_are_named(folder, tmp_path):
    with pytest.raises(PretrainedError, match="not a folder"):
        load_gpt2(tmp_path / "nowhere")
    with pytest.raises(PretrainedError, match=r"config\.json: missing"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match=r"config\.json: not valid JSON"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(PretrainedError, match=r"config\.json: expected a JSON object"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(PretrainedError, match=r"model\.safetensors: missing"):
        load_gpt2(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(PretrainedError, match=r"model\.safetensors: not a readable safetensors file"):
        load_gpt2(tmp_path)


def test_load_pretrained_picks_the_loader(folder, tmp_path):
    assert type(load_pretrained(folder)) is GPT
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32))
    llama.save_pretrained(tmp_path / "llama")
    assert type(load_pretrained(tmp_path / "llama")).__name__ == "Llama"
    (tmp_path / "t5").mkdir()
    _copy(folder, tmp_path / "t5", config=_config(folder, model_type="t5"))
    with pytest.raises(PretrainedError, match="model_type 't5'; this book loads"):
        load_pretrained(tmp_path / "t5")


# --- bits per byte -----------------------------------------------------------------------


def test_bits_per_byte_of_a_uniform_model_is_log2_v_per_token():
    model = GPT(GPTConfig(vocab_size=50, block_size=16))
    with torch.no_grad():
        model.head.weight = torch.nn.Parameter(torch.zeros(50, 32))  # every logit 0: uniform over 50
    ids = torch.randint(0, 50, (101,))
    assert bits_per_byte(model, ids, n_bytes=400) == pytest.approx(math.log2(50) * 100 / 400, rel=1e-6)


def test_bits_per_byte_equals_a_direct_sum(folder):
    model = load_gpt2(folder)
    ids = torch.randint(0, 300, (100,), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # windows of 48, 48 and 3 targets, each scored from its own start
        total = 0.0
        for start in (0, 48, 96):
            window = ids[start:start + 49]
            logits = model(window[None, :-1])[0]
            total += F.cross_entropy(logits.double(), window[1:], reduction="sum").item()
    assert bits_per_byte(model, ids, n_bytes=250) == pytest.approx(total / math.log(2) / 250, rel=1e-6)
    assert bits_per_byte(model, ids, n_bytes=250, batch_size=1) == pytest.approx(total / math.log(2) / 250,
                                                                                 rel=1e-6)
    with pytest.raises(ValueError, match="n_bytes"):
        bits_per_byte(model, ids, n_bytes=0)


def test_download_pretrained_says_one_line_when_offline(monkeypatch, capsys, tmp_path):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("Name or service not known\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    from utils.pretrained import download_pretrained

    assert download_pretrained("openai-community/gpt2") is None
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "skipped offline: openai-community/gpt2" in printed and len(printed) <= 89
    seen = {}

    def online(repo_id, allow_patterns):
        seen.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", online)
    assert download_pretrained("openai-community/gpt2") == tmp_path
    assert seen == {"repo_id": "openai-community/gpt2", "allow_patterns": ["config.json", "model.safetensors"]}
