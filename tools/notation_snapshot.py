"""Record the layout of every tensor diagram the book draws: tests/data/notation_layouts.json.

    .venv/bin/python tools/notation_snapshot.py [--out PATH] book/01_tensor_notation.md book/02_decompositions.md ...

Each page is executed with nbclient (as `make page` does) after a first cell
that wraps ``helpers.notation.Diagram.layout``: every call made while the page
runs (directly, through ``draw``, ``draw_equation``, ``gallery`` or
``draw_network``) is recorded with the diagram's structure, the ``show_dims``
flag and the computed coordinates.  Every entry of ``CHAPTER_DIAGRAMS`` and
a fixed set of random expressions
(:func:`helpers.notation.random_expression`) is added so that branches the
pages do not reach are pinned too.  ``tests/test_notation_snapshot.py`` then
recomputes every layout from the stored structure and compares.

The executed notebooks are also written to /tmp (like ``make page``), so a run
doubles as the before/after execution of the pages.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "notation_layouts.json"
N_RANDOM = 60

RECORDER = r'''
import json as _json
import helpers.notation as _N
from test_notation_snapshot import layout_record as _layout_record
_orig_layout = _N.Diagram.layout
_records = []
def _recording_layout(self, show_dims=True):
    lay = _orig_layout(self, show_dims=show_dims)
    rec = _layout_record(self, show_dims, lay)
    rec["built_by"] = getattr(self, "_built_by", "diagram")
    _records.append(rec)
    return lay
def _tagging(name):
    orig = getattr(_N, name)
    def build(*args, **kwargs):
        d = orig(*args, **kwargs)
        d._built_by = name
        return d
    return build
_N.Diagram.layout = _recording_layout
for _name in ("network_diagram", "identity_wire"):
    _orig, _tagged = getattr(_N, _name), _tagging(_name)
    for _mod in [m for k, m in list(sys.modules.items()) if k == "helpers.notation" or k.startswith("helpers.notation.")]:
        if getattr(_mod, _name, None) is _orig:
            setattr(_mod, _name, _tagged)  # wherever the package's own code looks it up
def _dump_records(path):
    with open(path, "w") as f:
        _json.dump(_records, f)
'''


def record_page(page: Path) -> list:
    nb = jupytext.read(page)
    dump = Path("/tmp") / f"notation_layouts_{page.stem}.json"
    pre = nbformat.v4.new_code_cell(f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
                                   + RECORDER)
    post = nbformat.v4.new_code_cell(f"_dump_records({str(dump)!r})")
    nb.cells = [pre] + nb.cells + [post]
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(page.parent)}}).execute()
    nb.cells = nb.cells[1:-1]
    nbformat.write(nb, Path("/tmp") / (page.stem + ".ipynb"))
    recs = json.loads(dump.read_text())
    for r in recs:
        r["source"] = page.name
    return recs


def main(pages: list, out: Path = OUT) -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import matplotlib

    matplotlib.use("Agg")
    from test_notation_snapshot import layout_record

    from helpers import notation as N

    records = []
    for p in pages:
        recs = record_page(Path(p))
        print(f"{p}: {len(recs)} layouts")
        records += recs
    for name in N.CHAPTER_DIAGRAMS:  # including those a page does not draw
        r = layout_record(N.chapter_diagram(name), True, None)
        r["source"], r["built_by"] = f"CHAPTER_DIAGRAMS[{name!r}]", "diagram"
        records.append(r)
    for seed in range(N_RANDOM):
        expr, shapes = N.random_expression(seed)
        for show_dims in (True, False):
            r = layout_record(N.diagram(expr, *shapes), show_dims, None)
            r["source"] = f"random_expression({seed})"
            r["built_by"] = "diagram"
            records.append(r)
    # one layout per distinct (structure, show_dims)
    seen, unique = set(), []
    for r in records:
        key = json.dumps([r["diagram"], r["show_dims"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in unique]
    out.write_text("[\n" + ",\n".join(lines) + "\n]\n")  # one layout per line
    print(f"wrote {len(unique)} distinct layouts ({len(records)} recorded) to {out}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--out":  # e.g. to compare with the committed snapshot
        sys.exit(main(args[2:], Path(args[1])))
    sys.exit(main(args))
