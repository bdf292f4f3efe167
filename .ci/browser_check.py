"""Open the built site in headless Chromium and check every page a reader lands on.

For the landing page (book/intro.html, where index.html leads) and each chapter page (served from 127.0.0.1): the page
title is the chapter's title, the "Launch on Colab" link names that chapter's
notebook, every figure on the page exists, and a screenshot is saved to
.ci/artifacts/ for a person to look at.

    python .ci/browser_check.py [_build/html]
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".ci" / "artifacts"
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
            "--hide-scrollbars", "--window-size=1280,1800"]


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def chromium(*arguments: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", *arguments],
                                capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"chromium {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def chapter_title(notebook: Path) -> str:
    first = json.loads(notebook.read_text())["cells"][0]
    line = "".join(first["source"]).splitlines()[0]
    return line.removeprefix("# ").strip()


def check_page(base: str, site: Path, page: str, title: str, notebook: str | None) -> list[str]:
    url = f"{base}/{page}"
    dom = chromium("--dump-dom", url)
    problems = []
    found = re.search(r"<title>(.*?)</title>", dom, flags=re.S)
    shown = html.unescape(found.group(1)).strip() if found else ""
    if not shown.startswith(title):
        problems.append(f"{page}: title is {shown!r}, expected it to start with {title!r}")
    if notebook is not None:
        colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', dom)
        if not colab:
            problems.append(f"{page}: no Launch-on-Colab link")
        elif not all(link.endswith(f"/{notebook}") for link in colab):
            problems.append(f"{page}: Colab link {colab[0]} does not name {notebook}")
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
        if not images:
            problems.append(f"{page}: no figures on the page")
        for src in images:
            file = (site / page).parent / html.unescape(src)
            if not file.is_file() or file.read_bytes()[:4] != b"\x89PNG":
                problems.append(f"{page}: figure {src} is missing or not a PNG")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / (Path(page).stem + ".png")
    chromium(f"--screenshot={shot}", url)
    if not shot.is_file() or shot.stat().st_size < 10_000:
        problems.append(f"{page}: the screenshot {shot} is missing or blank")
    status = "ok" if not problems else "FAILED"
    print(f"  {status:6} {page}  ({len(dom):,} bytes of DOM)")
    return problems


def main(site: Path) -> int:
    notebooks = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    server, base = serve(site)
    try:
        # index.html only redirects to the landing page, which is what a reader sees.
        if "book/intro.html" not in (site / "index.html").read_text():
            problems = ["index.html does not lead to book/intro.html"]
        else:
            problems = check_page(base, site, "book/intro.html", "LLM from scratch", None)
        for notebook in notebooks:
            page = f"chapters/{notebook.stem}.html"
            if not (site / page).is_file():
                problems.append(f"{page}: not built (is {notebook.name} in _toc.yml?)")
                continue
            problems += check_page(base, site, page, chapter_title(notebook), f"chapters/{notebook.name}")
    finally:
        server.shutdown()
    if problems:
        print("Browser check failed:\n  " + "\n  ".join(problems))
        return 1
    print(f"Browser check passed: {1 + len(notebooks)} pages; screenshots in {ARTIFACTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html").resolve()))
