"""The graph of an einsum expression: nodes, edges, self-loops and dangling legs (private)."""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import opt_einsum

from helpers._util import is_torch as _is_torch
from helpers._util import to_numpy as _to_numpy

from ._parse import _check
from ._style import PALETTE

if TYPE_CHECKING:  # pragma: no cover
    from ._cost import ContractionCost
    from ._layout import Layout
    from ._render import Drawing


@dataclass(frozen=True)
class TensorNode:
    """A node of a diagram.

    Attributes
    ----------
    id : int
        Position in :attr:`Diagram.nodes`; operands come first, in order.
    name : str
        Display name (``"W_Q"`` is drawn as :math:`W_Q`).
    kind : str
        ``"tensor"`` for an operand, ``"copy"`` for a copy (delta) tensor.
    legs : tuple of str
        The index carried by each axis, in axis order.
    operand : int or None
        Which operand this node is (None for copy nodes).

    Chapter 1 uses it through :func:`diagram`.
    """

    id: int
    name: str
    kind: str
    legs: tuple[str, ...]
    operand: int | None = None

    @property
    def rank(self) -> int:
        return len(self.legs)


@dataclass(frozen=True)
class Edge:
    """A wire joining two node axes ``a = (node id, axis)`` and ``b``.

    When ``a[0] == b[0]`` the edge is a self-loop (a trace).  Chapter 1 uses it through :func:`diagram`.
    """

    index: str
    dim: int | None
    a: tuple[int, int]
    b: tuple[int, int]

    @property
    def is_self_loop(self) -> bool:
        return self.a[0] == self.b[0]


@dataclass(frozen=True)
class Leg:
    """A dangling (output) leg attached to ``end = (node id, axis)``.  Chapter 1 uses it through :func:`diagram`."""

    index: str
    dim: int | None
    end: tuple[int, int]


