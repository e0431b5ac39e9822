"""Graphical tensor notation: einsum expressions as tensor diagrams.

Chapter 1 of the book teaches the picture language of Taylor (2024) in which a
tensor is a box with one leg per index and joining two legs sums over that
index.  This module turns an einsum expression into that picture and back:

* :func:`diagram` parses ``"ij,jk->ik"`` (with arrays or shapes) into a
  :class:`Diagram` -- a small graph of tensor nodes, copy (delta) nodes,
  edges, self-loops and dangling output legs -- that can be inspected,
  contracted through ``tensornetwork`` (:meth:`Diagram.contract`) and drawn
  with matplotlib (:meth:`Diagram.draw`).
* :func:`draw_network` draws an existing ``tensornetwork`` network.
* :func:`contraction_cost` gives ``opt_einsum``'s count of the floating-point
  operations of a contraction order (a multiply and an add each count) and
  compares it with the best order ``opt_einsum`` finds.

How an expression becomes a graph
---------------------------------
Each index letter is a wire.  Count its *ends*: one per occurrence in an input
subscript, plus one if it appears in the output.

* 2 ends, in two different operands: an **edge** (a contraction).
* 2 ends, twice in one operand: a **self-loop** (a trace).
* 2 ends, one operand and the output: a **dangling leg**.
* any other number of ends (1, or 3 and more): a **copy tensor** node (the
  delta tensor, 1 where all its indices are equal, 0 elsewhere) with one edge
  to each occurrence, and a dangling leg of its own if the index is in the
  output.  With 1 end the copy tensor is the all-ones vector: summing over an
  index that appears once is contracting it with ones.

Implicit mode (no ``->``) follows numpy: the output is every index that
appears exactly once, in sorted (ASCII) order.  Ellipses are not supported.
Unlike numpy, a size-1 axis does not broadcast against a shared index: in a
diagram a leg has one dimension, so that is reported as a mismatch.

The package is split by concern (private modules, re-exported here):
``_parse`` (the expression and its operands), ``_graph`` (:class:`Diagram`),
``_layout`` and ``_labels`` (coordinates, one function per phase, sizes from
``_style.DiagramStyle``), ``_render`` (matplotlib), ``_cost`` (contraction
orders), ``_figures`` (chapter 1's diagrams) and ``_explorer`` (the widget); the
exercises' answer keys are in :mod:`helpers.exercises.ch1`.

Used in chapter 1.

>>> d = diagram("ij,jk->ik", (2, 3), (3, 4), names=["A", "B"])
>>> d
Diagram('ij,jk->ik': 2 tensors, 0 copy, 1 edge, 0 self-loops, 2 dangling)
>>> [(e.index, e.a, e.b) for e in d.edges]
[('j', (0, 1), (1, 0))]
>>> contraction_cost("ij,jk->ik", (2, 3), (3, 4)).flops
48
"""
from __future__ import annotations

from ._cost import ContractionCost, ContractionStep, contraction_cost, mps_norm_network, sequential_path
from ._explorer import einsum_explorer, explore
from ._figures import CHAPTER_DIAGRAMS, bias_augment, chapter_diagram, random_expression, random_isometry
from ._geometry import boxes_overlap as _boxes_overlap  # noqa: F401 - used by the tests
from ._graph import Diagram, Edge, Leg, TensorNode, diagram, identity_wire, merge_copies, network_diagram
from ._layout import LabelSpec, Layout
from ._parse import Shape, parse_einsum  # noqa: F401 - Shape: the type of parsed shapes
from ._render import Drawing, draw_equation, draw_network, gallery
from ._style import STYLE, DiagramStyle
from ._style import tex_name as _tex_name  # noqa: F401 - used by the tests

# The layout's main sizes under their old module-level names.
NODE_FONTSIZE = STYLE.node_fontsize
LEG_FONTSIZE = STYLE.leg_fontsize
NODE_H = STYLE.node_h
COPY_R = STYLE.copy_r
LEG_LEN = STYLE.leg_len
LEVEL_Y = STYLE.level_y
LEVEL_DY = STYLE.level_dy

__all__ = [
    "Diagram",
    "TensorNode",
    "Edge",
    "Leg",
    "Layout",
    "Drawing",
    "DiagramStyle",
    "LabelSpec",
    "ContractionCost",
    "ContractionStep",
    "diagram",
    "parse_einsum",
    "identity_wire",
    "network_diagram",
    "merge_copies",
    "draw_network",
    "draw_equation",
    "gallery",
    "contraction_cost",
    "sequential_path",
    "random_expression",
    "mps_norm_network",
    "random_isometry",
    "bias_augment",
    "CHAPTER_DIAGRAMS",
    "chapter_diagram",
    "einsum_explorer",
    "explore",
]
