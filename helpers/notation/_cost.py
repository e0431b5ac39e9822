"""Contraction cost: FLOPs and largest intermediate of a contraction order (private).

Every count is ``opt_einsum``'s (``opt_einsum.contract_path`` with the order as
``optimize``).  Its convention: a step that contracts ``k`` terms loops over
every combination of the indices involved -- the product of their sizes --
and costs that product times ``max(1, k - 1)`` multiplications, plus one
addition per combination if some index is summed away.  For a pairwise step
that sums something: twice the product of the sizes of all indices involved.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import opt_einsum
from opt_einsum.helpers import flop_count

from ._parse import _check


@dataclass(frozen=True)
class ContractionStep:
    """One pairwise (or single-term) step of a contraction order.

    ``subscripts`` lists the terms in the order of ``positions``; the result's
    index order is the one ``opt_einsum`` gives the intermediate.  ``flops``
    is ``opt_einsum``'s count for the step, ``size`` the entries of its result.

    Chapter 1 uses it through :func:`contraction_cost`.
    """

    positions: tuple[int, ...]
    subscripts: str
    flops: int
    size: int


@dataclass(frozen=True)
class ContractionCost:
    """Cost of a contraction order and of the best order.

    Attributes
    ----------
    expr : str
    path : list of tuple
        The order costed (``opt_einsum`` convention: the listed positions of
        the current list of terms are contracted and the result is appended).
    steps : list of ContractionStep
    flops : int
        Total floating-point operations of ``path``, counted by ``opt_einsum``
        (a multiply and an add each count: a pairwise step that sums an index
        costs twice the product of the sizes of all indices involved).
    largest_intermediate : int
        Entries of the largest tensor created by ``path``.
    optimal_path, optimal_flops, optimal_largest_intermediate
        The same for the order found by ``opt_einsum.contract_path``.
    naive_flops : int
        Cost of one big einsum loop over every index at once.
    optimizer : str
        Which ``opt_einsum`` optimiser found the best order.

    Chapter 1 uses it through :func:`contraction_cost`.
    """

    expr: str
    path: list[tuple[int, ...]]
    steps: list[ContractionStep]
    flops: int
    largest_intermediate: int
    optimal_path: list[tuple[int, ...]]
    optimal_flops: int
    optimal_largest_intermediate: int
    naive_flops: int
    optimizer: str

    @property
    def ratio(self) -> float:
        """How many times more FLOPs ``path`` takes than the best order."""
        return self.flops / max(self.optimal_flops, 1)


def _check_path(path, n: int) -> list[tuple[int, ...]]:
    """``path`` as tuples of ints, after checking it contracts ``n`` terms down to one."""
    path = list(path)
    if not path and n == 1:
        path = [(0,)]
    norm: list[tuple[int, ...]] = []
    for s, step in enumerate(path):
        try:
            pos = tuple(int(p) for p in step)
        except TypeError:
            raise ValueError(f"path step {s} must be a tuple of term positions, got {step!r}") from None
        if len(pos) == 0 or len(set(pos)) != len(pos):
            raise ValueError(f"path step {s} {step!r} must name one or more distinct terms")
        for p in pos:
            if not 0 <= p < n:
                raise ValueError(
                    f"path step {s} {tuple(step)!r} refers to term {p} but only {n} terms remain "
                    "(positions count the current list: contracted terms are removed, the result is appended)"
                )
        n = n - len(pos) + 1
        norm.append(pos)
    if n != 1:
        raise ValueError(f"path leaves {n} terms uncontracted; it must end with a single tensor")
    return norm


def _steps(info, path: Sequence[tuple[int, ...]]) -> list[ContractionStep]:
    """The steps of ``opt_einsum``'s ``PathInfo`` for ``path``, each costed by ``opt_einsum``.

    ``opt_einsum`` takes a step's terms out from the highest position down;
    the subscripts list them in the order of ``positions`` instead.
    """
    steps = []
    for pos, (taken, removed, einsum_str, _, _), size in zip(path, info.contraction_list, info.size_list):
        ins, result = einsum_str.split("->")
        by_pos = dict(zip(taken, ins.split(",")))
        chosen = [by_pos[p] for p in pos]
        flops = flop_count(set("".join(chosen)), bool(removed), len(pos), info.size_dict)
        steps.append(ContractionStep(tuple(pos), ",".join(chosen) + "->" + result, int(flops), int(size)))
    return steps


def contraction_cost(expr: str, *shapes: Any, path: Sequence[Sequence[int]] | None = None) -> ContractionCost:
    """FLOPs and largest intermediate of a contraction order, and of the best one.

    Parameters
    ----------
    expr : str
        Einsum expression.
    *shapes : tuple of int or array
        One per operand.
    path : list of tuple of int, optional
        A contraction order in ``opt_einsum``'s convention: each step lists
        positions in the *current* list of terms; they are contracted and the
        result goes to the end.  Default: the best order.

    Returns
    -------
    ContractionCost
        ``opt_einsum``'s count for ``path`` (``opt_einsum.contract_path``
        with ``optimize=path``; a pairwise step that sums an index costs twice
        the product of the sizes of all indices involved: a multiply and an
        add per combination), and its best order and that order's cost.  The
        best order is found with ``optimize="optimal"`` for up to 8 operands
        and ``"dp"`` beyond.

    Used in chapter 1.

    >>> c = contraction_cost("ij,jk,k->i", (50, 50), (50, 50), (50,), path=[(0, 1), (0, 1)])
    >>> c.flops, c.optimal_flops, c.optimal_path
    (255000, 10000, [(1, 2), (0, 1)])
    """
    inputs, output, shp, _ = _check(expr, shapes)
    expr_n = ",".join(inputs) + "->" + output
    n = len(inputs)
    optimizer = "optimal" if n <= 8 else "dp"
    opt_path, best = opt_einsum.contract_path(expr_n, *shp, shapes=True, optimize=optimizer)
    opt_path = [tuple(int(p) for p in s) for s in opt_path]
    if path is None:
        norm, info = opt_path, best
    else:
        norm = _check_path(path, n)
        _, info = opt_einsum.contract_path(expr_n, *shp, shapes=True, optimize=norm)
    steps = _steps(info, norm)
    return ContractionCost(
        expr=expr_n,
        path=norm,
        steps=steps,
        flops=int(info.opt_cost),
        largest_intermediate=int(info.largest_intermediate),
        optimal_path=opt_path,
        optimal_flops=int(best.opt_cost),
        optimal_largest_intermediate=int(best.largest_intermediate),
        naive_flops=int(best.naive_cost),
        optimizer=optimizer,
    )


def sequential_path(order: Sequence[int], n: int | None = None) -> list[tuple[int, int]]:
    """The ``opt_einsum`` path that absorbs operands one at a time in ``order``.

    ``order[0]`` and ``order[1]`` are contracted first, then the running
    result with ``order[2]``, and so on.

    Used in chapter 1.

    >>> sequential_path([2, 0, 1])        # (T2 T0) then T1
    [(0, 2), (0, 1)]
    """
    order = [int(k) for k in order]
    n = len(order) if n is None else n
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {order}")
    terms: list[Any] = list(range(n))
    path = []
    acc = order[0]
    for k in order[1:]:
        i, j = terms.index(acc), terms.index(k)
        path.append(tuple(sorted((i, j))))
        terms = [t for t in terms if t not in (acc, k)] + [("acc", len(path))]
        acc = terms[-1]
    return path


def mps_norm_network(n: int, phys: int = 2, bond: int = 4) -> dict[str, Any]:
    """The norm <psi|psi> of a matrix product state of ``n`` sites, as an einsum.

    Ket tensors ``A1..An`` (bond legs of size ``bond``, physical legs of size
    ``phys``) and bra tensors ``B1..Bn`` joined by their physical legs: a
    ladder.  Two orders are returned:

    * ``"zipper"``: A1 B1 A2 B2 ... -- the running result never holds more
      than two bond legs and one physical leg, so the cost grows linearly in
      ``n``;
    * ``"ket_first"``: A1 A2 ... An, then the bras -- the ket row alone is a
      tensor with ``n`` physical legs, ``phys**n`` entries: exponential.

    Returns
    -------
    dict
        ``expr``, ``shapes``, ``names``, ``positions`` (a ladder for drawing)
        and ``paths`` (the two orders).

    Used in chapter 1.

    >>> net = mps_norm_network(3)
    >>> net["expr"]
    'ad,dbe,ec,af,fbg,gc->'
    """
    for name, value, low in (("n", n, 2), ("phys", phys, 1), ("bond", bond, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}{' sites' if name == 'n' else ''}, got {value}")
    syms = [opt_einsum.get_symbol(i) for i in range(3 * n)]
    p = syms[:n]
    a = syms[n:2 * n - 1]
    b = syms[2 * n - 1:3 * n - 2]
    if len(set(p + a + b)) != len(p + a + b) or not all(s.isalpha() for s in p + a + b):
        raise ValueError("too many sites for distinct index letters")

    def row(bonds):
        subs = []
        for k in range(n):
            s = ""
            if k > 0:
                s += bonds[k - 1]
            s += p[k]
            if k < n - 1:
                s += bonds[k]
            subs.append(s)
        return subs

    ket, bra = row(a), row(b)
    # order the letters within each subscript as (left bond, physical, right bond)
    expr = ",".join(ket + bra) + "->"
    shapes = [tuple(phys if ch in p else bond for ch in s) for s in ket + bra]
    names = [f"A_{k + 1}" for k in range(n)] + [f"B_{k + 1}" for k in range(n)]
    positions = {k: (1.3 * k, 0.75) for k in range(n)}
    positions.update({n + k: (1.3 * k, -0.75) for k in range(n)})
    zipper = sequential_path([v for k in range(n) for v in (k, n + k)], 2 * n)
    ket_first = sequential_path(list(range(2 * n)), 2 * n)
    return {"expr": expr, "shapes": shapes, "names": names, "positions": positions,
            "paths": {"zipper": zipper, "ket_first": ket_first}}
