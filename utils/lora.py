"""LoRA: low-rank adaptation of a frozen model (chapter 17).

Fine-tuning every weight of a model costs a gradient and two Adam moments per
weight. LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
Models") freezes a ``Linear``'s weight W (out, in) and learns a low-rank update
instead::

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        A: (r, in), B: (out, r)

so the layer computes with W + (alpha / r) B A. A starts as ``nn.Linear`` starts
its weight (Kaiming-uniform with a = sqrt(5), as ``peft`` does by default) and B
at zero, so a model with LoRA at initialisation computes exactly what the base
model computes, and training moves only A and B: r (in + out) numbers per layer
instead of in * out.

* :class:`LoRALinear` wraps one ``nn.Linear``; :meth:`~LoRALinear.merge` folds the
  update into W (inference at the base model's speed), :meth:`~LoRALinear.unmerge`
  takes it out again.
* :func:`add_lora` wraps the layers of a model named by ``target_modules`` (the
  meaning ``peft.LoraConfig`` gives it) and freezes every other parameter;
  :func:`parameter_counts` counts what will train; :func:`lora_state_dict` keeps
  the adapters alone; :func:`merge_lora`, :func:`unmerge_lora` and
  :func:`unload_lora` act on the whole model.

``tests/test_lora.py`` proves the module equal to ``peft``'s LoRA given the same
A and B. A merged layer reads ``base.weight`` plus the update; code that reads a
layer's ``.weight`` directly (chapter 13's ``PackedGPT``) must get a model from
:func:`unload_lora`, since ``LoRALinear`` deliberately has no ``.weight``.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from utils.checks import check_int, check_number


def _check_settings(r, alpha, dropout) -> tuple[int, float, float]:
    """(r, alpha, dropout) checked: r an integer >= 1, alpha > 0, dropout in [0, 1)."""
    r = check_int("LoRA rank r", r, minimum=1)
    alpha = check_number("LoRA alpha", alpha)
    if alpha <= 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
    dropout = check_number("LoRA dropout", dropout, minimum=0.0)
    if dropout >= 1:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    return r, alpha, dropout


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (alpha / r) B A.

    ``r`` is the rank (an integer >= 1), ``alpha`` a positive number (the update is
    scaled by alpha / r, so changing r does not change the update's size at the
    start of training), ``dropout`` the probability of dropping inputs on the LoRA
    path only. ``base`` keeps its own parameters, frozen.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if isinstance(base, LoRALinear):
            raise ValueError("this layer already has LoRA: wrap the original nn.Linear once")
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        self.r, self.alpha, dropout = _check_settings(r, alpha, dropout)
        self.scaling = self.alpha / self.r
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        weight = base.weight
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.r, dtype=weight.dtype, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own weight, and peft's A
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / r) B A, shaped like the base weight: (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            if self.training and torch.is_grad_enabled():
                raise ValueError("a merged LoRA layer cannot train (A and B would get no gradient); unmerge() it first")
            return y  # the update is already inside base.weight
        # x A^T B^T: (..., in) -> (..., r) -> (..., out); never the (out, in) product
        return y + (self.dropout(x) @ self.lora_A.T) @ self.lora_B.T * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: W <- W + (alpha / r) B A, for inference.

        The base weight changes in place; :func:`add_lora` refuses a weight tied to
        another, which would change with it."""
        if self.merged:
            raise ValueError("this LoRALinear is already merged; unmerge() it first")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out again: W <- W - (alpha / r) B A (W back to float rounding)."""
        if not self.merged:
            raise ValueError("this LoRALinear is not merged; there is nothing to unmerge")
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, alpha={self.alpha:g}"


def _matches(name: str, target_modules) -> bool:
    """peft's rule: a string is a regular expression the whole name must match; a list
    holds names, and a module matches one when its name is it or ends with ``.`` + it."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == target or name.endswith("." + target) for target in target_modules)


