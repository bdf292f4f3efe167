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

Chapter 16 (GPT-2):

* :func:`gpt2_config_from_dict`, :func:`gpt2_from_transformers` and :func:`load_gpt2`, the
  same three steps for GPT-2 into chapter 11's :class:`~utils.models.GPT` (GELU in its
  tanh form); :func:`split_c_attn` cuts GPT-2's joint q, k, v projection in three;
* :func:`read_checkpoint_folder` (config and tensors of a folder, every problem named)
  and :func:`load_pretrained` (either model, by the ``model_type`` of ``config.json``),
  which ``python -m utils.generate --pretrained FOLDER`` uses;
* :func:`bits_per_byte`, which compares language models with different tokenizers.

Every problem with a folder (missing file, bad JSON, an unsupported setting, a
missing or misshapen tensor) is one :class:`PretrainedError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from utils.checks import check_int
from utils.models import GPT, GPTConfig
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


def read_checkpoint_folder(folder: str | Path) -> tuple[dict, Path, dict[str, torch.Tensor], str]:
    """A Hugging Face checkpoint folder → (config.json as a dict, its path, the tensors by name, where they
    came from); ``model.safetensors``, or the shards listed in ``model.safetensors.index.json``.
    Every problem is a :class:`PretrainedError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedError(f"{folder}: not a folder (expected config.json and model.safetensors in it)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise PretrainedError(f"{config_path}: missing (a checkpoint folder holds config.json and model.safetensors)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PretrainedError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    index_path = folder / "model.safetensors.index.json"
    files = [folder / "model.safetensors"]
    if not files[0].is_file() and index_path.is_file():
        try:
            files = [folder / name for name in sorted(set(json.loads(index_path.read_text())["weight_map"].values()))]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise PretrainedError(f"{index_path}: not a safetensors index ({error})") from None
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise PretrainedError(f"{path}: missing (the weights of the checkpoint in {folder})")
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise PretrainedError(f"{path}: not a readable safetensors file ({error})") from None
    return config, config_path, tensors, str(files[0]) if len(files) == 1 else str(index_path)


def load_llama(folder: str | Path, dtype: torch.dtype = torch.float32) -> Llama:
    """Our :class:`Llama` from a checkpoint folder in the Hugging Face layout (``config.json`` and
    ``model.safetensors``, or shards listed in ``model.safetensors.index.json``), in ``dtype``, eval mode."""
    config_dict, config_path, tensors, source = read_checkpoint_folder(folder)
    model = Llama(llama_config_from_dict(config_dict, str(config_path)))
    model.load_state_dict(_llama_state_dict(model, tensors, source))
    return model.to(dtype).eval()


# --- GPT-2 (chapter 16) ----------------------------------------------------------------------
#
# GPT-2 is chapter 11's GPT with GELU (tanh form) and its sizes. Its checkpoints differ
# from our module layout in two ways: the projections are ``Conv1D`` modules, which
# store the weight as (in, out), the transpose of ``nn.Linear``'s (out, in); and each
# block's ``attn.c_attn`` computes q, k and v together, a (C, 3C) weight whose
# columns are q's, then k's, then v's.

GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def gpt2_config_from_dict(config: dict, source: str = "config", dropout: float = 0.0) -> GPTConfig:
    """Our :class:`~utils.models.GPTConfig` from a GPT-2 ``config.json``'s fields (dropout off unless given);
    settings our GPT does not compute are refused."""
    def need(name):
        if name not in config:
            raise PretrainedError(f"{source}: no {name!r}; is this a GPT-2 config?")
        return config[name]

    if config.get("model_type", "gpt2") != "gpt2":
        raise PretrainedError(f"{source}: model_type is {config['model_type']!r}, not 'gpt2'")
    activation = config.get("activation_function", "gelu_new")
    if activation not in GPT2_ACTIVATIONS:
        raise PretrainedError(f"{source}: activation_function={activation!r}; ours are {sorted(GPT2_ACTIVATIONS)}")
    for name, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False)):
        if config.get(name, wanted) != wanted:
            raise PretrainedError(f"{source}: {name}={config[name]!r}; our attention computes {name}={wanted}")
    try:
        return GPTConfig(
            vocab_size=need("vocab_size"), block_size=need("n_positions"), C=need("n_embd"),
            n_heads=need("n_head"), n_layers=need("n_layer"), d_ff=config.get("n_inner"), dropout=dropout,
            norm_first=True, tie_weights=bool(config.get("tie_word_embeddings", True)), positional="learned",
            activation=GPT2_ACTIVATIONS[activation], norm_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        )
    except (ValueError, TypeError) as error:
        raise PretrainedError(f"{source}: {error}") from None


