"""The interactive einsum explorer and its text summary (private; static twin: ``gallery``)."""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from ._graph import Diagram, diagram
from ._parse import Shape, parse_einsum


def _shapes_for(expr: str, dims_text: str, default: int) -> List[Shape]:
    inputs, _ = parse_einsum(expr)
    size: Dict[str, int] = {}
    for part in re.split(r"[,\s]+", dims_text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z])=(\d+)", part)
        if not m:
            raise ValueError(f"sizes must look like 'i=3 j=4', could not read {part!r}")
        size[m.group(1)] = int(m.group(2))
    return [tuple(size.get(ch, default) for ch in sub) for sub in inputs]


def explore(expr: str, dims_text: str = "", default: int = 3) -> Tuple[Diagram, str]:
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


def einsum_explorer(expr: str = "bij,bjk->bik", dims: str = "", default: int = 3):
    """An ipywidgets explorer: type an einsum, see its diagram, shape and cost.

    Needs a live kernel; the book shows :func:`gallery` beside it.

    Returns
    -------
    ipywidgets.VBox

    Used in chapter 1.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    text = widgets.Text(value=expr, description="einsum", continuous_update=False,
                        layout=widgets.Layout(width="420px"))
    sizes = widgets.Text(value=dims, description="sizes", placeholder="e.g. i=3 j=4",
                         continuous_update=False, layout=widgets.Layout(width="420px"))
    dflt = widgets.IntSlider(value=default, min=1, max=64, description="other sizes", continuous_update=False)
    out = widgets.Output()

    def update(*_):
        with out:
            out.clear_output(wait=True)
            try:
                d, info = explore(text.value, sizes.value, dflt.value)
            except (ValueError, TypeError) as err:
                print(f"Error: {err}")
                return
            drawing = d.draw()
            display(drawing.fig)
            plt.close(drawing.fig)
            print(info)

    for w in (text, sizes, dflt):
        w.observe(update, names="value")
    update()
    return widgets.VBox([text, sizes, dflt, out])
