"""Where every node, wire and label of a diagram goes (private).

:func:`layout_diagram` runs the phases one after the other over a
:class:`LayoutState`:

1. tensor nodes: on a line, in the order of least total wire length, or at the
   diagram's given ``positions``;
2. copy nodes: in rows above/below the line (shared with the arcs that join
   operands that are not neighbours), or near their neighbours;
3. wires between nodes (straight, parallel, arcs, routed around boxes);
4. dangling legs and self-loops, in the free directions around each node;
5. labels, each at the best of a few candidate spots (:mod:`._labels`);
6. the extent.

The two strategies (a line, or given positions) differ only in phases 1-2 and
in the direction each node prefers for its legs.  All sizes come from a
:class:`~._style.DiagramStyle`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._geometry import angdist, bezier, boundary, crosses_boxes, cubic
from ._style import PALETTE, STYLE, DiagramStyle, leg_text, tex_name, text_wh

if TYPE_CHECKING:  # pragma: no cover
    from ._graph import Diagram

Box = tuple[float, float, float, float]


@dataclass
class LabelSpec:
    """A text label: what it says, where its centre is, and its estimated box (inches).

    Not used by a page; a library helper.
    """

    key: tuple
    text: str
    x: float
    y: float
    size: float
    box: tuple[float, float, float, float]
    color: str = "0.1"


@dataclass
class Layout:
    """Drawing coordinates of a diagram, in inches.

    Attributes
    ----------
    node_xy : dict
        Centre of each node id.
    node_wh : dict
        Width and height of each node's shape.
    node_kind, node_text, node_color : dict
        Shape kind, label text and fill colour of each node id.
    paths : list of (key, ndarray)
        Polylines (``N x 2``) for every wire: ``("edge", i)`` for
        ``Diagram.edges[i]`` and ``("leg", i)`` for ``Diagram.dangling[i]``.
    labels : list of LabelSpec
        Node names (key ``("node", id)``) and leg labels (``("edge", i)``,
        ``("leg", i)``, ``("copy", id)``) with estimated boxes.
    extent : tuple
        ``(x0, y0, x1, y1)`` covering everything.
    node_role : dict
        Drawing role (``"frozen"``, ``"mask"``) of some node ids, from
        :attr:`Diagram.roles`; it changes how a box is drawn, not where.

    Built by every drawing of chapter 1; not named on its page.
    """

    node_xy: dict[int, tuple[float, float]]
    node_wh: dict[int, tuple[float, float]]
    node_kind: dict[int, str]
    node_text: dict[int, str]
    node_color: dict[int, str]
    paths: list[tuple[tuple, np.ndarray]]
    labels: list[LabelSpec]
    extent: tuple[float, float, float, float]
    node_role: dict[int, str] = field(default_factory=dict)

    def coordinates(self) -> np.ndarray:
        """Every coordinate of the layout in one flat array (for determinism checks)."""
        parts = [np.array([v for k in sorted(self.node_xy) for v in self.node_xy[k]], float)]
        parts += [p.ravel() for _, p in self.paths]
        parts += [np.array([lab.x, lab.y, *lab.box]) for lab in self.labels]
        return np.concatenate(parts) if parts else np.zeros(0)

    def label_boxes(self) -> dict[tuple, tuple[float, float, float, float]]:
        """Estimated bounding box ``(x0, y0, x1, y1)`` of every label."""
        return {lab.key: lab.box for lab in self.labels}

    def shifted(self, dx: float, dy: float) -> Layout:
        """The same layout moved by ``(dx, dy)`` inches."""
        def sh(b):
            return (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)

        return Layout(
            {k: (x + dx, y + dy) for k, (x, y) in self.node_xy.items()},
            dict(self.node_wh),
            dict(self.node_kind),
            dict(self.node_text),
            dict(self.node_color),
            [(k, p + np.array([dx, dy])) for k, p in self.paths],
            [LabelSpec(l.key, l.text, l.x + dx, l.y + dy, l.size, sh(l.box), l.color) for l in self.labels],
            sh(self.extent),
            dict(self.node_role),
        )

    @property
    def width(self) -> float:
        return self.extent[2] - self.extent[0]

    @property
    def height(self) -> float:
        return self.extent[3] - self.extent[1]


@dataclass
class LayoutState:
    """What the layout phases share: the diagram, its adjacency, and what is placed so far.

    Attributes
    ----------
    adj_pairs : dict
        ``(node, node) -> [edge index]`` for wires between two tensor nodes.
    copy_nbrs : dict
        Tensor nodes joined to each copy node, in the order first met.
    leg_of_node, loops_of_node : dict
        Dangling legs and self-loops (indices into ``d.dangling`` / ``d.edges``) of each node.
    line_pos : dict
        Position of each tensor node along the line (line strategy only).
    node_dirs : dict
        Preferred directions (degrees) of each tensor node's loops and legs (line strategy only).
    level_of : dict
        ``("arc", edge) / ("copy", node) -> (side, level)``: the row of each
        arc and copy node (line strategy only).
    edge_label_cands : dict
        Anchor spots ``(x, y, mode[, extra])`` for each edge's label.
    leg_label_cands : dict
        ``(x, y, ux, uy)``: end and direction of each dangling leg, for its label.
    used_angles : dict
        Directions (degrees) already taken around each node.
    """

    d: Diagram
    show_dims: bool
    style: DiagramStyle
    tids: list[int]
    is_copy: set[int]
    node_kind: dict[int, str]
    node_text: dict[int, str]
    node_color: dict[int, str]
    node_wh: dict[int, tuple[float, float]]
    adj_pairs: dict[tuple[int, int], list[int]]
    copy_nbrs: dict[int, list[int]]
    leg_of_node: dict[int, list[int]]
    loops_of_node: dict[int, list[int]]
    node_xy: dict[int, tuple[float, float]] = field(default_factory=dict)
    line_pos: dict[int, int] = field(default_factory=dict)
    node_dirs: dict[int, list[float]] = field(default_factory=dict)
    level_of: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    paths: list[tuple[tuple, np.ndarray]] = field(default_factory=list)
    edge_label_cands: dict[int, list] = field(default_factory=dict)
    leg_label_cands: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    used_angles: dict[int, list[float]] = field(default_factory=dict)
    labels: list[LabelSpec] = field(default_factory=list)

    @property
    def custom(self) -> bool:
        """Whether the diagram gives node positions (else: operands on a line)."""
        return self.d.positions is not None

    def text(self, index: str, dim: int | None) -> str:
        return leg_text(self.d, index, dim, self.show_dims)

    def row_y(self, side: int, level: int) -> float:
        """Height of row ``level`` (1, 2, ...) above (side +1) or below (-1) the line."""
        return side * (self.style.level_y + self.style.level_dy * (level - 1))

    def add_angle(self, node: int, vec) -> None:
        self.used_angles[node].append(math.degrees(math.atan2(vec[1], vec[0])) % 360.0)


def layout_diagram(d: Diagram, show_dims: bool = True, style: DiagramStyle = STYLE) -> Layout:
    """The :class:`Layout` of a diagram (what :meth:`Diagram.layout` returns)."""
    from ._labels import diagram_extent, place_labels

    if not d.nodes:
        return _bare_wire(d, show_dims, style)
    st = _new_state(d, show_dims, style)
    if st.custom:
        _place_tensors_at_positions(st)
        _place_copy_nodes_near_neighbours(st)
    else:
        _place_tensors_on_line(st)
        items = _row_items(st)
        blockers = _choose_leg_directions(st, items)
        _assign_rows(st, items, blockers)
        _place_copy_nodes_in_rows(st)
    _route_wires(st)
    _add_loops_and_legs(st)
    node_boxes, all_pts = place_labels(st)
    extent = diagram_extent(node_boxes, st.labels, all_pts, style.margin)
    return Layout(st.node_xy, st.node_wh, st.node_kind, st.node_text, st.node_color, st.paths, st.labels, extent,
                  dict(getattr(d, "roles", {})))


def _bare_wire(d: Diagram, show_dims: bool, style: DiagramStyle) -> Layout:
    """A bare wire (the identity): no nodes at all, a label at each end."""
    (g0, g1), L, gap, pad = d.dangling[:2], style.bare_wire_len, style.bare_wire_gap, style.pad
    t0, t1 = (leg_text(d, g.index, g.dim, show_dims) for g in (g0, g1))
    (w0, h0), (w1, h1) = text_wh(t0, style.leg_fontsize), text_wh(t1, style.leg_fontsize)
    path = np.array([[0.0, 0.0], [L, 0.0]])
    b0 = (-gap - w0 - pad, -h0 / 2 - pad, -gap + pad, h0 / 2 + pad)
    b1 = (L + gap - pad, -h1 / 2 - pad, L + gap + w1 + pad, h1 / 2 + pad)
    labels = [LabelSpec(("leg", 0), t0, (b0[0] + b0[2]) / 2, 0.0, style.leg_fontsize, b0),
              LabelSpec(("leg", 1), t1, (b1[0] + b1[2]) / 2, 0.0, style.leg_fontsize, b1)]
    m = style.margin
    ext = (b0[0] - m, -style.node_h / 2 - m, b1[2] + m, style.node_h / 2 + m)
    return Layout({}, {}, {}, {}, {}, [(("leg", 0), path)], labels, ext)


def _new_state(d: Diagram, show_dims: bool, style: DiagramStyle) -> LayoutState:
    """Node sizes, texts and colours, and who is joined to whom."""
    is_copy = {nd.id for nd in d.nodes if nd.kind == "copy"}
    node_text = {nd.id: (tex_name(nd.name) if nd.kind == "tensor" else "") for nd in d.nodes}
    node_wh: dict[int, tuple[float, float]] = {}
    for nd in d.nodes:
        if nd.kind == "tensor":
            tw, _ = text_wh(node_text[nd.id], style.node_fontsize)
            node_wh[nd.id] = (max(style.node_min_w, tw + style.node_text_margin), style.node_h)
        else:
            node_wh[nd.id] = (2 * style.copy_r, 2 * style.copy_r)
    adj_pairs: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(d.edges):
        if not e.is_self_loop and e.a[0] not in is_copy and e.b[0] not in is_copy:
            adj_pairs.setdefault(tuple(sorted((e.a[0], e.b[0]))), []).append(i)
    copy_nbrs: dict[int, list[int]] = {c.id: [] for c in d.copy_nodes}
    for e in d.edges:
        for c, t in ((e.b[0], e.a[0]), (e.a[0], e.b[0])):
            if c in is_copy and t not in is_copy and t not in copy_nbrs[c]:
                copy_nbrs[c].append(t)
    leg_of_node: dict[int, list[int]] = {}
    for i, g in enumerate(d.dangling):
        leg_of_node.setdefault(g.end[0], []).append(i)
    loops_of_node: dict[int, list[int]] = {}
    for i, e in enumerate(d.edges):
        if e.is_self_loop:
            loops_of_node.setdefault(e.a[0], []).append(i)
    return LayoutState(
        d=d, show_dims=show_dims, style=style,
        tids=[nd.id for nd in d.nodes if nd.kind == "tensor"],
        is_copy=is_copy,
        node_kind={nd.id: nd.kind for nd in d.nodes},
        node_text=node_text,
        node_color={nd.id: d.colors.get(nd.id, PALETTE[0]) for nd in d.nodes if nd.kind == "tensor"},
        node_wh=node_wh, adj_pairs=adj_pairs, copy_nbrs=copy_nbrs,
        leg_of_node=leg_of_node, loops_of_node=loops_of_node,
        used_angles={nd.id: [] for nd in d.nodes},
    )


# --- 1. tensor nodes -------------------------------------------------------------


def line_order(d: Diagram) -> list[int]:
    """Order of the operand nodes along a line, minimising total wire length.

    Exhaustive for up to 7 operands (first minimum in lexicographic order, so
    the written order wins ties), greedy chain-following beyond.
    """
    tids = [nd.id for nd in d.nodes if nd.kind == "tensor"]
    n = len(tids)
    if n <= 1:
        return tids
    where = {t: k for k, t in enumerate(tids)}
    w = np.zeros((n, n))
    copy_nb: dict[int, set] = {c.id: set() for c in d.copy_nodes}
    for e in d.bonds:
        a, b = e.a[0], e.b[0]
        if a in where and b in where:
            w[where[a], where[b]] += 1.0
            w[where[b], where[a]] += 1.0
        elif a in where and b in copy_nb:
            copy_nb[b].add(where[a])
        elif b in where and a in copy_nb:
            copy_nb[a].add(where[b])
    for nb in copy_nb.values():
        for a, b in itertools.combinations(sorted(nb), 2):
            w[a, b] += 0.5
            w[b, a] += 0.5
    if n <= 7:
        best, best_cost = list(range(n)), math.inf
        for perm in itertools.permutations(range(n)):
            if perm[0] > perm[-1]:
                continue  # mirror images cost the same; keep the one that starts lower
            pos = np.empty(n)
            pos[list(perm)] = np.arange(n)
            cost = float((w * np.abs(pos[:, None] - pos[None, :])).sum())
            if cost < best_cost - 1e-9:
                best, best_cost = list(perm), cost
        return [tids[k] for k in best]
    order = [0]
    left = set(range(1, n))
    while left:
        last = order[-1]
        nxt = max(sorted(left), key=lambda j: (w[last, j], w[order, j].sum(), -j))
        order.append(nxt)
        left.remove(nxt)
    return [tids[k] for k in order]


def _place_tensors_on_line(st: LayoutState) -> None:
    """Operands left to right in :func:`line_order`, each gap wide enough for its wires' labels."""
    s, d = st.style, st.d
    order = line_order(d)
    x = 0.0
    for p, k in enumerate(order):
        st.line_pos[k] = p
        if p > 0:
            prev = order[p - 1]
            gap = s.min_gap
            for i in st.adj_pairs.get(tuple(sorted((prev, k))), []):
                e = d.edges[i]
                tw, _ = text_wh(st.text(e.index, e.dim), s.leg_fontsize)
                gap = max(gap, tw + s.gap_label_margin)
            x += st.node_wh[prev][0] / 2 + gap + st.node_wh[k][0] / 2
        st.node_xy[k] = (x, 0.0)


