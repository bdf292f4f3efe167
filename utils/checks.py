"""Argument checks every module shares (no chapter of its own).

A learner experimenting in a notebook passes ``2.5`` layers, ``"300"`` tokens or a
token id one past the vocabulary. PyTorch then fails deep inside ``range()`` or
``nn.Linear``, or, on a GPU, with a device-side assert that breaks the session.
These checks fail first, with a message naming the argument and what was expected.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int, or a ValueError naming ``name``; bools and floats are refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)  # ints, NumPy integers, integer 0-d tensors
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(name: str, value, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a finite float in ``[minimum, maximum]``, or a ValueError naming ``name``.

    Bools, strings, NaN and infinities are refused (``1e999`` is infinity in Python).
    """
    bounds = "" if minimum is None else f" >= {minimum}"
    bounds += "" if maximum is None else (" and" if bounds else "") + f" <= {maximum}"
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)):
        raise ValueError(f"{name} must be a finite number{bounds}, got {value!r}")
    return float(value)


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str = "idx") -> None:
    """Integer ids in ``[0, vocab_size)``, or a ValueError naming the first bad id and V.

    One reduction (``aminmax``) and a single look at its result: cheap next to a
    forward pass, on the CPU. On a GPU, looking at the result (``.item()``) would make
    the CPU wait for all queued GPU work at every forward (a host sync), so ids on an
    accelerator are not read here: they are checked where they are still on the CPU
    (the decoding helpers check the prompt or source before moving it to the model's
    device). There an out-of-range id in ``nn.Embedding`` would be a device-side
    assert that leaves the CUDA context unusable.
    """
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of token ids, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must hold integer token ids (torch.long), got dtype {ids.dtype}")
    if ids.numel() == 0 or torch.compiler.is_compiling() or ids.device.type != "cpu":
        return  # a compiled graph cannot raise on data; a GPU's ids would cost a host sync
    low, high = (v.item() for v in torch.aminmax(ids))
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        where = tuple(torch.nonzero(ids == bad)[0].tolist())
        raise ValueError(
            f"{name} holds token id {bad} at position {where}, outside [0, {vocab_size}) for "
            f"vocab_size V={vocab_size} (ids range from {low} to {high})"
        )
