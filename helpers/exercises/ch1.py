"""Chapter 1 exercises: reference solutions and check functions.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on cases with known answers
and raises ``AssertionError`` with a hint when it is wrong (it returns True
otherwise); ``solution_<x>`` is the reference answer (tested in
``tests/test_exercises_ch1.py``).

Used in chapter 1.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from helpers.notation import contraction_cost, diagram, mps_norm_network, random_isometry

__all__ = [
    "solution_read_diagram", "check_read_diagram",
    "solution_cyclic_trace", "check_cyclic_trace",
    "solution_contract_in_order", "check_contract_in_order",
    "solution_qk_order", "check_qk_order",
    "solution_projector", "check_projector",
    "solution_bad_order", "solution_bad_order_formula", "check_bad_order",
]


# ---------------------------------------------------------------------------
# 1. Read a diagram
# ---------------------------------------------------------------------------
def solution_read_diagram() -> str:
    """Exercise ch1-ex-read: the einsum of the ``read_exercise`` diagram.

    The diagram has ``x``, ``M`` and ``x`` in a row, joined by ``i`` and
    ``j``, with a copy tensor on the batch index ``b`` that is also the only
    output: one quadratic form :math:`x_b^T M x_b` per batch element.

    Used in chapter 1.
    """
    return "bi,ij,bj->b"


def check_read_diagram(answer) -> bool:
    """Check an answer (an einsum string, or a function returning one) to exercise ch1-ex-read.

    Any lettering is accepted: the answer is evaluated on random ``x`` and
    ``M`` (operands in the order x, M, x) and compared with the batch of
    quadratic forms. Raises ``AssertionError`` with a hint, or returns True.

    Used in chapter 1.
    """
    if callable(answer):
        answer = answer()
    if not isinstance(answer, str):
        raise AssertionError(f"give the einsum expression as a string, got {type(answer).__name__}")
    rng = np.random.default_rng(0)
    x, M = rng.standard_normal((8, 3)), rng.standard_normal((3, 3))
    want = np.einsum("bi,ij,bj->b", x, M, x)
    try:
        got = np.einsum(answer, x, M, x)
    except Exception as e:
        raise AssertionError(f"np.einsum cannot evaluate {answer!r} on x [b, i], M [i, j], x [b, j]: {e}") from None
    if got.ndim == 0:
        raise AssertionError("your expression sums over the batch too: the copy tensor on b has an open leg, "
                             "so b stays in the output (write '->b')")
    if got.shape != want.shape:
        raise AssertionError(f"your output has shape {got.shape}, the diagram has one open leg (the batch, "
                             f"{want.shape}): the legs i and j join two boxes, so they are summed")
    if not np.allclose(got, want):
        raise AssertionError("right shape, wrong values: the first x meets M's first leg (i), the second x "
                             "meets M's second leg (j), and both copies of x share the batch leg b")
    return True


# ---------------------------------------------------------------------------
# 2. The trace is cyclic
# ---------------------------------------------------------------------------
def solution_cyclic_trace(A, B, C) -> dict[str, float]:
    """Exercise ch1-ex-cyclic: tr(ABC), tr(BCA), tr(CAB) and tr(ACB), each as a diagram's contraction.

    The first three are one closed ring entered at different boxes; ``ACB``
    runs the ring the other way round, a different network.

    Returns
    -------
    dict
        ``{"ABC", "BCA", "CAB", "ACB"}`` -> value.

    Used in chapter 1.
    """
    mats = {"A": A, "B": B, "C": C}
    return {word: float(diagram("ij,jk,ki->", *[mats[ch] for ch in word], names=list(word)).contract())
            for word in ("ABC", "BCA", "CAB", "ACB")}


def check_cyclic_trace(fn: Callable) -> bool:
    """Check a reader's ``fn(A, B, C) -> {"ABC", "BCA", "CAB", "ACB"}`` on random square matrices.

    Used in chapter 1.
    """
    rng = np.random.default_rng(1)
    for n in (3, 5):
        A, B, C = (rng.standard_normal((n, n)) for _ in range(3))
        got = fn(A, B, C)
        if not isinstance(got, dict) or set(got) != {"ABC", "BCA", "CAB", "ACB"}:
            raise AssertionError("return a dict with the keys 'ABC', 'BCA', 'CAB' and 'ACB'")
        want = {w: float(np.trace(m)) for w, m in
                (("ABC", A @ B @ C), ("BCA", B @ C @ A), ("CAB", C @ A @ B), ("ACB", A @ C @ B))}
        if abs(float(got["ACB"]) - want["ABC"]) < 1e-9 and abs(want["ACB"] - want["ABC"]) > 1e-6:
            raise AssertionError("your tr(ACB) equals tr(ABC), but the ring A -> C -> B joins different legs: "
                                 "compute it, do not assume it")
        for w in want:
            if abs(float(got[w]) - want[w]) > 1e-9 * max(1.0, abs(want[w])):
                raise AssertionError(f"tr({w}): expected {want[w]:.6f}, got {float(got[w]):.6f}; the ring "
                                     "'ij,jk,ki->' takes the three matrices in the order of the word")
    return True


# ---------------------------------------------------------------------------
# 3. Contract in a given order and count the FLOPs (implement)
# ---------------------------------------------------------------------------
def solution_contract_in_order(expr: str, operands: Sequence, path: Sequence[tuple[int, int]]):
    """Exercise ch1-ex-contract: contract a network pair by pair along ``path``, counting FLOPs.

    ``path`` follows ``opt_einsum``: each step names two positions in the
    *current* list of terms; both are removed and their contraction goes to
    the end. The intermediate keeps the indices still needed (by another term
    or by the output). A step costs the product of the sizes of all its
    indices, twice if it sums an index (a multiply and an add), once if not.

    Returns
    -------
    (result, flops): the contracted array and the total FLOPs.

    Used in chapter 1.
    """
    inputs, output = expr.replace(" ", "").split("->")
    subs: list[str] = inputs.split(",")
    terms = [np.asarray(o, dtype=float) for o in operands]
    size = {}
    for s, t in zip(subs, terms):
        size.update(zip(s, t.shape))
    flops = 0
    for i, j in path:
        i, j = sorted((int(i), int(j)))
        si, sj = subs[i], subs[j]
        rest = "".join(s for k, s in enumerate(subs) if k not in (i, j)) + output
        involved = sorted(set(si + sj))
        keep = "".join(c for c in involved if c in rest)
        summed = len(keep) < len(involved)
        flops += (2 if summed else 1) * int(np.prod([size[c] for c in involved]))
        new = np.einsum(f"{si},{sj}->{keep}", terms[i], terms[j])
        for k in (j, i):
            del subs[k], terms[k]
        subs.append(keep)
        terms.append(new)
    (s,), (t,) = subs, terms
    return np.einsum(f"{s}->{output}", t), flops


_CONTRACT_CASES = (
    ("ij,jk,k->i", [(6, 5), (5, 7), (7,)], [(0, 1), (0, 1)]),
    ("ij,jk,k->i", [(6, 5), (5, 7), (7,)], [(1, 2), (0, 1)]),
    ("pm,mh,nh,kn->pk", [(4, 8), (8, 3), (8, 3), (4, 8)], [(0, 1), (0, 1), (0, 1)]),
    ("pm,mh,nh,kn->pk", [(4, 8), (8, 3), (8, 3), (4, 8)], [(1, 2), (0, 2), (0, 1)]),
    ("i,j->ij", [(3,), (4,)], [(0, 1)]),
    ("ab,bc,cd,da->", [(2, 3), (3, 4), (4, 5), (5, 2)], [(0, 2), (0, 1), (0, 1)]),
)


def check_contract_in_order(fn: Callable) -> bool:
    """Check a reader's ``fn(expr, operands, path) -> (result, flops)`` against einsum and opt_einsum's count.

    Used in chapter 1.
    """
    rng = np.random.default_rng(2)
    for expr, shapes, path in _CONTRACT_CASES:
        ops = [rng.standard_normal(s) for s in shapes]
        got = fn(expr, ops, path)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise AssertionError("return a pair (result, flops)")
        result, flops = got
        want = np.einsum(expr, *ops)
        if np.shape(result) != want.shape or not np.allclose(result, want):
            raise AssertionError(
                f"{expr} along {path}: wrong result. After each step remove both terms and append their "
                "contraction at the END of the list; keep an index if another term or the output still has it")
        ref = contraction_cost(expr, *shapes, path=path).flops
        if int(flops) == ref // 2 and ref > 1:
            raise AssertionError(f"{expr} along {path}: {flops} FLOPs is half of {ref}: a multiply and an add "
                                 "count as two operations")
        if int(flops) != ref:
            raise AssertionError(
                f"{expr} along {path}: expected {ref} FLOPs, got {flops}. A step costs the product of the sizes "
                "of ALL indices of its two terms (kept and summed), times 2 when it sums an index, times 1 "
                "for an outer product")
    return True


# ---------------------------------------------------------------------------
# 4. The cheaper way to compute attention scores
# ---------------------------------------------------------------------------
def solution_qk_order(n_pos: int = 64, d_model: int = 512, d_head: int = 64) -> dict[str, int]:
    """Exercise ch1-ex-qk-order: two orders for the attention scores x W_Q W_K^T x^T.

    * ``"queries_keys"``: form queries ``x W_Q`` and keys ``x W_K`` first,
      then their product -- ``2 n d_model d_head`` FLOPs per side.
    * ``"qk_matrix"``: form the ``d_model x d_model`` matrix ``W_Q W_K^T``
      first. With ``d_head <= d_model / 2`` this order costs more per input
      even when the matrix is formed once for free: the ``d_model`` leg, not
      the ``d_head`` leg, stays open between the steps.

    Returns
    -------
    dict
        FLOPs of each order (from ``contraction_cost``) and of the best.

    Used in chapter 1.

    >>> c = solution_qk_order(64, 512, 64)
    >>> c["queries_keys"] < c["qk_matrix"]
    True
    """
    expr = "pm,mh,nh,kn->pk"
    shapes = [(n_pos, d_model), (d_model, d_head), (d_model, d_head), (n_pos, d_model)]
    # x W_Q (0,1) -> Q; then the terms are [W_K, x, Q]
    queries_keys = contraction_cost(expr, *shapes, path=[(0, 1), (0, 1), (0, 1)])
    qk_matrix = contraction_cost(expr, *shapes, path=[(1, 2), (0, 2), (0, 1)])
    return {"queries_keys": queries_keys.flops, "qk_matrix": qk_matrix.flops,
            "best": queries_keys.optimal_flops}


def check_qk_order(fn: Callable) -> bool:
    """Check a reader's ``fn(n_pos, d_model, d_head) -> {"queries_keys": flops, "qk_matrix": flops}``.

    Used in chapter 1.
    """
    for n, m, h in ((64, 512, 64), (10, 32, 8), (100, 16, 16)):
        got = fn(n, m, h)
        want = solution_qk_order(n, m, h)
        for key in ("queries_keys", "qk_matrix"):
            if key not in got:
                raise AssertionError(f"return a dict with the keys 'queries_keys' and 'qk_matrix'; {key!r} is missing")
            g, w = int(got[key]), want[key]
            if g == w // 2:
                raise AssertionError(f"{key} at n_pos={n}, d_model={m}, d_head={h}: {g} is half of {w}; a product "
                                     "of [a, b] by [b, c] costs 2abc FLOPs (a multiply and an add)")
            if key == "qk_matrix" and g == w - 2 * m * m * h:
                raise AssertionError("qk_matrix: you left out forming W_Q W_K^T itself (2 d_model^2 d_head)")
            if g != w:
                raise AssertionError(f"{key} at n_pos={n}, d_model={m}, d_head={h}: expected {w} FLOPs, got {g}")
    return True


# ---------------------------------------------------------------------------
# 5. Why a projection's trace is its rank
# ---------------------------------------------------------------------------
def solution_projector(U) -> dict[str, float]:
    """Exercise ch1-ex-projector: how far ``P = U U^T`` is from a symmetric projection, and its trace.

    For an isometry ``U`` ``[n, r]`` the cancellation rule removes the middle
    ``U^T U`` of ``P P``, and the trace of ``P`` is the loop of
    ``U^T U = I_r``, i.e. ``r``.

    Returns
    -------
    dict
        ``idempotence`` = max |PP - P|, ``symmetry`` = max |P - P^T|,
        ``trace`` = tr P (all from diagram contractions).

    Used in chapter 1.
    """
    U = np.asarray(U, dtype=float)
    P = diagram("ij,kj->ik", U, U).contract()
    PP = diagram("ij,kj,kl,ml->im", U, U, U, U).contract()
    tr = diagram("ij,ij->", U, U).contract()
    return {"idempotence": float(np.abs(PP - P).max()), "symmetry": float(np.abs(P - P.T).max()),
            "trace": float(tr)}


def check_projector(fn: Callable) -> bool:
    """Check a reader's ``fn(U) -> {"idempotence", "symmetry", "trace"}`` on isometries and on a non-isometry.

    Used in chapter 1.
    """
    for n, r, seed in ((6, 2, 0), (7, 3, 1)):
        got = fn(random_isometry(n, r, seed))
        if not isinstance(got, dict) or not {"idempotence", "symmetry", "trace"} <= set(got):
            raise AssertionError("return a dict with the keys 'idempotence', 'symmetry' and 'trace'")
        if abs(float(got["trace"]) - r) > 1e-9:
            raise AssertionError(f"U is {n} x {r}: tr P should be {r}, got {got['trace']}; close the two open "
                                 "long legs of P into a loop")
        if float(got["idempotence"]) > 1e-9 or float(got["symmetry"]) > 1e-9:
            raise AssertionError("for an isometry, P P = P and P = P^T: max |PP - P| and max |P - P^T| should "
                                 "be ~0")
    V = np.random.default_rng(3).standard_normal((6, 2))  # not an isometry
    got, want = fn(V), solution_projector(V)
    for key in ("idempotence", "trace"):
        if abs(float(got[key]) - want[key]) > 1e-9 * max(1.0, abs(want[key])):
            raise AssertionError(f"on a matrix that is NOT an isometry, {key} should be {want[key]:.6f}, got "
                                 f"{float(got[key]):.6f}: compute it from U, do not assume U^T U = I")
    return True


# ---------------------------------------------------------------------------
# 6. Exponentially bad orders
# ---------------------------------------------------------------------------
def solution_bad_order(ns: Sequence[int] = (2, 4, 6, 8), phys: int = 2, bond: int = 4) -> dict[str, list[int]]:
    """Exercise ch1-ex-mps: largest intermediate of the two orders of an MPS norm, from ``contraction_cost``.

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
    out: dict[str, list[int]] = {"n": list(ns), "zipper_largest": [], "ket_first_largest": [],
                                 "zipper_flops": [], "ket_first_flops": [], "optimal_flops": []}
    for n in ns:
        net = mps_norm_network(n, phys, bond)
        for key in ("zipper", "ket_first"):
            c = contraction_cost(net["expr"], *net["shapes"], path=net["paths"][key])
            out[f"{key}_largest"].append(c.largest_intermediate)
            out[f"{key}_flops"].append(c.flops)
        out["optimal_flops"].append(c.optimal_flops)
    return out


