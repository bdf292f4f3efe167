"""utils.distributed: 2 gloo processes train exactly like one process on the whole batch, rank 0 alone writes."""

import contextlib
import io
import json
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from utils import distributed
from utils import train as train_module
from utils.models import GPT, GPTConfig
from utils.train import TrainConfig, Trainer, sequence_loss

V, B, T = 17, 4, 8  # B: micro-batch size of one rank
CONFIG = GPTConfig.preset("cpu", vocab_size=V, block_size=T, C=16, d_ff=None, n_layers=1)


def make_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG)


def make_optimizer(model) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-2)


def micro_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch number i of one process's stream, a pure function of i."""
    ids = torch.randint(V, (B, T + 1), generator=torch.Generator().manual_seed(1000 + i))
    return ids[:, :-1], ids[:, 1:]


def train_single(steps: int, accumulation: int) -> dict:
    """One process; each step averages the gradients of `accumulation` micro-batches."""
    model = make_model()
    optimizer = make_optimizer(model)
    for step in range(steps):
        for k in range(accumulation):
            x, y = micro_batch(step * accumulation + k)
            (sequence_loss(model(x), y) / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.state_dict()


def train_ddp(steps: int, accumulation: int) -> dict:
    """Runs on every rank: DDP, `no_sync` on all but the last micro-batch of a step."""
    model = DistributedDataParallel(make_model())
    optimizer = make_optimizer(model)
    batch_at = distributed.rank_batch_at(micro_batch)
    for step in range(steps):
        for k in range(accumulation):
            x, y = batch_at(step * accumulation + k)
            last = k == accumulation - 1
            with contextlib.nullcontext() if last else model.no_sync():  # all-reduce once, after the last
                (sequence_loss(model(x), y) / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.module.state_dict()


def largest_difference(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_one_ddp_step_equals_one_process_on_the_concatenated_batch():
    single = train_single(1, 2)  # micro-batches 0 and 1 together: the concatenated batch of the 2 ranks
    ranks = distributed.start_processes(train_ddp, 2, 1, 1)  # forked after the optimizer's lazy imports
    assert largest_difference(ranks[0], ranks[1]) == 0  # the copies agree exactly
    assert largest_difference(ranks[0], single) <= 1e-6
    assert largest_difference(ranks[0], train_single(1, 1)) > 1e-3  # rank 0's half alone trains otherwise


def test_no_sync_accumulation_across_processes_equals_one_process():
    ranks = distributed.start_processes(train_ddp, 2, 1, 2)  # 1 step of 2 micro-batches on each of 2 ranks
    assert largest_difference(ranks[0], train_single(1, 4)) <= 1e-6


def read_my_part():
    return [distributed.split_batches(list(range(7))), distributed.rank_batch_at(micro_batch)(0)[0]]


def test_each_rank_reads_a_different_part():
    (split0, x0), (split1, x1) = distributed.start_processes(read_my_part, 2)
    assert split0 == [0, 2, 4, 6] and split1 == [1, 3, 5, 0]  # padded from the start: both take 4
    assert torch.equal(x0, micro_batch(0)[0]) and torch.equal(x1, micro_batch(1)[0])


def write_and_print(folder: str):
    saved = []
    original = torch.save
    torch.save = lambda obj, f, *a, **k: (saved.append(obj), original(obj, f, *a, **k))[1]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        distributed.print_main("step 1")
        distributed.save_main({"rank": distributed.rank()}, f"{folder}/checkpoint.pt")
    torch.save = original
    return {"saved": saved, "printed": printed.getvalue()}


def test_only_rank_0_writes_and_prints(tmp_path):
    rank0, rank1 = distributed.start_processes(write_and_print, 2, str(tmp_path))
    assert rank0["printed"] == "step 1\n" and rank1["printed"] == ""
    assert rank0["saved"] == [{"rank": 0}] and rank1["saved"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    assert torch.load(tmp_path / "checkpoint.pt")["rank"] == 0


def mean_of_ranks():
    return distributed.mean_over_ranks(float(distributed.rank() + 1))


def test_mean_over_ranks():
    assert distributed.start_processes(mean_of_ranks, 2) == [1.5, 1.5]
    assert distributed.mean_over_ranks(torch.tensor(3.0)) == 3.0  # one process: itself


def share_and_sum():
    share = distributed.share_of(list(range(7)))
    return share, distributed.sum_over_ranks(sum(share), len(share))


def test_share_of_gives_every_item_once_and_sum_over_ranks_joins_the_shares():
    (share0, sums0), (share1, sums1) = distributed.start_processes(share_and_sum, 2)
    assert share0 == [0, 2, 4, 6] and share1 == [1, 3, 5]  # no padding: 7 items, each once
    assert sums0 == sums1 == (21.0, 7.0)
    assert distributed.share_of("abcde", 1, 3) == ["b", "e"]
    assert distributed.sum_over_ranks(2.5, 3) == (2.5, 3.0)  # one process: the values themselves
    with pytest.raises(ValueError, match="rank=3, world_size=3"):
        distributed.share_of([1], 3, 3)


EVAL_STREAM = torch.arange(203) % V  # 202 targets: 25 windows of 8 and a last one of 2


def whole_split_on_ranks():
    return train_module.whole_split_loss(make_model(), EVAL_STREAM, T, batch_size=3)


def test_whole_split_loss_in_2_processes_equals_one_process():
    """Each rank scores every other batch of windows (9 batches: 5 and 4), and both get the whole-split mean."""
    alone = train_module.whole_split_loss(make_model(), EVAL_STREAM, T, batch_size=3)
    rank0, rank1 = distributed.start_processes(whole_split_on_ranks, 2)
    assert rank0 == rank1 == pytest.approx(alone, rel=1e-6)


FORK_AFTER_THREADS = """
import os, torch
from utils import distributed
os.cpu_count = lambda: 16  # as on a machine with many cores, where ranks used to share them out
torch.set_num_threads(2)
a = torch.randn(256, 256, requires_grad=True)
(a @ a).sum().backward()  # the parent's OpenMP threads are now running
def work():
    b = torch.randn(256, 256, requires_grad=True)
    (b @ b).relu().sum().backward()
    return torch.get_num_threads()
print(distributed.start_processes(work, 2))
"""


def test_forked_ranks_after_a_multithreaded_parent_do_not_hang():
    """GNU OpenMP's thread pool does not survive fork(): a forked rank asking for 2 threads waited forever."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run([sys.executable, "-c", FORK_AFTER_THREADS], capture_output=True, text=True,
                                timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    except subprocess.TimeoutExpired:
        pytest.fail("2 forked ranks hung after the parent had used 2 threads")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[1, 1]"  # a forked rank runs on one thread


def fails_on_rank_1():
    if distributed.rank() == 1:
        raise ValueError("wrong shape on rank 1")
    dist.barrier()


def test_an_error_in_one_rank_is_raised_with_its_traceback():
    with pytest.raises(RuntimeError, match=r"rank1 failed:(.|\n)*wrong shape on rank 1"):
        distributed.start_processes(fails_on_rank_1, 2)


def test_a_spawned_process_cannot_run_a_function_it_cannot_import():
    with pytest.raises(ValueError, match=r"cannot find \S*<lambda>.*start_method='fork'"):
        distributed.start_processes(lambda: 1, 2, start_method="spawn")


def test_split_batches_like_distributed_sampler():
    from torch.utils.data import DistributedSampler

    for n_batches in (1, 5, 6):
        for world in (1, 2, 3):
            for r in range(world):
                sampler = DistributedSampler(range(n_batches), num_replicas=world, rank=r, shuffle=False)
                assert distributed.split_batches(list(range(n_batches)), r, world) == list(sampler)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        distributed.split_batches([1, 2], 2, 2)
    with pytest.raises(ValueError, match="no batches"):
        distributed.split_batches([], 0, 2)


def test_rank_batch_at_interleaves_the_single_process_stream():
    streams = [[distributed.rank_batch_at(lambda i: i, r, 3)(i) for i in range(4)] for r in range(3)]
    assert streams == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    assert sorted(sum(streams, [])) == list(range(12))


def test_outside_torchrun_nothing_is_distributed(monkeypatch):
    for name in distributed.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched()
    assert distributed.init_from_environment("cpu") == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.launched_world_size() == 1
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for("cuda:1") == "nccl"
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched_world_size() == 2 and distributed.world_size() == 1  # launched, not yet joined
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not"):
        distributed.init_from_environment("cpu")


# --- the chapter 11 trainer in 2 processes ---------------------------------------------------


def train_config(steps: int, accumulation: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=B, accumulation_steps=accumulation, lr=1e-2, min_lr=1e-3,
                       warmup_steps=1, eval_every=100, device="cpu", seed=0)


def trainer_run(folder: str, steps: int, until: int | None = None) -> dict:
    """The Trainer on every rank; with ``until``, stop there as if interrupted, then resume in a new Trainer."""
    trainer = Trainer(make_model(), train_config(steps, 1), batch_at=micro_batch, out_dir=folder)
    trainer.fit(until=until)
    if until is not None:
        distributed.barrier()  # rank 0's checkpoint is complete before anybody reads it
        trainer = Trainer(make_model(), train_config(steps, 1), batch_at=micro_batch, out_dir=folder)
        trainer.load(trainer.checkpoint_path)
        trainer.fit()
    return {"weights": trainer.model.state_dict(), "loss": trainer.history["train_loss"],
            "is_main": trainer.is_main, "distributed": trainer.distributed}


def test_trainer_in_2_processes_trains_like_one_with_twice_the_accumulation(tmp_path):
    rank0, rank1 = distributed.start_processes(trainer_run, 2, str(tmp_path), 1)
    single = Trainer(make_model(), train_config(1, 2), batch_at=micro_batch)
    single.fit()
    assert (rank0["is_main"], rank1["is_main"], rank0["distributed"]) == (True, False, True)
    assert rank0["loss"] == rank1["loss"]  # the mean over ranks, logged alike
    assert abs(rank0["loss"][0] - single.history["train_loss"][0]) <= 1e-6
    assert largest_difference(rank0["weights"], single.model.state_dict()) <= 1e-5  # AdamW: see chapter 14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_resumed_2_process_run_continues_where_it_stopped(tmp_path):
    straight = distributed.start_processes(trainer_run, 2, str(tmp_path / "straight"), 4)
    resumed = distributed.start_processes(trainer_run, 2, str(tmp_path / "resumed"), 4, 2)
    assert largest_difference(straight[0]["weights"], resumed[0]["weights"]) == 0
    assert largest_difference(resumed[0]["weights"], resumed[1]["weights"]) == 0
    assert resumed[0]["loss"] == straight[0]["loss"]  # the history too, read back from rank 0's checkpoint



class FakeTask:
    """A task module for ``python -m utils.train`` that trains nothing: the command line's own duties only."""

    PRESETS = {"cpu": {"model": {}, "train": {}}}
    SETTINGS = {"model": (), "train": ()}

    @staticmethod
    def check_settings(preset):
        pass

    @staticmethod
    def run(preset, **options):
        return {"steps": 1, "train_tokens_per_second": 100}


def command_line():
    from utils import command_line as command_line_module

    command_line_module._task_module = lambda name, required=True: FakeTask
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = train_module.main(["gpt", "--out", tempfile.mkdtemp()])
    return {"code": code, "printed": printed.getvalue()}


def test_command_line_under_2_processes_prints_one_json_line_for_both():
    rank0, rank1 = distributed.start_processes(command_line, 2)
    assert rank0["code"] == rank1["code"] == 0
    assert rank1["printed"] == ""
    summary = json.loads(rank0["printed"])
    assert summary["processes"] == 2 and summary["train_tokens_per_second"] == 200  # both ranks' tokens


def test_bad_launches_are_named(monkeypatch):
    for name, value in {"RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "pick_device", lambda preferred=None: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="LOCAL_RANK=3 but this machine has 2 GPUs"):
        distributed.init_from_environment()
    monkeypatch.setattr(distributed, "pick_device", lambda preferred=None: torch.device("mps"))
    with pytest.raises(ValueError, match="no backend for Apple's MPS"):
        distributed.init_from_environment()
    assert not dist.is_initialized()


def test_the_trainer_reaches_ranks_only_through_its_processes():
    """Chapter 11's Trainer has no rank logic: batches, DDP, no_sync and means all go through ``processes``."""
    import inspect

    from utils.trainer import OneProcess

    calls, seen = [], []

    class Recording(OneProcess):  # rank 1 of 2, as DataParallel would be
        def batches(self, batch_at):
            calls.append("batches")
            return lambda i: seen.append(2 * i + 1) or batch_at(2 * i + 1)

        def wrap(self, model):
            calls.append("wrap")
            return model

        def accumulating(self, model, last):
            calls.append(("accumulating", last))
            return contextlib.nullcontext()

        def mean(self, value):
            calls.append("mean")
            return value

    config = TrainConfig(steps=2, batch_size=B, accumulation_steps=2, warmup_steps=0, device="cpu")
    trainer = Trainer(make_model(), config, batch_at=micro_batch, processes=Recording(torch.device("cpu")))
    trainer.fit()
    step = [("accumulating", False), ("accumulating", True), "mean"]
    assert calls == ["batches", "wrap", *step, *step] and seen == [1, 3, 5, 7]
    source = inspect.getsource(Trainer)
    for rank_logic in ("DistributedDataParallel", "no_sync", "rank_batch_at", "world_size()", "mean_over_ranks"):
        assert rank_logic not in source, rank_logic
    code = source.replace("utils.distributed.", "")  # the docstrings name the seam's class
    assert code.count("distributed.") == 1 and "distributed.launched_processes(" in code  # the one seam
