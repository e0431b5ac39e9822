"""Drawing layouts with matplotlib: one diagram, an equation of diagrams, a gallery (private)."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._graph import Diagram, network_diagram
from ._layout import Layout
from ._style import PALETTE, STYLE, text_wh


@dataclass
class Drawing:
    """What :meth:`Diagram.draw` made.

    Attributes
    ----------
    fig, ax : matplotlib Figure and Axes
    layouts : list of Layout
        The layouts drawn (one for a single diagram), already shifted.
    texts : dict
        Text artist of every label, keyed like :attr:`Layout.labels`
        (prefixed with the layout's position for several layouts).

    Chapter 1 uses it through :func:`draw_equation`.
    """

    fig: Any
    ax: Any
    layouts: list[Layout]
    texts: dict[tuple, Any]

    @property
    def layout(self) -> Layout:
        return self.layouts[0]

    def label_boxes(self) -> dict[tuple, tuple[float, float, float, float]]:
        """Rendered bounding box of every label, in data units (inches)."""
        renderer = self.fig.canvas.get_renderer()
        inv = self.ax.transData.inverted()
        out = {}
        for key, t in self.texts.items():
            bb = t.get_window_extent(renderer)
            (x0, y0), (x1, y1) = inv.transform([[bb.x0, bb.y0], [bb.x1, bb.y1]])
            out[key] = (float(x0), float(y0), float(x1), float(y1))
        return out

    def savefig(self, *args, **kwargs):
        kwargs.setdefault("dpi", 150)
        return self.fig.savefig(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Drawing of {len(self.layouts)} diagram{'s' * (len(self.layouts) != 1)}>"


def render(items, ax=None, title=None, ops=(), scale: float = 1.0) -> Drawing:
    """Draw shifted layouts (and operator strings such as '=') into one axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch

    layouts = [lay.shifted(dx, dy) for lay, dx, dy in items]
    x0 = min(l.extent[0] for l in layouts)
    y0 = min(l.extent[1] for l in layouts)
    x1 = max(l.extent[2] for l in layouts)
    y1 = max(l.extent[3] for l in layouts)
    title_h = 0.0
    if title:
        title_h = 0.32
        y1 += title_h
    width, height = x1 - x0, y1 - y0
    if ax is None:
        fig = plt.figure(figsize=(max(width, 0.8) * scale, max(height, 0.5) * scale))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(x0, x0 + max(width, 0.8))
    ax.set_ylim(y0, y0 + max(height, 0.5))
    ax.set_aspect("equal", adjustable="datalim" if ax.get_subplotspec() is not None else "box")
    ax.axis("off")
    texts: dict[tuple, Any] = {}
    multi = len(layouts) > 1
    for j, lay in enumerate(layouts):
        for key, p in lay.paths:
            ax.plot(p[:, 0], p[:, 1], color="0.25", lw=1.6, solid_capstyle="round", zorder=1)
        for k, (x, y) in lay.node_xy.items():
            w, h = lay.node_wh[k]
            if lay.node_kind[k] == "copy":
                ax.add_patch(Circle((x, y), STYLE.copy_r, fc="0.1", ec="0.1", zorder=3))
            else:
                role = lay.node_role.get(k)  # a frozen value or a 0/1 mask: dashed (and hatched) outline
                ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                            boxstyle="round,pad=0,rounding_size=0.09",
                                            fc=lay.node_color.get(k, PALETTE[0]), ec="0.15",
                                            lw=1.8 if role else 1.3, ls=(0, (3, 2)) if role else "-",
                                            hatch="//" if role == "mask" else None, zorder=3))
        for lab in lay.labels:
            node = lab.key[0] == "node"
            t = ax.text(lab.x, lab.y, lab.text, ha="center", va="center", fontsize=lab.size,
                        color=lab.color, zorder=4 if node else 5)
            if not node:
                t.set_bbox(dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.8))
            texts[(j,) + lab.key if multi else lab.key] = t
    for x, y, s in ops:
        t = ax.text(x, y, s, ha="center", va="center", fontsize=16, zorder=5)
        texts[("op", len(texts))] = t
    if title:
        t = ax.text((x0 + x1) / 2, y1 - title_h / 2, title, ha="center", va="center", fontsize=10.5, zorder=5)
        texts[("title",)] = t
    return Drawing(fig, ax, layouts, texts)


