"""The book for readers who run it: generated notebooks, launch links, the run-it-yourself scripts.

``tools/make_notebooks.py`` turns every notebook page into a plain ``.ipynb``
(the book build serves them for download; Binder and Colab open them). These
tests check the notebooks' shape, execute a fast subset top to bottom in a
fresh kernel where ``myst_nb`` cannot be imported (a plain Jupyter), and run
the scripts of ``book/run_yourself.md``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_notebooks = _load("make_notebooks", ROOT / "tools" / "make_notebooks.py")
PAGES = make_notebooks.toc_pages(ROOT)
# pages that executed in < 15 s in the book build (the status page); the others run under `build`
FAST = {"how_to_use", "01_tensor_notation", "05_integration_mlps", "08_binary_ternary"}


def test_every_chapter_has_a_notebook():
    stems = {p.stem for p in PAGES}
    chapters = {p.stem for p in (ROOT / "book").glob("0*_*.md")}
    assert chapters and chapters <= stems, f"chapters without a notebook: {chapters - stems}"
    assert "how_to_use" in stems and "intro" not in stems and "bibliography" not in stems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_notebook_is_plain_and_complete(page):
    nb = make_notebooks.page_to_notebook(page, "https://github.com/someone/interp-book")
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in nb.metadata
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    n_page_cells = page.read_text().count("```{code-cell}")
    assert len(code) == n_page_cells + 1, "one install cell plus every cell of the page"
    assert 'git+https://github.com/someone/interp-book.git' in code[0]
    # the book-build-only import has a fallback everywhere
    assert not any(line.strip() == "from myst_nb import glue" and "try:" not in src
                   for src in code for line in src.split("\n"))
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # deterministic: the same page gives the same file
    again = make_notebooks.page_to_notebook(page, "https://github.com/someone/interp-book")
    assert nbformat.writes(nb) == nbformat.writes(again)


@pytest.mark.parametrize("url", ["", "https://github.com/<owner>/<repo>"])
def test_without_a_repository_the_notebook_says_how_to_install(url):
    nb = make_notebooks.page_to_notebook(PAGES[0], url)
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "pip install" in first and "git+" not in first and "raise ImportError" in first


def test_missing_page_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="page"):
        make_notebooks.page_to_notebook(tmp_path / "nope.md")


def test_napoleon_prose_split():
    """The API page's docstring fix: prose after a field section becomes Notes, a doctest Examples."""
    reader = _load("reader", ROOT / "book" / "_ext" / "reader.py")
    lines = ["Summary.", "", "Parameters", "----------", "x : Tensor ``[batch, pos]``",
             "    The input.", "y, z : int", "", "Used in chapter 5.", "", ">>> f(1)", "2"]
    reader.split_prose_from_fields(None, "function", "f", None, {}, lines)
    assert lines[lines.index("Used in chapter 5.") - 2:lines.index("Used in chapter 5.")] == ["Notes", "-----"]
    assert lines[lines.index(">>> f(1)") - 2:lines.index(">>> f(1)")] == ["Examples", "--------"]
    assert lines.count("Notes") == 1 and "y, z : int" in lines
    kept = ["Returns", "-------", "inputs : tuple of str", "    One per operand.", "", "ValueError"]
    reader.split_prose_from_fields(None, "function", "f", None, {}, kept)
    assert "Notes" not in kept


def _plain_kernel_env(tmp_path) -> dict:
    """PYTHONPATH for a kernel that has helpers but no myst_nb (as a reader's Jupyter)."""
    fake = tmp_path / "no_myst_nb" / "myst_nb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("myst_nb is a book-build tool")\n')
    return {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)]),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _execute(page: Path, tmp_path, monkeypatch) -> float:
    from nbclient import NotebookClient

    for k, v in _plain_kernel_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    nb = make_notebooks.page_to_notebook(page, "")
    work = tmp_path / "run"
    work.mkdir()
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    print(f"\n{page.stem}.ipynb executed in a fresh kernel in {seconds:.1f} s")
    return seconds


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p.stem in FAST], ids=lambda p: p.stem)
def test_fast_notebooks_run_top_to_bottom(page, tmp_path, monkeypatch):
    assert _execute(page, tmp_path, monkeypatch) < 600


@pytest.mark.slow
@pytest.mark.build
@pytest.mark.parametrize("page", [p for p in PAGES if p.stem not in FAST], ids=lambda p: p.stem)
def test_other_notebooks_run_top_to_bottom(page, tmp_path, monkeypatch):
    assert _execute(page, tmp_path, monkeypatch) < 600


SCRIPTS = re.findall(r"```python\n(.*?)```", (ROOT / "book" / "run_yourself.md").read_text(), re.S)


def test_run_yourself_has_scripts():
    assert len(SCRIPTS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(SCRIPTS)))
def test_run_yourself_script(i, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", SCRIPTS[i]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if "attention_to_first" in SCRIPTS[i]:
        share = float(re.search(r"to the first: ([0-9.]+)", out.stdout).group(1))
        assert share > 0.9, "the trained toy head should attend to the first token"


def _page_buttons(url: str) -> list[dict]:
    from types import SimpleNamespace

    reader = _load("reader", ROOT / "book" / "_ext" / "reader.py")
    app = SimpleNamespace(
        config=SimpleNamespace(html_theme_options={"repository_url": url, "repository_branch": "main"},
                               reader_colab_branch="gh-pages"),
        env=SimpleNamespace(reader_notebooks={"book/03_induction_heads"}))
    context = {"header_buttons": [{"type": "group", "label": "download-buttons", "buttons": []}],
               "pathto": lambda target, resource=0: "../" + target}
    reader.add_buttons(app, "book/03_induction_heads", "page.html", context, None)
    return context["header_buttons"]


def _links(buttons):
    for b in buttons:
        yield from _links(b.get("buttons", []))
        if b.get("type") == "link":
            yield b["url"]


def test_download_button_always_launch_buttons_only_with_a_repository():
    for url in ("", "https://github.com/<owner>/<repo>"):
        links = list(_links(_page_buttons(url)))
        assert links == ["../notebooks/03_induction_heads.ipynb"], links
    links = list(_links(_page_buttons("https://github.com/someone/interp-book")))
    assert "https://mybinder.org/v2/gh/someone/interp-book/main?urlpath=lab/tree/notebooks/03_induction_heads.ipynb" \
        in links
    assert ("https://colab.research.google.com/github/someone/interp-book/blob/gh-pages/notebooks/"
            "03_induction_heads.ipynb") in links
    assert "https://github.com/someone/interp-book" in links