def _place_tensors_at_positions(st: LayoutState) -> None:
    """Operands at the diagram's positions; unplaced ones on a row underneath."""
    auto = 0.0
    for k in st.tids:
        if k in st.d.positions:
            st.node_xy[k] = st.d.positions[k]
    for k in st.tids:
        if k not in st.node_xy:
            ys = [xy[1] for xy in st.node_xy.values()] or [0.0]
            st.node_xy[k] = (auto, min(ys) - st.style.free_row_drop)
            auto += st.style.free_row_step


# --- 2. rows above/below the line, copy nodes --------------------------------------


def _row_items(st: LayoutState) -> list:
    """What needs a row: ``(kind, id, lo, hi, preferred side)`` for arcs and copy nodes.

    An arc joins two operands that are not neighbours on the line (it prefers
    the top); a copy node spans its neighbours (it prefers the bottom).
    """
    items = []
    for pair, idxs in st.adj_pairs.items():
        lo, hi = sorted((st.line_pos[pair[0]], st.line_pos[pair[1]]))
        if hi - lo > 1:
            for i in idxs:
                items.append(("arc", i, lo, hi, +1))
    for c in st.d.copy_nodes:
        ps = [st.line_pos[k] for k in st.copy_nbrs[c.id]] or [0]
        items.append(("copy", c.id, min(ps), max(ps), -1))
    return items


