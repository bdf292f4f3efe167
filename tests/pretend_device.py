"""A pretend accelerator for CPU-only tests of device placement.

PyTorch on a machine without a GPU cannot build a CUDA tensor, so the bug of
chapter 12 on a GPU (a CPU tensor handed to a model on the GPU: "Expected all
tensors to be on the same device") cannot happen there. Inside
``pretend_device()``, tensors on the ``meta`` device stand in for GPU tensors:
they hold real CPU data (so every computation and ``.item()`` works as on the CPU)
and report ``device='meta'``; an operation mixing them with CPU tensors that are
not 0-d scalars raises the error a GPU run raises. ``model.to("meta")`` moves a
model to the pretend device, ``tensor.to("meta")`` a tensor (``torch.tensor(...,
device="meta")`` makes a real meta tensor, which holds no data); ``.cpu()`` brings a
tensor back.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")


class _OnDevice(torch.Tensor):
    """A CPU tensor (``inner``) that reports the pretend device."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), dtype=inner.dtype, device=DEVICE,
            requires_grad=inner.requires_grad)

    def __init__(self, inner: torch.Tensor):
        self.inner = inner

    def __repr__(self):
        return f"pretend-device tensor({self.inner})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError("pretend-device tensors work only inside pretend_device()")


class _Pretend(TorchDispatchMode):
    def __init__(self, log: list | None = None):
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = any(isinstance(t, _OnDevice) for t in tensors)
        on_cpu = [t for t in tensors if not isinstance(t, _OnDevice) and t.dim() > 0]
        if self.log is not None and func is torch.ops.aten._local_scalar_dense.default and on_device:
            self.log.append(func)  # a value read back from the device: a host sync on a GPU
        unwrapped_args, unwrapped_kwargs = tree_map(lambda t: t.inner if isinstance(t, _OnDevice) else t,
                                                    (args, kwargs))
        if func is torch.ops.aten.copy_.default:  # copies between devices are allowed
            func(*unwrapped_args, **unwrapped_kwargs)
            return args[0]
        if on_device and on_cpu:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"{DEVICE} and cpu! ({func})")
        result_on_device = on_device
        if kwargs.get("device") is not None:
            result_on_device = torch.device(kwargs["device"]).type == DEVICE.type
            unwrapped_kwargs["device"] = torch.device("cpu")
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if func is torch.ops.aten._local_scalar_dense.default or not result_on_device:
            return out
        return tree_map(lambda t: _OnDevice(t) if isinstance(t, torch.Tensor) else t, out)


@contextlib.contextmanager
def pretend_device(log: list | None = None):
    """Inside: ``meta`` tensors are a pretend GPU holding CPU data. ``log`` collects device reads."""
    with _Pretend(log):
        yield DEVICE
