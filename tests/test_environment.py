"""utils.environment: the setup cell, seeding and device choice."""

import random

import numpy as np
import torch

from utils import environment


def test_seed_everything_repeats_every_generator():
    def draw():
        environment.seed_everything(7)
        return random.random(), np.random.rand(), torch.rand(3)

    (a1, b1, c1), (a2, b2, c2) = draw(), draw()
    assert a1 == a2 and b1 == b2 and torch.equal(c1, c2)


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("LLM_FROM_SCRATCH_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert environment.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert environment.pick_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert environment.pick_device().type == "cpu"
    monkeypatch.setenv("LLM_FROM_SCRATCH_DEVICE", "meta")
    assert environment.pick_device().type == "meta"


def test_setup_cell_carries_the_repository_from_config():
    url = environment.repository_url()
    assert url.startswith("https://github.com/")
    cell = environment.setup_cell()
    assert f'REPOSITORY = "{url}"' in cell
    assert url.rsplit("/", 1)[-1] in cell
    assert "pip" not in cell  # installation lives in utils, and never touches torch
    compile(cell, "<setup cell>", "exec")


def test_setup_cell_finds_utils_from_the_chapters_folder(tmp_path, monkeypatch):
    """Run the setup cell's path search as nbval does, from inside chapters/."""
    chapters = environment.ROOT / "chapters"
    monkeypatch.chdir(chapters)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".", str(environment.ROOT))])
    namespace: dict = {}
    exec(environment.setup_cell(), namespace)
    assert namespace["root"] == environment.ROOT
    assert isinstance(namespace["device"], torch.device)


def test_colab_installs_only_what_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(environment.subprocess, "run", lambda cmd, check: calls.append(cmd))
    missing = environment.install_missing({"numpy": "numpy", "no_such_module_xyz": "no-such-package"})
    assert missing == ["no-such-package"]
    assert calls and calls[0][-1] == "no-such-package"
    assert "torch" not in environment.NOTEBOOK_PACKAGES
