"""Reading the chapter notebooks from tests (no kernel needed)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code" and source(c).strip()]


def tagged(notebook: dict, tag: str) -> list[dict]:
    return [c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def notebook_path(stem: str) -> Path:
    """chapters/<stem>.ipynb, e.g. notebook_path('00_introduction')."""
    path = ROOT / "chapters" / f"{stem}.ipynb"
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def run_solutions(stem: str) -> dict:
    """Execute a chapter's solution cells (tagged ``solution``) in one fresh namespace.

    Solution cells are self-contained: each imports what it uses and ends by
    calling its checker, so running them proves the checkers pass on the reference
    solutions. Returns the namespace, so tests can reuse a reference solution.
    """
    namespace: dict = {"__name__": f"solutions_{stem}"}
    for cell in tagged(load(notebook_path(stem)), "solution"):
        exec(compile(source(cell), f"{stem}:solution", "exec"), namespace)
    return namespace
