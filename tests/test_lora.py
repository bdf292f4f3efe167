"""utils.lora: LoRA equal to peft's, merge/unmerge, frozen base, clear errors (chapter 17)."""

import copy
import math

import peft
import pytest
import torch
from torch import nn

from utils.lora import (
    LoRALinear,
    add_lora,
    lora_layers,
    lora_state_dict,
    merge_lora,
    parameter_counts,
    unload_lora,
    unmerge_lora,
)
from utils.models import GPT, GPTConfig
from utils.modern import Llama, LlamaConfig

V, T = 50, 12
GPT_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "linear1", "linear2"]  # the head is tied: see below
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "gate_proj", "up_proj", "down_proj", "head"]


def small_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=16, C=32, n_heads=4, n_layers=2)).eval()


def small_llama(seed=0):  # an untied head, so LoRA may adapt it
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=V, block_size=16, C=32, n_heads=4, n_kv_heads=2, n_layers=2, tie_weights=False)
    return Llama(config).eval()


def tokens(seed=1, B=3):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def randomise_lora(model, seed=2):
    """Non-zero A and B (at init B = 0, and the update would be invisible)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=generator) * 0.3)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)
    return model


def peft_name(ours: str) -> str:
    """Our parameter's name in peft's model: stack.x.q_proj.lora_A -> base_model.model.stack.x.q_proj.lora_A.default.weight."""
    return f"base_model.model.{ours}.default.weight"


def ours_and_peft(build, targets, r=4, alpha=8.0):
    base = build()
    ours = randomise_lora(add_lora(copy.deepcopy(base), targets, r=r, alpha=alpha))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    theirs_parameters = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            if parameter.requires_grad:
                theirs_parameters[peft_name(name)].copy_(parameter)
    return base, ours, theirs.eval()


CASES = [
    (small_gpt, ["q_proj", "v_proj"]),
    (small_gpt, GPT_LINEARS),
    (small_gpt, r".*\.self_attention\.(q|v)_proj"),  # one regular expression, peft's other form
    (small_llama, LLAMA_LINEARS),
]


@pytest.mark.parametrize("build, targets", CASES, ids=["gpt-qv", "gpt-all", "gpt-regex", "llama-all"])
def test_equal_to_peft_given_the_same_A_and_B(build, targets):
    base, ours, theirs = ours_and_peft(build, targets)
    ours_trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    theirs_trainable = {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert {peft_name(name) for name in ours_trainable} == theirs_trainable
    assert parameter_counts(ours) == theirs.get_nb_trainable_parameters()
    idx = tokens()
    with torch.no_grad():
        out_base, out_ours, out_theirs = base(idx), ours(idx), theirs(idx)
    assert (out_ours - out_base).abs().max() > 0.1  # the update is visible: equality below is not vacuous
    assert (out_ours - out_theirs).abs().max() <= 1e-6
    # the same gradients for A and B
    ours(idx).square().mean().backward()
    theirs(idx).square().mean().backward()
    theirs_parameters = dict(theirs.named_parameters())
    for name in ours_trainable:
        ours_grad = ours.get_parameter(name).grad
        theirs_grad = theirs_parameters[peft_name(name)].grad
        assert ours_grad.abs().max() > 0
        torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-7)


def test_merged_and_unloaded_equal_to_peft():
    base, ours, theirs = ours_and_peft(small_gpt, GPT_LINEARS)
    idx = tokens()
    ours_plain = unload_lora(ours)
    theirs_plain = theirs.merge_and_unload()
    assert not lora_layers(ours_plain) and type(ours_plain) is GPT
    assert set(ours_plain.state_dict()) == set(base.state_dict())  # saves and loads as a plain GPT
    for name, tensor in ours_plain.state_dict().items():
        torch.testing.assert_close(tensor, theirs_plain.state_dict()[name], rtol=0, atol=1e-6)
    with torch.no_grad():
        assert (ours_plain(idx) - theirs_plain(idx)).abs().max() <= 1e-6


def test_counts_by_hand():
    model = add_lora(small_gpt(), ["q_proj", "v_proj", "linear1"], r=4, alpha=8)
    total_base = sum(p.numel() for p in small_gpt().parameters())
    # per block: q and v are 32 -> 32, linear1 is 32 -> 128; r (in + out) each
    by_hand = 2 * (4 * (32 + 32) * 2 + 4 * (32 + 128))
    assert parameter_counts(model) == (by_hand, total_base + by_hand)


def test_the_adapters_alone_restore_the_tuned_model():
    base = small_gpt()
    tuned = randomise_lora(add_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=4, alpha=8))
    adapters = lora_state_dict(tuned)
    assert set(adapters) == {name for name, p in tuned.named_parameters() if p.requires_grad}
    assert sum(t.numel() for t in adapters.values()) == parameter_counts(tuned)[0]
    fresh = add_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=4, alpha=8)
    missing, unexpected = fresh.load_state_dict(adapters, strict=False)
    assert not unexpected and not any("lora_" in name for name in missing)
    idx = tokens()
    with torch.no_grad():
        assert torch.equal(fresh(idx), tuned(idx)) and not torch.equal(fresh(idx), base(idx))


def test_lora_at_init_computes_the_base_model_exactly():
    base = small_gpt()
    model = add_lora(copy.deepcopy(base), GPT_LINEARS, r=8, alpha=16)
    idx = tokens()
    with torch.no_grad():
        assert torch.equal(model(idx), base(idx))
    for _, layer in lora_layers(model):
        bound = 1 / math.sqrt(layer.in_features)  # Kaiming-uniform with a = sqrt(5), nn.Linear's and peft's
        assert torch.count_nonzero(layer.lora_B) == 0
        assert 0.9 * bound < layer.lora_A.abs().max() <= bound


def test_gradients_reach_only_A_and_B_and_the_base_never_moves():
    base = small_gpt()
    model = add_lora(copy.deepcopy(base), ["q_proj", "v_proj", "linear2"], r=4, alpha=8).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    idx = tokens()
    model(idx).logsumexp(-1).mean().backward()
    for name, parameter in model.named_parameters():
        is_lora = name.endswith(("lora_A", "lora_B"))
        assert parameter.requires_grad == is_lora, name
        assert (parameter.grad is not None) == is_lora, name
    for name, layer in lora_layers(model):
        # B = 0 at init, so the loss cannot depend on A yet: its gradient is exactly 0, B's is not
        assert torch.count_nonzero(layer.lora_A.grad) == 0, name
        assert layer.lora_B.grad.abs().max() > 0, name
    optimizer.step()
    optimizer.zero_grad()
    model(idx).logsumexp(-1).mean().backward()
    for name, layer in lora_layers(model):
        assert layer.lora_A.grad.abs().max() > 0, name  # once B moved, A learns too
    for name, tensor in base.state_dict().items():
        key = name if name in model.state_dict() else name.replace(".weight", ".base.weight").replace(".bias", ".base.bias")
        assert torch.equal(model.state_dict()[key], tensor), name


def test_merge_and_unmerge():
    torch.manual_seed(0)
    linear = nn.Linear(24, 16)
    original = linear.weight.detach().clone()
    layer = LoRALinear(linear, r=4, alpha=12)
    randomise_lora(nn.Sequential(layer))
    x = torch.randn(5, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = layer(x)
        A, B = layer.lora_A.double(), layer.lora_B.double()
        delta = (B @ A) * 3.0  # alpha / r = 3, in float64
        layer.merge()
        # the merged weight is W + (alpha/r) B A to float32 rounding: the sum's, and the
        # r-term product's (each term and partial sum rounds once, then the scaling)
        u = 2.0 ** -24  # float32's unit roundoff
        exact = original.double() + delta
        bound = u * exact.abs() + (4 + 2) * u * 3.0 * (B.abs() @ A.abs()) + 1e-30
        assert ((linear.weight.double() - exact).abs() <= bound).all()
        merged = layer(x)
        torch.testing.assert_close(merged, before, rtol=1e-5, atol=1e-6)
        assert (linear.weight - original).abs().max() > 0.1
        layer.unmerge()
        # back to W to within the two roundings of (W + D) - D
        error = (linear.weight.double() - original.double()).abs()
        assert (error <= 2 * u * (original.double().abs() + delta.abs()) + 1e-12).all()
        assert (layer(x) - before).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()
    with pytest.raises(ValueError, match="a merged LoRA layer cannot train"):
        layer.train()(x)
    with torch.no_grad():
        layer.train()(x)  # no gradients asked for: a merged layer may run in training mode


def test_merge_in_float64_is_exact_to_1e_12():
    model = randomise_lora(add_lora(small_gpt().double(), GPT_LINEARS, r=4, alpha=8))
    idx = tokens()
    with torch.no_grad():
        before = model(idx)
        merge_lora(model)
        assert (model(idx) - before).abs().max() <= 1e-12
        unmerge_lora(model)
        assert (model(idx) - before).abs().max() <= 1e-12
    assert all(layer.lora_A.dtype == torch.float64 for _, layer in lora_layers(model))


def test_unload_without_merging_gives_back_the_original_weights():
    base = small_gpt()
    model = randomise_lora(add_lora(copy.deepcopy(base), GPT_LINEARS, r=4, alpha=8))
    plain = unload_lora(model, merge=False)
    for name, tensor in base.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor), name


def test_dropout_acts_on_the_lora_path_only_as_peft_does():
    base, ours, theirs = ours_and_peft(small_gpt, ["q_proj", "v_proj"])
    ours_dropout = add_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=4, alpha=8, dropout=0.5)
    ours_dropout.load_state_dict(ours.state_dict())
    theirs_dropout = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.5))
    theirs_dropout.load_state_dict(theirs.state_dict())
    idx = tokens()
    with torch.no_grad():
        evaluated = ours_dropout.eval()(idx)
        torch.testing.assert_close(evaluated, ours(idx), rtol=0, atol=0)  # no dropout in eval mode
        torch.manual_seed(7)
        dropped = ours_dropout.train()(idx)
        torch.manual_seed(7)
        theirs_dropped = theirs_dropout.train()(idx)
    assert (dropped - evaluated).abs().max() > 1e-2
    assert (dropped - theirs_dropped).abs().max() <= 1e-6  # the same masks, drawn in the same order
    # with B = 0 the LoRA path is silent, dropped or not: the base path is never dropped
    fresh = add_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=4, alpha=8, dropout=0.5).train()
    with torch.no_grad():
        assert torch.equal(fresh(idx), base(idx))


@pytest.mark.parametrize("kwargs, message", [
    (dict(r=0), "LoRA rank r must be >= 1, got 0"),
    (dict(r=2.5), "LoRA rank r must be an integer"),
    (dict(alpha=0), "LoRA alpha must be > 0"),
    (dict(alpha=float("nan")), "LoRA alpha must be a finite number"),
    (dict(dropout=1.0), r"LoRA dropout must be in \[0, 1\)"),
    (dict(target_modules=["q_proj", "qproj"]), "target_modules 'qproj' matches no module of this GPT; its Linear"),
    (dict(target_modules=r"nothing\..*"), r"target_modules 'nothing\\\\..\*' matches no module"),
    (dict(target_modules="("), "is not a regular expression"),
    (dict(target_modules=[]), "target_modules is empty"),
    (dict(target_modules=[""]), "non-empty module names"),
    (dict(target_modules=3), "target_modules must be a list"),
    (dict(target_modules=["self_attention"]), "is a MultiHeadAttention, not an nn.Linear"),
    (dict(target_modules=["q_proj", "head"]), "head.weight is tied to token_embedding.weight: merging an update"),
])
def test_bad_settings_fail_in_one_line_and_leave_the_model_alone(kwargs, message):
    model = small_gpt()
    before = copy.deepcopy(model.state_dict())
    settings = dict(target_modules=["q_proj"], r=4, alpha=8) | kwargs
    with pytest.raises(ValueError, match=message) as error:
        add_lora(model, **settings)
    assert "\n" not in str(error.value)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_wrapping_twice_and_acting_without_lora_are_errors():
    model = add_lora(small_gpt(), ["q_proj"], r=2, alpha=2)
    for targets in (["q_proj"], ["k_proj"], ["base"]):  # its base Linear too: one adapter per model
        with pytest.raises(ValueError, match="stack.blocks.0.self_attention.q_proj already has LoRA"):
            add_lora(model, targets, r=2, alpha=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        LoRALinear(lora_layers(model)[0][1], r=2, alpha=2)
    with pytest.raises(ValueError, match="wraps an nn.Linear, got Embedding"):
        LoRALinear(nn.Embedding(3, 4), r=2, alpha=2)
    for function in (merge_lora, unmerge_lora, unload_lora, lora_state_dict):
        with pytest.raises(ValueError, match="has no LoRA layers; call add_lora first"):
            function(small_gpt())


def test_cached_generation_on_a_model_with_lora_runs_through_its_modules():
    from utils.generate import generate
    from utils.models import PackedGPT

    model = add_lora(small_gpt(), GPT_LINEARS, r=2, alpha=4).eval()
    for _, layer in lora_layers(model):
        nn.init.normal_(layer.lora_B, std=0.5)  # adapters that change the outputs
    with pytest.raises(TypeError, match=r"'stack.blocks.0.self_attention.q_proj' is a LoRALinear"):
        PackedGPT(model)  # the packed step reads plain weights and would silently drop the adapters
    idx = torch.tensor([[1, 2, 3]])
    cached = generate(model, idx, 10, temperature=0.0, use_cache=True)  # packed=True is the default
    assert torch.equal(cached, generate(model, idx, 10, temperature=0.0))
    assert not torch.equal(cached, generate(unload_lora(copy.deepcopy(model), merge=False), idx, 10, temperature=0.0))
