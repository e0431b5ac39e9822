"""Plain Jupyter notebooks (.ipynb) from the book's MyST pages.

Every page of ``_toc.yml`` that is a notebook (its front matter has a
``kernelspec``) becomes ``<stem>.ipynb``: the same cells, read with jupytext,
plus a first cell that installs ``helpers`` when the kernel lacks it (Colab, a
fresh Jupyter), and a fallback for ``myst_nb.glue`` (a book-build tool a plain
kernel does not need). The book build writes them to ``_build/html/notebooks/``
(``book/_ext/reader.py``: the "download .ipynb" button and the Colab link);
Binder's ``postBuild`` writes them to ``notebooks/``.

    python tools/make_notebooks.py OUTDIR [--repository URL]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
GLUE_IMPORT = "from myst_nb import glue"
GLUE_FALLBACK = (
    "try:\n"
    "    from myst_nb import glue\n"
    "except ImportError:  # outside the book build: glue shows the value (or nothing)\n"
    "    def glue(name, value, display=True):\n"
    "        if display:\n"
    "            from IPython.display import display as _show\n"
    "            _show(value)"
)


def toc_pages(root: Path = ROOT) -> list[Path]:
    """The ``.md`` pages of ``_toc.yml`` that are notebooks, in reading order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    out = []
    for f in files:
        path = root / f"{f}.md"
        if path.exists() and is_notebook_page(path):
            out.append(path)
    return out


def is_notebook_page(path: Path) -> bool:
    """True when a MyST page's front matter declares a kernel (it has code cells)."""
    text = path.read_text()
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1]
    return "kernelspec:" in front


def install_source(repository: str) -> str:
    """The ``pip`` requirement for ``helpers`` from a repository URL ("" when unknown)."""
    repository = repository.strip().rstrip("/")
    if not repository or "<" in repository:
        return ""
    return f"interp-book-helpers @ git+{repository}.git"


def page_to_notebook(page: Path, repository: str = "") -> nbformat.NotebookNode:
    """One MyST page as a plain notebook that runs top to bottom with ``helpers`` installed.

    Parameters
    ----------
    page : Path
        A MyST Markdown notebook under ``book/``.
    repository : str
        The book's repository URL (``repository.url`` of ``_config.yml``); with
        it, the first cell ``pip install``s ``helpers`` from there when the
        kernel lacks it. Empty: the cell says how to install it instead.

    Returns
    -------
    nbformat.NotebookNode
        nbformat 4, kernelspec ``python3``, no jupytext metadata, no outputs.
    """
    page = Path(page)
    if not page.exists():
        raise ValueError(f"page: no such file {page}")
    nb = jupytext.read(page)
    for cell in nb.cells:
        if cell.cell_type == "code" and GLUE_IMPORT in cell.source:
            lines = cell.source.split("\n")
            cell.source = "\n".join(GLUE_FALLBACK if ln.strip() == GLUE_IMPORT else ln for ln in lines)
    requirement = install_source(repository)
    if requirement:
        install = (
            "# Installs the book's tested library when this kernel lacks it (Colab, a fresh Jupyter).\n"
            "import importlib.util\n\n"
            "if importlib.util.find_spec(\"helpers\") is None:\n"
            f"    %pip install --quiet \"{requirement}\""
        )
    else:
        install = (
            "# This notebook needs the book's library `helpers`: from a clone of the repository,\n"
            "# `pip install /path/to/the/clone` (see the book's \"Run it yourself\" page).\n"
            "import importlib.util\n\n"
            "if importlib.util.find_spec(\"helpers\") is None:\n"
            "    raise ImportError(\"install helpers first: pip install /path/to/the/book's/repository\")"
        )
    header = nbformat.v4.new_markdown_cell(
        f"*Generated from `book/{page.name}` of the book's repository; the HTML book shows it with "
        "its outputs. Run the cells top to bottom.*")
    nb.cells = [header, nbformat.v4.new_code_cell(install)] + nb.cells
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"  # deterministic: the same page gives the same file
    nb = nbformat.from_dict(nb)
    nbformat.validate(nb)
    return nb


def write_notebooks(outdir: Path, repository: str = "", root: Path = ROOT) -> list[Path]:
    """Write ``<stem>.ipynb`` for every notebook page of the book into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for page in toc_pages(root):
        nb = page_to_notebook(page, repository)
        path = outdir / f"{page.stem}.ipynb"
        text = nbformat.writes(nb)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--repository", default="", help="the book's repository URL")
    args = parser.parse_args(argv)
    for path in write_notebooks(args.outdir, args.repository):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
