"""The site's own Sphinx extension (book/_ext/book_site.py): citations and solution toggles."""

import json
import sys
from types import SimpleNamespace

import pytest

from tests.notebooks import ROOT

pytest.importorskip("sphinxcontrib.bibtex")
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import book_site  # noqa: E402
from pybtex.backends.plaintext import Backend  # noqa: E402
from pybtex.database import parse_file  # noqa: E402


def test_reference_list_is_author_year_sorted_by_author():
    bib = parse_file(str(ROOT / "book" / "references.bib"))
    style = book_site.AuthorYearList()
    entries = list(style.format_entries(bib.entries.values()))
    text = {e.key: e.text.render(Backend()) for e in entries}
    assert text["vaswani2017attention"].startswith("Vaswani, A., Shazeer, N., ")
    assert "Polosukhin, I. (2017). Attention is all you need. In Advances in Neural" in text["vaswani2017attention"]
    assert text["radford2019language"].startswith("Radford, A., Wu, J., ")
    first_authors = [bib.entries[e.key].persons["author"][0].last_names[0] for e in entries]
    assert first_authors == sorted(first_authors, key=str.lower)


def test_citations_use_round_brackets():
    style = book_site.RoundAuthorYear()
    assert (style.bracket_parenthetical.left, style.bracket_parenthetical.right) == ("(", ")")
    assert (style.bracket_textual.left, style.bracket_textual.right) == ("(", ")")


def test_solution_cells_get_the_show_solution_label_and_others_do_not():
    notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": ["hide-input"]}, "source": ""},
                          {"cell_type": "code", "metadata": {"tags": ["solution", "hide-input"]}, "source": ""}]}
    app = SimpleNamespace(env=SimpleNamespace(doc2path=lambda name: ROOT / f"{name}.ipynb"))
    source = [json.dumps(notebook)]
    book_site.label_solutions(app, "chapters/04_self_attention", source)
    setup, solution = json.loads(source[0])["cells"]
    assert "mystnb" not in setup["metadata"]
    assert solution["metadata"]["mystnb"] == {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
    markdown = ["# A page"]
    book_site.label_solutions(SimpleNamespace(env=SimpleNamespace(doc2path=lambda name: ROOT / f"{name}.md")),
                              "book/intro", markdown)
    assert markdown == ["# A page"]
