"""Where the notebooks run: the setup every chapter starts with (chapter 00).

Every chapter's first code cell is the same few lines (``SETUP_CELL`` below). They
make this package importable (cloning the repository first when running in Google
Colab) and then call :func:`setup_notebook`, which installs anything Colab lacks,
seeds every random generator and picks the fastest available device.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

SEED = 1337
ROOT = Path(__file__).resolve().parent.parent

# What the chapters import beyond the standard library, as pip names. Colab
# ships all of them today; the list guards against that changing. torch is left
# out on purpose: Colab's build matches its GPU driver and must not be replaced.
NOTEBOOK_PACKAGES = {"numpy": "numpy", "matplotlib": "matplotlib", "tqdm": "tqdm"}

SETUP_CELL_TEMPLATE = '''\
# Setup: the same first cell in every chapter (see utils/environment.py).
# It finds the book's `utils` package (in Colab it clones the repository first),
# seeds every random generator and picks the device: CUDA, then Apple MPS, then CPU.
import pathlib
import subprocess
import sys

REPOSITORY = "{repository}"
if "google.colab" in sys.modules and not pathlib.Path("{name}").is_dir():
    subprocess.run(["git", "clone", "--quiet", "--depth=1", REPOSITORY], check=True)
here = pathlib.Path.cwd()
for root in (here, *here.parents, pathlib.Path("{name}").resolve()):
    if (root / "utils" / "environment.py").is_file():
        sys.path.insert(0, str(root))
        break
import utils  # noqa: E402

device = utils.setup_notebook()'''


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """The repository address, read from the one place it is written: ``_config.yml``."""
    text = config.read_text(encoding="utf-8")
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"{config} has no 'repository: url:' entry")
    return match.group(1)


def setup_cell(repository: str | None = None) -> str:
    """The exact source of every chapter's first code cell."""
    repository = repository or repository_url()
    name = repository.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return SETUP_CELL_TEMPLATE.format(repository=repository, name=name)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def install_missing(packages: dict[str, str] = NOTEBOOK_PACKAGES) -> list[str]:
    """pip-install the packages (import name -> pip name) that cannot be imported."""
    missing = [pip_name for module, pip_name in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
    return missing


def seed_everything(seed: int = SEED) -> None:
    """Seed Python, NumPy and torch (every device) so that a rerun gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def pick_device(preferred: str | None = None) -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU.

    ``preferred`` (or the environment variable ``LLM_FROM_SCRATCH_DEVICE``) forces
    one, e.g. ``"cpu"`` to compare a GPU run with a laptop run.
    """
    preferred = preferred or os.environ.get("LLM_FROM_SCRATCH_DEVICE")
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_plots() -> None:
    """Readable, light figures: the notebooks are stored with them.

    In a notebook, figures are drawn at twice the pixel density ("retina"), so they
    stay sharp on high-resolution screens and the site, at the same size on the page.
    """
    import matplotlib.pyplot as plt

    if "IPython" in sys.modules:
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("retina")

    plt.rcParams.update(
        {
            "figure.dpi": 90,
            "figure.figsize": (6.4, 3.6),
            "savefig.dpi": 90,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
        }
    )


def setup_notebook(seed: int = SEED) -> torch.device:
    """Everything a chapter needs before its first idea; returns the device to use."""
    if in_colab():
        install_missing()
    configure_plots()
    seed_everything(seed)
    device = pick_device()
    print(f"device: {device.type} | seed: {seed} | torch {torch.__version__}")
    return device