def _choose_leg_directions(st: LayoutState, items: list) -> list[tuple[int, int]]:
    """Directions of each operand's self-loops and legs (into ``st.node_dirs``).

    Decided before the rows, so that rows can avoid them: returns the
    ``(side, line position)`` of every vertical leg.
    """
    diag = list(st.style.diagonals)
    blockers = []
    last = max(st.line_pos.values()) if st.line_pos else 0
    for k in st.tids:
        p = st.line_pos[k]
        pressure_up = sum(1 for it in items if it[4] > 0 and it[2] < p < it[3])
        pressure_dn = sum(1 for it in items if it[4] < 0 and it[2] <= p <= it[3])
        vert_first = [90.0, 270.0] if pressure_up <= pressure_dn else [270.0, 90.0]
        ends = ([180.0] if p == 0 else []) + ([0.0] if p == last else [])  # free ends of the line
        pref = ends + vert_first + diag
        loops, legs = st.loops_of_node.get(k, []), st.leg_of_node.get(k, [])
        dirs: list[float] = []
        for choices in [vert_first + diag] * len(loops) + [pref] * len(legs):
            # self-loops take the vertical slots first (they need the most room)
            for a in choices:
                if a not in dirs:
                    dirs.append(a)
                    break
        st.node_dirs[k] = dirs[:len(loops) + len(legs)]
        for a in st.node_dirs[k]:
            if angdist(a, 90) < st.style.vertical_cone:
                blockers.append((+1, p))
            elif angdist(a, 270) < st.style.vertical_cone:
                blockers.append((-1, p))
    return blockers