@dataclass
class Diagram:
    """A tensor network built from an einsum expression (see :func:`diagram`).

    Attributes
    ----------
    expr : str
        Normalised explicit expression, e.g. ``"ij,jk->ik"``.
    inputs, output : tuple of str, str
        Subscripts.
    dims : dict
        Size of every index (None when built without shapes).
    nodes : list of TensorNode
        Operand nodes (ids ``0..n-1``), then copy nodes.
    edges : list of Edge
        Contracted wires, including self-loops and edges to copy nodes.
    dangling : list of Leg
        Output legs, in the order of the output subscript.
    operands : tuple or None
        The arrays, when arrays were given.
    index_names : dict
        Optional display names for indices (``{"m": "d_model"}``).
    colors : dict
        Fill colour of each tensor node id.
    positions : dict or None
        Optional fixed coordinates (inches) of operand nodes for drawing.
    roles : dict
        Drawing role of some tensor node ids: ``"frozen"`` (a value computed
        from the input elsewhere and held fixed, such as an attention pattern:
        a dashed box) or ``"mask"`` (a fixed 0/1 vector, such as a ReLU's
        on/off pattern: a hatched dashed box).  Roles change only how a box is
        drawn, never the layout or the contraction.

    Chapter 1 uses it through :func:`diagram`.
    """

    expr: str
    inputs: tuple[str, ...]
    output: str
    dims: dict[str, int | None]
    nodes: list[TensorNode]
    edges: list[Edge]
    dangling: list[Leg]
    operands: tuple[Any, ...] | None = None
    index_names: dict[str, str] = field(default_factory=dict)
    colors: dict[int, str] = field(default_factory=dict)
    positions: dict[int, tuple[float, float]] | None = None
    roles: dict[int, str] = field(default_factory=dict)

    # -- structure -------------------------------------------------------
    @property
    def tensor_nodes(self) -> list[TensorNode]:
        return [n for n in self.nodes if n.kind == "tensor"]

    @property
    def copy_nodes(self) -> list[TensorNode]:
        return [n for n in self.nodes if n.kind == "copy"]

    @property
    def self_loops(self) -> list[Edge]:
        return [e for e in self.edges if e.is_self_loop]

    @property
    def bonds(self) -> list[Edge]:
        """Edges between two different nodes."""
        return [e for e in self.edges if not e.is_self_loop]

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape of the contracted result."""
        return tuple(self.dims[c] for c in self.output)

    def __repr__(self) -> str:
        nt, nc = len(self.tensor_nodes), len(self.copy_nodes)
        ne, nl = len(self.bonds), len(self.self_loops)
        return (
            f"Diagram({self.expr!r}: {nt} tensor{'s' * (nt != 1)}, {nc} copy, "
            f"{ne} edge{'s' * (ne != 1)}, {nl} self-loop{'s' * (nl != 1)}, "
            f"{len(self.dangling)} dangling)"
        )

    def summary(self) -> str:
        """A few lines that list nodes, edges and legs, for printing."""
        lines = [repr(self)]
        for n in self.nodes:
            legs = ",".join(n.legs)
            lines.append(f"  node {n.id}: {n.kind:6s} {n.name!s:10s} legs [{legs}]")
        for e in self.edges:
            kind = "self-loop" if e.is_self_loop else "edge"
            lines.append(f"  {kind:9s} {e.index} (dim {e.dim}): node {e.a[0]} axis {e.a[1]} -- node {e.b[0]} axis {e.b[1]}")
        for g in self.dangling:
            lines.append(f"  dangling  {g.index} (dim {g.dim}): node {g.end[0]} axis {g.end[1]}")
        return "\n".join(lines)

    # -- contraction -----------------------------------------------------
    def to_network(self):
        """Build the ``tensornetwork`` network of this diagram.

        Returns
        -------
        nodes : list of tensornetwork.Node
            Operand nodes, then ``tn.CopyNode`` objects for copy nodes; all
            edges connected (self-loops become trace edges).
        output_edges : list of tensornetwork.Edge
            The dangling edges in the order of the output subscript.
        """
        if self.operands is None:
            raise ValueError(
                f"diagram {self.expr!r} was built from shapes; pass arrays to diagram() to contract it"
            )
        import tensornetwork as tn

        arrays = [_to_numpy(a) for a in self.operands]
        dtype = np.result_type(*arrays) if arrays else np.float64
        tn_nodes = []
        for node in self.nodes:
            if node.kind == "tensor":
                axis_names = _unique_axis_names(node.legs)
                tn_nodes.append(tn.Node(arrays[node.operand], name=node.name, axis_names=axis_names, backend="numpy"))
            else:
                d = self.dims[node.legs[0]]
                if d ** node.rank > 2 ** 24:
                    raise ValueError(
                        f"copy tensor for index {node.legs[0]!r} would have {d}^{node.rank} entries; "
                        "contract this expression with numpy.einsum instead"
                    )
                tn_nodes.append(
                    tn.CopyNode(node.rank, d, name=node.name, backend="numpy", dtype=dtype)
                )
        for e in self.edges:
            tn.connect(tn_nodes[e.a[0]][e.a[1]], tn_nodes[e.b[0]][e.b[1]], name=e.index)
        out_edges = [tn_nodes[g.end[0]][g.end[1]] for g in self.dangling]
        for g, edge in zip(self.dangling, out_edges):
            edge.set_name(g.index)
        return tn_nodes, out_edges

    def contract(self):
        """Contract the network through ``tensornetwork`` and return the result.

        The legs of the result follow the output subscript.  Copy tensors are
        built densely (``d**rank`` entries), which is what the diagram means
        but not how to compute a large hyper-index: use ``numpy.einsum`` for
        that.  Torch inputs give a torch tensor back.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Same values as ``numpy.einsum(expr, *operands)``.

        >>> A, B = np.arange(6.).reshape(2, 3), np.arange(12.).reshape(3, 4)
        >>> np.allclose(diagram("ij,jk->ik", A, B).contract(), A @ B)
        True
        """
        import tensornetwork as tn

        nodes, out_edges = self.to_network()
        result = tn.contractors.greedy(nodes, output_edge_order=out_edges).tensor
        result = np.asarray(result)
        if any(_is_torch(a) for a in self.operands or ()):
            import torch

            return torch.from_numpy(np.ascontiguousarray(result))
        return result

    def cost(self, path=None) -> ContractionCost:
        """:func:`contraction_cost` of this diagram's expression and shapes."""
        from ._cost import contraction_cost

        shapes = [tuple(self.dims[c] for c in sub) for sub in self.inputs]
        if any(d is None for s in shapes for d in s):
            raise ValueError(f"diagram {self.expr!r} has no sizes; build it with shapes or arrays")
        return contraction_cost(self.expr, *shapes, path=path)

    # -- drawing ---------------------------------------------------------
    def layout(self, show_dims: bool = True) -> Layout:
        """Deterministic drawing coordinates, in inches (see :class:`Layout`)."""
        from ._layout import layout_diagram

        return layout_diagram(self, show_dims=show_dims)

    def draw(self, ax=None, *, title: str | None = None, show_dims: bool = True) -> Drawing:
        """Draw the diagram with matplotlib.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw.  Without it a figure of the right size is made
            (one data unit = one inch, so text never crowds the shapes).
        title : str, optional
            A caption drawn above the diagram.
        show_dims : bool
            Label legs with their dimension, ``j (3)``, or just ``j``.

        Returns
        -------
        Drawing
            The figure, axes, layout and the text artists (for bounding boxes).
        """
        from ._render import render

        return render([(self.layout(show_dims=show_dims), 0.0, 0.0)], ax=ax, title=title)


