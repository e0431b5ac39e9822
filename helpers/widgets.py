"""Interactive figures: a live widget in a kernel, its static twin in the HTML book.

The built HTML book has no kernel, so a widget there would look live and do
nothing. :func:`interactive_figure` therefore builds both from one draw
function: the live widget (controls + the figure, redrawn on every change) and
a static grid of the same figure at a few chosen settings. Its output carries
both; Jupyter shows the widget, the HTML book (whose ``_config.yml`` ranks
widget views below HTML) shows the static grid with a caption saying so.

Used on the "how to use this book" page and in chapters 1, 3 and 4.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch

from helpers._util import attention_patterns as _patterns
from helpers._util import check_int as _check_int
from helpers._util import check_positive_int as _check_positive_int
from helpers.plotting import attention_heatmap, pattern_grid

__all__ = ["InteractiveFigure", "interactive_figure", "pattern_explorer", "pattern_explorer_static"]


def _control(name: str, spec: Any):
    """An ipywidgets control from a widget, a ``range`` (slider) or a list of options (drop-down)."""
    import ipywidgets as W

    if isinstance(spec, W.ValueWidget):
        return spec
    if isinstance(spec, range):
        if len(spec) == 0:
            raise ValueError(f"controls[{name!r}] is an empty range")
        return W.IntSlider(value=spec.start, min=spec.start, max=spec[-1], step=spec.step, description=name,
                           continuous_update=False)
    if isinstance(spec, (list, tuple)) and spec:
        return W.Dropdown(options=list(spec), description=name)
    raise TypeError(f"controls[{name!r}] must be an ipywidgets control, a non-empty range or a non-empty "
                    f"list of options, got {spec!r}")


class InteractiveFigure:
    """A figure with controls (see :func:`interactive_figure`).

    Attributes
    ----------
    controls : dict of ipywidgets controls, by the draw function's argument names
    widget : ipywidgets.VBox
        The controls and an output area holding the current figure.
    """

    def __init__(self, draw: Callable, controls: Mapping[str, Any], static_values: Sequence[Mapping] | None,
                 figsize: tuple[float, float], ncols: int, caption: str | None) -> None:
        import ipywidgets as W

        if not callable(draw):
            raise TypeError(f"draw must be callable (fig, **values) -> None, got {type(draw).__name__}")
        if not isinstance(controls, Mapping) or not controls:
            raise TypeError("controls must be a non-empty dict {argument name: control}")
        self.draw, self.figsize, self.ncols, self.caption = draw, figsize, ncols, caption
        self.controls = {name: _control(name, spec) for name, spec in controls.items()}
        self.static_values = [dict(v) for v in static_values] if static_values is not None else None
        for v in self.static_values or []:
            unknown = set(v) - set(self.controls)
            if unknown:
                raise ValueError(f"static_values has {sorted(unknown)}, which are not controls {list(self.controls)}")
        self._out = W.Output()
        for c in self.controls.values():
            c.observe(self.redraw, names="value")
        self._box = W.VBox([W.HBox(list(self.controls.values())), self._out])
        self._drawn = False

    @property
    def widget(self):
        """The live widget (drawn when first asked for, so that building the static twin alone draws once)."""
        if not self._drawn:
            self.redraw()
        return self._box

    @property
    def values(self) -> dict:
        """The controls' current values."""
        return {name: c.value for name, c in self.controls.items()}

    def figure(self, **values):
        """The figure at ``values`` (the current ones for those not given)."""
        fig = plt.figure(figsize=self.figsize, layout="constrained")
        self.draw(fig.subfigures(1, 1), **{**self.values, **values})  # a SubFigure, as in the static grid
        return fig

    def redraw(self, *_) -> None:
        self._drawn = True
        with self._out:
            self._out.clear_output(wait=True)
            fig = self.figure()
            plt.show()
            plt.close(fig)

    def static_figure(self):
        """The static twin: one panel (a subfigure) per entry of ``static_values``."""
        values = self.static_values if self.static_values else [{}]
        n = len(values)
        ncols = min(self.ncols, n)
        nrows = -(-n // ncols)
        w, h = self.figsize
        fig = plt.figure(figsize=(w * ncols, h * nrows), layout="constrained")
        subs = fig.subfigures(nrows, ncols, squeeze=False)
        for i, sub in enumerate(subs.flat):
            if i < n:
                self.draw(sub, **{**self.values, **values[i]})
        return fig

    def _static_html(self) -> str:
        fig = self.static_figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=plt.rcParams["figure.dpi"])
        plt.close(fig)
        img = base64.b64encode(buf.getvalue()).decode("ascii")
        caption = self.caption or ("A static copy of an interactive figure; run this page in Jupyter to "
                                   "change " + ", ".join(self.controls) + ".")
        return (f'<figure class="interactive-figure-static"><img src="data:image/png;base64,{img}" '
                f'alt="{html.escape(caption)}" style="max-width:100%"/><figcaption>{html.escape(caption)}'
                "</figcaption></figure>")

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = dict(self.widget._repr_mimebundle_())
        data["text/html"] = self._static_html()
        return data