def _check_targets(target_modules) -> str | list[str]:
    if isinstance(target_modules, str):
        if not target_modules:
            raise ValueError("target_modules is empty: name the Linear layers to adapt")
        try:
            re.compile(target_modules)
        except re.error as error:
            raise ValueError(f"target_modules {target_modules!r} is not a regular expression: {error}") from None
        return target_modules
    try:
        targets = list(target_modules)
    except TypeError:
        raise ValueError(
            f"target_modules must be a list of module names or one regular expression, got {target_modules!r}"
        ) from None
    if not targets:
        raise ValueError("target_modules is empty: name the Linear layers to adapt")
    for target in targets:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target_modules must hold non-empty module names, got {target!r}")
    return targets


def add_lora(model: nn.Module, target_modules, r: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """Wrap ``model``'s target ``nn.Linear`` layers in :class:`LoRALinear`, freeze the rest.

    ``target_modules`` as in ``peft.LoraConfig``: a list of names (``["q_proj",
    "v_proj"]`` adapts every module whose dotted name is, or ends with, one of them)
    or one regular expression that a whole name must match. Every name in the list
    must match at least one module, and every match must be an ``nn.Linear`` whose
    weight is its own: a weight tied to another (GPT's head and token embedding)
    is refused, since merging would change the embedding too (``peft`` 0.21 merges
    into both without a word).
    The model is changed in place and returned; afterwards only the A and B of the
    wrapped layers require gradients.
    """
    targets = _check_targets(target_modules)
    if lora_layers(model):
        raise ValueError(f"{lora_layers(model)[0][0]} already has LoRA; add_lora wraps a model once")
    named = [(name, module) for name, module in model.named_modules() if name]
    chosen = [(name, module) for name, module in named if _matches(name, targets)]
    linear_names = sorted({name.rsplit(".", 1)[-1] for name, module in named if isinstance(module, nn.Linear)})
    if isinstance(targets, str):
        unmatched = [] if chosen else [targets]
    else:
        unmatched = [target for target in targets if not any(_matches(name, [target]) for name, _ in named)]
    if unmatched:
        raise ValueError(
            f"target_modules {unmatched[0]!r} matches no module of this {type(model).__name__}; "
            f"its Linear layers are named {', '.join(linear_names) or '(none)'}"
        )
    names_of = {}  # a tensor's id -> every name it has (a tied tensor has several)
    for parameter_name, parameter in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(parameter), []).append(parameter_name)
    for name, module in chosen:
        if not isinstance(module, nn.Linear):
            raise ValueError(f"target {name} is a {type(module).__name__}, not an nn.Linear; LoRA here adapts Linear layers")
        others = [other for other in names_of[id(module.weight)] if other != f"{name}.weight"]
        if others:
            raise ValueError(
                f"{name}.weight is tied to {others[0]}: merging an update into it would change both; "
                f"leave {name.rsplit('.', 1)[-1]} out of target_modules"
            )
    _check_settings(r, alpha, dropout)  # before the model changes
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, r, alpha, dropout))
    return model


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """The model's :class:`LoRALinear` layers with their names."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoRALinear)]


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of parameters; a tied tensor counts once."""
    parameters = list(model.parameters())  # parameters() yields a shared tensor once
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters, A and B of every LoRA layer: what a LoRA checkpoint needs to
    store next to the base model (``model.load_state_dict(saved, strict=False)``
    after :func:`add_lora` with the same settings puts them back)."""
    return {f"{name}.{part}": getattr(layer, part).detach().clone()
            for name, layer in _layers_or_error(model) for part in ("lora_A", "lora_B")}


def _layers_or_error(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"this {type(model).__name__} has no LoRA layers; call add_lora first")
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` (see :meth:`LoRALinear.merge`)."""
    for _, layer in _layers_or_error(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Unmerge every LoRA layer of ``model`` (see :meth:`LoRALinear.unmerge`)."""
    for _, layer in _layers_or_error(model):
        layer.unmerge()
    return model


def unload_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put plain ``nn.Linear`` layers back: with the update merged in (``peft``'s
    ``merge_and_unload``), or, with ``merge=False``, the original weights. The
    model is changed in place and returned; its parameters stay frozen."""
    for name, layer in _layers_or_error(model):
        if merge and not layer.merged:
            layer.merge()
        elif not merge and layer.merged:
            layer.unmerge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    return model
