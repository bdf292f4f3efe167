"""Test-wide settings; the nbval kernels inherit this process's environment."""

import os
from pathlib import Path

# Stored notebook outputs are made without progress bars (see the Makefile's
# `notebooks` target), so tests run without them too.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
# One torch thread per process: pytest runs two notebooks at once on CI's 2 cores,
# and oversubscribed threads make the small models' training steps many times slower.
# Results are the same; the Makefile's `notebooks` target stores outputs the same way.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests never need the network: use the offline copy of the data next to the
# checkout when there is one and nothing else was chosen.
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "LLM_FROM_SCRATCH_DATA" not in os.environ and _shared.is_dir():
    os.environ["LLM_FROM_SCRATCH_DATA"] = str(_shared)
