"""Pretrained weights in the Hugging Face layout, read into the book's models (chapters 15–16).

A checkpoint folder in the Hugging Face layout holds ``config.json`` (the sizes)
and ``model.safetensors`` (the tensors, by name; or several shards listed in
``model.safetensors.index.json``). Loading one into our own model is two small
maps: config fields to our config's, tensor names to our module names.

Chapter 15 (Llama):

* :func:`llama_config_from_dict` — a Llama ``config.json`` (as a dict) → :class:`~utils.modern.LlamaConfig`;
* :func:`llama_from_transformers` — a ``transformers.LlamaForCausalLM`` → our
  :class:`~utils.modern.Llama` with its weights (the chapter's proof that the two
  compute the same logits uses it);
* :func:`load_llama` — a checkpoint folder → our :class:`~utils.modern.Llama`,
  without ``transformers``.

Every problem with a folder (missing file, bad JSON, an unsupported setting, a
missing or misshapen tensor) is one :class:`PretrainedError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from utils.modern import Llama, LlamaConfig


class PretrainedError(ValueError):
    """A checkpoint folder or model that cannot be read into the book's model; the message names the file."""


# --- Llama (chapter 15) --------------------------------------------------------------------

# Our parameter names → the Hugging Face names, per block ({i}) and for the whole model.
LLAMA_BLOCK_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.q_proj.weight": "self_attn.q_proj.weight",
    "attention.k_proj.weight": "self_attn.k_proj.weight",
    "attention.v_proj.weight": "self_attn.v_proj.weight",
    "attention.out_proj.weight": "self_attn.o_proj.weight",
    "feed_forward_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.gate_proj.weight": "mlp.gate_proj.weight",
    "feed_forward.up_proj.weight": "mlp.up_proj.weight",
    "feed_forward.down_proj.weight": "mlp.down_proj.weight",
}
LLAMA_MODEL_NAMES = {"token_embedding.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                     "head.weight": "lm_head.weight"}


def llama_config_from_dict(config: dict, source: str = "config") -> LlamaConfig:
    """Our :class:`LlamaConfig` from a Llama ``config.json``'s fields; settings we do not build are refused."""
    def need(name):
        if name not in config:
            raise PretrainedError(f"{source}: no {name!r}; is this a Llama config?")
        return config[name]

    if config.get("model_type", "llama") != "llama":
        raise PretrainedError(f"{source}: model_type is {config['model_type']!r}, not 'llama'")
    C, n_heads = need("hidden_size"), need("num_attention_heads")
    if config.get("hidden_act", "silu") != "silu":
        raise PretrainedError(f"{source}: hidden_act={config['hidden_act']!r}; our SwiGLU uses silu")
    head_dim = config.get("head_dim") or C // n_heads
    if head_dim * n_heads != C:
        raise PretrainedError(f"{source}: head_dim={head_dim} with {n_heads} heads is not hidden_size={C}; our "
                              "model uses head_size = C / n_heads")
    if config.get("attention_bias", False) or config.get("mlp_bias", False):
        raise PretrainedError(f"{source}: attention_bias/mlp_bias are set; Llama's block has no biases")
    rope = config.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", (config.get("rope_scaling") or {}).get("rope_type", "default"))
    if rope_type != "default" or config.get("rope_scaling"):
        raise PretrainedError(f"{source}: RoPE type {rope_type!r} (scaled); only plain RoPE is built here")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    try:
        return LlamaConfig(
            vocab_size=need("vocab_size"), block_size=need("max_position_embeddings"), C=C, n_heads=n_heads,
            n_kv_heads=config.get("num_key_value_heads") or n_heads, n_layers=need("num_hidden_layers"),
            d_ff=need("intermediate_size"), tie_weights=bool(config.get("tie_word_embeddings", False)),
            rope_theta=float(theta), norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            dropout=float(config.get("attention_dropout", 0.0)),
        )
    except ValueError as error:
        raise PretrainedError(f"{source}: {error}") from None


def _llama_state_dict(model: Llama, tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Our state dict from Hugging Face-named tensors, every name and shape checked."""
    names = dict(LLAMA_MODEL_NAMES)
    for i in range(model.config.n_layers):
        names.update({f"blocks.{i}.{ours}": f"model.layers.{i}.{theirs}" for ours, theirs in LLAMA_BLOCK_NAMES.items()})
    if model.config.tie_weights and "lm_head.weight" not in tensors:
        names.pop("head.weight")  # saved once, as the embedding
    state = {}
    expected = model.state_dict()
    for ours, theirs in names.items():
        if theirs not in tensors:
            raise PretrainedError(f"{source}: no tensor {theirs!r} (for our {ours})")
        tensor = tensors[theirs]
        if tuple(tensor.shape) != tuple(expected[ours].shape):
            raise PretrainedError(f"{source}: {theirs} has shape {tuple(tensor.shape)}; the config asks for "
                                  f"{tuple(expected[ours].shape)}")
        state[ours] = tensor
    if model.config.tie_weights and "head.weight" not in state:
        state["head.weight"] = state["token_embedding.weight"]
    return state


@torch.no_grad()
def llama_from_transformers(hf_model) -> Llama:
    """Our :class:`Llama` with the weights of a ``transformers`` ``LlamaForCausalLM``, in its dtype, eval mode."""
    config = llama_config_from_dict(hf_model.config.to_dict(), type(hf_model).__name__)
    tensors = hf_model.state_dict()
    dtype = next(iter(tensors.values())).dtype
    model = Llama(config).to(dtype)
    model.load_state_dict(_llama_state_dict(model, tensors, type(hf_model).__name__))
    return model.eval()


def load_llama(folder: str | Path, dtype: torch.dtype = torch.float32) -> Llama:
    """Our :class:`Llama` from a checkpoint folder in the Hugging Face layout (``config.json`` and
    ``model.safetensors``, or shards listed in ``model.safetensors.index.json``), in ``dtype``, eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedError(f"{folder}: not a folder (expected config.json and model.safetensors in it)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise PretrainedError(f"{config_path}: missing (a checkpoint folder holds config.json and model.safetensors)")
    try:
        config_dict = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config_dict, dict):
        raise PretrainedError(f"{config_path}: expected a JSON object, got {type(config_dict).__name__}")
    config = llama_config_from_dict(config_dict, str(config_path))

    index_path = folder / "model.safetensors.index.json"
    files = [folder / "model.safetensors"]
    if not files[0].is_file() and index_path.is_file():
        try:
            files = [folder / name for name in sorted(set(json.loads(index_path.read_text())["weight_map"].values()))]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise PretrainedError(f"{index_path}: not a safetensors index ({error})") from None
    tensors, source = {}, str(files[0]) if len(files) == 1 else str(index_path)
    for path in files:
        if not path.is_file():
            raise PretrainedError(f"{path}: missing (the weights of the checkpoint in {folder})")
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise PretrainedError(f"{path}: not a readable safetensors file ({error})") from None
    model = Llama(config)
    model.load_state_dict(_llama_state_dict(model, tensors, source))
    return model.to(dtype).eval()
