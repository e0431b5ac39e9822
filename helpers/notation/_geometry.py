"""Curves, outlines, angles and box tests for the layout (private)."""
from __future__ import annotations

import math

import numpy as np


def bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    """``n`` points of the quadratic Bezier curve with control point ``p1``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def cubic(p0, p1, p2, p3, n: int = 32) -> np.ndarray:
    """``n`` points of the cubic Bezier curve with control points ``p1``, ``p2``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, float) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def boundary(wh: tuple[float, float], kind: str, ux: float, uy: float, copy_r: float) -> float:
    """Distance from a node's centre to its outline along the unit vector (ux, uy)."""
    if kind == "copy":
        return copy_r
    hw, hh = wh[0] / 2, wh[1] / 2
    tx = hw / abs(ux) if abs(ux) > 1e-9 else math.inf
    ty = hh / abs(uy) if abs(uy) > 1e-9 else math.inf
    return min(tx, ty)


def crosses_boxes(path: np.ndarray, boxes) -> bool:
    """Whether a polyline (``N x 2``) passes through any of the boxes (x0, y0, x1, y1).

    An exact segment-rectangle test (``matplotlib.path.Path.intersects_bbox``
    with ``filled=False``: the polyline is a wire, not a filled shape).
    """
    from matplotlib.path import Path
    from matplotlib.transforms import Bbox

    wire = Path(np.asarray(path, float))
    return any(wire.intersects_bbox(Bbox.from_extents(*b), filled=False) for b in boxes)


def angdist(a: float, b: float) -> float:
    """Distance between two directions, in degrees (0-180)."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def boxes_overlap(a, b, tol: float = 0.0) -> bool:
    """Whether boxes ``(x0, y0, x1, y1)`` overlap by more than ``tol`` on both axes.

    Strict: boxes that only touch do not overlap.  (``Bbox.overlaps`` counts
    touching boxes and swaps inverted extents, so ``tol`` could not be had by
    shrinking the boxes; the layout's result is the same either way.)
    """
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


def overlap_area(a, b) -> float:
    """Area shared by two boxes ``(x0, y0, x1, y1)``."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)
