"""The reader's side of the HTML book: notebooks to download and launch, and the status table.

- Every notebook page of ``_toc.yml`` is written as a plain ``.ipynb`` into
  ``notebooks/`` of the HTML output at build time (``tools/make_notebooks.py``),
  and the page's download menu offers it.
- ``repository.url`` of ``_config.yml`` is the one setting for where the book
  lives. Empty (the default in a fresh clone): no repository, Binder or Colab
  buttons, and the notebooks tell the reader to ``pip install`` a local clone.
  Set (``https://github.com/<owner>/<repo>``): a repository button, a Binder
  button (Binder's ``postBuild`` writes the same notebooks to ``notebooks/``)
  and a Colab button opening ``notebooks/<page>.ipynb`` from the branch the
  built HTML is published on (``reader_colab_branch``, default ``gh-pages``,
  where ``ghp-import -n -p -f _build/html`` puts it).
- ``{reader-status-table}``: per executed page, "ok"/"failed" in words, the run
  time and the kernel's peak memory (resident set high-water mark, sampled
  from ``/proc`` while the page executes).
"""
from __future__ import annotations

import importlib.util
import json
import re
import os
import threading
import time
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
NOTEBOOK_DIR = "notebooks"


def _tool(app):
    path = Path(app.confdir) / "tools" / "make_notebooks.py"
    spec = importlib.util.spec_from_file_location("make_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repository(app) -> tuple[str, str, str]:
    """(url, owner, repo) from ``repository.url``; empty strings when it is not set."""
    opts = app.config.html_theme_options or {}
    url = (opts.get("repository_url") or "").strip().rstrip("/")
    if not url or "<" in url:
        return "", "", ""
    parts = url.split("/")
    if len(parts) < 5 or "github.com" not in parts[2]:
        LOGGER.warning(f"repository.url {url!r} is not https://github.com/<owner>/<repo>: "
                       "no Binder/Colab buttons")
        return url, "", ""
    return url, parts[3], parts[4]


def write_notebooks(app):
    if app.builder.format != "html":
        return
    url, _, _ = repository(app)
    written = _tool(app).write_notebooks(Path(app.outdir) / NOTEBOOK_DIR, url, Path(app.confdir))
    app.env.reader_notebooks = {f"book/{p.stem}" for p in written}
    LOGGER.info(f"[reader] wrote {len(written)} notebooks to {NOTEBOOK_DIR}/")


def add_buttons(app, pagename, templatename, context, doctree):
    if pagename not in getattr(app.env, "reader_notebooks", set()) or "header_buttons" not in context:
        return
    stem = pagename.split("/")[-1]
    buttons = context["header_buttons"]
    ipynb = {
        "type": "link",
        "url": context["pathto"](f"{NOTEBOOK_DIR}/{stem}.ipynb", 1),
        "text": ".ipynb",
        "tooltip": "Download this page as a Jupyter notebook",
        "icon": "fas fa-code",
        "label": "download-notebook-button",
    }
    group = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if group is None:
        buttons.append({"type": "group", "tooltip": "Download this page", "icon": "fas fa-download",
                        "buttons": [ipynb], "label": "download-buttons"})
    else:
        group["buttons"].insert(0, ipynb)
    url, owner, repo = repository(app)
    if not (owner and repo):
        return
    opts = app.config.html_theme_options or {}
    branch = opts.get("repository_branch") or "main"
    launch = [
        {"type": "link", "text": "Binder", "tooltip": "Launch on Binder",
         "icon": "_static/images/logo_binder.svg",
         "url": f"https://mybinder.org/v2/gh/{owner}/{repo}/{branch}"
                f"?urlpath=lab/tree/{NOTEBOOK_DIR}/{stem}.ipynb"},
        {"type": "link", "text": "Colab", "tooltip": "Launch on Colab",
         "icon": "_static/images/logo_colab.png",
         "url": f"https://colab.research.google.com/github/{owner}/{repo}/blob/"
                f"{app.config.reader_colab_branch}/{NOTEBOOK_DIR}/{stem}.ipynb"},
    ]
    buttons.append({"type": "group", "tooltip": "Launch interactive content", "icon": "fas fa-rocket",
                    "buttons": launch, "label": "launch-buttons"})
    buttons.append({"type": "link", "url": url, "tooltip": "Source repository", "text": "",
                    "icon": "fab fa-github", "label": "source-repository-button"})


# Numpy-style sections napoleon reads as lists of fields: it keeps reading fields
# until the next section header, so prose after them ("Used in chapter N.", a
# doctest) would be rendered as parameters. Many docstrings here end with such
# prose; before napoleon sees a docstring, this starts a "Notes" section at the
# first paragraph that is not a field, and an "Examples" section at a doctest.
FIELD_SECTIONS = {"parameters", "other parameters", "attributes", "returns", "yields", "raises",
                  "warns", "receives"}
_ENTRY = re.compile(r"^\*{0,2}[A-Za-z_][\w.]*(\s*,\s*\*{0,2}[A-Za-z_][\w.]*)*\s*(:\s.*|:)?$")
_TYPE_ONLY = re.compile(r"^[A-Za-z_][\w.\[\], |]*$")


def _is_header(lines, i):
    return (i + 1 < len(lines) and lines[i].strip() and not lines[i].startswith(" ")
            and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3)


def split_prose_from_fields(app, what, name, obj, options, lines):
    out, section, prev_blank = [], None, True
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_header(lines, i):
            section = line.strip().lower()
            out += [line, lines[i + 1]]
            i, prev_blank = i + 2, False
            continue
        top = bool(line.strip()) and not line.startswith((" ", "\t"))
        if top and line.lstrip().startswith(">>>") and section != "examples":
            if out and out[-1].strip():
                out.append("")
            out += ["Examples", "--------"]
            section = "examples"
        elif top and section in FIELD_SECTIONS and prev_blank:
            text = line.strip()
            entry = _ENTRY.match(text) if section in ("parameters", "other parameters", "attributes",
                                                        "receives") else (
                " : " in text or _TYPE_ONLY.match(text))
            if not entry:
                out += ["Notes", "-----"]
                section = "notes"
        out.append(line)
        prev_blank = not line.strip()
        i += 1
    lines[:] = out


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", split_prose_from_fields, priority=400)
    app.add_config_value("reader_colab_branch", "gh-pages", "html")
    app.connect("builder-inited", write_notebooks)
    app.connect("html-page-context", add_buttons, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
