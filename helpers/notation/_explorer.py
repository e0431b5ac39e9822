"""The interactive einsum explorer and its text summary (private; static twin: ``gallery``)."""
from __future__ import annotations

import re

from ._graph import Diagram, diagram
from ._parse import Shape, parse_einsum


def _shapes_for(expr: str, dims_text: str, default: int) -> list[Shape]:
    inputs, _ = parse_einsum(expr)
    size: dict[str, int] = {}
    for part in re.split(r"[,\s]+", dims_text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z])=(\d+)", part)
        if not m:
            raise ValueError(f"sizes must look like 'i=3 j=4', could not read {part!r}")
        size[m.group(1)] = int(m.group(2))
    return [tuple(size.get(ch, default) for ch in sub) for sub in inputs]


def explore(expr: str, dims_text: str = "", default: int = 3) -> tuple[Diagram, str]:
    """What :func:`einsum_explorer` shows for one input: the diagram and a text summary.

    Parameters
    ----------
    expr : str
        Einsum expression.
    dims_text : str
        Sizes of some indices, e.g. ``"i=3 j=4"``.
    default : int
        Size of every other index.

    Chapter 1 uses it through :func:`einsum_explorer`.

    >>> d, text = explore("ij,jk->ik", "i=2", 3)
    >>> d.shape
    (2, 3)
    """
    shapes = _shapes_for(expr, dims_text, default)
    d = diagram(expr, *shapes)
    c = d.cost()
    lines = [
        f"result shape: {d.shape}",
        f"nodes: {len(d.tensor_nodes)} tensors, {len(d.copy_nodes)} copy; "
        f"edges: {len(d.bonds)}; self-loops: {len(d.self_loops)}; dangling legs: {len(d.dangling)}",
        f"best order {c.optimal_path}: {c.optimal_flops:,} FLOPs, largest intermediate {c.optimal_largest_intermediate:,}",
        f"one big loop over all indices: {c.naive_flops:,} FLOPs",
    ]
    return d, "\n".join(lines)


def einsum_explorer(expr: str = "bij,bjk->bik", dims: str = "", default: int = 3, static_values=None):
    """An interactive figure: type an einsum, see its diagram, shape and cost.

    A :func:`helpers.widgets.interactive_figure`: live in Jupyter; in the HTML
    book a static copy at ``static_values`` (a list of dicts with keys
    ``expr``, ``dims``, ``default``; default: the initial setting), and the
    book shows :func:`gallery` beside it.

    Returns
    -------
    helpers.widgets.InteractiveFigure

    Used in chapter 1.
    """
    if not isinstance(expr, str) or not isinstance(dims, str):
        raise TypeError(f"expr and dims must be strings, got {type(expr).__name__} and {type(dims).__name__}")
    if isinstance(default, bool) or not isinstance(default, int) or default < 1:
        raise TypeError(f"default must be a positive int (the size of an index not named in dims), got {default!r}")
    import ipywidgets as widgets

    from helpers.widgets import interactive_figure

    def draw(fig, expr, dims, default):
        # plain axes (no grid spec): the diagram keeps its aspect by shrinking its box
        ax_diagram, ax_text = fig.add_axes((0, 0.22, 1, 0.78)), fig.add_axes((0, 0, 1, 0.2))
        ax_text.axis("off")
        try:
            d, info = explore(expr, dims, default)
        except (ValueError, TypeError) as err:
            ax_diagram.axis("off")
            ax_diagram.text(0.5, 0.5, f"Error: {err}", ha="center", va="center", wrap=True, fontsize=11,
                            color="#b00020", transform=ax_diagram.transAxes)
            return
        d.draw(ax=ax_diagram)
        ax_text.text(0, 1, info, va="top", family="monospace", fontsize=8)

    controls = {
        "expr": widgets.Text(value=expr, description="einsum", continuous_update=False,
                             layout=widgets.Layout(width="420px")),
        "dims": widgets.Text(value=dims, description="sizes", placeholder="e.g. i=3 j=4",
                             continuous_update=False, layout=widgets.Layout(width="420px")),
        "default": widgets.IntSlider(value=default, min=1, max=64, description="other sizes",
                                     continuous_update=False),
    }
    return interactive_figure(draw, controls, static_values=static_values, figsize=(7.5, 5.0), ncols=1,
                              caption="A static copy of the einsum explorer at its initial expression; run this "
                                      "page in Jupyter to type your own.")
