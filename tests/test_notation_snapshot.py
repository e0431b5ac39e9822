"""Snapshot of every diagram layout the book draws (helpers.notation).

``tests/data/notation_layouts.json`` holds, for every diagram drawn while the
pages execute (chapters 1-3), every entry of ``CHAPTER_DIAGRAMS`` and a fixed
set of random expressions, the
diagram's structure, the ``show_dims`` flag and the computed layout: node
centres and sizes, every wire's polyline, every label's text, centre and box,
and the extent.  It was written by ``tools/notation_snapshot.py`` from the code
as it was before ``helpers/notation`` became a package, so these tests show that
refactoring the layout changed no drawing.  Coordinates are compared to 1e-9
inch (float results may differ in the last bits between CPUs); texts, node
kinds and colours exactly.

Regenerate (only when a drawing is meant to change, and say so in the commit):
``.venv/bin/python tools/notation_snapshot.py book/01_tensor_notation.md
book/02_decompositions.md book/03_induction_heads.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import notation as N

DATA = Path(__file__).parent / "data" / "notation_layouts.json"
TOL = 1e-9


def _r(x) -> float:
    return round(float(x), 9)


def diagram_record(d: N.Diagram) -> dict:
    """The structure of a diagram as plain JSON (everything but the arrays)."""
    return {
        "expr": d.expr,
        "inputs": list(d.inputs),
        "output": d.output,
        "dims": {k: v for k, v in d.dims.items()},
        "nodes": [[n.id, n.name, n.kind, list(n.legs), n.operand] for n in d.nodes],
        "edges": [[e.index, e.dim, list(e.a), list(e.b)] for e in d.edges],
        "dangling": [[g.index, g.dim, list(g.end)] for g in d.dangling],
        "index_names": dict(d.index_names),
        "colors": {str(k): v for k, v in d.colors.items()},
        "positions": None if d.positions is None else {str(k): list(v) for k, v in d.positions.items()},
    }


def diagram_from_record(r: dict) -> N.Diagram:
    return N.Diagram(
        expr=r["expr"],
        inputs=tuple(r["inputs"]),
        output=r["output"],
        dims=dict(r["dims"]),
        nodes=[N.TensorNode(i, name, kind, tuple(legs), op) for i, name, kind, legs, op in r["nodes"]],
        edges=[N.Edge(ix, dim, tuple(a), tuple(b)) for ix, dim, a, b in r["edges"]],
        dangling=[N.Leg(ix, dim, tuple(end)) for ix, dim, end in r["dangling"]],
        index_names=dict(r["index_names"]),
        colors={int(k): v for k, v in r["colors"].items()},
        positions=None if r["positions"] is None else {int(k): tuple(v) for k, v in r["positions"].items()},
    )


def layout_json(lay: N.Layout) -> dict:
    """Every coordinate of a layout, rounded to 1e-9, plus the texts, kinds and colours."""
    return {
        "nodes": [[k, [_r(v) for v in lay.node_xy[k]], [_r(v) for v in lay.node_wh[k]],
                   lay.node_kind[k], lay.node_text[k], lay.node_color.get(k)] for k in sorted(lay.node_xy)],
        "paths": [[list(key), [[_r(x), _r(y)] for x, y in np.asarray(p)]] for key, p in lay.paths],
        "labels": [[list(lab.key), lab.text, _r(lab.x), _r(lab.y), lab.size, [_r(v) for v in lab.box], lab.color]
                   for lab in lay.labels],
        "extent": [_r(v) for v in lay.extent],
    }


def layout_record(d: N.Diagram, show_dims: bool, lay=None) -> dict:
    """What the snapshot stores for one drawn diagram (``lay`` is computed if not given)."""
    if lay is None:
        lay = d.layout(show_dims=show_dims)
    return {"diagram": diagram_record(d), "show_dims": bool(show_dims), "layout": layout_json(lay)}


def _assert_close(got, want, where: str) -> None:
    """Recursive comparison: numbers within TOL, everything else equal."""
    if isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{where}: {got!r} != {want!r}"
    elif isinstance(want, (int, float)):
        assert isinstance(got, (int, float)) and abs(got - want) <= TOL, f"{where}: {got!r} != {want!r}"
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for k, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{where}[{k}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys differ"
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    else:  # pragma: no cover - the JSON holds nothing else
        raise TypeError(type(want))


RECORDS = json.loads(DATA.read_text()) if DATA.exists() else []


def test_snapshot_covers_every_page_that_draws_diagrams():
    assert RECORDS, f"{DATA} is missing: see this module's docstring"
    sources = {r["source"] for r in RECORDS}
    for page in ("01_tensor_notation.md", "02_decompositions.md", "03_induction_heads.md"):
        assert page in sources
    # every chapter-1 diagram is pinned (the tool adds those no page draws)
    pinned = {json.dumps(r["diagram"], sort_keys=True) for r in RECORDS}
    for name in N.CHAPTER_DIAGRAMS:
        assert json.dumps(diagram_record(N.chapter_diagram(name)), sort_keys=True) in pinned, name


@pytest.mark.parametrize("k", range(len(RECORDS)), ids=[f"{r['source']}:{r['diagram']['expr']}:{r['show_dims']}"
                                                        for r in RECORDS])
def test_layout_matches_snapshot(k):
    rec = RECORDS[k]
    d = diagram_from_record(rec["diagram"])
    got = json.loads(json.dumps(layout_json(d.layout(show_dims=rec["show_dims"]))))
    _assert_close(got, rec["layout"], "layout")


@pytest.mark.parametrize("k", range(len(RECORDS)))
def test_diagram_structure_matches_snapshot(k):
    """Diagrams built from an einsum are rebuilt by ``diagram()`` identically (parsing/graph unchanged)."""
    r, built_by = RECORDS[k]["diagram"], RECORDS[k]["built_by"]
    if built_by == "network_diagram":
        pytest.skip("drawn from a tensornetwork network, not from an einsum")
    if built_by == "identity_wire":
        (left, dim, _), (right, _, _) = r["dangling"]
        assert json.loads(json.dumps(diagram_record(N.identity_wire(left, right, dim)))) == r
        return
    assert built_by == "diagram", built_by
    tensors = [n for n in r["nodes"] if n[2] == "tensor"]
    shapes = [tuple(r["dims"][ch] for ch in sub) for sub in r["inputs"]]
    positions = None if r["positions"] is None else {int(k): v for k, v in r["positions"].items()}
    d = N.diagram(r["expr"], *shapes, names=[n[1] for n in tensors],
                  colors=[r["colors"][str(n[0])] for n in tensors] if tensors else None,
                  index_names=r["index_names"], positions=positions)
    assert json.loads(json.dumps(diagram_record(d))) == r
