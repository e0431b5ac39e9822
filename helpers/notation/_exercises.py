"""Reference solutions and checks of chapter 1's exercises (private; tested in tests/test_notation.py)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ._cost import contraction_cost, mps_norm_network
from ._figures import random_isometry
from ._graph import diagram


def solution_read_diagram() -> str:
    """Exercise ch1-ex-read: the einsum of the ``read_exercise`` diagram.

    The diagram has ``x``, ``M`` and ``x`` in a row, joined by ``i`` and
    ``j``, with a copy tensor on the batch index ``b`` that is also the only
    output: one quadratic form :math:`x_b^T M x_b` per batch element.

    Used in chapter 1.
    """
    return "bi,ij,bj->b"


def check_read_diagram(answer: str, seed: int = 0) -> bool:
    """Check an answer to exercise ch1-ex-read numerically.

    Any lettering is accepted: the answer is evaluated on random ``x`` and
    ``M`` (in the order x, M, x) and compared with the batch of quadratic forms.

    Used in chapter 1.

    >>> check_read_diagram("zi,ij,zj->z"), check_read_diagram("bi,ij,bj->")
    (True, False)
    """
    rng = np.random.default_rng(seed)
    x, M = rng.standard_normal((8, 3)), rng.standard_normal((3, 3))
    want = np.array([x[b] @ M @ x[b] for b in range(8)])
    try:
        got = np.einsum(answer, x, M, x)
    except Exception:
        return False
    return got.shape == want.shape and bool(np.allclose(got, want))


def solution_cyclic_trace(n: int = 4, seed: int = 0) -> Dict[str, float]:
    """Exercise ch1-ex-cyclic: the trace of a product is cyclic, not symmetric.

    Computes tr(ABC), tr(BCA), tr(CAB) (one closed loop, entered at different
    places) and tr(ACB) (a different loop) for random ``n x n`` matrices,
    each as the contraction of a ``diagram``.

    Returns
    -------
    dict
        ``{"ABC", "BCA", "CAB", "ACB"}`` -> value.

    Used in chapter 1.

    >>> t = solution_cyclic_trace()
    >>> abs(t["ABC"] - t["CAB"]) < 1e-12, abs(t["ABC"] - t["ACB"]) > 1e-3
    (True, True)
    """
    rng = np.random.default_rng(seed)
    A, B, C = (rng.standard_normal((n, n)) for _ in range(3))
    mats = {"A": A, "B": B, "C": C}
    out = {}
    for word in ("ABC", "BCA", "CAB", "ACB"):
        ops = [mats[ch] for ch in word]
        out[word] = float(diagram("ij,jk,ki->", *ops, names=list(word)).contract())
    return out


def solution_qk_order(n_pos: int = 64, d_model: int = 512, d_head: int = 64) -> Dict[str, int]:
    """Exercise ch1-ex-qk-order: two orders for the attention scores x W_Q W_K^T x^T.

    * ``"queries_keys"``: form queries ``x W_Q`` and keys ``x W_K`` first,
      then their product -- ``2 n d_model d_head`` multiply-adds per side.
    * ``"qk_matrix"``: form the ``d_model x d_model`` matrix ``W_Q W_K^T``
      first. With ``d_head <= d_model / 2`` this order costs more per input
      even when the matrix is formed once for free: the ``d_model`` leg, not
      the ``d_head`` leg, stays open between the steps.

    Returns
    -------
    dict
        FLOPs of each order (from :func:`contraction_cost`) and of the best.

    Used in chapter 1.

    >>> c = solution_qk_order(64, 512, 64)
    >>> c["queries_keys"] < c["qk_matrix"]
    True
    """
    expr = "pm,mh,nh,kn->pk"
    shapes = [(n_pos, d_model), (d_model, d_head), (d_model, d_head), (n_pos, d_model)]
    # x W_Q (0,1) -> Q; x W_K ... after the first step terms are [W_K, x, Q]
    queries_keys = contraction_cost(expr, *shapes, path=[(0, 1), (0, 1), (0, 1)])
    qk_matrix = contraction_cost(expr, *shapes, path=[(1, 2), (0, 2), (0, 1)])
    return {"queries_keys": queries_keys.flops, "qk_matrix": qk_matrix.flops,
            "best": queries_keys.optimal_flops}


def solution_projector(n: int = 6, r: int = 2, seed: int = 0) -> Dict[str, float]:
    """Exercise ch1-ex-projector: P = U U^T is a symmetric projection of trace r.

    The cancellation rule removes the middle ``U^T U`` of ``P P``; the trace
    of ``P`` is a loop through ``U`` and ``U`` that equals the loop of
    ``U^T U = I_r``, i.e. ``r``.

    Returns
    -------
    dict
        ``idempotence`` = max |PP - P|, ``symmetry`` = max |P - P^T|,
        ``trace`` = tr P (all from diagram contractions).

    Used in chapter 1.

    >>> s = solution_projector(6, 2)
    >>> s["idempotence"] < 1e-12, round(s["trace"], 9)
    (True, 2.0)
    """
    U = random_isometry(n, r, seed)
    P = diagram("ij,kj->ik", U, U).contract()
    PP = diagram("ij,kj,kl,ml->im", U, U, U, U).contract()
    tr = diagram("ij,ij->", U, U).contract()
    return {"idempotence": float(np.abs(PP - P).max()), "symmetry": float(np.abs(P - P.T).max()),
            "trace": float(tr)}


def solution_bad_order(ns: Sequence[int] = (2, 4, 6, 8), phys: int = 2, bond: int = 4) -> Dict[str, List[int]]:
    """Exercise ch1-ex-mps: largest intermediate of the two orders of an MPS norm.

    The ket-first order builds a tensor with every physical leg open,
    ``phys**n`` entries times the bond legs; the zipper order never holds
    more than ``bond**2 * phys``.

    Returns
    -------
    dict
        ``n``, and for each order the largest intermediate and the FLOPs.

    Used in chapter 1.

    >>> s = solution_bad_order((4, 6))
    >>> s["ket_first_largest"], s["zipper_largest"]
    ([32, 128], [32, 32])
    """
    out: Dict[str, List[int]] = {"n": list(ns), "zipper_largest": [], "ket_first_largest": [],
                                 "zipper_flops": [], "ket_first_flops": [], "optimal_flops": []}
    for n in ns:
        net = mps_norm_network(n, phys, bond)
        for key in ("zipper", "ket_first"):
            c = contraction_cost(net["expr"], *net["shapes"], path=net["paths"][key])
            out[f"{key}_largest"].append(c.largest_intermediate)
            out[f"{key}_flops"].append(c.flops)
        out["optimal_flops"].append(c.optimal_flops)
    return out
