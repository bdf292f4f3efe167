"""Site-only settings that _config.yml cannot express (loaded as a local Sphinx extension).

* Citations are author–year with round brackets: {cite:p}`key` gives
  "(Vaswani et al., 2017)" and {cite:t}`key` gives "Vaswani et al. (2017)";
  sphinxcontrib-bibtex's own author_year style puts square brackets around both.
* The reference list is author–year too, sorted by author: "Vaswani, A., …
  (2017). Attention is all you need. In *Advances in …*".
* A solution cell (tagged ``solution``) folds under "Show solution" instead of
  myst-nb's generic "Show code cell source", so a reader knows what opening it gives
  away. The label is set on the notebook as Sphinx reads it, so every chapter gets
  it without any metadata in the stored notebooks.
"""

from __future__ import annotations

import dataclasses
import json

import pybtex.plugin
import sphinxcontrib.bibtex.plugin
from pybtex.style.formatting import toplevel
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.formatting.unsrt import pages
from pybtex.style.template import field, first_of, join, optional, sentence, tag
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

ROUND = BracketStyle(left="(", right=")")


@dataclasses.dataclass
class RoundAuthorYear(AuthorYearReferenceStyle):
    bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=lambda: ROUND)
    bracket_textual: BracketStyle = dataclasses.field(default_factory=lambda: ROUND)
    bracket_author: BracketStyle = dataclasses.field(default_factory=lambda: ROUND)
    bracket_label: BracketStyle = dataclasses.field(default_factory=lambda: ROUND)
    bracket_year: BracketStyle = dataclasses.field(default_factory=lambda: ROUND)


class AuthorYearList(UnsrtStyle):
    """One template for every entry type: authors (year). Title. Venue. URL."""

    default_sorting_style = "author_year_title"
    default_name_style = "lastfirst"

    def __init__(self, **kwargs):
        kwargs.setdefault("abbreviate_names", True)
        super().__init__(**kwargs)

    def format_entry(self, label, entry, bib_data=None):
        venue = first_of[
            optional[join[tag("em")[field("journal")], optional[", ", field("volume")], optional[", ", pages]]],
            optional[join["In ", tag("em")[field("booktitle")], optional[", ", pages]]],
            optional[field("institution")],
            optional[field("publisher")],
            optional[field("howpublished")],
        ]
        template = toplevel[
            sentence[join[self.format_names("author", as_sentence=False), " (", field("year"), ")"]],
            self.format_title(entry, "title"),
            sentence[venue],
            sentence[optional[field("note")]],
            self.format_web_refs(entry),
        ]
        text = template.format_data({"entry": entry, "style": self, "bib_data": bib_data})
        return pybtex.style.FormattedEntry(entry.key, text, label)


SOLUTION_PROMPTS = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}


def label_solutions(app, docname: str, source: list[str]) -> None:
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    notebook = json.loads(source[0])
    changed = False
    for cell in notebook.get("cells", []):
        metadata = cell.get("metadata", {})
        if "solution" in metadata.get("tags", []):
            metadata.setdefault("mystnb", {}).update(SOLUTION_PROMPTS)
            changed = True
    if changed:
        source[0] = json.dumps(notebook, ensure_ascii=False)


def setup(app):
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_round", RoundAuthorYear
    )
    pybtex.plugin.register_plugin("pybtex.style.formatting", "author_year", AuthorYearList)
    app.connect("source-read", label_solutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
