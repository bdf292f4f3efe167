"""Data-parallel training across processes with ``torch.distributed`` (chapter 14).

Every process holds a whole copy of the model and trains on its own part of each
batch; after ``backward`` the gradients are averaged across processes
(all-reduce), so every copy takes the same optimizer step.
:class:`~torch.nn.parallel.DistributedDataParallel` (DDP) does the averaging.

``torchrun --nproc_per_node=W`` starts the W processes and tells each one its
place through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``). This module

* joins the process group from them: :func:`init_from_environment` (``nccl``
  between CUDA GPUs, ``gloo`` between CPU processes);
* says who this process is: :func:`rank`, :func:`world_size`, :func:`is_main`;
* lets rank 0 alone print and write: :func:`print_main`, :func:`save_main`;
* gives each rank its own part of the data: :func:`split_batches` (a list of
  batches, e.g. the translator's length buckets) and :func:`rank_batch_at`
  (micro-batch ``i`` of rank ``r`` of ``W`` is the single-process micro-batch ``i·W + r``);
* averages a number over ranks for logging: :func:`mean_over_ranks` (a tensor, left on the
  device: :func:`mean_tensor_over_ranks`);
* starts N ``gloo`` processes from a notebook or a test, with the same environment
  variables torchrun sets, and returns what each returned: :func:`start_processes`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import multiprocessing
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp
from torch.nn.parallel import DistributedDataParallel

from utils.checks import check_int
from utils.data import write_atomically
from utils.environment import pick_device

ENVIRONMENT = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# In processes started by start_processes, a collective waits this long for a lost rank, then
# fails (torchrun runs keep PyTorch's default, 10 minutes, time enough for rank 0 to write a
# large checkpoint while the others wait).
TIMEOUT = datetime.timedelta(seconds=120)


# --- joining the process group ---------------------------------------------------------


def launched() -> bool:
    """True in a process started by torchrun (or :func:`start_processes`): ``RANK`` and ``WORLD_SIZE`` are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_world_size() -> int:
    """How many processes torchrun started (``WORLD_SIZE``), known before the group is joined; 1 outside it."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def backend_for(device: torch.device | str) -> str:
    """``nccl`` between CUDA GPUs (fast, GPU to GPU), ``gloo`` between CPU processes."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_environment(
    device: torch.device | str | None = None, timeout: datetime.timedelta | None = None
) -> torch.device:
    """Join the process group torchrun described, and return this process's device.

    Outside torchrun this only picks the device (:func:`~utils.environment.pick_device`).
    Under torchrun each process gets GPU ``LOCAL_RANK`` (``cuda:0``, ``cuda:1``, …
    on each machine) and the ``nccl`` backend, or the CPU and ``gloo``. Apple's MPS
    has no backend: ask for ``cpu``.
    """
    device = pick_device(None if device in (None, "auto") else str(device))
    if not launched():
        return device
    for name in ENVIRONMENT[2:]:
        if name not in os.environ:
            raise RuntimeError(f"RANK is set but {name} is not: start the processes with torchrun")
    if device.type == "mps":
        raise ValueError("torch.distributed has no backend for Apple's MPS; train with device 'cpu' (gloo)")
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPUs: "
                             "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), timeout=timeout)
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a run; harmless when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 … world_size - 1 (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


_rank, _world_size = rank, world_size  # for functions whose parameters take these names


def is_main() -> bool:
    """Rank 0: the one process that prints, logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for when not distributed)."""
    if is_distributed():
        dist.barrier()


# --- the Trainer in W processes -------------------------------------------------------


class DataParallel:
    """What the Trainer of chapter 11 does differently in W processes; its one-process twin is
    :class:`utils.trainer.OneProcess`, with the same methods.

    * the process group is joined (:func:`init_from_environment`); rank 0 alone prints and writes;
    * :meth:`batches`: rank r of W takes the single-process micro-batches i·W + r (:func:`rank_batch_at`);
    * :meth:`wrap`: DDP, which all-reduces the gradients during ``backward``;
    * :meth:`accumulating`: no all-reduce until the last micro-batch of a step (``no_sync``);
    * :meth:`mean`: a number or a tensor averaged over the ranks (a tensor stays on its device).
    """

    def __init__(self, device: torch.device | str):
        self.device = init_from_environment(device)  # torchrun: cuda:LOCAL_RANK, or the CPU with gloo
        self.world_size = world_size()
        self.is_main = is_main()

    def batches(self, batch_at: Callable[[int], tuple]) -> Callable[[int], tuple]:
        return rank_batch_at(batch_at)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def accumulating(self, model: torch.nn.Module, last: bool):
        """DDP all-reduces the gradients once, after the last micro-batch of a step."""
        return contextlib.nullcontext() if last or self.world_size == 1 else model.no_sync()

    def mean(self, value):
        return mean_tensor_over_ranks(value) if isinstance(value, torch.Tensor) else mean_over_ranks(value)


def launched_processes(device: torch.device | str) -> DataParallel | None:
    """In a process torchrun (or :func:`start_processes`) started: a :class:`DataParallel`; else None."""
    return DataParallel(device) if launched() else None


# --- rank 0 alone writes -----------------------------------------------------------------


def print_main(*args, **kwargs) -> None:
    """``print`` on rank 0 only: W processes would print every line W times."""
    if is_main():
        print(*args, **kwargs)


def save_main(obj, path: str | Path) -> None:
    """``torch.save`` on rank 0 only, atomically (temporary file, then rename); every rank waits for it.

    The copies are identical after every step, so one file is enough, and N
    processes writing one path at once could leave a mix of their bytes.
    """
    path = Path(path)
    if is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: torch.save(obj, f))
    barrier()  # nobody reads the file before it is complete