def _row_conflict(placed, blockers, side: int, level: int, lo: int, hi: int, clear: float) -> bool:
    """Whether a span ``lo..hi`` clashes with what row ``(side, level)`` already holds."""
    a0, a1 = (lo - clear, hi + clear) if lo == hi else (lo, hi)
    for s, l, b0, b1 in placed:
        if s != side or l != level:
            continue
        c0, c1 = (b0 - clear, b1 + clear) if b0 == b1 else (b0, b1)
        if a0 < c1 and c0 < a1:
            return True
    if level == 1:  # vertical legs cross the first row
        for s, p in blockers:
            if s == side and a0 - clear < p < a1 + clear and not (lo == hi == p):
                if lo < p < hi or lo == hi:
                    return True
    return False


def _assign_rows(st: LayoutState, items: list, blockers: list[tuple[int, int]]) -> None:
    """Give each arc and copy node the lowest free row, shortest spans first (into ``st.level_of``)."""
    placed = []  # (side, level, lo, hi)
    for kind, ident, lo, hi, pref_side in sorted(items, key=lambda t: (t[3] - t[2], t[0] != "copy", t[1])):
        chosen = None
        for level in itertools.count(1):
            for side in (pref_side, -pref_side):
                if not _row_conflict(placed, blockers, side, level, lo, hi, st.style.row_clear):
                    chosen = (side, level)
                    break
            if chosen:
                break
        placed.append((chosen[0], chosen[1], lo, hi))
        st.level_of[(kind, ident)] = chosen


