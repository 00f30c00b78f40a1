"""The built documentation site, rendered by a real browser (headless Chromium).

Run by ``make docs`` after the build: serves ``docs/_build/html`` on a loopback port and
checks, in Chromium driven by Playwright, that the pages a reader opens first render with
their title, the API tables and figures that actually load. Screenshots go to
``docs/_build/screenshots``.

Chromium is Debian's package (``/usr/bin/chromium``; ``LETCC_CHROMIUM`` overrides the path);
Playwright only drives it and downloads no browser of its own.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

import letcc_jax
from letcc_jax import workers

HTML = Path(__file__).resolve().parent / "_build" / "html"
SHOTS = HTML.parent / "screenshots"
#: Figures each executed notebook draws (image/png outputs).
NOTEBOOK_FIGURES = {"01_quickstart": 2, "02_theory_rates": 2, "03_autodiff_encoders": 4,
                    "04_uncertainty": 3}
#: The guide's pages, as the navigation lists them.
GUIDE = ["getting_started", "schemes", "evaluation", "experiments", "workers", "tuning",
         "accelerators", "errors"]
#: Chromium flags for a closed network (no background connections, no sandbox as root).
FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-sandbox"]

#: JavaScript: every <img> in the page with whether it loaded (decoded, with a size).
IMAGES = """() => Array.from(document.images).map(img => ({
    src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
    width: img.naturalWidth}))"""


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built site in {HTML}: run `make docs` (it builds, then runs this file)")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[docs]'")
    executable = os.environ.get("LETCC_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium not found: `apt-get install chromium` (make docs does) "
                    "or set LETCC_CHROMIUM to its path")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


def _open(page, url: str, shot: str):
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, (url, response and response.status)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=False)
    return page


def _loaded_images(page):
    images = page.evaluate(IMAGES)
    broken = [image["src"] for image in images if not image["loaded"]]
    assert not broken, f"images that did not load: {broken}"
    return images


def test_index_renders_with_title_and_navigation(site, page):
    _open(page, f"{site}/index.html", "index")
    assert "letcc_jax" in page.title()
    assert page.locator("h1").first.inner_text().strip().startswith("letcc_jax")
    navigation = page.locator(".sidebar-tree a").evaluate_all("els => els.map(e => e.href)")
    for name in GUIDE + ["api"] + [f"tutorials/{n}" for n in NOTEBOOK_FIGURES]:
        assert any(href.endswith(f"/{name}.html") for href in navigation), name
    _loaded_images(page)
    assert page.errors == []


def test_api_page_has_a_table_row_for_every_public_name(site, page):
    _open(page, f"{site}/api.html", "api")
    assert "API reference" in page.title()
    tables = page.locator("table.autosummary")
    assert tables.count() >= 7
    listed = set(tables.locator("a code, a span.pre").evaluate_all(
        "els => els.map(e => e.textContent.trim())"))
    listed |= set(page.locator("dl.py.data dt").evaluate_all(
        "els => els.map(e => e.id.split('.').pop())"))
    missing = [name for module in (letcc_jax, workers) for name in module.__all__
               if name not in listed]
    assert not missing, f"public names without an entry on the API page: {missing}"
    # every row links to a page that exists and renders its signature
    links = tables.locator("a.reference.internal").evaluate_all("els => els.map(e => e.href)")
    assert len(links) >= len(letcc_jax.__all__) + len(workers.__all__) - 9
    reference = page.context.new_page()
    _open(reference, next(link for link in links if "letcc_jax.monte_carlo.html" in link),
          "api_monte_carlo")
    assert reference.locator("dt.sig").first.inner_text().startswith("monte_carlo(")
    assert "Raises" in reference.locator("article[role=main]").text_content()


@pytest.mark.parametrize("name", sorted(NOTEBOOK_FIGURES))
def test_notebook_page_renders_its_figures(site, page, name):
    _open(page, f"{site}/tutorials/{name}.html", f"tutorial_{name}")
    assert page.locator("h1").count() >= 1 and "letcc_jax" in page.title()
    figures = [image for image in _loaded_images(page)
               if image["src"] and "_images/" in image["src"]]
    assert len(figures) == NOTEBOOK_FIGURES[name], figures
    assert all(image["width"] > 100 for image in figures)
    # executed: code cells have outputs, and none of them is a traceback
    assert page.locator(".cell_output").count() > 0
    assert page.locator(".cell_output .traceback, .output.traceback").count() == 0


def test_experiments_page_shows_every_figure(site, page):
    source = (Path(__file__).parent / "experiments.md").read_text()
    expected = len(re.findall(r"^!\[[^\]]*\]\(figures/[^)]+\)", source, flags=re.M))
    _open(page, f"{site}/experiments.html", "experiments")
    figures = _loaded_images(page)
    assert expected >= 10
    assert len([image for image in figures if "_images/" in (image["src"] or "")]) == expected


def test_formulas_are_typeset_offline(site, page):
    """MathJax is served by the site itself and typesets the formulas without errors."""
    _open(page, f"{site}/schemes.html", "schemes")
    page.wait_for_function(
        "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
        " && MathJax.Hub.queue.running === 0", timeout=60_000)
    typeset = page.locator(".MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG")
    assert typeset.count() >= 10
    assert page.locator(".MathJax_Error, merror").count() == 0
    assert "\\frac" not in page.locator("article[role=main]").inner_text()  # no raw TeX left
    page.screenshot(path=str(SHOTS / "schemes_math.png"))


def test_getting_started_shows_executed_output(site, page):
    _open(page, f"{site}/getting_started.html", "getting_started")
    text = page.locator("article[role=main]").inner_text()
    assert "RMSE of this round:" in text and "failure_rate" in text
