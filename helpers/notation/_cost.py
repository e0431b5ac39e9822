"""Contraction cost: FLOPs and largest intermediate of a contraction order (private)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import opt_einsum

from ._parse import _check


@dataclass(frozen=True)
class ContractionStep:
    """One pairwise (or single-term) step of a contraction order.  Used in chapter 1."""

    positions: Tuple[int, ...]
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
        Total floating-point operations of ``path``.
    largest_intermediate : int
        Entries of the largest tensor created by ``path``.
    optimal_path, optimal_flops, optimal_largest_intermediate
        The same for the order found by ``opt_einsum.contract_path``.
    naive_flops : int
        Cost of one big einsum loop over every index at once.
    optimizer : str
        Which ``opt_einsum`` optimiser found the best order.

    Used in chapter 1.
    """

    expr: str
    path: List[Tuple[int, ...]]
    steps: List[ContractionStep]
    flops: int
    largest_intermediate: int
    optimal_path: List[Tuple[int, ...]]
    optimal_flops: int
    optimal_largest_intermediate: int
    naive_flops: int
    optimizer: str

    @property
    def ratio(self) -> float:
        """How many times more FLOPs ``path`` takes than the best order."""
        return self.flops / max(self.optimal_flops, 1)


def _step_flops(indices: Iterable[str], inner: bool, n_terms: int, size: Mapping[str, int]) -> int:
    # Each output element of a step over k terms costs k - 1 multiplications
    # (at least 1), plus one addition if some index is summed away: the
    # convention of opt_einsum, so that our counts and its counts agree.
    total = 1
    for ch in indices:
        total *= size[ch]
    factor = max(1, n_terms - 1) + (1 if inner else 0)
    return total * factor


def _cost_of_path(inputs: Sequence[str], output: str, size: Mapping[str, int], path) -> Tuple[List[ContractionStep], List[Tuple[int, ...]]]:
    terms: List[str] = list(inputs)
    steps: List[ContractionStep] = []
    norm_path: List[Tuple[int, ...]] = []
    path = list(path)
    if not path and len(terms) == 1:
        path = [(0,)]
    for s, step in enumerate(path):
        try:
            pos = tuple(int(p) for p in step)
        except TypeError:
            raise ValueError(f"path step {s} must be a tuple of term positions, got {step!r}") from None
        if len(pos) == 0 or len(set(pos)) != len(pos):
            raise ValueError(f"path step {s} {step!r} must name one or more distinct terms")
        for p in pos:
            if not 0 <= p < len(terms):
                raise ValueError(
                    f"path step {s} {tuple(step)!r} refers to term {p} but only {len(terms)} terms remain "
                    "(positions count the current list: contracted terms are removed, the result is appended)"
                )
        chosen = [terms[p] for p in pos]
        rest = [t for q, t in enumerate(terms) if q not in pos]
        involved = set("".join(chosen))
        keep = (set(output) | set("".join(rest))) & involved
        removed = involved - keep
        last = len(rest) == 0
        if last:
            result = output
        else:
            joined = "".join(chosen)
            result = "".join(sorted(keep, key=joined.find))
        flops = _step_flops(involved, bool(removed), len(pos), size)
        n_out = 1
        for ch in keep:
            n_out *= size[ch]
        steps.append(ContractionStep(pos, ",".join(chosen) + "->" + result, flops, n_out))
        norm_path.append(pos)
        terms = rest + [result]
    if len(terms) != 1:
        raise ValueError(f"path leaves {len(terms)} terms uncontracted; it must end with a single tensor")
    return steps, norm_path


def contraction_cost(expr: str, *shapes: Any, path: Optional[Sequence[Sequence[int]]] = None) -> ContractionCost:
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
        Our count for ``path`` (which matches ``opt_einsum``'s count for the
        same path) and ``opt_einsum``'s best order and its cost.  The best
        order is found by ``opt_einsum.contract_path`` with
        ``optimize="optimal"`` for up to 8 operands and ``"dp"`` beyond.

    Used in chapter 1.

    >>> c = contraction_cost("ij,jk,k->i", (50, 50), (50, 50), (50,), path=[(0, 1), (0, 1)])
    >>> c.flops, c.optimal_flops, c.optimal_path
    (255000, 10000, [(1, 2), (0, 1)])
    """
    inputs, output, shp, size = _check(expr, shapes)
    expr_n = ",".join(inputs) + "->" + output
    n = len(inputs)
    optimizer = "optimal" if n <= 8 else "dp"
    opt_path, info = opt_einsum.contract_path(expr_n, *shp, shapes=True, optimize=optimizer)
    opt_path = [tuple(int(p) for p in s) for s in opt_path]
    opt_steps, _ = _cost_of_path(inputs, output, size, opt_path)
    if path is None:
        steps, norm = opt_steps, opt_path
    else:
        steps, norm = _cost_of_path(inputs, output, size, path)
    return ContractionCost(
        expr=expr_n,
        path=norm,
        steps=steps,
        flops=sum(s.flops for s in steps),
        largest_intermediate=max(s.size for s in steps),
        optimal_path=opt_path,
        optimal_flops=int(info.opt_cost),
        optimal_largest_intermediate=int(info.largest_intermediate),
        naive_flops=int(info.naive_cost),
        optimizer=optimizer,
    )


def sequential_path(order: Sequence[int], n: Optional[int] = None) -> List[Tuple[int, int]]:
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
    terms: List[Any] = list(range(n))
    path = []
    acc = order[0]
    for k in order[1:]:
        i, j = terms.index(acc), terms.index(k)
        path.append(tuple(sorted((i, j))))
        terms = [t for t in terms if t not in (acc, k)] + [("acc", len(path))]
        acc = terms[-1]
    return path


def mps_norm_network(n: int, phys: int = 2, bond: int = 4) -> Dict[str, Any]:
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
    if n < 2:
        raise ValueError(f"n must be at least 2 sites, got {n}")
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
