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

# Every module outside the standard library that a chapter or ``utils`` imports is in
# exactly one of two lists (tests/test_environment.py parses every import to hold it).
#
# 1. What Colab preinstalls and the setup itself needs: ``import utils`` imports them
#    before anything could be installed. torch above all must never be installed over:
#    Colab's build matches its GPU driver. Written down on COLAB_CHECKED from what every
#    Colab image is built around (the Jupyter kernel, PyTorch, NumPy, matplotlib); it was
#    not compared with a live Colab runtime that day (no internet access).
COLAB_CHECKED = "2026-12-02"
COLAB_PREINSTALLED = {
    "torch": "torch", "numpy": "numpy", "matplotlib": "matplotlib", "IPython": "ipython",
    "matplotlib_inline": "matplotlib-inline", "packaging": "packaging",  # matplotlib needs packaging
}
# 2. Everything else, as import name -> pip name: installed by the setup cell where it is
#    missing or older than requirements.txt allows (Colab may ship an older release).
NOTEBOOK_PACKAGES = {
    "tqdm": "tqdm",
    "sacrebleu": "sacrebleu",  # chapter 12's reference BLEU
    # chapters 15-17: today's models, real weights, instruction tuning
    "transformers": "transformers", "safetensors": "safetensors", "huggingface_hub": "huggingface_hub",
    "tiktoken": "tiktoken", "regex": "regex", "peft": "peft",
    "tokenizers": "tokenizers",  # Hugging Face's, for tokenizer.json files (comes with transformers)
}

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


def requirement(pip_name: str, requirements: Path = ROOT / "requirements.txt") -> str:
    """``pip_name`` with the version range requirements.txt gives it (the bare name if none)."""
    if requirements.is_file():
        for line in requirements.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            name = re.split(r"[<>=!~ \[;]", line, maxsplit=1)[0]
            if name and _normalise(name) == _normalise(pip_name):
                return line
    return pip_name


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(pip_name: str) -> str | None:
    """The installed version of a distribution, or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _satisfies(pip_name: str, wanted: str) -> bool:
    """Whether the installed release is inside ``wanted``'s range (True when it cannot tell)."""
    from packaging.requirements import Requirement

    version = installed_version(pip_name)
    return version is None or Requirement(wanted).specifier.contains(version, prereleases=True)


def install_missing(packages: dict[str, str] = NOTEBOOK_PACKAGES) -> list[str]:
    """pip-install the packages (import name -> pip name) that are missing or too old.

    The version range is requirements.txt's. A package already imported in this
    session cannot be replaced under it: it is reported (restart the session) instead.
    Returns the requirements installed.
    """
    wanted = []
    for module, pip_name in packages.items():
        spec = requirement(pip_name)
        if importlib.util.find_spec(module) is None:
            wanted.append(spec)
        elif not _satisfies(pip_name, spec):
            if module in sys.modules:
                print(f"{pip_name} {installed_version(pip_name)} is imported but the book needs {spec}: "
                      f"run `pip install '{spec}'` and restart the session")
            else:
                wanted.append(spec)
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wanted], check=True)
    return wanted


def third_party_imports(root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level modules outside the standard library that the chapters and ``utils`` import.

    Maps each module to the files that import it: every import statement of every
    code cell of ``chapters/*.ipynb`` (IPython's ``%`` and ``!`` lines left out) and of
    every ``utils`` module, at any depth (imports inside functions too). The
    repository's own packages (``utils``, ``benchmarks``, ``tests``) are not third-party.
    """
    import ast
    import json

    sources = []
    for notebook in sorted((root / "chapters").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                sources.append((notebook.name, "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                                         for line in lines)))
    for module in sorted((root / "utils").rglob("*.py")):
        sources.append((str(module.relative_to(root)), module.read_text(encoding="utf-8")))
    own = {path.name for path in root.iterdir() if path.is_dir() and any(path.glob("*.py"))}
    found: dict[str, set[str]] = {}
    for where, text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, set()).add(where)
    return found


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
    source = "device" if preferred else "LLM_FROM_SCRATCH_DEVICE"
    preferred = preferred or os.environ.get("LLM_FROM_SCRATCH_DEVICE")
    if preferred:
        try:
            device = torch.device(preferred)
        except (RuntimeError, TypeError):
            raise ValueError(f"{source}={preferred!r} is not a device; use cpu, cuda, cuda:N or mps") from None
        mps = getattr(torch.backends, "mps", None)
        if (device.type == "cuda" and not torch.cuda.is_available()) or (
                device.type == "mps" and not (mps is not None and mps.is_available())):
            kind = "CUDA GPU" if device.type == "cuda" else "Apple MPS"
            raise ValueError(f"{source}={preferred!r}: this machine has no {kind}; use cpu (or leave it unset)")
        return device
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