def interactive_figure(draw: Callable, controls: Mapping[str, Any], static_values: Sequence[Mapping] | None = None,
                       *, figsize: tuple[float, float] = (6.5, 4.0), ncols: int = 2,
                       caption: str | None = None) -> InteractiveFigure:
    """One draw function, shown as a live widget in a kernel and as a static grid in the HTML.

    Parameters
    ----------
    draw : callable ``(fig, **values) -> None``
        Draws onto ``fig`` (a matplotlib ``SubFigure``: make axes with
        ``fig.subplots(...)``) for one setting of the controls.
    controls : dict
        ``{argument name: control}``; a control is an ipywidgets control, a
        ``range`` (an integer slider) or a list of options (a drop-down;
        ``(label, value)`` pairs allowed). The first option / start is the
        initial value.
    static_values : list of dict, optional
        The settings drawn side by side in the static twin (missing arguments
        take the controls' initial values). None: the initial setting only.
    figsize : (float, float)
        Size of one figure (of one panel of the static grid).
    ncols : int
        Panels per row of the static grid.
    caption : str, optional
        Caption under the static grid in the HTML.

    Returns
    -------
    InteractiveFigure
        Display it (last expression of a cell): Jupyter shows the widget, the
        HTML book the static grid. ``.static_figure()`` returns the grid as a
        matplotlib figure, ``.widget`` the widget.

    >>> def draw(fig, k):
    ...     fig.subplots().plot(range(5), [x ** k for x in range(5)])
    >>> f = interactive_figure(draw, {"k": range(1, 4)}, static_values=[{"k": 1}, {"k": 3}])
    >>> f.values, len(f.static_figure().subfigs)
    ({'k': 1}, 2)
    """
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    return InteractiveFigure(draw, controls, static_values, tuple(figsize), ncols, caption)


def pattern_explorer(model, tokens: torch.Tensor, layer: int = 0, n_static: int = 4) -> InteractiveFigure:
    """Pick a sequence and a head, see its attention pattern (an :func:`interactive_figure`).

    tokens: [batch, pos]. The static twin shows head 0 on the first
    ``n_static`` sequences.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a tensor [batch, pos], got {type(tokens).__name__}")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    _check_int(layer, "layer")
    _check_positive_int(n_static, "n_static")
    patterns = _patterns(model, tokens, layer)  # [batch, n_heads, q, k]

    def draw(fig, seq: int, head: int) -> None:
        attention_heatmap(patterns[seq, head], tokens[seq].tolist(), ax=fig.subplots(),
                          title=f"layer {layer}, head {head}, sequence {seq}")

    n = min(n_static, tokens.shape[0])
    return interactive_figure(draw, {"seq": range(tokens.shape[0]), "head": list(range(model.cfg.n_heads))},
                              static_values=[{"seq": i} for i in range(n)], figsize=(3.8, 3.3), ncols=min(n, 2),
                              caption=f"Head 0 of layer {layer} on sequences 0-{n - 1}. Run this page in "
                                      "Jupyter to pick any sequence and head.")


def pattern_explorer_static(model, tokens: torch.Tensor, layer: int = 0, head: int = 0, n: int = 4,
                            titles: Sequence[str] | None = None):
    """A grid of one head's patterns on the first ``n`` sequences; returns the figure."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise TypeError(f"tokens must be a tensor [batch, pos], got {getattr(tokens, 'shape', type(tokens).__name__)}")
    _check_int(layer, "layer")
    _check_int(head, "head")
    _check_positive_int(n, "n")
    if titles is not None and (isinstance(titles, str) or not isinstance(titles, (list, tuple))):
        raise TypeError(f"titles must be a list of strings or None, got {titles!r}")
    patterns = _patterns(model, tokens[:n], layer)[:, head]
    titles = titles or [f"sequence {i}" for i in range(patterns.shape[0])]
    return pattern_grid(patterns, None, titles=titles, ncols=n)
