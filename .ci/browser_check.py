"""Open the built site in headless Chromium and check the pages a reader lands on.

The site is served from 127.0.0.1; network requests elsewhere (MathJax's CDN) fail
at once. Checked:

* at 1280 px, the landing page (book/intro.html, where index.html leads) and each
  chapter page: the tab title is the page's title, said once (not "X — X"); the
  "Launch on Colab" link names that chapter's notebook; every figure exists; each
  solution cell's toggle says "Show solution"; a screenshot goes to .ci/artifacts/;
* at 390 px (a phone), every page of the table of contents, in one Chromium run:
  no page is wider than the screen (nothing makes it scroll sideways), and every
  table wider than the screen carries the scroll cue (book/_static/book.js);
* at 1280 px, no chapter's code cell needs sideways scrolling (code lines are at
  most 88 characters and book/_static/book.css sizes the font to fit 88 columns);
* first of all, that this width check fails on a page made too wide on purpose,
  so that a passing run means something.

Chapters are found in chapters/ and pages in _toc.yml, so new chapters are checked
as they are added.

    python .ci/browser_check.py [_build/html]
"""

from __future__ import annotations

import functools
import html
import http.server
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".ci" / "artifacts"
BOOK_TITLE = "LLM from scratch"
PHONE = 390  # px: the width of a common phone screen
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
            "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

DESKTOP = 1280  # px: a laptop screen, where 88 columns of code must fit without scrolling
# Opens each page in an iframe of a given width (an iframe has its own viewport, so
# the page's media queries see a phone; a headless window cannot be made that narrow)
# and reports what a reader would see.
FRAMES_PAGE = """<!doctype html><html><body>{frames}<script>
function culprit(doc, win) {{  // the element sticking out furthest, outside any scroll box
  let worst = null, right = win.innerWidth + 1;
  for (const el of doc.body.querySelectorAll("*")) {{
    const box = el.getBoundingClientRect();
    if (box.right <= right || box.width === 0) continue;
    let a = el.parentElement, inside = false;
    for (; a && a !== doc.body; a = a.parentElement) {{
      const style = win.getComputedStyle(a);
      if (style.overflowX !== "visible" || style.position === "fixed") {{ inside = true; break; }}
    }}
    if (!inside && win.getComputedStyle(el).position !== "fixed") {{ worst = el; right = box.right; }}
  }}
  return worst ? `<${{worst.tagName.toLowerCase()}}> "${{worst.textContent.trim().slice(0, 60)}}"` : "";
}}
window.addEventListener("load", () => {{
  const report = {{}};
  for (const frame of document.querySelectorAll("iframe")) {{
    const doc = frame.contentDocument, win = frame.contentWindow;
    const width = doc.documentElement.scrollWidth, screen = win.innerWidth;
    const tables = [...doc.querySelectorAll(".pst-scrollable-table-container")];
    report[frame.dataset.page] = {{
      title: doc.title,
      colab: [...doc.querySelectorAll('a[href^="https://colab.research.google.com/"]')].map((a) => a.href),
      images: [...doc.querySelectorAll("article img")].map((img) => img.getAttribute("src")),
      solutions: [...doc.querySelectorAll(".cell.tag_solution")].map(
        (cell) => (cell.querySelector("summary .collapsed") || {{textContent: ""}}).textContent.trim()),
      width: width, screen: screen, culprit: width > screen ? culprit(doc, win) : "",
      uncued_tables: tables.filter((box) => box.scrollWidth > box.clientWidth + 1
                                   && !box.classList.contains("scroll-more-right")).length,
      cut_code: [...doc.querySelectorAll(".cell_input pre")].filter(
        (pre) => pre.scrollWidth > pre.clientWidth + 1).map(
        (pre) => pre.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "").trim()),
    }};
  }}
  document.body.setAttribute("data-report", JSON.stringify(report));
}});
</script></body></html>"""


def serve(directory: Path, extra: dict[str, str]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve directory, plus the pages in extra (path -> html) that the check writes."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            path = self.path.split("?")[0]
            if path in extra:
                data = extra[path].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return io.BytesIO(data)
            return super().send_head()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def chromium(*arguments: str, width: int = 1280, height: int = 1800) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([*CHROMIUM, f"--window-size={width},{height}", f"--user-data-dir={profile}",
                                 *arguments], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"chromium {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def toc_pages() -> list[str]:
    """Every page of _toc.yml (root and files), as the .html paths the build writes."""
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"^\s*(?:root|-\s*file)\s*:\s*(\S+)", toc, flags=re.M)
    return [f"{Path(name).with_suffix('')}.html" for name in files]


def open_pages(base: str, pages: list[str], extra: dict[str, str], width: int = PHONE) -> dict[str, dict]:
    """Open pages `width` px wide in one Chromium run and return what each shows (see FRAMES_PAGE)."""
    frames = "".join(f'<iframe data-page="{html.escape(p)}" src="/{html.escape(p)}" '
                     f'style="width:{width}px;height:844px;border:0"></iframe>' for p in pages)
    extra["/__frames__.html"] = FRAMES_PAGE.format(frames=frames)
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", f"{base}/__frames__.html")
    found = re.search(r'data-report="([^"]*)"', dom)
    if not found:
        raise RuntimeError(f"the pages opened {width} px wide wrote no report")
    return json.loads(html.unescape(found.group(1)))


def code_problems(page: str, seen: dict) -> list[str]:
    if not seen["cut_code"]:
        return []
    return [f"{page}: at {seen['screen']} px {len(seen['cut_code'])} code cell(s) need sideways scrolling, "
            f"e.g. the line {seen['cut_code'][0][:100]!r} (code lines are at most 88 characters)"]


def width_problems(page: str, seen: dict) -> list[str]:
    problems = []
    if seen["width"] > seen["screen"]:
        problems.append(f"{page}: at {seen['screen']} px the page is {seen['width']} px wide "
                        f"(it scrolls sideways); widest: {seen['culprit']}")
    if seen["uncued_tables"]:
        problems.append(f"{page}: {seen['uncued_tables']} table(s) wider than the screen without a scroll cue")
    return problems


def self_test() -> list[str]:
    """The width check must fail a page that is too wide and pass a page that fits."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "wide.html").write_text("<html><body><pre>" + "x" * 300 + "</pre></body></html>")
        Path(folder, "fits.html").write_text("<html><body><p>" + "word " * 300 + "</p></body></html>")
        extra: dict[str, str] = {}
        server, base = serve(Path(folder), extra)
        try:
            report = open_pages(base, ["wide.html", "fits.html"], extra)
        finally:
            server.shutdown()
    if width_problems("wide.html", report["wide.html"]) and not width_problems("fits.html", report["fits.html"]):
        return []
    return [f"self-test: the width check cannot tell a too-wide page from one that fits: {report}"]


def chapter_title(notebook: Path) -> str:
    first = json.loads(notebook.read_text())["cells"][0]
    line = "".join(first["source"]).splitlines()[0]
    return re.sub(r"[`*]", "", line.removeprefix("# ")).strip()  # the tab shows no markdown


def plain_quotes(text: str) -> str:
    """Sphinx's smart quotes turn ' and " into curly ones in a page's title: compare without them."""
    return text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}))


