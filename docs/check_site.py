"""Check the built documentation site (``make docs-check``).

1. Links: every ``href``/``src`` of every built HTML page that points inside the site resolves to a
   file, and a ``#fragment`` to an element with that id in it.
2. In headless Chromium (Debian's ``/usr/bin/chromium``, driven by playwright's pip wheel; no
   browser is downloaded), over a local HTTP server: every page loads with no console error, no
   uncaught exception and no failed request; every image has rendered (``naturalWidth > 0``); the
   search page finds results for a word; screenshots of three pages go to ``_build/screenshots``.

Without a Chromium the browser part is skipped with a message.  Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:", "tel:")
SCREENSHOTS = {"index.html": "index.png", "guide/variance-shares.html": "variance-shares.png"}
SCREENSHOTS["validation.html"] = "validation.png"
SEARCH_WORD = "variance"


class _Refs(HTMLParser):
    """Collects a page's ids and the URLs of its links, images and scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag != "base":
                self.urls.append(value)


@functools.cache
def _parse(path: Path) -> _Refs:
    refs = _Refs()
    refs.feed(path.read_text(encoding="utf-8", errors="replace"))
    return refs


def pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


def broken_links(root: Path) -> Iterator[str]:
    """'page: url (why)' for every internal link that does not resolve."""
    for page in pages(root):
        for url in _parse(page).urls:
            if url.startswith(EXTERNAL) or url.startswith("//"):
                continue
            parts = urlsplit(url)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                yield f"{page.relative_to(root)}: {url} (no such file)"
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                yield f"{page.relative_to(root)}: {url} (no element with that id)"


def external_links(root: Path) -> set[str]:
    return {u for p in pages(root) for u in _parse(p).urls if u.startswith(("http:", "https:"))}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def browse(root: Path, chromium: str, shots: Path) -> list[str]:
    """Open every page in headless Chromium; the problems found, one line each."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    server = serve(root)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            current = {"url": ""}
            page.on("console", lambda m: m.type == "error" and problems.append(f"{current['url']}: console: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"{current['url']}: exception: {e}"))
            page.on(
                "requestfailed", lambda r: problems.append(f"{current['url']}: request failed: {r.url} ({r.failure})")
            )
            page.on(
                "response", lambda r: r.status >= 400 and problems.append(f"{current['url']}: HTTP {r.status}: {r.url}")
            )
            for path in pages(root):
                rel = path.relative_to(root).as_posix()
                current["url"] = rel
                response = page.goto(base + rel, wait_until="networkidle")  # the favicon too
                if response is None or response.status != 200:
                    problems.append(f"{rel}: HTTP {None if response is None else response.status}")
                problems += _check_images(page, rel)
                if rel in SCREENSHOTS:
                    _screenshot(page, shots / SCREENSHOTS[rel])
            current["url"] = "search.html"
            problems += _check_search(page, base)
            browser.close()
    finally:
        server.shutdown()
    return problems


def _check_images(page: object, rel: str) -> list[str]:
    broken = page.evaluate(  # type: ignore[attr-defined]
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    return [f"{rel}: image not rendered: {src}" for src in broken]


def _screenshot(page: object, file: Path) -> None:
    """The page's first screen; on a page with a figure, the first figure's screen."""
    page.evaluate(  # type: ignore[attr-defined]
        "(() => { const i = document.querySelector('article img'); if (i) i.scrollIntoView(); })()"
    )
    page.screenshot(path=str(file))  # type: ignore[attr-defined]


def _check_search(page: object, base: str) -> list[str]:
    page.goto(f"{base}search.html?q={SEARCH_WORD}", wait_until="load")  # type: ignore[attr-defined]
    try:  # Sphinx writes "Search finished, found N pages ..." when it is done
        page.wait_for_function(  # type: ignore[attr-defined]
            "(document.querySelector('#search-results .search-summary') || {}).textContent?.includes('found')",
            timeout=30_000,
        )
    except Exception as error:  # playwright's TimeoutError
        return [f"search.html: the search did not finish for {SEARCH_WORD!r} ({type(error).__name__})"]
    count = page.locator("#search-results ul.search li").count()  # type: ignore[attr-defined]
    print(f"search: {count} results for {SEARCH_WORD!r}")
    return [] if count else [f"search.html: no results for {SEARCH_WORD!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", default=str(Path(__file__).parent / "_build" / "html"))
    args = parser.parse_args(argv)
    root = Path(args.site).resolve()
    if not (root / "index.html").is_file():
        print(f"error: no built site in {root}; run `make docs` first")
        return 2
    problems = list(broken_links(root))
    print(f"links: {len(pages(root))} pages, {len(problems)} broken internal links; "
          f"{len(external_links(root))} external links not followed (no network)")  # fmt: skip
    chromium = find_chromium()
    if chromium is None:
        print("browser checks skipped: no Chromium found (apt-get install chromium, or set CHROMIUM=path)")
    else:
        shots = root.parent / "screenshots"
        found = browse(root, chromium, shots)
        print(f"browser: {len(pages(root))} pages opened in {chromium}, {len(found)} problems; screenshots in {shots}")
        problems += found
    for line in problems:
        print(f"FAIL {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