# Buffers some GPT-2 checkpoints carry (the causal mask), which are not weights.
_GPT2_BUFFERS = (".attn.bias", ".attn.masked_bias")


def split_c_attn(weight: torch.Tensor, bias: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """GPT-2's ``c_attn`` (a Conv1D: weight (C, 3C), bias (3C,)) → [(weight (C, C), bias (C,))] for q, k, v,
    each weight in ``nn.Linear``'s (out, in) layout."""
    C = weight.shape[0]
    if weight.shape != (C, 3 * C) or bias.shape != (3 * C,):
        raise ValueError(f"c_attn should be (C, 3C) and (3C,), got {tuple(weight.shape)} and {tuple(bias.shape)}")
    return [(w.T, b) for w, b in zip(weight.split(C, dim=1), bias.split(C))]  # columns: q, then k, then v


def gpt2_state_dict(model: GPT, tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Our GPT's state dict from GPT-2's tensors (named as in ``GPT2LMHeadModel`` or ``GPT2Model``), every
    name and shape checked; Conv1D weights transposed, ``c_attn`` split into q, k and v."""
    prefix = "transformer." if any(name.startswith("transformer.") for name in tensors) else ""
    expected = model.state_dict()
    used = set()

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if prefix + name in tensors:
            name = prefix + name
        if name not in tensors:
            raise PretrainedError(f"{source}: no tensor {name!r}")
        used.add(name)
        if tuple(tensors[name].shape) != tuple(shape):
            raise PretrainedError(f"{source}: {name} has shape {tuple(tensors[name].shape)}; the config asks for "
                                  f"{tuple(shape)}")
        return tensors[name]

    def conv1d(name: str, ours: str) -> torch.Tensor:  # Conv1D stores (in, out): the transpose of ours
        return take(name, tuple(reversed(expected[ours].shape))).T

    state = {"token_embedding.weight": take("wte.weight", expected["token_embedding.weight"].shape),
             "positions.embedding.weight": take("wpe.weight", expected["positions.embedding.weight"].shape)}
    C = model.config.C
    for i in range(model.config.n_layers):
        ours, theirs = f"stack.blocks.{i}.", f"h.{i}."
        c_attn = split_c_attn(take(theirs + "attn.c_attn.weight", (C, 3 * C)), take(theirs + "attn.c_attn.bias",
                                                                                      (3 * C,)))
        for projection, (weight, bias) in zip(("q_proj", "k_proj", "v_proj"), c_attn):
            state[f"{ours}self_attention.{projection}.weight"], state[f"{ours}self_attention.{projection}.bias"] = (
                weight, bias)
        pairs = {"self_attention.out_proj": "attn.c_proj", "feed_forward.linear1": "mlp.c_fc",
                 "feed_forward.linear2": "mlp.c_proj"}
        for our_name, their_name in pairs.items():
            state[f"{ours}{our_name}.weight"] = conv1d(f"{theirs}{their_name}.weight", f"{ours}{our_name}.weight")
            state[f"{ours}{our_name}.bias"] = take(f"{theirs}{their_name}.bias", (expected[f"{ours}{our_name}.bias"]
                                                                                  .shape))
        for our_name, their_name in (("attention_residual.norm", "ln_1"), ("feed_forward_residual.norm", "ln_2")):
            for kind in ("weight", "bias"):
                state[f"{ours}{our_name}.{kind}"] = take(f"{theirs}{their_name}.{kind}", (C,))
    state["stack.norm.weight"], state["stack.norm.bias"] = take("ln_f.weight", (C,)), take("ln_f.bias", (C,))
    head = "lm_head.weight"
    if model.config.tie_weights:
        state["head.weight"] = state["token_embedding.weight"]
        if head in tensors:  # a tied checkpoint may store the head too; it must be the embedding
            used.add(head)
            if not torch.equal(tensors[head], state["token_embedding.weight"]):
                raise PretrainedError(f"{source}: {head} differs from wte.weight, but the config ties them "
                                      "(tie_word_embeddings)")
    else:
        state["head.weight"] = take(head, expected["head.weight"].shape)
    unknown = sorted(name for name in tensors if name not in used and not name.endswith(_GPT2_BUFFERS))
    if unknown:
        raise PretrainedError(f"{source}: {len(unknown)} tensor(s) that GPT-2 with this config does not have, "
                              f"e.g. {unknown[:3]}")
    return state


def _new_gpt(config: GPTConfig, source: str) -> GPT:
    """Our GPT of these sizes; sizes it cannot have (e.g. C not divisible by n_heads) name the config."""
    try:
        return GPT(config)
    except ValueError as error:
        raise PretrainedError(f"{source}: {error}") from None


@torch.no_grad()
def gpt2_from_transformers(hf_model) -> GPT:
    """Our GPT with the weights of a ``transformers`` ``GPT2LMHeadModel`` (or ``GPT2Model`` with a tied head),
    in its dtype, eval mode."""
    source = type(hf_model).__name__
    config = gpt2_config_from_dict(hf_model.config.to_dict(), source)
    tensors = hf_model.state_dict()
    model = _new_gpt(config, source).to(next(iter(tensors.values())).dtype)
    model.load_state_dict(gpt2_state_dict(model, tensors, source))
    return model.eval()


def load_gpt2(folder: str | Path, dtype: torch.dtype = torch.float32) -> GPT:
    """Our :class:`~utils.models.GPT` from a GPT-2 checkpoint folder in the Hugging Face layout
    (``config.json`` and ``model.safetensors``), in ``dtype``, eval mode; no ``transformers`` needed."""
    config_dict, config_path, tensors, source = read_checkpoint_folder(folder)
    model = _new_gpt(gpt2_config_from_dict(config_dict, str(config_path)), str(config_path))
    with torch.no_grad():
        state = {name: tensor.to(torch.float32) for name, tensor in gpt2_state_dict(model, tensors, source).items()}
    model.load_state_dict(state)
    return model.to(dtype).eval()


def download_pretrained(repo_id: str = "openai-community/gpt2",
                        files: tuple[str, ...] = ("config.json", "model.safetensors")) -> Path | None:
    """A checkpoint folder from the Hugging Face Hub (cached after the first time), or None, with one line
    saying why, when it cannot be had (offline, or ``huggingface_hub`` missing). GPT-2 124M is about 550 MB."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=list(files)))
    except Exception as error:  # offline, a DNS failure, a missing package: the hub raises many kinds
        print(f"skipped offline: {repo_id} could not be fetched ({type(error).__name__})")
        return None


def load_pretrained(folder: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A GPT-2 or Llama checkpoint folder → our model, by the ``model_type`` in its ``config.json``."""
    config_path = Path(folder) / "config.json"
    model_type = "gpt2"
    if config_path.is_file():
        try:
            model_type = json.loads(config_path.read_text()).get("model_type", "gpt2")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass  # the loader names the problem
    loaders = {"gpt2": load_gpt2, "llama": load_llama}
    if model_type not in loaders:
        raise PretrainedError(f"{config_path}: model_type {model_type!r}; this book loads {sorted(loaders)}")
    return loaders[model_type](folder, dtype)


# --- Bits per byte: comparing language models with different tokenizers (chapter 16) ------------


def bits_per_byte(model: torch.nn.Module, ids: torch.Tensor, n_bytes: int, block_size: int | None = None,
                  batch_size: int | None = None) -> float:
    """The bits the model needs per byte of text: the summed cross-entropy of predicting ``ids[1:]``, in bits,
    divided by ``n_bytes``, the UTF-8 bytes those targets stand for.

    A loss per *token* depends on the tokenizer (a token of GPT-2 holds about 3.3
    characters of Tiny Shakespeare, a token of chapter 11's model one), a loss per
    byte of the same text does not: it is the length of the model's code for the text.
    ``ids[0]`` is context only: start with ``<|endoftext|>`` to score every token of a
    text, or leave the first character's bytes out of ``n_bytes``. The ids are scored
    in non-overlapping windows of ``block_size`` (default the model's), as
    :func:`utils.train.whole_split_loss` does; ``batch_size`` windows at a time (default:
    as many as keep the logits under about 64 MB).
    """
    import math

    from utils.train import whole_split_loss

    n_bytes = check_int("n_bytes", n_bytes, minimum=1)
    block_size = block_size or model.config.block_size
    if batch_size is None:
        vocab_size = model.config.vocab_size
        batch_size = max(1, min(256, 2**24 // (block_size * vocab_size)))
    nats_per_token = whole_split_loss(model, ids, block_size, batch_size)
    return nats_per_token * (len(ids) - 1) / math.log(2) / n_bytes