def solution_bad_order_formula(n: int, phys: int, bond: int) -> tuple[int, int]:
    """Exercise ch1-ex-mps: the two largest intermediates by formula, ``(ket first, zipper)``.

    Ket first: the finished ket row has ``phys**n`` entries; the first bra
    tensor then trades a physical leg for a bond leg, ``phys**(n-1) * bond``;
    the larger of the two. Zipper: two bond legs and a physical leg.

    Used in chapter 1.
    """
    return phys ** (n - 1) * max(phys, bond), bond ** 2 * phys


def check_bad_order(fn: Callable) -> bool:
    """Check a reader's ``fn(n, phys, bond) -> (ket_first_largest, zipper_largest)`` against ``contraction_cost``.

    Used in chapter 1.
    """
    for phys, bond in ((2, 4), (2, 3), (3, 2)):
        ref = solution_bad_order((4, 6, 8), phys, bond)
        for n, kf, zp in zip(ref["n"], ref["ket_first_largest"], ref["zipper_largest"]):
            got = tuple(int(v) for v in fn(n, phys, bond))
            if got[1] != zp:
                raise AssertionError(f"zipper, N={n}, d={phys}, chi={bond}: expected {zp}, got {got[1]}; the "
                                     "zipper's running tensor has two bond legs and one physical leg at most")
            if got[0] != kf:
                hint = ("when d > chi the largest moment is the finished ket row, before any bra tensor: d^N"
                        if phys > bond else "after the top row, the first bra tensor closes one physical leg "
                        "and opens a bond leg: count the open legs at that moment")
                raise AssertionError(f"ket first, N={n}, d={phys}, chi={bond}: expected {kf}, got {got[0]}; {hint}")
    return True
