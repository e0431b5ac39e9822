"""Sizes, distances, angles and text metrics of the diagram drawings (private)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._graph import Diagram


@dataclass(frozen=True)
class DiagramStyle:
    """Every spacing constant of the layout: inches, points (fonts) and degrees (angles).

    The defaults are the book's style; :func:`helpers.notation.Diagram.layout`
    uses :data:`STYLE`.
    """

    # text
    node_fontsize: float = 12.0
    leg_fontsize: float = 9.5
    # node shapes
    node_h: float = 0.42  # height of a tensor box
    node_min_w: float = 0.46  # narrowest tensor box
    node_text_margin: float = 0.22  # box width beyond its name
    copy_r: float = 0.065  # radius of a copy dot
    # operands on a line
    min_gap: float = 0.75  # between neighbouring boxes
    gap_label_margin: float = 0.28  # a gap is at least its wire's label plus this
    level_y: float = 0.78  # height of the first row of arcs / copy nodes
    level_dy: float = 0.85  # extra height per further row
    row_clear: float = 0.45  # half-width of a copy node's slot in its row, in line positions
    vertical_cone: float = 46.0  # a leg closer than this to vertical blocks the first row
    diagonals: tuple[float, ...] = (135.0, 45.0, 225.0, 315.0)  # leg directions after the first choices
    # operands at given positions
    free_row_drop: float = 1.4  # unplaced operands go this far below the lowest one
    free_row_step: float = 1.4  # and this far apart
    copy_drop: float = 0.8  # a copy node with one neighbour hangs this far below it
    copy_clear: float = 0.45  # a copy node keeps this far (in x and in y) from every node
    copy_nudge: tuple[float, float] = (0.25, -0.55)  # step that moves it away
    copy_nudge_tries: int = 20
    # wires
    box_margin: float = 0.04  # a straight wire must keep this far from other boxes
    parallel_sep: float = 0.5  # between parallel wires at their middle
    routed_points: int = 32  # points of a wire routed around a box
    leg_len: float = 0.42  # dangling leg beyond the node outline
    copy_leg_scale: float = 0.9  # a copy node's leg is this much shorter
    leg_room: float = 50.0  # angle (deg) a leg wants free around it
    leg_next: float = 45.0  # the next leg's direction after the preferred ones ran out
    angle_step: int = 5  # directions tried, in degrees
    loop_room: float = 75.0  # angle (deg) a self-loop wants free
    loop_reserve: float = 25.0  # angles it reserves either side of its direction
    loop_foot: float = 28.0  # its two ends leave the node this far either side
    loop_ctrl_angle: float = 40.0  # its control points sit this far either side
    loop_reach: float = 0.95  # and this far beyond the outline
    loop_tip: float = 0.75  # label anchor, as a fraction of the reach
    # labels
    pad: float = 0.03  # around a label's text box
    label_gap_x: float = 0.05  # between a label and its anchor
    label_gap_y: float = 0.04
    label_dir_gap: float = 0.02  # extra gap for labels beyond a leg end
    label_slides: tuple[float, ...] = (0.15, -0.15, 0.3, -0.3, 0.5, -0.5)  # fallback shifts
    copy_label_slide: float = 0.15
    node_label_clear: float = 0.03  # labels keep this far from nodes
    overlap_weight: float = 100.0  # score per square inch over a node or another label
    touch_penalty: float = 1.0  # score for touching another label at all
    wire_point_penalty: float = 0.2  # score per wire point under the label
    rank_penalty: float = 0.01  # score per rank in the candidate list
    # a bare wire (the identity)
    bare_wire_len: float = 1.1
    bare_wire_gap: float = 0.07  # between its ends and their labels
    margin: float = 0.1  # around everything


#: The book's style.
STYLE = DiagramStyle()

PALETTE = ["#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6", "#ffe699", "#9edae5", "#d9d9d9"]


@functools.lru_cache(maxsize=4096)
def text_wh(s: str, size: float) -> tuple[float, float]:
    """Width and height in inches of a string at ``size`` points (no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    w, _, _ = TextToPath().get_text_width_height_descent(s, FontProperties(size=size), ismath="$" in s)
    return w / 72.0 + 0.02, 1.45 * size / 72.0


_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "lambda", "mu", "sigma", "Sigma", "phi", "psi",
    "theta", "rho", "tau", "Lambda", "Phi", "Psi", "Delta", "Gamma", "omega", "Omega", "pi",
}


def tex_name(name: str) -> str:
    """``W_Q`` -> ``$W_{Q}$``, ``U^T`` -> ``$U^{T}$``; other names as given."""
    if "$" in name:
        return name
    m = re.fullmatch(r"([A-Za-z\u0370-\u03ff]+)(\d+)", name)
    if m and (len(m.group(1)) <= 3 or m.group(1) in _GREEK):  # T0 -> T_0
        name = f"{m.group(1)}_{m.group(2)}"
    m = re.fullmatch(r"([A-Za-z\u0370-\u03ff]+)(?:_([A-Za-z0-9]+))?(?:\^([A-Za-z0-9]+))?", name)
    if not m or len(m.group(1)) > 3 and m.group(1) not in _GREEK:
        return name
    base = m.group(1)
    if base in _GREEK:
        base = "\\" + base
    s = base
    if m.group(2):
        s += "_{" + m.group(2) + "}"
    if m.group(3):
        s += "^{" + m.group(3) + "}"
    return "$" + s + "$"


def leg_text(d: Diagram, index: str, dim: int | None, show_dims: bool) -> str:
    """The label of a wire: its index (or display name), with ``(dim)`` if asked."""
    name = d.index_names.get(index, index)
    shown = f"${name}$" if len(name) == 1 and name.isalpha() and "$" not in name else name
    if show_dims and dim is not None:
        return f"{shown} ({dim})"
    return shown
