"""The chapters' shared conventions, checked without running a kernel (nbval runs them)."""

import re

import pytest

from tests.notebooks import CHAPTERS, ROOT, code_cells, load, source, tagged
from utils.environment import setup_cell

TOC = (ROOT / "_toc.yml").read_text()
ids = [p.stem for p in CHAPTERS]


def test_there_are_chapters():
    assert CHAPTERS and CHAPTERS[0].stem == "00_introduction"


def test_chapter_numbers_are_unique_and_consecutive():
    numbers = [int(p.stem[:2]) for p in CHAPTERS]
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_first_code_cell_is_the_setup_cell(path):
    first = code_cells(load(path))[0]
    assert source(first) == setup_cell(), "run `python -m tests.fix_notebooks` to rewrite it"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_title_and_what_you_will_build_come_first(path):
    notebook = load(path)
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown"
    assert re.match(rf"# {path.stem[:2]} · \S", source(first)), "the first line is '# NN · Title'"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_stored_outputs_come_from_one_fresh_run(path):
    notebook = load(path)
    counts = [c.get("execution_count") for c in code_cells(notebook)]
    assert counts == list(range(1, len(counts) + 1)), "run the notebook top to bottom (make notebooks NB=...)"
    for cell in code_cells(notebook):
        if "raises-exception" in cell["metadata"].get("tags", []):
            continue
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"stored error in a cell: {source(cell)[:80]}"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in notebook["metadata"], "leftover widget state: python -m tests.fix_notebooks"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_chapter_is_on_the_site_and_light(path):
    assert f"chapters/{path.stem}" in TOC
    assert path.stat().st_size < 3_000_000


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_chapter_shows_at_least_one_figure(path):
    images = [o for c in code_cells(load(path)) for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_exercises_have_checked_hidden_solutions(path):
    notebook = load(path)
    assert any(c["cell_type"] == "markdown" and source(c).startswith("## Exercises") for c in notebook["cells"])
    solutions = tagged(notebook, "solution")
    assert 2 <= len(solutions) <= 4, "each chapter has 2-4 exercises, one solution cell each"
    for cell in solutions:
        assert "hide-input" in cell["metadata"]["tags"], "solutions are hidden behind a toggle on the site"
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, "and collapsed in Jupyter"
        assert cell["metadata"].get("cellView") == "form", "and folded in Colab (form view)"
        assert source(cell).startswith("# @title Solution"), "under a title Colab shows"
        assert re.search(r"\bcheck_\w+\(", source(cell)), "a solution ends by calling its checker"
        printed = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        assert "✓" in printed, "its stored output shows the tick"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_stored_output_lines_fit_88_characters(path):
    """Printed text is read on the site and in Colab: no line may need sideways scrolling."""
    long_lines = []
    for cell in code_cells(load(path)):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output["output_type"] == "stream":
                text = "".join(output["text"])
            elif "text/plain" in data and not any(k.startswith("image/") for k in data):
                text = "".join(data["text/plain"])
            else:
                continue
            long_lines += [line for line in text.splitlines() if len(line) > 88]
    assert not long_lines, f"{len(long_lines)} output line(s) over 88 characters, e.g. {long_lines[0]!r}"
