"""The built HTML book, as a reader's browser sees it (headless Chromium).

Serves ``_build/html`` on 127.0.0.1, opens every page of ``_toc.yml`` and
fails on: a request to any other host, a JavaScript console error, math left
unrendered, a broken image, a cell error shown in the page, or a ``_toc.yml``
page missing from the build. Screenshots land in ``_build/screenshots``.

Run by ``make test`` after the book build (``make html-check`` alone).
Needs Debian's ``chromium`` (``apt-get install chromium``); under CI it must
run, never skip.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
pytestmark = pytest.mark.html

# Figure legibility: rendered width / natural width of every image in the article.
# Figures are PNGs at 110 dpi (helpers.plotting.PAGE_STYLE), so text of s pt is s * 110/72
# natural px, and shows at scale * s * 110/72 CSS px.
# - Desktop (1366 px wide, a 757-px text column): the smallest text the figures use by
#   default is 10 pt (legends; ticks and labels are 11 pt, tensor names in diagrams 16 pt),
#   15.3 natural px; scale >= 0.6 keeps it >= 9.2 CSS px (the ~9 px floor of the issue).
# - Phone (390 px wide, a 358-px column): scale >= 0.38 keeps the key labels (titles and axis
#   labels 11-12 pt, tensor names 16 pt) >= 6.4 and 9.3 CSS px, sharp on a 2-3x phone screen
#   and zoomable; a 6.5-inch figure (the book's rule, ~700 natural px) shows at 0.51.
MIN_SCALE = {"desktop": 0.6, "phone": 0.38}
# Pages that do not meet MIN_SCALE yet, with the floor each does meet today (measured in the
# browser check); tighten an entry to MIN_SCALE once its figures are fixed, then delete it.
SCALE_FLOOR: dict[str, dict[str, float]] = {
    # one 990-px static widget frame strip (an inline data: image) shows at 0.35 on a phone;
    # every other chapter 4 figure is <= 700 px wide (>= 0.51 on a phone)
    "book/04_modular_addition": {"desktop": 0.6, "phone": 0.34},
}
WIDTHS = {"desktop": 1366, "phone": 390}

_IMAGE_SCALES = """() => [...document.querySelectorAll('article.bd-article img')]
    .filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)
    .map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth,
                shown: i.getBoundingClientRect().width,
                scale: i.getBoundingClientRect().width / i.naturalWidth}))"""

# elements that reach past the right edge of the viewport and are not inside a container the
# reader can scroll sideways (outermost offenders only)
_OVERFLOWING = """() => {
    const W = window.innerWidth + 1;
    const scrollable = e => { for (let a = e.parentElement; a; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX;
        if ((o === 'auto' || o === 'scroll') && a.getBoundingClientRect().right <= W) return true; }
        return false; };
    const out = [];
    for (const e of document.querySelectorAll('.bd-main *')) {
        const r = e.getBoundingClientRect();
        if (r.width === 0 || r.right <= W || e.closest('dialog:not([open]), mjx-assistive-mml')) continue;
        // what the reader cannot see: the off-canvas sidebars, screen-reader-only text
        if (!e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
        if (scrollable(e)) continue;
        if (out.some(o => o.contains(e))) continue;
        out.push(e);
    }
    return out.map(e => e.tagName.toLowerCase() + '.' + (e.getAttribute('class') || '').split(' ')[0]
                        + ': ' + (e.textContent || '').trim().slice(0, 40));
}"""

# Errors that Jupyter Book 1 itself emits on every page and no setting removes.
# Each entry: exact console text -> why it is tolerated.
ALLOWED_CONSOLE_ERRORS: dict[str, str] = {}


def _toc_files() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def _figure_cells(page: str) -> int:
    """How many code cells of a page's source call ``plt.show()``."""
    src = ROOT / f"{page}.md"
    if not src.exists():
        return 0
    cells = src.read_text().split("```{code-cell}")[1:]
    return sum("plt.show()" in c.split("```")[0] for c in cells)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"{HTML} has no built book: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        msg = ("no Chromium found: install it with `sudo apt-get install chromium` "
               "(Debian/Ubuntu) and run `make html-check` again")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield b
        b.close()


def test_every_toc_page_was_built():
    missing = [f for f in _toc_files() if not (HTML / f"{f}.html").exists()]
    assert not missing, f"_toc.yml pages missing from the build: {missing}"


