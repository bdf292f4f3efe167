"""The site's browser check (.ci/browser_check.py) can fail: it flags what a reader would see wrong."""

import importlib.util
import shutil

import pytest

from tests.notebooks import ROOT

spec = importlib.util.spec_from_file_location("browser_check", ROOT / ".ci" / "browser_check.py")
browser_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_check)

GOOD = {"title": "02 · Embeddings — LLM from scratch", "colab": [], "images": [], "solutions": ["Show solution"],
        "width": 390, "screen": 390, "culprit": "", "uncued_tables": 0, "cut_code": []}


def test_a_page_wider_than_the_screen_or_a_table_without_cue_is_flagged():
    assert browser_check.width_problems("p.html", GOOD) == []
    assert "scrolls sideways" in browser_check.width_problems("p.html", {**GOOD, "width": 431})[0]
    assert "scroll cue" in browser_check.width_problems("p.html", {**GOOD, "uncued_tables": 1})[0]


def test_a_code_cell_that_needs_scrolling_at_desktop_width_is_flagged():
    assert browser_check.code_problems("p.html", GOOD) == []
    assert "sideways" in browser_check.code_problems("p.html", {**GOOD, "cut_code": ["x = 1  # " + "y" * 99]})[0]


def test_a_doubled_title_and_an_unlabelled_solution_toggle_are_flagged(tmp_path):
    doubled = {**GOOD, "title": "LLM from scratch — LLM from scratch"}
    assert any("twice" in p for p in browser_check.page_problems(tmp_path, "book/intro.html", doubled,
                                                                  "LLM from scratch", None))
    generic = {**GOOD, "solutions": ["Show code cell source"]}
    problems = browser_check.page_problems(tmp_path, "chapters/02_embeddings.html", generic, "02 ·",
                                           "chapters/02_embeddings.ipynb")
    assert any("Show solution" in p for p in problems)


def test_a_title_matches_through_smart_quotes_and_a_wrong_title_is_flagged(tmp_path):
    title = "16 · Real weights: GPT-2's tokenizer in the book's own code"
    curly = {**GOOD, "title": "16 · Real weights: GPT-2\u2019s tokenizer in the book\u2019s own code — LLM from scratch"}
    page, notebook = "chapters/16_real_weights.html", "chapters/16_real_weights.ipynb"
    assert not any("title is" in p for p in browser_check.page_problems(tmp_path, page, curly, title, notebook))
    wrong = {**curly, "title": "16 · Real weights — LLM from scratch"}
    assert any("title is" in p for p in browser_check.page_problems(tmp_path, page, wrong, title, notebook))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (.ci/run installs it)")
def test_the_width_check_fails_a_page_made_too_wide_in_chromium():
    assert browser_check.self_test() == []


def test_pages_come_from_the_table_of_contents_so_new_chapters_are_checked():
    pages = browser_check.toc_pages()
    assert pages[0] == "book/intro.html"
    assert {"chapters/00_introduction.html", "book/notation.html", "book/glossary.html"} <= set(pages)
    toc = (ROOT / "_toc.yml").read_text()
    assert len(pages) == toc.count("- file:") + 1  # the files and the root
