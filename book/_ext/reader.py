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
import os
import re
import threading
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
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


# ---------------------------------------------------------------------------
# Peak memory of each page's kernel, and the status table
# ---------------------------------------------------------------------------
MEMORY_FILE = "reader_peak_memory.json"  # in _build/: kept for pages served from the cache


def _high_water_mb(proc) -> float:
    """A process's peak resident set so far (VmHWM on Linux; the current RSS elsewhere)."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return proc.memory_info().rss / 2**20


class KernelMemory:
    """Samples the build's child processes (the kernels that execute pages) every 0.1 s."""

    def __init__(self):
        import psutil

        self._me = psutil.Process(os.getpid())
        self._lock = threading.Lock()
        self.doc = None
        self.owner: dict[int, str] = {}
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reader-kernel-memory", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.1):
            self.sample()

    def sample(self):
        try:
            children = self._me.children(recursive=True)
        except Exception:  # noqa: BLE001  (the process table changed under us)
            return
        for child in children:
            try:
                mb = _high_water_mb(child)
            except Exception:  # noqa: BLE001  (it exited)
                continue
            with self._lock:
                if child.pid not in self.owner and self.doc is not None:
                    self.owner[child.pid] = self.doc
                if self.owner.get(child.pid) is not None:
                    self.peak[child.pid] = max(self.peak.get(child.pid, 0.0), mb)

    def start_doc(self, docname):
        with self._lock:
            self.doc = docname

    def finish_doc(self, docname) -> float | None:
        self.sample()
        with self._lock:
            self.doc = None
            pids = [pid for pid, doc in self.owner.items() if doc == docname]
            peaks = [self.peak[pid] for pid in pids if pid in self.peak]
            for pid in pids:
                self.owner[pid] = ""  # a pid the system reuses later is not this page's
        return max(peaks) if peaks else None


def _memory_file(app) -> Path:
    return Path(app.outdir).parent / MEMORY_FILE


def start_memory(app):
    app.reader_memory = KernelMemory()
    path = _memory_file(app)
    app.reader_memory_saved = json.loads(path.read_text()) if path.exists() else {}


def on_source_read(app, docname, source):
    if hasattr(app, "reader_memory"):
        app.reader_memory.start_doc(docname)


def on_doctree_read(app, doctree):
    if not hasattr(app, "reader_memory"):
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    docname = app.env.docname
    peak = app.reader_memory.finish_doc(docname)
    exec_data = NbMetadataCollector.get_exec_data(app.env, docname)
    if not exec_data:
        return
    if peak is not None:  # executed in this build
        app.reader_memory_saved[docname] = {"peak_mb": round(peak, 1), "runtime": exec_data.get("runtime")}
        path = _memory_file(app)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(app.reader_memory_saved, indent=1, sort_keys=True))
    else:  # served from the cache: the figure measured when it last executed
        peak = (app.reader_memory_saved.get(docname) or {}).get("peak_mb")
    NbMetadataCollector.set_doc_data(app.env, docname, "reader_peak_mb", peak)


class StatusTableNode(nodes.General, nodes.Element):
    """Placeholder for the status table, filled once every page has executed."""


class StatusTable(SphinxDirective):
    """``{reader-status-table}``: per executed page, ok/failed, run time and peak memory."""

    def run(self):
        from myst_nb.sphinx_ import NbMetadataCollector

        # myst-nb rewrites documents with this flag whenever a page re-executes
        NbMetadataCollector.set_doc_data(self.env, self.env.docname, "has_exec_table", True)
        return [StatusTableNode()]


def _entry(text, node=None):
    para = nodes.paragraph()
    para += node if node is not None else nodes.Text(text)
    return nodes.entry("", para)


def fill_status_tables(app, doctree, docname):
    from myst_nb.sphinx_ import NbMetadataCollector
    from sphinx.addnodes import pending_xref

    data = NbMetadataCollector.get_doc_data(app.env)
    for node in list(doctree.findall(StatusTableNode)):
        table = nodes.table(classes=["colwidths-auto", "reader-status"])
        headers = ["Page", "Status", "Run time (s)", "Peak memory (MB)", "Executed"]
        tgroup = nodes.tgroup(cols=len(headers))
        table += tgroup
        for _ in headers:
            tgroup += nodes.colspec(colwidth=1)
        thead, tbody = nodes.thead(), nodes.tbody()
        tgroup += thead
        tgroup += tbody
        row = nodes.row()
        for h in headers:
            row += _entry(h)
        thead += row
        for page in sorted(data):
            exec_data = data[page].get("exec_data")
            if not exec_data:
                continue
            title = app.env.titles[page].astext() if page in app.env.titles else page
            link = pending_xref(refdoc=docname, reftarget="/" + page, reftype="doc", refdomain="std",
                                refexplicit=True, refwarn=True, classes=["xref", "doc"])
            link += nodes.inline(text=title)
            peak = data[page].get("reader_peak_mb")
            runtime = exec_data.get("runtime")
            row = nodes.row()
            row += _entry("", link)
            row += _entry("ok" if exec_data.get("succeeded") else "failed")
            row += _entry("-" if runtime is None else f"{runtime:.1f}")
            row += _entry("not measured" if peak is None else f"{peak:,.0f}")
            row += _entry("in this build" if exec_data.get("method") != "cache" or peak is not None
                          else "from the cache")
            tbody += row
        node.replace_self(table)


class StatusPostTransform(SphinxPostTransform):
    default_priority = 8  # before the reference resolvers (9, 10) turn the page links into links

    def run(self, **kwargs):
        fill_status_tables(self.app, self.document, self.env.docname)


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", split_prose_from_fields, priority=400)
    app.add_config_value("reader_colab_branch", "gh-pages", "html")
    app.connect("builder-inited", write_notebooks)
    app.connect("html-page-context", add_buttons, priority=600)
    app.add_node(StatusTableNode)
    app.add_directive("reader-status-table", StatusTable)
    app.connect("builder-inited", start_memory)
    app.connect("source-read", on_source_read)
    app.connect("doctree-read", on_doctree_read, priority=900)
    app.add_post_transform(StatusPostTransform)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