def _copy_anchor(st: LayoutState, c) -> tuple[list[int], float]:
    """A copy node's neighbours and the mean x of their centres."""
    nb = st.copy_nbrs[c.id] or st.tids[:1]
    mx = float(np.mean([st.node_xy[k][0] for k in nb])) if nb else 0.0
    return nb, mx


def _place_copy_nodes_in_rows(st: LayoutState) -> None:
    """Each copy node in its row, above the middle of its neighbours."""
    for c in st.d.copy_nodes:
        _, mx = _copy_anchor(st, c)
        side, level = st.level_of[("copy", c.id)]
        st.node_xy[c.id] = (mx, st.row_y(side, level))


def _place_copy_nodes_near_neighbours(st: LayoutState) -> None:
    """Each copy node at the mean of its neighbours, nudged away from other nodes."""
    s = st.style
    for c in st.d.copy_nodes:
        nb, mx = _copy_anchor(st, c)
        my = float(np.mean([st.node_xy[k][1] for k in nb]))
        if len(nb) == 1:
            my -= s.copy_drop
        xy = (mx, my)
        others = [v for kk, v in st.node_xy.items() if kk != c.id]
        tries = 0
        while any(abs(xy[0] - o[0]) < s.copy_clear and abs(xy[1] - o[1]) < s.copy_clear for o in others) \
                and tries < s.copy_nudge_tries:
            xy = (xy[0] + s.copy_nudge[0], xy[1] + s.copy_nudge[1])
            tries += 1
        st.node_xy[c.id] = xy


# --- 3. wires between nodes ----------------------------------------------------------