def _unique_axis_names(legs: Sequence[str]) -> list[str]:
    out = []
    for k, ch in enumerate(legs):
        out.append(ch if legs.count(ch) == 1 else f"{ch}{k}")
    return out


def _assign_colors(names: Sequence[str], colors: Any) -> dict[int, str]:
    """Colour per operand: given list/dict/str, else one palette colour per distinct name."""
    n = len(names)
    if colors is None:
        order: list[str] = []
        for nm in names:
            if nm not in order:
                order.append(nm)
        return {k: PALETTE[order.index(nm) % len(PALETTE)] for k, nm in enumerate(names)}
    if isinstance(colors, str):
        return {k: colors for k in range(n)}
    if isinstance(colors, Mapping):
        base = _assign_colors(names, None)
        return {k: colors.get(names[k], colors.get(k, base[k])) for k in range(n)}
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"colors must give one colour per operand ({n}), got {len(colors)}")
    return dict(enumerate(colors))


def diagram(
    expr: str,
    *operands: Any,
    names: Sequence[str] | None = None,
    colors: Any = None,
    index_names: Mapping[str, str] | None = None,
    positions: Mapping[int, tuple[float, float]] | None = None,
    roles: Mapping[Any, str] | None = None,
) -> Diagram:
    """Build the tensor diagram of an einsum expression.

    Parameters
    ----------
    expr : str
        Einsum expression, e.g. ``"ij,jk->ik"`` (implicit mode follows numpy).
    *operands : array or tuple of int
        One per input subscript: arrays (numpy or torch) or shapes.  With no
        operands at all the diagram has structure but no sizes.
    names : list of str, optional
        Display name of each operand (``"W_Q"`` is drawn as :math:`W_Q`);
        default ``T0, T1, ...``.
    colors : list, dict or str, optional
        Fill colour per operand (list), per name (dict) or for all (str).
        Default: one pastel colour per distinct name, so repeated tensors
        (``U`` and ``U``) share a colour.
    index_names : dict, optional
        Display names for index letters, e.g. ``{"m": "d_model"}``.
    positions : dict, optional
        Fixed coordinates in inches for some or all operands (by position),
        for two-dimensional layouts such as a ladder.
    roles : dict, optional
        Drawing role per operand name or position: ``"frozen"`` (dashed box:
        a value held fixed, e.g. an attention pattern) or ``"mask"`` (hatched
        dashed box: a fixed 0/1 vector, e.g. a ReLU's on/off pattern).

    Returns
    -------
    Diagram

    Raises
    ------
    ValueError
        Operand count, rank or dimension mismatch, bad output, ellipsis; the
        message names the offending index or operand.

    Used in chapter 1.

    >>> d = diagram("bij,bjk->bik", (5, 2, 3), (5, 3, 4))
    >>> [(n.kind, n.legs) for n in d.copy_nodes]
    [('copy', ('b', 'b', 'b'))]
    >>> [g.index for g in d.dangling]
    ['b', 'i', 'k']
    >>> diagram("ii->", (3, 3)).self_loops
    [Edge(index='i', dim=3, a=(0, 0), b=(0, 1))]
    >>> diagram("ij,jk->ik", (2, 3), (4, 5))
    Traceback (most recent call last):
    ...
    ValueError: index 'j' has size 3 in operand 0 (#0, axis 1) but size 4 in operand 1 (#1, axis 0)
    """
    inputs, output, shapes, dims = _check(expr, operands, names, allow_none=True)
    n = len(inputs)
    names = list(names) if names is not None else [f"T{k}" for k in range(n)]
    nodes = [TensorNode(k, names[k], "tensor", tuple(sub), k) for k, sub in enumerate(inputs)]
    edges: list[Edge] = []
    legs: dict[str, Leg] = {}
    order: list[str] = []
    for ch in "".join(inputs):
        if ch not in order:
            order.append(ch)
    for ch in order:
        occ = [(k, ax) for k, sub in enumerate(inputs) for ax, c in enumerate(sub) if c == ch]
        in_out = ch in output
        ends = len(occ) + int(in_out)
        d = dims[ch]
        if ends == 2:
            if in_out:
                legs[ch] = Leg(ch, d, occ[0])
            else:
                edges.append(Edge(ch, d, occ[0], occ[1]))
        else:
            cid = len(nodes)
            nodes.append(TensorNode(cid, f"copy_{ch}", "copy", (ch,) * ends, None))
            for axis, end in enumerate(occ):
                edges.append(Edge(ch, d, end, (cid, axis)))
            if in_out:
                legs[ch] = Leg(ch, d, (cid, len(occ)))
    pos = None
    if positions is not None:
        pos = {}
        for k, xy in dict(positions).items():
            if not (isinstance(k, (int, np.integer)) and 0 <= k < n):
                raise ValueError(f"positions key {k!r} is not an operand position 0..{n - 1}")
            pos[int(k)] = (float(xy[0]), float(xy[1]))
    has_arrays = n > 0 and len(operands) == n and all(hasattr(op, "shape") for op in operands)
    return Diagram(
        expr=",".join(inputs) + "->" + output,
        inputs=inputs,
        output=output,
        dims=dims,
        nodes=nodes,
        edges=edges,
        dangling=[legs[ch] for ch in output],
        operands=tuple(operands) if has_arrays else None,
        index_names=dict(index_names or {}),
        colors=_assign_colors(names, colors),
        positions=pos,
        roles=_assign_roles(names, roles),
    )