def draw_equation(*terms: Any, ax=None, title: str | None = None, show_dims: bool = True) -> Drawing:
    """Draw diagrams side by side with operators between them.

    Parameters
    ----------
    *terms : Diagram or str
        Diagrams, and strings such as ``"="``, ``"+"``, ``"≈"`` placed between.

    Used in chapter 1 (``U^T U = I``, the SVD, the bias trick).
    """
    items = []
    ops = []
    x = 0.0
    for t in terms:
        if isinstance(t, str):
            x += 0.15
            ops.append((x + 0.12, 0.0, t))
            x += 0.39
            continue
        if not isinstance(t, Diagram):
            raise TypeError(f"draw_equation takes Diagrams and strings, got {type(t).__name__}")
        lay = t.layout(show_dims=show_dims)
        items.append((lay, x - lay.extent[0], 0.0))
        x += lay.width
    return render(items, ax=ax, title=title, ops=ops)


def gallery(diagrams: Sequence[Diagram], titles: Sequence[str] | None = None, ncols: int = 3,
            show_dims: bool = True):
    """A grid of diagrams at true scale (one inch per unit), with titles.

    Returns the matplotlib figure.  Used in chapter 1 as the static twin of
    :func:`einsum_explorer`.
    """
    import matplotlib.pyplot as plt

    lays = [d.layout(show_dims=show_dims) for d in diagrams]
    titles = list(titles) if titles is not None else [d.expr for d in diagrams]
    if len(titles) != len(lays):
        raise ValueError(f"titles must give one title per diagram ({len(lays)}), got {len(titles)}")
    n = len(lays)
    if n == 0:
        raise ValueError("gallery needs at least one diagram")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    title_h = [0.2 + 0.2 * (str(t).count("\n") + 1) for t in titles]
    # column widths and row heights; every diagram in a row sits on the same baseline (y = 0)
    def title_w(t):
        return max(text_wh(line, 9.5)[0] * 1.15 for line in str(t).split("\n"))

    col_w = [max(max(lays[k].width, title_w(titles[k])) for k in range(c, n, ncols)) + 0.45
             for c in range(ncols)]
    rows = [list(range(r * ncols, min(n, (r + 1) * ncols))) for r in range(nrows)]
    row_top = [max(lays[k].extent[3] for k in row) for row in rows]
    row_bot = [min(lays[k].extent[1] for k in row) for row in rows]
    row_th = [max(title_h[k] for k in row) for row in rows]
    row_h = [t - b + th + 0.35 for t, b, th in zip(row_top, row_bot, row_th)]
    W, H = sum(col_w), sum(row_h)
    fig = plt.figure(figsize=(W, H))
    for r, row in enumerate(rows):
        base = H - sum(row_h[: r + 1]) + 0.3  # bottom of this row, in inches
        for k in row:
            lay, c = lays[k], k % ncols
            left = sum(col_w[:c]) + (col_w[c] - lay.width) / 2
            bottom = base + (lay.extent[1] - row_bot[r])
            ax = fig.add_axes((left / W, bottom / H, lay.width / W, lay.height / H))
            render([(lay, 0.0, 0.0)], ax=ax)
            einsum_like = re.fullmatch(r"[A-Za-z,]*->[A-Za-z]*", str(titles[k]).split("\n")[0]) is not None
            top = bottom + lay.height  # each title sits just above its own diagram
            fig.text((sum(col_w[:c]) + col_w[c] / 2) / W, (top + title_h[k] / 2 - 0.05) / H,
                     titles[k], ha="center", va="center", fontsize=9.5,
                     family="monospace" if einsum_like else None)
    return fig


def draw_network(nodes: Iterable[Any], ax=None, *, title: str | None = None, colors: Any = None) -> Drawing:
    """Draw a ``tensornetwork`` network (a list of nodes) in the book's style.

    Used in chapter 1.
    """
    return network_diagram(nodes, colors=colors).draw(ax=ax, title=title)