def mean_over_ranks(value: float | torch.Tensor) -> float:
    """The mean of a number over all ranks (e.g. each rank's loss on its part of the batch)."""
    (total,) = sum_over_ranks(float(value))
    return total / world_size()


def mean_tensor_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks, left on the device (one all-reduce; the CPU reads nothing).

    In float64, so that it equals :func:`mean_over_ranks` of the same numbers; unchanged when not distributed.
    """
    if not is_distributed():
        return value
    total = value.detach().double()
    dist.all_reduce(total)  # sum over ranks
    return total / world_size()


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """Each number summed over all ranks, in one all-reduce (e.g. a loss total and a count)."""
    if not is_distributed():
        return tuple(float(v) for v in values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(tensor)  # sum over ranks
    return tuple(tensor.tolist())


# --- each rank its own part of the data ----------------------------------------------


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The given rank and world size, or this process's; checked."""
    r = _rank() if rank is None else check_int("rank", rank)  # 0.5 or 2.5 would give fractional batches
    n = _world_size() if world_size is None else check_int("world_size", world_size)
    if n < 1 or not 0 <= r < n:
        raise ValueError(f"need 0 <= rank < world_size, got rank={r}, world_size={n}")
    return r, n


def share_of(items: Sequence, rank: int | None = None, world_size: int | None = None) -> list:
    """Rank ``r`` of ``N``'s items ``r, r + N, r + 2N, …``: every item once, no padding.

    For evaluation, where each rank adds up its share and one :func:`sum_over_ranks`
    at the end joins them: unlike training (:func:`split_batches`) no rank waits for a
    per-batch all-reduce, so the shares may differ by one item.
    """
    r, n = _rank_and_world(rank, world_size)
    return list(items[r::n])


def split_batches(batches: Sequence, rank: int | None = None, world_size: int | None = None) -> list:
    """This rank's share of a list of batches, as ``DistributedSampler`` splits a data set.

    Rank ``r`` of ``N`` takes batches ``r, r + N, r + 2N, …``. When the count does not
    divide by N, the list is padded with batches from its start, so every rank gets
    ``ceil(len / N)`` batches: a rank with one batch fewer would wait forever for the
    others' last all-reduce.
    """
    r, n = _rank_and_world(rank, world_size)
    if len(batches) == 0:
        raise ValueError("split_batches got no batches to share")
    total = math.ceil(len(batches) / n) * n
    padded = [batches[i % len(batches)] for i in range(total)]
    return padded[r:total:n]