def page_problems(site: Path, page: str, seen: dict, title: str, notebook: str | None) -> list[str]:
    """What a reader would see wrong on one page (seen: its report from open_at_phone_width)."""
    problems = []
    shown = seen["title"].strip()
    if not plain_quotes(shown).startswith(plain_quotes(title)):
        problems.append(f"{page}: title is {shown!r}, expected it to start with {title!r}")
    if shown.count(BOOK_TITLE) > 1:
        problems.append(f"{page}: the tab title says the book's title twice: {shown!r}")
    if notebook is not None:
        colab = seen["colab"]
        if not colab:
            problems.append(f"{page}: no Launch-on-Colab link")
        elif not all(link.endswith(f"/{notebook}") for link in colab):
            problems.append(f"{page}: Colab link {colab[0]} does not name {notebook}")
        images = [src for src in seen["images"] if src.endswith(".png")]
        if not images:
            problems.append(f"{page}: no figures on the page")
        for src in images:
            file = (site / page).parent / src
            if not file.is_file() or file.read_bytes()[:4] != b"\x89PNG":
                problems.append(f"{page}: figure {src} is missing or not a PNG")
        labels = seen["solutions"]
        if not labels:
            problems.append(f"{page}: no solution cells on the page")
        elif any(label != "Show solution" for label in labels):
            problems.append(f"{page}: solution toggles read {labels}, each should read 'Show solution'")
    return problems + width_problems(page, seen)


def screenshot(base: str, page: str, name: str, width: int = 1280) -> list[str]:
    """Save a screenshot for a person to look at, through a frame so that any width works."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    if width == 1280:
        chromium(f"--screenshot={shot}", f"{base}/{page}")
    else:  # a headless window cannot be made narrower than about 500 px; a frame can
        chromium("--virtual-time-budget=5000", f"--screenshot={shot}", f"{base}/__shot__.html?{page}",
                 width=width, height=844)
    if not shot.is_file() or shot.stat().st_size < 10_000:
        return [f"{page}: the screenshot {shot} is missing or blank"]
    return []


def main(site: Path) -> int:
    problems = self_test()
    print(f"  {'ok' if not problems else 'FAILED':6} self-test: the width check fails a page made too wide")
    notebooks = {f"chapters/{nb.stem}.html": nb for nb in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))}
    for page, notebook in notebooks.items():
        if not (site / page).is_file():
            problems.append(f"{page}: not built (is {notebook.name} in _toc.yml?)")
    # index.html only redirects to the landing page, which is what a reader sees.
    if "book/intro.html" not in (site / "index.html").read_text():
        problems.append("index.html does not lead to book/intro.html")
    pages = [page for page in toc_pages() if (site / page).is_file()]
    extra = {"/__shot__.html": f'<html><body style="margin:0"><iframe style="width:{PHONE}px;height:844px;border:0">'
                               '</iframe><script>document.querySelector("iframe").src = "/" + location.search.slice(1);'
                               "</script></body></html>"}
    server, base = serve(site, extra)
    try:
        report = open_pages(base, pages, extra, width=PHONE)
        chapters = [page for page in pages if page in notebooks]
        desktop = open_pages(base, chapters, extra, width=DESKTOP)
        for page in pages:
            if page == "book/intro.html":
                found = page_problems(site, page, report[page], BOOK_TITLE, None)
            elif page in notebooks:
                found = page_problems(site, page, report[page], chapter_title(notebooks[page]), page[:-5] + ".ipynb")
                found += code_problems(page, desktop[page])
            else:
                found = width_problems(page, report[page])
            if page == "book/intro.html" or page in notebooks:
                found += screenshot(base, page, Path(page).stem + ".png")
            print(f"  {'ok' if not found else 'FAILED':6} {page}")
            problems += found
        chapter = next((page for page in pages if page.startswith("chapters/02_")), pages[0])
        problems += screenshot(base, chapter, f"{Path(chapter).stem}-{PHONE}px.png", width=PHONE)
    finally:
        server.shutdown()
    if problems:
        print("Browser check failed:\n  " + "\n  ".join(problems))
        return 1
    print(f"Browser check passed: {len(pages)} pages at {PHONE} px, the chapters also at {DESKTOP} px; "
          f"screenshots in {ARTIFACTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html").resolve()))