def _route_wires(st: LayoutState) -> None:
    """Every wire between two different nodes: an arc in its row, or a (bent) line."""
    d, m = st.d, st.style.box_margin
    boxes_of = {k: (x - st.node_wh[k][0] / 2 - m, y - st.node_wh[k][1] / 2 - m,
                    x + st.node_wh[k][0] / 2 + m, y + st.node_wh[k][1] / 2 + m)
                for k, (x, y) in st.node_xy.items()}
    pair_seen: dict[tuple[int, int], int] = {}
    pair_count: dict[tuple[int, int], int] = {}
    for e in d.edges:
        if not e.is_self_loop:
            key = tuple(sorted((e.a[0], e.b[0])))
            pair_count[key] = pair_count.get(key, 0) + 1
    for i, e in enumerate(d.edges):
        if e.is_self_loop:
            continue
        key = tuple(sorted((e.a[0], e.b[0])))
        j = pair_seen.get(key, 0)
        pair_seen[key] = j + 1
        arc = st.level_of.get(("arc", i))
        if arc is not None:
            path = _arc_wire(st, i, e.a[0], e.b[0], *arc)
        else:
            others = [boxes_of[k] for k in boxes_of if k not in (e.a[0], e.b[0])]
            path = _line_wire(st, i, e.a[0], e.b[0], pair_count[key], j, others)
        st.paths.append((("edge", i), path))


def _arc_wire(st: LayoutState, i: int, u: int, v: int, side: int, level: int) -> np.ndarray:
    """An arc over (or under) the line whose apex is at the row's height."""
    pu, pv = np.array(st.node_xy[u]), np.array(st.node_xy[v])
    h = st.row_y(side, level)
    ctrl = ((pu[0] + pv[0]) / 2, 2 * h)
    apex = (float((pu[0] + pv[0]) / 2), h)
    near, far = ("above", "below") if side > 0 else ("below", "above")
    st.edge_label_cands[i] = [(apex[0], apex[1], near), (apex[0], apex[1], far)]
    st.add_angle(u, np.array(ctrl) - pu)
    st.add_angle(v, np.array(ctrl) - pv)
    return bezier(pu, ctrl, pv)


def _line_wire(st: LayoutState, i: int, u: int, v: int, m: int, j: int, others) -> np.ndarray:
    """Wire ``j`` of ``m`` parallel wires between ``u`` and ``v``; straight if alone.

    A lone straight wire that would pass behind another box (and look attached
    to it) leaves the tensor vertically and then turns towards the copy node.
    """
    pu, pv = np.array(st.node_xy[u]), np.array(st.node_xy[v])
    off = ((m - 1) / 2 - j) * (st.style.parallel_sep if m > 1 else 0.0)  # the first of parallel wires on top
    delta = pv - pu
    L = float(np.hypot(*delta)) or 1.0
    perp = np.array([-delta[1], delta[0]]) / L
    if delta[0] < 0 or (abs(delta[0]) < 1e-9 and delta[1] < 0):
        perp = -perp  # "above" means the same side for either direction
    ctrl = (pu + pv) / 2 + perp * off * 2
    path = bezier(pu, ctrl, pv) if off else np.array([pu, pv])
    if not off and crosses_boxes(path, others):
        t_end, c_end = (pu, pv) if v in st.is_copy else (pv, pu)
        bend = np.array([t_end[0], c_end[1]])
        routed = bezier(t_end, bend, c_end, st.style.routed_points)
        if v not in st.is_copy:
            routed = routed[::-1]
        if not crosses_boxes(routed, others):
            path = routed
            ctrl = bend
    mid = (pu + pv) / 2 + perp * off
    if u in st.is_copy or v in st.is_copy:
        st.edge_label_cands[i] = []  # the copy node carries the label
    else:
        sides = ["perp-", "perp+"] if off < 0 else ["perp+", "perp-"]
        st.edge_label_cands[i] = [(mid[0], mid[1], sd, tuple(perp)) for sd in sides]
    st.add_angle(u, ctrl - pu)
    st.add_angle(v, ctrl - pv)
    return path


# --- 4. dangling legs and self-loops ---------------------------------------------------


