"""Chapter 1's diagrams and the small constructions its page uses (private)."""
from __future__ import annotations

from typing import Any

import numpy as np

from helpers._util import check_int as _check_int
from helpers._util import check_seed as _check_seed

from ._cost import mps_norm_network
from ._graph import Diagram, diagram
from ._parse import Shape
from ._style import PALETTE


def random_isometry(n: int, r: int, seed: int = 0) -> np.ndarray:
    """A random ``n x r`` matrix with orthonormal columns (``U.T @ U = I_r``).

    Built from the QR decomposition of a Gaussian matrix.  Used in chapter 1.

    >>> U = random_isometry(5, 2)
    >>> np.allclose(U.T @ U, np.eye(2))
    True
    """
    if not (isinstance(n, (int, np.integer)) and isinstance(r, (int, np.integer))) or not 1 <= r <= n:
        raise ValueError(f"need integers 1 <= r <= n for an n x r isometry, got n={n}, r={r}")
    g = np.random.default_rng(seed).standard_normal((n, r))
    q, rr = np.linalg.qr(g)
    return q * np.sign(np.diag(rr))


def bias_augment(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold a bias into the weights: ``x @ W + b == x1 @ Wb``.

    Parameters
    ----------
    x : array [..., d_in]
    W : array [d_in, d_out]
    b : array [d_out]

    Returns
    -------
    x1 : array [..., d_in + 1]
        ``x`` with a constant 1 appended on its last leg.
    Wb : array [d_in + 1, d_out]
        ``W`` with ``b`` appended as an extra row.

    Used in chapter 1.

    >>> x, W, b = np.ones(3), np.ones((3, 2)), np.array([1., 2.])
    >>> x1, Wb = bias_augment(x, W, b)
    >>> x1 @ Wb
    array([4., 5.])
    """
    x, W, b = np.asarray(x), np.asarray(W), np.asarray(b)
    if W.ndim != 2 or b.shape != (W.shape[1],) or x.shape[-1:] != (W.shape[0],):
        raise ValueError(
            f"need x [..., d_in], W [d_in, d_out], b [d_out]; got x {x.shape}, W {W.shape}, b {b.shape}"
        )
    x1 = np.concatenate([x, np.ones(x.shape[:-1] + (1,), dtype=x.dtype)], axis=-1)
    return x1, np.vstack([W, b[None, :]])


# ---------------------------------------------------------------------------
# The chapter's diagrams
# ---------------------------------------------------------------------------

#: Every diagram drawn in chapter 1: expression, shapes, names and options.
#: The page draws them with :func:`chapter_diagram`; the tests check each
#: one's layout (deterministic, no overlapping labels).
CHAPTER_DIAGRAMS: dict[str, dict[str, Any]] = {
    "vector": dict(expr="i->i", shapes=[(4,)], names=["v"]),
    "matrix": dict(expr="ij->ij", shapes=[(3, 4)], names=["M"]),
    "tensor3": dict(expr="ijk->ijk", shapes=[(2, 3, 4)], names=["T"]),
    "matvec": dict(expr="ij,j->i", shapes=[(3, 4), (4,)], names=["M", "v"]),
    "matmul": dict(expr="ij,jk->ik", shapes=[(2, 3), (3, 4)], names=["A", "B"]),
    "inner": dict(expr="i,i->", shapes=[(4,), (4,)], names=["u", "v"]),
    "trace": dict(expr="ii->", shapes=[(3, 3)], names=["M"]),
    "trace_product": dict(expr="ij,jk,ki->", shapes=[(3, 3)] * 3, names=["A", "B", "C"]),
    "outer": dict(expr="i,j->ij", shapes=[(3,), (4,)], names=["u", "v"]),
    "hadamard": dict(expr="i,i->i", shapes=[(4,), (4,)], names=["u", "v"]),
    "row_sum": dict(expr="ij->i", shapes=[(3, 4)], names=["M"]),
    "diagonal": dict(expr="ii->i", shapes=[(3, 3)], names=["M"]),
    "scale_columns": dict(expr="ij,j->ij", shapes=[(3, 4), (4,)], names=["M", "s"]),
    "batch_matmul": dict(expr="bij,bjk->bik", shapes=[(5, 2, 3), (5, 3, 4)], names=["A", "B"]),
    "reshape_tensor": dict(expr="ijk,jkl->il", shapes=[(2, 3, 4), (3, 4, 5)], names=["T", "S"]),
    "reshape_matrix": dict(expr="iJ,Jl->il", shapes=[(2, 12), (12, 5)], names=["T", "S"],
                           index_names={"J": "jk"}),
    "isometry": dict(expr="ij->ij", shapes=[(6, 2)], names=["U"]),
    "isometry_UtU": dict(expr="ij,ik->jk", shapes=[(6, 2), (6, 2)], names=["U", "U"]),
    "projector": dict(expr="ij,kj->ik", shapes=[(6, 2), (6, 2)], names=["U", "U"]),
    "projector_squared": dict(expr="ij,kj,kl,ml->im", shapes=[(6, 2)] * 4, names=["U", "U", "U", "U"]),
    "svd": dict(expr="ir,r,jr->ij", shapes=[(5, 3), (3,), (4, 3)], names=["U", "sigma", "V"],
                colors=["#a6cee3", "#fdbf6f", "#a6cee3"]),
    "svd_matrix": dict(expr="ij->ij", shapes=[(5, 4)], names=["M"], colors=["#d9d9d9"]),
    "linear": dict(expr="i,ij->j", shapes=[(3,), (3, 2)], names=["x", "W"]),
    "batched_linear": dict(expr="bi,ij->bj", shapes=[(5, 3), (3, 2)], names=["x", "W"]),
    "bias": dict(expr="j->j", shapes=[(2,)], names=["b"]),
    "linear_bias": dict(expr="I,Ij->j", shapes=[(4,), (4, 2)], names=[r"$\tilde{x}$", r"$\tilde{W}$"],
                        index_names={"I": "i+1"}),
    "attention_scores": dict(expr="bqhd,bkhd->bhqk", shapes=[(2, 5, 3, 4), (2, 5, 3, 4)], names=["Q", "K"]),
    "qk_circuit": dict(expr="pm,mh,nh,kn->pk", shapes=[(5, 8), (8, 4), (8, 4), (5, 8)],
                       names=["x", "W_Q", "W_K", "x"]),
    "ov_circuit": dict(expr="pk,km,mh,hn->pn", shapes=[(5, 5), (5, 8), (8, 4), (4, 8)],
                       names=["A", "x", "W_V", "W_O"]),
    "multihead_output": dict(expr="ipk,km,imh,ihn->pn", shapes=[(3, 5, 5), (5, 8), (3, 8, 4), (3, 4, 8)],
                             names=["A", "x", "W_V", "W_O"]),
    "order_example": dict(expr="ij,jk,k->i", shapes=[(50, 50), (50, 50), (50,)], names=["A", "B", "v"]),
    # nonlinear steps held fixed: the attention pattern as an input box, a ReLU's 0/1 mask on a copy dot
    "frozen_head": dict(expr="pk,km,mh,hn->pn", shapes=[(5, 5), (5, 8), (8, 4), (4, 8)],
                        names=["A", "x", "W_V", "W_O"], roles={"A": "frozen"}),
    "relu_mask": dict(expr="m,mn,n,nk->k", shapes=[(9,), (9, 16), (16,), (16, 8)],
                      names=[r"$\tilde{x}$", "W_in", "s", "W_out"], roles={"s": "mask"},
                      index_names={"m": "m+1"}),
    "read_exercise": dict(expr="bi,ij,bj->b", shapes=[(8, 3), (3, 3), (8, 3)], names=["x", "M", "x"]),
}
_MPS4 = mps_norm_network(4)
CHAPTER_DIAGRAMS["mps_norm"] = dict(
    expr=_MPS4["expr"], shapes=_MPS4["shapes"], names=_MPS4["names"], positions=_MPS4["positions"],
    colors={nm: (PALETTE[0] if nm.startswith("A") else PALETTE[1]) for nm in _MPS4["names"]},
)


def random_expression(rng: int | np.random.Generator = 0, n_ops: int | None = None,
                      max_dim: int = 3) -> tuple[str, list[Shape]]:
    """A random valid einsum expression and shapes, for spot checks.

    2-5 operands over up to 6 letters, with repeated indices (traces),
    operands that share nothing (outer products) and indices shared by three
    or more (copy tensors) all possible; no index has more than 6 ends, so
    the dense copy tensors stay small.

    Used in chapter 1 (the on-page check that diagrams contract like einsum).

    >>> expr, shapes = random_expression(0)
    >>> len(expr.split("->")[0].split(",")) == len(shapes)
    True
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(_check_seed(rng, "rng"))
    if n_ops is not None:
        n_ops = _check_int(n_ops, "n_ops", 1, _MAX_RANDOM_OPS)
    max_dim = _check_int(max_dim, "max_dim", 1)
    for _ in range(100_000):  # a draw is accepted with probability > 1% for every allowed n_ops
        n = int(rng.integers(2, 6)) if n_ops is None else n_ops
        letters = list(rng.permutation(list("abcdefghijk"))[: int(rng.integers(1, 7))])
        size = {c: int(rng.integers(1, max_dim + 1)) for c in letters}
        subs = ["".join(rng.choice(letters, size=int(rng.integers(0, 5)))) for _ in range(n)]
        present = sorted(set("".join(subs)))
        out = "".join(rng.permutation(present)[: int(rng.integers(0, len(present) + 1))]) if present else ""
        ends: dict[str, int] = {}
        for ch in "".join(subs) + out:
            ends[ch] = ends.get(ch, 0) + 1
        if max(ends.values(), default=0) <= 6:
            return ",".join(subs) + "->" + out, [tuple(size[c] for c in s) for s in subs]
    raise RuntimeError(f"no valid expression with n_ops={n_ops} found in 100,000 draws")  # pragma: no cover


_MAX_RANDOM_OPS = 8  # 6 letters x 6 ends bound the index ends; more operands make valid draws too rare


def chapter_diagram(name: str, *arrays: Any) -> Diagram:
    """The diagram ``CHAPTER_DIAGRAMS[name]``, with arrays in place of shapes if given.

    Used in chapter 1.

    >>> chapter_diagram("matmul")
    Diagram('ij,jk->ik': 2 tensors, 0 copy, 1 edge, 0 self-loops, 2 dangling)
    """
    if name not in CHAPTER_DIAGRAMS:
        raise ValueError(f"unknown chapter diagram {name!r}; choose from {sorted(CHAPTER_DIAGRAMS)}")
    spec = dict(CHAPTER_DIAGRAMS[name])
    ops = arrays if arrays else spec["shapes"]
    return diagram(spec["expr"], *ops, names=spec.get("names"), colors=spec.get("colors"),
                   index_names=spec.get("index_names"), positions=spec.get("positions"),
                   roles=spec.get("roles"))