@pytest.mark.parametrize("page", _toc_files())
def test_page_in_browser(page, server, browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    external, failed, console_errors = [], [], []

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    pg = ctx.new_page()
    pg.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    pg.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
    pg.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    pg.goto(f"{server}/{page}.html", wait_until="load")
    has_math = pg.evaluate("document.querySelectorAll('.math, span.math, div.math').length") > 0
    if has_math:
        pg.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0", timeout=20_000)
    pg.wait_for_load_state("networkidle")
    pg.wait_for_timeout(300)
    report = pg.evaluate(
        r"""() => ({
            math: document.querySelectorAll('.math').length,
            rendered: document.querySelectorAll('mjx-container').length,
            mathErrors: document.querySelectorAll('mjx-merror').length,
            rawTex: [...document.querySelectorAll('.math')].filter(
                e => !e.querySelector('mjx-container') && /\\[(\[]|\$/.test(e.textContent)).length,
            outputImages: document.querySelectorAll('.cell_output img').length,
            brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
            errors: [...document.querySelectorAll('.cell_output .traceback, .output.traceback, .output.error')].length,
            // in a cell's output (the API reference quotes tracebacks in its doctests)
            tracebackText: [...document.querySelectorAll('.cell_output')].some(
                e => e.innerText.includes('Traceback (most recent call last)')),
            // a control in the static HTML has no kernel behind it: it would look live and be dead
            // (a finished progress bar only shows its saved state, which is fine)
            widgets: document.querySelectorAll(
                '.jupyter-widgets input, .jupyter-widgets select, .jupyter-widgets button, '
                + '.widget-slider, .widget-dropdown, .widget-toggle-buttons').length,
            // a glued numpy scalar shown as its repr (np.float64(...)) instead of a number
            // (outside the API reference, whose doctests show reprs on purpose)
            numpyRepr: (() => { const a = document.querySelector('article.bd-article').cloneNode(true);
                a.querySelectorAll('dl.py').forEach(d => d.remove());
                return /np\.(float|int|bool)[0-9_]*\(/.test(a.textContent); })(),
        })"""
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{page.replace('/', '_')}.png"), full_page=False)
    scales = {}
    pg.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})
    pg.wait_for_timeout(200)
    scales["desktop"] = pg.evaluate(_IMAGE_SCALES)
    pg.set_viewport_size({"width": 390, "height": 844})  # a phone: readers open the book there too
    pg.wait_for_timeout(200)
    phone_overflow = pg.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    overflowing = pg.evaluate(_OVERFLOWING)
    scales["phone"] = pg.evaluate(_IMAGE_SCALES)
    pg.screenshot(path=str(SHOTS / f"{page.replace('/', '_')}_phone.png"), full_page=False)
    ctx.close()
    smallest = {k: min((i["scale"] for i in v), default=None) for k, v in scales.items()}
    (SHOTS / f"{page.replace('/', '_')}_layout.json").write_text(json.dumps(
        {"page": page, "smallest_scale": smallest, "images": len(scales["desktop"]),
         "overflowing_at_390": overflowing, "scales": scales}, indent=1))
    print(f"\n{page}: {len(scales['desktop'])} images, smallest scale "
          + ", ".join(f"{k} {v:.2f}" for k, v in smallest.items() if v is not None)
          + f"; {len(overflowing)} elements overflow 390 px")
    unexpected = [e for e in console_errors if e not in ALLOWED_CONSOLE_ERRORS]
    assert not external, f"{page}: requests to non-local hosts: {external}"
    assert not failed, f"{page}: failed local requests: {failed}"
    assert not unexpected, f"{page}: console errors: {unexpected}"
    assert report["mathErrors"] == 0 and report["rawTex"] == 0, f"{page}: math not rendered: {report}"
    if has_math:
        assert report["rendered"] > 0, f"{page}: math present but nothing rendered: {report}"
    shows = _figure_cells(page)
    assert report["outputImages"] >= shows, (
        f"{page}: {shows} cells call plt.show() but only {report['outputImages']} figures are in the page")
    assert not report["brokenImages"], f"{page}: broken images: {report['brokenImages']}"
    assert report["errors"] == 0 and not report["tracebackText"], f"{page}: a cell error is shown in the page"
    assert report["widgets"] == 0, f"{page}: {report['widgets']} widget controls in the static HTML (show the static twin)"
    assert not report["numpyRepr"], f"{page}: a number is shown as a numpy repr such as np.float64(...)"
    assert not phone_overflow, f"{page}: the page scrolls sideways at 390 px"
    for width, images in scales.items():
        floor = SCALE_FLOOR.get(page, MIN_SCALE)[width]
        small = [(i["src"].split("/")[-1][:12], round(i["scale"], 2)) for i in images if i["scale"] < floor]
        assert not small, (f"{page}: figures shown below {floor} of their natural width at {WIDTHS[width]} px "
                           f"(text under ~9 CSS px): {small}; fewer panels per row, figsize for a 750-px column")