def rank_batch_at(batch_at: Callable[[int], tuple], rank: int | None = None,
                  world_size: int | None = None) -> Callable[[int], tuple]:
    """This rank's micro-batches: number ``i`` is the single-process micro-batch ``i·N + r``.

    ``batch_at(i)`` is a pure function of ``i`` (for GPT, random windows drawn from a
    generator seeded by ``i``), so rank ``r``'s stream is the single-process stream
    offset by ``r`` and strided by N. The N ranks never read the same micro-batch, and
    together they read exactly what one process would read with N times the
    accumulation steps: N processes with ``accumulation_steps=A`` train like one
    with ``A·N``.
    """
    r, n = _rank_and_world(rank, world_size)
    if n == 1:
        return batch_at

    def batch_of_this_rank(i: int) -> tuple:
        return batch_at(i * n + r)

    return batch_of_this_rank



# --- starting W processes from a notebook or a test -----------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now, for the processes to meet at."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_rank(local_rank: int, fn: Callable, world: int, port: int, folder: str, args: tuple,
              forked: bool = False) -> None:
    """One process: set torchrun's environment variables, join the group, run ``fn``, save its result.

    A forked rank runs on one thread: GNU OpenMP's pool of threads does not survive a
    fork, and a forked process that asks it for more than one thread, after its parent
    used several, waits forever. A spawned rank may share out the cores.
    """
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    shared_out = max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // world))
    torch.set_num_threads(1 if forked else shared_out)
    try:
        init_from_environment("cpu", timeout=TIMEOUT)
        result = fn(*args)
        torch.save(result, Path(folder) / f"rank{local_rank}.pt")
    except BaseException:
        (Path(folder) / f"rank{local_rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        shutdown()


def start_processes(fn: Callable, world_size: int = 2, *args, start_method: str | None = None) -> list:
    """Run ``fn(*args)`` in ``world_size`` CPU processes joined by ``gloo``; return each rank's result.

    Inside ``fn``, :func:`rank` and :func:`world_size` say where it runs, as under
    torchrun. Results go back through ``torch.save``/``torch.load`` (tensors,
    numbers, strings, lists and dicts of them). The processes are *forked* where the
    system can (Linux, macOS): they start in a fraction of a second and ``fn`` may be
    defined in a notebook, but each runs on one CPU thread (and ``fn`` must not ask
    for more: see :func:`_run_rank`). Elsewhere, or with ``start_method="spawn"``,
    they are *spawned* (a fresh Python each, a few seconds), share out the cores, and
    ``fn`` must be importable from a module. An error in any rank stops them all and
    is raised here with that rank's traceback.
    """
    world_size = check_int("world_size", world_size, minimum=1)
    if is_distributed():
        raise RuntimeError("start_processes is called from outside a process group, not from a rank")
    if start_method is None:
        start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    name = getattr(fn, "__qualname__", repr(fn))
    interactive = not hasattr(sys.modules.get("__main__"), "__file__")  # a notebook or a console
    if start_method != "fork" and ("<" in name or (getattr(fn, "__module__", None) == "__main__" and interactive)):
        raise ValueError(f"start_method={start_method!r} starts a fresh Python for each process, which cannot "
                         f"find {name} (defined in a notebook, a console, or inside a function): define it at "
                         "the top level of a .py module, or use start_method='fork'")
    with tempfile.TemporaryDirectory(prefix="ranks-") as folder:
        try:
            torch_mp.start_processes(_run_rank, args=(fn, world_size, free_port(), folder, args,
                                                      start_method == "fork"),
                                     nprocs=world_size, join=True, start_method=start_method)
        except Exception as error:
            errors = list(Path(folder).glob("rank*.error"))
            if not errors:
                raise
            first = min(errors, key=lambda path: path.stat().st_mtime_ns)  # the others fail because it left
            raise RuntimeError(f"{first.stem} failed:\n{first.read_text()}") from error
        return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