def _pick_angle(st: LayoutState, node: int, preferred: float, room: float) -> float:
    """The direction nearest ``preferred`` that keeps about ``room`` degrees from used ones."""
    used = st.used_angles[node]
    best, best_score = preferred, -math.inf
    for step in range(0, 181, st.style.angle_step):
        for sgn in ((1,) if step in (0, 180) else (1, -1)):
            a = (preferred + sgn * step) % 360.0
            gap = min((angdist(a, u) for u in used), default=180.0)
            score = min(gap, room) * 4 - step
            if score > best_score + 1e-9:
                best, best_score = a, score
    return best


def _preferred_directions(st: LayoutState, nd, centre: tuple[float, float]) -> list[float]:
    """Directions a node's loops and legs try first, in order."""
    k = nd.id
    if not st.custom and nd.kind == "tensor":
        return list(st.node_dirs.get(k, []))
    if not st.custom:  # copy node: away from the line
        side = st.level_of[("copy", k)][0]
        return [90.0 if side > 0 else 270.0]
    vx, vy = st.node_xy[k][0] - centre[0], st.node_xy[k][1] - centre[1]  # away from the centre
    base = math.degrees(math.atan2(vy, vx)) % 360.0 if abs(vx) + abs(vy) > 1e-6 else 180.0
    return [base, base + 180.0, base + 90.0, base - 90.0]


def _add_loops_and_legs(st: LayoutState) -> None:
    """Self-loops first (they need the most room), then dangling legs, node by node."""
    cx = float(np.mean([xy[0] for xy in st.node_xy.values()]))
    cy = float(np.mean([xy[1] for xy in st.node_xy.values()]))
    for nd in st.d.nodes:
        legs_here = st.leg_of_node.get(nd.id, [])
        loops_here = st.loops_of_node.get(nd.id, [])
        if not legs_here and not loops_here:
            continue
        prefs = _preferred_directions(st, nd, (cx, cy))
        q = 0
        for i in loops_here:
            _add_self_loop(st, nd.id, i, prefs[q] if q < len(prefs) else 90.0)
            q += 1
        for i in legs_here:
            pref = prefs[q] if q < len(prefs) else (prefs[-1] + st.style.leg_next if prefs else 0.0)
            _add_leg(st, nd.id, i, pref)
            q += 1


def _add_self_loop(st: LayoutState, k: int, i: int, pref: float) -> None:
    """A teardrop loop leaving node ``k`` around direction ``pref``."""
    s = st.style
    a = _pick_angle(st, k, pref, s.loop_room)
    st.used_angles[k].extend([a, (a - s.loop_reserve) % 360, (a + s.loop_reserve) % 360])
    ux, uy = math.cos(math.radians(a)), math.sin(math.radians(a))
    r0 = boundary(st.node_wh[k], st.node_kind[k], ux, uy, s.copy_r)
    p = np.array(st.node_xy[k])

    def at(angle: float, r: float) -> np.ndarray:
        return p + r * np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])

    path = cubic(at(a - s.loop_foot, r0), at(a - s.loop_ctrl_angle, r0 + s.loop_reach),
                 at(a + s.loop_ctrl_angle, r0 + s.loop_reach), at(a + s.loop_foot, r0))
    tip = p + (r0 + s.loop_tip * s.loop_reach * math.cos(math.radians(s.loop_ctrl_angle))) * np.array([ux, uy])
    st.paths.append((("edge", i), np.vstack([p, path, p])))
    st.edge_label_cands[i] = [(tip[0], tip[1], "dir", (ux, uy))]


def _add_leg(st: LayoutState, k: int, i: int, pref: float) -> None:
    """A straight dangling leg out of node ``k`` near direction ``pref``."""
    s = st.style
    a = _pick_angle(st, k, pref, s.leg_room)
    st.used_angles[k].append(a)
    ux, uy = math.cos(math.radians(a)), math.sin(math.radians(a))
    r0 = boundary(st.node_wh[k], st.node_kind[k], ux, uy, s.copy_r)
    p = np.array(st.node_xy[k])
    length = s.leg_len if st.node_kind[k] == "tensor" else s.leg_len * s.copy_leg_scale
    end = p + (r0 + length) * np.array([ux, uy])
    st.paths.append((("leg", i), np.array([p, end])))
    st.leg_label_cands[i] = (end[0], end[1], ux, uy)
