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


def test_every_third_party_import_is_preinstalled_in_colab_or_installed_by_the_setup():
    imports = environment.third_party_imports()
    assert {"torch", "matplotlib", "sacrebleu"} <= set(imports)  # the scan sees the chapters
    unknown = {m: sorted(w) for m, w in imports.items()
               if m not in environment.COLAB_PREINSTALLED and m not in environment.NOTEBOOK_PACKAGES}
    assert not unknown, f"neither in Colab's list nor installed by the setup cell: {unknown}"
    assert environment.COLAB_CHECKED  # the date Colab's list was written down
    assert not set(environment.COLAB_PREINSTALLED) & set(environment.NOTEBOOK_PACKAGES)
    for module in ("transformers", "safetensors", "tiktoken", "regex", "peft", "huggingface_hub"):
        assert module in environment.NOTEBOOK_PACKAGES  # chapters 15-17, before they exist


def test_the_setup_installs_under_the_right_names_and_versions(monkeypatch):
    import importlib.metadata

    distributions = importlib.metadata.packages_distributions()
    for module, pip_name in environment.NOTEBOOK_PACKAGES.items():
        assert pip_name in distributions.get(module, [pip_name])  # `import X` comes from pip's X
    assert environment.requirement("sacrebleu") == "sacrebleu>=2.3,<3"  # the range of requirements.txt
    assert environment.requirement("no-such-package") == "no-such-package"
    calls = []
    monkeypatch.setattr(environment.subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(environment, "installed_version", lambda pip_name: {"sacrebleu": "1.5.0"}.get(pip_name))
    monkeypatch.setattr(environment.importlib.util, "find_spec", lambda module: object())
    # present but older than requirements.txt allows (and not imported yet): upgraded
    monkeypatch.delitem(environment.sys.modules, "sacrebleu", raising=False)  # another test may have imported it
    assert environment.install_missing({"sacrebleu": "sacrebleu"}) == ["sacrebleu>=2.3,<3"]
    assert calls[-1][-1] == "sacrebleu>=2.3,<3"
