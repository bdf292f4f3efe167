"""Chapter 15's proof: our Llama computes what transformers' LlamaForCausalLM computes, with its weights copied
(utils.pretrained.llama_from_transformers) or read from a checkpoint folder (utils.pretrained.load_llama)."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.models.llama import modeling_llama

from utils.pretrained import PretrainedError, llama_from_transformers, load_llama
from utils.train import sequence_loss

CONFIGS = {
    "gqa, tied, theta 500": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                                 num_key_value_heads=2, rms_norm_eps=1e-4, rope_theta=500.0,
                                 tie_word_embeddings=True),
    "mqa, untied, theta 1e6": dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                                   num_key_value_heads=1, rms_norm_eps=3e-6, rope_theta=1e6,
                                   tie_word_embeddings=False),
    "mha, untied": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                        num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False),
}


def hf_llama(name: str, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=61, max_position_embeddings=64, **CONFIGS[name])
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a swapped norm weight would show
        for module in model.modules():
            if isinstance(module, modeling_llama.LlamaRMSNorm):
                module.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def float64_reference(monkeypatch):
    """transformers computes RMSNorm's statistics and RoPE's angles in float32 even in a float64 model
    (test_float64_reference_rounds_to_float32 shows the 1e-8 this costs); for the float64 proof, the same
    two formulas without that cast."""

    def rms_norm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        dim = 2 * self.inv_freq.shape[0]
        theta = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        angles = position_ids[..., None].double() * inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm)
    monkeypatch.setattr(modeling_llama.LlamaRotaryEmbedding, "forward", rotary)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_logits_and_loss_in_float32(name):
    hf = hf_llama(name)
    ours = llama_from_transformers(hf)
    assert ours.config.tie_weights == CONFIGS[name]["tie_word_embeddings"]
    assert ours.config.n_kv_heads == CONFIGS[name]["num_key_value_heads"]
    idx = torch.randint(0, 61, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(idx, labels=idx)
        logits = ours(idx)
    assert (logits - theirs.logits).abs().max().item() <= 1e-5
    loss = sequence_loss(logits[:, :-1], idx[:, 1:])
    assert abs(loss.item() - theirs.loss.item()) <= 1e-5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_logits_in_float64(name, float64_reference):
    hf = hf_llama(name, seed=2).double()
    ours = llama_from_transformers(hf)
    assert ours.token_embedding.weight.dtype == torch.float64
    idx = torch.randint(0, 61, (2, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        difference = (ours(idx) - hf(idx).logits).abs().max().item()
    assert difference <= 1e-10


def test_float64_reference_rounds_to_float32():
    hf = hf_llama("gqa, tied, theta 500", seed=2).double()
    ours = llama_from_transformers(hf)
    idx = torch.randint(0, 61, (2, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        difference = (ours(idx) - hf(idx).logits).abs().max().item()
    assert 1e-10 < difference < 1e-5  # float32's rounding inside a float64 model, nothing more


def test_a_wrongly_copied_model_is_caught():
    """The proof can fail: the rotary layout swapped, or a layer's norms exchanged, changes the logits."""
    hf = hf_llama("gqa, tied, theta 500")
    idx = torch.randint(0, 61, (2, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = hf(idx).logits
        pairs = llama_from_transformers(hf)
        for block in pairs.blocks:
            block.attention.rope_layout = "pairs"
        assert (pairs(idx) - expected).abs().max().item() > 1e-3
        swapped = llama_from_transformers(hf)
        block = swapped.blocks[1]
        block.attention_norm.weight, block.feed_forward_norm.weight = (block.feed_forward_norm.weight,
                                                                       block.attention_norm.weight)
        assert (swapped(idx) - expected).abs().max().item() > 1e-3


@pytest.mark.parametrize("name", ["gqa, tied, theta 500", "mqa, untied, theta 1e6"])
def test_load_llama_reads_a_saved_checkpoint_folder(tmp_path, name):
    hf = hf_llama(name)
    hf.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    ours = load_llama(tmp_path)
    assert not ours.training
    idx = torch.randint(0, 61, (2, 33), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (ours(idx) - hf(idx).logits).abs().max().item() <= 1e-5
    assert ours.config.rope_theta == CONFIGS[name]["rope_theta"]
    assert ours.config.norm_eps == CONFIGS[name]["rms_norm_eps"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    hf_llama("mqa, untied, theta 1e6").save_pretrained(folder)
    return folder


def copy_of(saved, tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    return tmp_path


def test_load_llama_names_a_missing_folder_or_file(saved, tmp_path):
    with pytest.raises(PretrainedError, match="nowhere: not a folder"):
        load_llama(tmp_path / "nowhere")
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"model\.safetensors: missing"):
        load_llama(folder)
    (folder / "config.json").unlink()
    with pytest.raises(PretrainedError, match=r"config\.json: missing"):
        load_llama(folder)


def test_load_llama_names_a_damaged_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match=r"config\.json: not valid JSON"):
        load_llama(folder)
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(PretrainedError, match=r"model\.safetensors: not a readable safetensors file"):
        load_llama(folder)


def test_load_llama_names_a_wrong_shape_or_missing_tensor(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(PretrainedError, match=r"model\.safetensors: model\.layers\.0\.mlp\.gate_proj\.weight has "
                                              r"shape \(80, 48\); the config asks for \(96, 48\)"):
        load_llama(folder)
    folder = copy_of(saved, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"model\.safetensors: no tensor 'model\.layers\.1\.self_attn\.k_proj"):
        load_llama(folder)


def test_load_llama_refuses_settings_it_does_not_build(saved, tmp_path):
    for change, match in ((dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}),
                           "llama3"), (dict(model_type="gpt2"), "gpt2"), (dict(hidden_act="gelu"), "gelu"),
                          (dict(head_dim=16), "head_dim=16"), (dict(attention_bias=True), "bias")):
        folder = copy_of(saved, tmp_path)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(PretrainedError, match=rf"config\.json: .*{match}"):
            load_llama(folder)