def _visible(pg, selector: str):
    return [b for b in pg.query_selector_all(selector) if b.is_visible()]


@pytest.mark.parametrize("width", [390, 900])
def test_drawers_open_on_narrow_screens(width, server, browser):
    """☰ opens the chapter list and ☷ the page contents below 992 px (_static/reader-nav.js)."""
    ctx = browser.new_context(viewport={"width": width, "height": 844})
    pg = ctx.new_page()
    pg.goto(f"{server}/book/03_induction_heads.html", wait_until="load")
    pg.wait_for_timeout(300)
    for kind, dialog, min_links in (("primary", "pst-primary-sidebar-modal", 5),
                                    ("secondary", "pst-secondary-sidebar-modal", 3)):
        buttons = _visible(pg, f".{kind}-toggle")
        assert buttons, f"no visible .{kind}-toggle at {width} px"
        buttons[0].click()
        pg.wait_for_timeout(200)
        state = pg.evaluate(
            """(id) => { const d = document.getElementById(id);
                return {open: d.open, links: [...d.querySelectorAll('a')]
                        .filter(a => a.getBoundingClientRect().width > 0).length}; }""", dialog)
        assert state["open"] and state["links"] >= min_links, f"{kind} toggle at {width} px: {state}"
        pg.screenshot(path=str(SHOTS / f"nav_{kind}_{width}.png"))
        pg.keyboard.press("Escape")
        pg.wait_for_timeout(150)
        assert not pg.evaluate(f"document.getElementById('{dialog}').open"), f"{kind} drawer did not close"
    ctx.close()


def test_primary_toggle_hides_sidebar_on_desktop(server, browser):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = ctx.new_page()
    pg.goto(f"{server}/book/03_induction_heads.html", wait_until="load")
    pg.wait_for_timeout(300)
    hidden = "document.getElementById('pst-primary-sidebar').classList.contains('pst-sidebar-hidden')"
    toggle = _visible(pg, ".primary-toggle")
    assert toggle, "no visible ☰ at 1366 px"
    assert not pg.evaluate(hidden)
    toggle[0].click()
    pg.wait_for_timeout(200)
    assert pg.evaluate(hidden), "☰ did not hide the chapter sidebar at 1366 px"
    toggle[0].click()
    pg.wait_for_timeout(200)
    assert not pg.evaluate(hidden), "☰ did not bring the chapter sidebar back at 1366 px"
    ctx.close()


def test_status_page_reports_in_words_with_memory():
    """book/status: one row per executed page, "ok"/"failed" in words, run time and peak memory."""
    import re
    from html import unescape

    text = (HTML / "book" / "status.html").read_text()
    table = text[text.index("reader-status"):text.index("</table>", text.index("reader-status"))]
    rows = [[unescape(re.sub(r"<.*?>", "", c)).strip() for c in re.findall(r"<td.*?</td>", r, re.S)]
            for r in re.findall(r"<tr.*?</tr>", table, re.S)]
    rows = [r for r in rows if r]
    def is_notebook(f):
        src = ROOT / f"{f}.md"
        text = src.read_text() if src.exists() else ""
        return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]

    executed = [f for f in _toc_files() if is_notebook(f)]
    assert len(rows) == len(executed), f"status rows {len(rows)} for {len(executed)} notebook pages"
    for page, status, runtime, memory, how in rows:
        assert status in ("ok", "failed"), status
        assert float(runtime) > 0
        if how == "in this build":
            assert 50 < float(memory.replace(",", "")) < 16_000, f"{page}: peak memory {memory} MB"
