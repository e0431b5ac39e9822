"""Label placement and extent: the last phases of the layout (private).

Each wire label is tried at a few candidate centres around its anchor (an arc's
apex, a wire's middle, a leg's end); the candidate with the lowest score wins,
where the score charges overlap with nodes and with labels already placed,
wire points under the label, and rank in the candidate list.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._geometry import boxes_overlap, overlap_area
from ._style import DiagramStyle, text_wh

if TYPE_CHECKING:  # pragma: no cover
    from ._layout import LabelSpec, LayoutState

Box = tuple[float, float, float, float]


def place_labels(st: LayoutState) -> tuple[list[Box], np.ndarray]:
    """Node names, then edge labels, copy-node labels and leg labels (into ``st.labels``).

    Returns the node boxes and every wire point (for the extent).
    """
    from ._layout import LabelSpec

    s = st.style
    node_boxes = []
    for nd in st.d.nodes:
        x, y = st.node_xy[nd.id]
        w, h = st.node_wh[nd.id]
        node_boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        if nd.kind == "tensor":
            tw, th = text_wh(st.node_text[nd.id], s.node_fontsize)
            st.labels.append(LabelSpec(("node", nd.id), st.node_text[nd.id], x, y, s.node_fontsize,
                                       (x - tw / 2, y - th / 2, x + tw / 2, y + th / 2)))
    all_pts = np.vstack([p for _, p in st.paths]) if st.paths else np.zeros((0, 2))
    placer = _Placer(s, node_boxes, all_pts, st.labels)
    for i, e in enumerate(st.d.edges):
        cands = st.edge_label_cands.get(i, [])
        if not cands:
            continue
        text = st.text(e.index, e.dim)
        tw, th = text_wh(text, s.leg_fontsize)
        pts: list[tuple[float, float]] = []
        for c in cands:
            pts += label_candidates(s, c[0], c[1], tw, th, c[2], c[3] if len(c) > 3 else None)
        placer.place(("edge", i), text, pts)
    for c in st.d.copy_nodes:
        _place_copy_label(st, placer, c)
    for i in sorted(st.leg_label_cands):
        ex, ey, ux, uy = st.leg_label_cands[i]
        g = st.d.dangling[i]
        text = st.text(g.index, g.dim)
        tw, th = text_wh(text, s.leg_fontsize)
        placer.place(("leg", i), text, label_candidates(s, ex, ey, tw, th, "dir", (ux, uy)))
    return node_boxes, all_pts


def _place_copy_label(st: LayoutState, placer: _Placer, c) -> None:
    """Label a copy node once: at its output leg if it has one, else beside the dot."""
    s = st.style
    legs_here = list(st.leg_of_node.get(c.id, []))
    text = st.text(c.legs[0], st.d.dims.get(c.legs[0]))
    tw, th = text_wh(text, s.leg_fontsize)
    if legs_here:
        ex, ey, ux, uy = st.leg_label_cands.pop(legs_here[0])
        placer.place(("leg", legs_here[0]), text, label_candidates(s, ex, ey, tw, th, "dir", (ux, uy)))
        return
    x, y = st.node_xy[c.id]
    gx = tw / 2 + s.copy_r + s.label_gap_x
    dy = s.copy_label_slide
    pts = [(x + gx, y), (x - gx, y), (x, y - th / 2 - s.copy_r - s.label_gap_y),
           (x, y + th / 2 + s.copy_r + s.label_gap_y),
           (x + gx, y - dy), (x - gx, y - dy), (x + gx, y + dy), (x - gx, y + dy)]
    placer.place(("copy", c.id), text, pts)


def label_candidates(s: DiagramStyle, x: float, y: float, tw: float, th: float, mode: str,
                     extra=None) -> list[tuple[float, float]]:
    """Candidate centres for a ``tw x th`` label attached at ``(x, y)``, best first.

    ``mode``: ``"above"``/``"below"`` an arc's apex, ``"perp+"``/``"perp-"``
    beside a wire whose unit normal is ``extra``, or ``"dir"`` beyond a leg end
    pointing along ``extra``.  Then the first two, slid along the wire.
    """
    gx, gy = tw / 2 + s.label_gap_x, th / 2 + s.label_gap_y
    if mode == "above":
        base = [(x, y + gy), (x, y - gy)]
    elif mode == "below":
        base = [(x, y - gy), (x, y + gy)]
    elif mode in ("perp+", "perp-"):
        px, py = extra
        sgn = 1 if mode == "perp+" else -1
        dist = abs(px) * gx + abs(py) * gy  # from the line to the box centre along the normal
        base = [(x + sgn * px * dist, y + sgn * py * dist), (x - sgn * px * dist, y - sgn * py * dist)]
    else:  # "dir": beyond a point along direction extra, then sideways
        ux, uy = extra
        base = [(x + ux * (gx + s.label_dir_gap), y + uy * (gy + s.label_dir_gap))]
        base += [(x + ux * gx + uy * gx, y + uy * gy - ux * gy), (x + ux * gx - uy * gx, y + uy * gy + ux * gy)]
    out = list(base)
    for sh in s.label_slides:
        for bx, by in base[:2]:
            out.append((bx + sh, by) if mode in ("above", "below") else (bx, by + sh))
    return out


class _Placer:
    """Puts labels one at a time at their best candidate, remembering the boxes taken."""

    def __init__(self, style: DiagramStyle, node_boxes: list[Box], all_pts: np.ndarray, labels: list):
        c = style.node_label_clear
        self.style = style
        self.node_boxes = [(nb[0] - c, nb[1] - c, nb[2] + c, nb[3] + c) for nb in node_boxes]
        self.all_pts = all_pts
        self.labels = labels
        self.placed: list[Box] = []

    def score(self, box: Box, rank: int) -> float:
        s = self.style
        score = rank * s.rank_penalty
        for nb in self.node_boxes:
            score += s.overlap_weight * overlap_area(box, nb)
        for pb in self.placed:
            score += s.overlap_weight * overlap_area(box, pb) + (s.touch_penalty if boxes_overlap(box, pb) else 0.0)
        if len(self.all_pts):
            pts = self.all_pts
            inside = (pts[:, 0] > box[0]) & (pts[:, 0] < box[2]) & (pts[:, 1] > box[1]) & (pts[:, 1] < box[3])
            score += s.wire_point_penalty * float(inside.sum())
        return score

    def place(self, key, text: str, cands: list[tuple[float, float]]) -> None:
        from ._layout import LabelSpec

        s = self.style
        tw, th = text_wh(text, s.leg_fontsize)
        best: tuple | None = None
        best_score = math.inf
        for rank, (cx, cy) in enumerate(cands):
            box = (cx - tw / 2 - s.pad, cy - th / 2 - s.pad, cx + tw / 2 + s.pad, cy + th / 2 + s.pad)
            score = self.score(box, rank)
            if score < best_score - 1e-12:
                best, best_score = (cx, cy, box), score
        cx, cy, box = best
        self.placed.append(box)
        self.labels.append(LabelSpec(key, text, cx, cy, s.leg_fontsize, box))


def diagram_extent(node_boxes: list[Box], labels: list[LabelSpec], all_pts: np.ndarray,
                   margin: float) -> Box:
    """``(x0, y0, x1, y1)`` covering nodes, labels and wires, plus ``margin``."""
    xs: list[float] = []
    ys: list[float] = []
    for b in node_boxes + [lab.box for lab in labels]:
        xs += [b[0], b[2]]
        ys += [b[1], b[3]]
    if len(all_pts):
        xs += list(all_pts[:, 0])
        ys += list(all_pts[:, 1])
    return (min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin)
