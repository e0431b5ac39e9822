"""Shared figures: training curves and attention patterns.

Every function draws on a matplotlib ``Axes`` (made if not given) and returns
it, so pages can compose figures. Used throughout the book.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from helpers._util import check_positive_int
from helpers._util import to_numpy as _to_numpy

__all__ = ["training_curves", "attention_heatmap", "pattern_grid", "setup_page", "PageTimer"]

# Figures are read on phones too (390 px wide): fonts large enough to read there.
PAGE_STYLE = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 11,
              "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10}


class PageTimer:
    """Wall time since a page started; ``seconds`` is read at the end of the page."""

    def __init__(self) -> None:
        import time

        self._clock = time.perf_counter
        self._t0 = self._clock()

    @property
    def seconds(self) -> float:
        return self._clock() - self._t0


def setup_page(threads: int = 1, style: dict | None = None) -> PageTimer:
    """The first cell of every chapter: torch threads, the figure style, a timer.

    One torch thread is the fastest setting for the book's small models on a
    laptop and many times faster than two when anything else is running; set
    ``OPENBLAS_NUM_THREADS=1`` in the environment as well (before numpy is
    imported) for the same reason. ``style`` updates matplotlib's rcParams on
    top of :data:`PAGE_STYLE`. Returns a :class:`PageTimer`.

    >>> timer = setup_page(threads=1)
    >>> import torch; torch.get_num_threads()
    1
    >>> timer.seconds >= 0
    True

    Meant for the first cell of every chapter page; no page uses it yet.
    """
    import torch

    check_positive_int(threads, "threads")
    if style is not None and not isinstance(style, dict):
        raise TypeError(f"style must be a dict of matplotlib rcParams, got {type(style).__name__}")
    torch.set_num_threads(threads)
    plt.rcParams.update({**PAGE_STYLE, **(style or {})})
    _plain_numpy_scalars()
    return PageTimer()


def _plain_numpy_scalars() -> None:
    """Show numpy scalars as plain numbers in a kernel (``0.5``, not ``np.float64(0.5)``).

    numpy 2 writes ``np.float64(0.5)`` as a scalar's repr; myst-nb's ``glue``
    stores that text and then cannot apply a format such as ``:.3f`` to it.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of ipywidgets
        return
    shell = get_ipython()
    if shell is None:
        return
    plain = shell.display_formatter.formatters["text/plain"]
    # concrete types: IPython stops at the first class in the MRO that defines __repr__
    for typ in (np.float16, np.float32, np.float64, np.longdouble):
        plain.for_type(typ, lambda x, p, cycle: p.text(repr(float(x))))
    for typ in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        plain.for_type(typ, lambda x, p, cycle: p.text(repr(int(x))))
    plain.for_type(np.bool_, lambda x, p, cycle: p.text(repr(bool(x))))


def training_curves(history: dict, keys: Sequence[str], ax=None, logx: bool = False, logy: bool = False,
                    title: str | None = None):
    """Plot ``history[key]`` against ``history["step"]`` for each key.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> ax = training_curves({"step": [0, 1, 2], "loss": [3.0, 2.0, 1.0]}, ["loss"])
    >>> [line.get_label() for line in ax.get_lines()]
    ['loss']
    """
    if "step" not in history:
        raise ValueError("history needs a 'step' list")
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history has no {missing}; available: {sorted(history)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.asarray(history["step"], dtype=float)
    for k in keys:
        x = steps
        if logx:
            x = np.maximum(steps, 1)
        ax.plot(x, history[k], label=k)
    ax.set_xlabel("step")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def attention_heatmap(pattern, tokens: Sequence | None = None, ax=None, title: str | None = None,
                      vmax: float = 1.0, colorbar: bool = True):
    """Draw one attention pattern ``[query_pos, key_pos]`` (rows attend to columns)."""
    pattern = _to_numpy(pattern)
    if pattern.ndim != 2:
        raise ValueError(f"pattern must be [query_pos, key_pos], got shape {pattern.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2))
    im = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=vmax)
    nq, nk = pattern.shape
    if tokens is not None:
        labels = [str(t) for t in tokens]
        ax.set_xticks(range(nk), labels[-nk:] if len(labels) >= nk else labels)
        ax.set_yticks(range(nq), labels[-nq:] if len(labels) >= nq else labels)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def pattern_grid(patterns, tokens: Sequence | None = None, titles: Sequence[str] | None = None,
                 ncols: int = 4, size: float = 2.6):
    """Small multiples of patterns ``[n, query_pos, key_pos]``; returns the figure."""
    patterns = _to_numpy(patterns)
    if patterns.ndim != 3:
        raise ValueError(f"patterns must be [n, query_pos, key_pos], got shape {patterns.shape}")
    n = patterns.shape[0]
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        attention_heatmap(patterns[i], tokens, ax=ax, colorbar=False,
                          title=titles[i] if titles is not None else None)
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
    fig.tight_layout()
    return fig