ROLES = ("frozen", "mask")


def _assign_roles(names: Sequence[str], roles: Any) -> dict[int, str]:
    """Role per operand id from a dict keyed by operand name or position."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise TypeError(f"roles must be a dict of operand name or position -> role, got {type(roles).__name__}")
    out: dict[int, str] = {}
    for key, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles[{key!r}] must be one of {ROLES}, got {role!r}")
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= key < len(names):
                raise ValueError(f"roles key {key!r} is not an operand position 0..{len(names) - 1}")
            out[int(key)] = role
        elif key in names:
            out.update({k: role for k, nm in enumerate(names) if nm == key})
        else:
            raise ValueError(f"roles key {key!r} is neither an operand name {list(names)} nor a position")
    return out


def identity_wire(left: str = "j", right: str = "k", dim: int | None = None) -> Diagram:
    """The identity matrix as a diagram: a bare wire whose two ends are ``left`` and ``right``.

    The identity has no box in the notation -- it is just a leg -- so it has
    no einsum of its own; this returns a node-free :class:`Diagram` used on
    the right of ``U^T U = I``.

    Used in chapter 1.

    >>> w = identity_wire("j", "k", 3)
    >>> len(w.nodes), [g.index for g in w.dangling]
    (0, ['j', 'k'])
    """
    if not (isinstance(left, str) and isinstance(right, str)):
        raise TypeError(f"left and right must be the two end labels as strings, got {left!r} and {right!r}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise TypeError(f"dim must be a positive int or None, got {dim!r}")
    return Diagram(
        expr=f"->{left}{right}",
        inputs=(),
        output=left + right,
        dims={left: dim, right: dim},
        nodes=[],
        edges=[],
        dangling=[Leg(left, dim, (-1, 0)), Leg(right, dim, (-1, 1))],
    )


def network_diagram(nodes: Iterable[Any], colors: Any = None) -> Diagram:
    """Turn an existing ``tensornetwork`` network into a :class:`Diagram`.

    Parameters
    ----------
    nodes : iterable of tensornetwork.AbstractNode
        The nodes to draw; ``tn.CopyNode`` objects become copy dots.  Edges to
        nodes outside the collection are drawn as dangling legs.
    colors : optional
        As in :func:`diagram`.

    Returns
    -------
    Diagram
        With ``expr`` equal to the network's einsum (letters assigned to
        edges in order), names taken from the nodes, and leg labels from
        the edge names when they were named.

    Chapter 1 uses it through :func:`draw_network`.
    """
    import tensornetwork as tn

    nodes = list(nodes)
    ids = {id(n): k for k, n in enumerate(nodes)}
    letters = iter(opt_einsum.get_symbol(i) for i in itertools.count())
    label: dict[int, str] = {}
    index_names: dict[str, str] = {}
    dims: dict[str, int | None] = {}
    edges: list[Edge] = []
    legs: list[Leg] = []
    subs: list[list[str]] = [[""] * len(n.edges) for n in nodes]
    for k, node in enumerate(nodes):
        for ax, e in enumerate(node.edges):
            if id(e) in label:
                continue
            ch = next(letters)
            while not ch.isalpha():
                ch = next(letters)
            label[id(e)] = ch
            dims[ch] = int(e.dimension)
            if e.name and e.name != "__unnamed_edge__":
                index_names[ch] = e.name
            ends = []
            for nd, axis in ((e.node1, e.axis1), (e.node2, e.axis2)):
                if nd is not None and id(nd) in ids:
                    ends.append((ids[id(nd)], axis))
                    subs[ids[id(nd)]][axis] = ch
            if len(ends) == 2:
                edges.append(Edge(ch, dims[ch], ends[0], ends[1]))
            else:
                legs.append(Leg(ch, dims[ch], ends[0]))
    tnodes = []
    names = []
    for k, node in enumerate(nodes):
        kind = "copy" if isinstance(node, tn.CopyNode) else "tensor"
        name = node.name if node.name and node.name != "__unnamed_node__" else f"T{k}"
        names.append(name)
        tnodes.append(TensorNode(k, name, kind, tuple(subs[k]), k))
    inputs = tuple("".join(s) for s in subs)
    output = "".join(g.index for g in legs)
    shown = {k: n for k, n in enumerate(names)}
    return Diagram(
        expr=",".join(inputs) + "->" + output,
        inputs=inputs,
        output=output,
        dims=dims,
        nodes=tnodes,
        edges=edges,
        dangling=legs,
        operands=None,
        index_names=index_names,
        colors=_assign_colors([shown[k] for k in range(len(nodes))], colors),
    )


# ---------------------------------------------------------------------------
# Rewriting rules
# ---------------------------------------------------------------------------


def merge_copies(d: Diagram, *operands: Any) -> Diagram:
    """Merge copy dots joined by edges into one copy dot (the copy-tensor fusion rule).

    Two copy tensors joined by a wire are one copy tensor: summing over the
    shared index forces all the legs of both to be equal, so
    :math:`\\sum_j \\delta_{abj}\\delta_{jcd} = \\delta_{abcd}`.  This rewrites
    a diagram accordingly: every connected group of copy nodes becomes one
    index, and the result is rebuilt with :func:`diagram` (so the group is
    drawn as one dot with all the group's outside legs).

    Parameters
    ----------
    d : Diagram
        Typically from :func:`network_diagram` (the only builder whose copy
        nodes can touch); a diagram without joined copy nodes comes back
        unchanged in meaning.
    *operands : array or tuple of int
        Arrays or shapes for the tensor nodes, in node order; default the
        diagram's own operands, or its shapes.

    Returns
    -------
    Diagram
        Over the tensor nodes only, with one index per merged group.

    Raises
    ------
    ValueError
        If a merged group has two output legs (the merged result would be a
        diagonal, which an einsum output cannot repeat) or touches nothing
        but copy nodes (a closed loop, the scalar ``dim``).

    Used in chapter 1.

    >>> import tensornetwork as tn
    >>> u, v, w = (tn.Node(np.ones(3), name=n) for n in "uvw")
    >>> c1, c2 = tn.CopyNode(3, 3, name="c1"), tn.CopyNode(3, 3, name="c2")
    >>> _ = [u[0] ^ c1[0], v[0] ^ c1[1], c1[2] ^ c2[0], w[0] ^ c2[1]]
    >>> d = network_diagram([u, v, w, c1, c2])
    >>> len(d.copy_nodes), merge_copies(d).expr
    (2, 'a,a,a->a')
    """
    if not isinstance(d, Diagram):
        raise TypeError(f"merge_copies takes a Diagram, got {type(d).__name__}")
    copy_ids = {n.id for n in d.copy_nodes}
    parent = {c: c for c in copy_ids}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for e in d.edges:
        if e.a[0] in copy_ids and e.b[0] in copy_ids:
            parent[find(e.a[0])] = find(e.b[0])
    group_letter: dict[int, str] = {}
    axis_letter: dict[tuple[int, int], str] = {}
    dims: dict[str, int | None] = {}
    touches: dict[int, int] = {}
    for e in d.edges:
        ends = [x for x in (e.a, e.b) if x[0] not in copy_ids]
        groups = {find(x[0]) for x in (e.a, e.b) if x[0] in copy_ids}
        if groups:
            (g,) = groups
            letter = group_letter.setdefault(g, e.index)
            touches[g] = touches.get(g, 0) + len(ends)
        else:
            letter = e.index
        dims[letter] = e.dim
        for x in ends:
            axis_letter[x] = letter
    out = ""
    for g in d.dangling:
        if g.end[0] in copy_ids:
            grp = find(g.end[0])
            letter = group_letter.setdefault(grp, g.index)
            touches[grp] = touches.get(grp, 0) + 1
            if letter in out:
                raise ValueError(f"the merged copy dot of index {letter!r} has two output legs; "
                                 "merging it would give a diagonal, which an einsum cannot write")
        else:
            letter = g.index
            axis_letter[g.end] = letter
        dims[letter] = g.dim
        out += letter
    closed = [group_letter.get(g, "?") for g in {find(c) for c in copy_ids} if not touches.get(g)]
    if closed:
        raise ValueError(f"copy nodes {closed} touch only each other (a closed loop, a scalar); nothing to merge into")
    tensors = d.tensor_nodes
    subs = ["".join(axis_letter[(n.id, ax)] for ax in range(n.rank)) for n in tensors]
    if not operands:
        operands = d.operands if d.operands is not None else tuple(
            tuple(dims[ch] for ch in sub) for sub in subs)
    names = {ch: d.index_names[ch] for ch in dims if ch in d.index_names}
    return diagram(",".join(subs) + "->" + out, *operands, names=[n.name for n in tensors],
                   colors=[d.colors.get(n.id, PALETTE[0]) for n in tensors], index_names=names,
                   roles={k: d.roles[n.id] for k, n in enumerate(tensors) if n.id in d.roles})
