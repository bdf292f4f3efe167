"""Bring every chapter in line with the conventions: python -m tests.fix_notebooks

* the first code cell becomes exactly the current setup cell, folded on the site;
* solution cells (tagged ``solution``) get ``hide-input`` (a toggle on the site,
  which book/_ext/book_site.py labels "Show solution"), ``jupyter.source_hidden``
  (collapsed in Jupyter) and Colab's form view (``cellView: form`` with a
  ``# @title Solution …`` first line, so Colab folds the code under that title);
* the kernelspec is the plain ``python3`` one; jupytext's metadata and leftover
  widget state (which makes the site load widget scripts from a CDN) go.

Run it after editing a notebook and before ``make notebooks``:
``python -m tests.fix_notebooks chapters/NN_topic.ipynb`` fixes only the notebooks
named (several people may be editing chapters at once); with no argument, all.
"""

import json
import sys
from pathlib import Path

from tests.notebooks import CHAPTERS, code_cells, load
from utils.data import write_atomically
from utils.environment import setup_cell

SOLUTION_TITLE = "# @title Solution (double-click to show the code)"

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def fix(notebook: dict) -> None:
    setup = code_cells(notebook)[0]
    setup["source"] = setup_cell().splitlines(keepends=True)
    setup.setdefault("metadata", {}).setdefault("tags", [])
    if "hide-input" not in setup["metadata"]["tags"]:
        setup["metadata"]["tags"].append("hide-input")  # the same in every chapter: folded on the site
    notebook["metadata"].pop("jupytext", None)
    notebook["metadata"].pop("widgets", None)  # leftover widget state makes the site load CDN scripts
    for cell in notebook["cells"]:
        cell.get("metadata", {}).pop("lines_to_next_cell", None)
        tags = cell.setdefault("metadata", {}).get("tags", [])
        if "solution" in tags:
            if "hide-input" not in tags:
                cell["metadata"]["tags"] = [*tags, "hide-input"]
            cell["metadata"].setdefault("jupyter", {})["source_hidden"] = True
            cell["metadata"]["cellView"] = "form"
            lines = "".join(cell.get("source", "")).splitlines(keepends=True)
            if not lines or not lines[0].startswith("# @title"):
                lines = [SOLUTION_TITLE + "\n", *lines]
            cell["source"] = lines
    notebook["metadata"]["kernelspec"] = KERNELSPEC


if __name__ == "__main__":
    paths = [Path(arg).resolve() for arg in sys.argv[1:]] or CHAPTERS
    for path in paths:
        notebook = load(path)
        before = json.dumps(notebook, sort_keys=True)
        fix(notebook)
        if json.dumps(notebook, sort_keys=True) != before:
            text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
            write_atomically(path, text.encode("utf-8"))  # an interrupted run never truncates a chapter
            print(f"fixed {path.name}")
