"""Tensor decompositions: truncated SVD, CP, Tucker and tensor trains (MPS).

Used in chapter 2 (``book/02_decompositions.md``). The book implements every
algorithm here itself, because it teaches them; tensorly is only a cross-check
in the tests and in one table of the chapter.

Every decomposition has a matching ``*_reconstruct`` function, a parameter
count (``*_n_params``) and a result type with ``.reconstruct()``:

====================  ============================================  ============================
decomposition         model                                         result (a ``NamedTuple``)
====================  ============================================  ============================
:func:`svd_truncate`  ``M ~ U diag(S) Vh``                          :class:`TruncatedSVD`
:func:`cp_als`        ``T ~ sum_r w_r a_r (x) b_r (x) c_r``         :class:`CPDecomposition`
:func:`tucker_hosvd`  ``T ~ G x1 U1 x2 U2 x3 U3``                   :class:`TuckerDecomposition`
:func:`tucker_hooi`   same, refined by alternating projections      :class:`TuckerDecomposition`
:func:`tt_svd`        ``T[i,j,k] ~ G1[:,i,:] G2[:,j,:] G3[:,k,:]``  :class:`TensorTrain`
====================  ============================================  ============================

To compare them, :func:`rank_sweep` runs all four over a list of ranks and
records each relative error and parameter count; :func:`first_exact_rank`,
:func:`params_for_error`, :func:`interpolate_error` and :func:`energy_rank`
read numbers off the results, :func:`plot_rank_sweep` draws them. The
attention model whose circuits chapter 2 decomposes is the store recipe
``lookup_1l`` (:func:`train_lookup_model`), with the control ``lookup_1l_nowd``
trained without weight decay.

Conventions
-----------
* Inputs are numpy arrays or torch tensors (lists go through ``numpy.asarray``).
  All arithmetic is done in numpy float64, whatever the input dtype. The arrays
  in a result are of the kind given: numpy in, numpy out; torch in, float64
  torch tensors out, on the input's device. Error histories are numpy arrays.
* Unfoldings are C-ordered: ``unfold(T, n)`` has shape ``[I_n, prod of the
  other I_m]`` with the remaining modes in their original order.
* A tensor-train core has axes ``(left bond, physical, right bond)``, the
  first and last bonds have size 1: the same layout as
  ``tensornetwork.FiniteMPS``.
* Bad input raises ``TypeError``/``ValueError`` naming the argument: a rank
  below 1, a Tucker/TT rank larger than the tensor allows, a tensor with too
  few ways, NaN or inf.

>>> import numpy as np
>>> T = random_cp_tensor((6, 7, 8), rank=2, seed=0)
>>> cp = cp_als(T, 2)
>>> bool(relative_error(T, cp.reconstruct()) < 1e-8)
True
>>> tt = tt_svd(T)
>>> tt.ranks
(2, 2)
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from helpers._util import check_int, to_numpy
from helpers._util import check_seed as _check_seed
from helpers._util import is_torch as _is_torch
from helpers.store import recipe

__all__ = [
    # building blocks
    "unfold",
    "fold",
    "mode_dot",
    "khatri_rao",
    "relative_error",
    # SVD
    "TruncatedSVD",
    "svd_truncate",
    "svd_reconstruct",
    "svd_n_params",
    # CP
    "CPDecomposition",
    "cp_als",
    "cp_reconstruct",
    "cp_n_params",
    "cp_normalize",
    "cp_initial_factors",
    # Tucker
    "TuckerDecomposition",
    "tucker_hosvd",
    "tucker_hooi",
    "tucker_reconstruct",
    "tucker_n_params",
    # tensor trains
    "TensorTrain",
    "tt_svd",
    "tt_reconstruct",
    "tt_n_params",
    "tt_ranks",
    "tt_orthogonalize",
    "tt_is_canonical",
    "tt_to_mps",
    "mps_to_tt",
    # test tensors
    "random_cp_tensor",
    "random_tucker_tensor",
    "random_tt_tensor",
    "synthetic_image",
    "matmul_tensor",
    # comparing decompositions
    "DECOMPOSITIONS",
    "DECOMPOSITION_COLORS",
    "ERROR_FLOOR",
    "error_floor",
    "rank_sweep",
    "first_exact_rank",
    "params_for_error",
    "interpolate_error",
    "energy_rank",
    "tt_bond_caps",
    "plot_rank_sweep",
    # the trained model of the chapter
    "lookup_task",
    "lookup_config",
    "train_lookup_model",
    "train_lookup_model_no_decay",
    "LOOKUP_MODEL",
    "LOOKUP_MODEL_NO_DECAY",
    "attention_circuits",
]

ArrayLike = Any  # numpy.ndarray | torch.Tensor | nested lists


# ---------------------------------------------------------------------------
# input checking and numpy <-> torch
# ---------------------------------------------------------------------------


def _converter(x: Any) -> Callable[[np.ndarray], Any]:
    """A function that turns a numpy result into the kind of ``x``."""
    if _is_torch(x):
        import torch

        device = x.device

        def back(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return back
    return lambda a: a


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array, with a clear error for non-numbers."""
    if _is_torch(x):
        if x.is_complex():
            raise TypeError(f"{name} must be real; got a complex torch tensor")
        a = to_numpy(x)
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(
                f"{name} must be a numpy array or torch tensor; "
                f"could not convert a {type(x).__name__}: {exc}"
            ) from None
    if np.iscomplexobj(a):
        raise TypeError(f"{name} must be real; got dtype {a.dtype}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(
            f"{name} must be a numeric array or tensor; got dtype {a.dtype} "
            f"(from a {type(x).__name__})"
        )
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_tensor(
    x: Any,
    name: str = "T",
    *,
    min_ndim: int | None = None,
    ndim: int | None = None,
) -> np.ndarray:
    a = _to_numpy(x, name)
    if ndim is not None and a.ndim != ndim:
        hint = " (a matrix)" if ndim == 2 else ""
        raise ValueError(f"{name} must have exactly {ndim} ways{hint}; got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} ways; got a {a.ndim}-way "
            f"tensor of shape {a.shape}"
            + ("; for a matrix use svd_truncate" if a.ndim == 2 else "")
        )
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
            "decompositions need finite entries"
        )
    return a


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum)


def _check_dims(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """A tensor shape: a sequence of positive ints (``2.5`` or ``"ab"`` is refused, not truncated)."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{name} must be a sequence of positive ints, got {shape!r}")
    return tuple(_check_int(s, f"{name}[{n}]") for n, s in enumerate(shape))


def _check_ranks(ranks: Any, shape: tuple[int, ...], name: str = "ranks") -> tuple[int, ...]:
    """Tucker ranks: one int for every mode, or one per mode; 1 <= r_n <= I_n."""
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
        ranks = (ranks,) * len(shape)
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a sequence of {len(shape)} ints; got {ranks!r}"
        ) from None
    if len(ranks) != len(shape):
        raise ValueError(
            f"{name} must have one entry per mode ({len(shape)} for shape {shape}); "
            f"got {len(ranks)}: {ranks}"
        )
    out = tuple(_check_int(r, f"{name}[{n}]") for n, r in enumerate(ranks))
    for n, (r, dim) in enumerate(zip(out, shape)):
        if r > dim:
            raise ValueError(
                f"{name}[{n}] = {r} is larger than mode {n} allows: the tensor has "
                f"shape {shape}, so the rank of mode {n} is at most {dim}"
            )
    return out


def _check_factors(factors: Any, name: str, shape=None, rank=None) -> list[np.ndarray]:
    if isinstance(factors, np.ndarray) or _is_torch(factors):
        raise TypeError(f"{name} must be a list of matrices, not a single array")
    try:
        factors = list(factors)
    except TypeError:
        raise TypeError(f"{name} must be a list of matrices; got {type(factors).__name__}") from None
    out = [_check_tensor(f, f"{name}[{n}]", ndim=2) for n, f in enumerate(factors)]
    if shape is not None and len(out) != len(shape):
        raise ValueError(f"{name} must hold {len(shape)} factor matrices; got {len(out)}")
    for n, f in enumerate(out):
        if shape is not None and f.shape[0] != shape[n]:
            raise ValueError(f"{name}[{n}] must have {shape[n]} rows (mode {n}); got shape {f.shape}")
        r = out[0].shape[1] if rank is None else rank
        if f.shape[1] != r:
            raise ValueError(f"{name}[{n}] must have {r} columns (the rank); got shape {f.shape}")
    return out


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------


def unfold(T: ArrayLike, mode: int) -> ArrayLike:
    """Mode-``n`` unfolding (matricization) of a tensor.

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``
    mode : int
        The mode that becomes the rows.

    Returns
    -------
    array or tensor, shape ``[I_mode, prod of the other I_m]``
        Columns run over the other modes in their original order, C-ordered
        (the last mode fastest).

    Used in chapter 2.

    >>> import numpy as np
    >>> unfold(np.arange(24).reshape(2, 3, 4), 1).shape
    (3, 8)
    """
    a = _check_tensor(T, "T", min_ndim=1)
    mode = _check_mode(mode, a.ndim)
    return _converter(T)(_unfold(a, mode))


def _check_mode(mode: Any, ndim: int, name: str = "mode") -> int:
    if isinstance(mode, bool) or not isinstance(mode, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {mode!r}")
    if not -ndim <= mode < ndim:
        raise ValueError(f"{name} must be in [0, {ndim}) for a {ndim}-way tensor; got {mode}")
    return int(mode) % ndim


def _unfold(a: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(a, mode, 0).reshape(a.shape[mode], -1)


def fold(M: ArrayLike, mode: int, shape: Sequence[int]) -> ArrayLike:
    """Inverse of :func:`unfold`: ``fold(unfold(T, n), n, T.shape) == T``.

    Parameters
    ----------
    M : array or tensor, shape ``[shape[mode], prod of the other sizes]``
    mode : int
    shape : sequence of int
        Shape of the tensor to rebuild.

    Not used by a page; a library helper.

    >>> import numpy as np
    >>> T = np.arange(24.0).reshape(2, 3, 4)
    >>> bool(np.array_equal(fold(unfold(T, 2), 2, T.shape), T))
    True
    """
    a = _check_tensor(M, "M", ndim=2)
    shape = _check_dims(shape)
    mode = _check_mode(mode, len(shape))
    if a.size != math.prod(shape) or a.shape[0] != shape[mode]:
        raise ValueError(f"M of shape {a.shape} is not a mode-{mode} unfolding of shape {shape}")
    moved = (shape[mode],) + shape[:mode] + shape[mode + 1 :]
    return _converter(M)(np.moveaxis(a.reshape(moved), 0, mode))


def _mode_dot(a: np.ndarray, M: np.ndarray, mode: int) -> np.ndarray:
    """``a x_mode M``: contract mode ``mode`` of ``a`` with the columns of ``M [J, I_mode]``.

    Views ``a`` as ``[left, I_mode, right]`` and multiplies without transposing
    (copying) the tensor: one matrix product, or a batch of them over ``left``.
    """
    shape = a.shape
    L, I, Rt = math.prod(shape[:mode]), shape[mode], math.prod(shape[mode + 1 :])
    a = np.ascontiguousarray(a)
    if Rt == 1:
        out = a.reshape(L, I) @ M.T
    elif L == 1:
        out = M @ a.reshape(I, Rt)
    else:
        out = np.matmul(M, a.reshape(L, I, Rt))
    return out.reshape(shape[:mode] + (M.shape[0],) + shape[mode + 1 :])


def mode_dot(T: ArrayLike, M: ArrayLike, mode: int) -> ArrayLike:
    """Mode-``n`` product ``T x_n M``.

    ``(T x_n M)[..., j, ...] = sum_i M[j, i] T[..., i, ...]``, the ``i``/``j``
    index in position ``n``. In einsum, for ``n = 1`` of a 3-way tensor:
    ``einsum("aib,ji->ajb", T, M)``.

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_n, ..., I_{N-1}]``
    M : array or tensor, shape ``[J, I_n]``
    mode : int

    Returns
    -------
    array or tensor, shape ``[I_0, ..., J, ..., I_{N-1}]``

    Not used by a page; a library helper.

    >>> import numpy as np
    >>> mode_dot(np.ones((2, 3, 4)), np.ones((5, 3)), 1).shape
    (2, 5, 4)
    """
    a = _check_tensor(T, "T", min_ndim=1)
    m = _check_tensor(M, "M", ndim=2)
    mode = _check_mode(mode, a.ndim)
    if m.shape[1] != a.shape[mode]:
        raise ValueError(
            f"M must have {a.shape[mode]} columns to act on mode {mode} of T "
            f"(shape {a.shape}); got shape {m.shape}"
        )
    return _converter(T)(_mode_dot(a, m, mode))


def _khatri_rao(mats: Sequence[np.ndarray]) -> np.ndarray:
    R = mats[0].shape[1]
    out = mats[0]
    for m in mats[1:]:
        out = (out[:, None, :] * m[None, :, :]).reshape(-1, R)
    return out


def khatri_rao(matrices: Sequence[ArrayLike]) -> ArrayLike:
    """Column-wise Kronecker (Khatri-Rao) product of matrices with ``R`` columns each.

    Parameters
    ----------
    matrices : sequence of arrays, shapes ``[I_k, R]``

    Returns
    -------
    array, shape ``[prod I_k, R]``
        Row ``(i_0, i_1, ...)`` (C-ordered) of column ``r`` is
        ``prod_k matrices[k][i_k, r]``.

    Used in chapter 2 (the matrix that ALS solves against:
    ``unfold(T, 0) ~ A @ khatri_rao([B, C]).T`` for ``T = [[A, B, C]]``).

    >>> import numpy as np
    >>> khatri_rao([np.ones((2, 3)), np.ones((4, 3))]).shape
    (8, 3)
    """
    mats = _check_factors(matrices, "matrices")
    if not mats:
        raise ValueError("matrices must hold at least one matrix")
    return _converter(matrices[0])(_khatri_rao(mats))


def relative_error(T: ArrayLike, T_hat: ArrayLike) -> float:
    """Relative Frobenius error ``||T - T_hat||_F / ||T||_F``.

    Parameters
    ----------
    T, T_hat : arrays or tensors of the same shape

    Returns
    -------
    float
        ``||T - T_hat||`` itself if ``T`` is all zeros.

    Used in chapter 2.

    >>> import numpy as np
    >>> relative_error(np.ones(4), np.zeros(4))
    1.0
    """
    a = _check_tensor(T, "T")
    b = _check_tensor(T_hat, "T_hat")
    if a.shape != b.shape:
        raise ValueError(f"T and T_hat must have the same shape; got {a.shape} and {b.shape}")
    den = np.linalg.norm(a)
    num = np.linalg.norm(a - b)
    return float(num / den) if den > 0 else float(num)


def _fix_signs(U: np.ndarray, Vh: np.ndarray | None = None):
    """Make the largest-magnitude entry of each column of ``U`` positive (deterministic output)."""
    idx = np.argmax(np.abs(U), axis=0)
    s = np.sign(U[idx, np.arange(U.shape[1])])
    s[s == 0] = 1.0
    U = U * s
    if Vh is not None:
        Vh = Vh * s[:, None]
    return U, Vh


def _left_svd(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors ``U [m, k]`` and singular values ``S [k]`` of ``A [m, n]``, ``k = min(m, n)``.

    For a wide matrix (``n > m``, every unfolding of a cube) the right singular
    vectors are never needed, so ``A^T = Q R`` is computed without forming
    ``Q`` and the small ``R^T [m, m]`` (same left singular vectors and values
    as ``A``, since ``A A^T = R^T R``) is decomposed instead: backward stable,
    and several times faster than a full SVD of ``A``.
    """
    m, n = A.shape
    if n > m:
        R = np.linalg.qr(A.T, mode="r")
        U, S, _ = np.linalg.svd(R.T)
    else:
        U, S, _ = np.linalg.svd(A, full_matrices=False)
    return U, S


def _leading_left_singular_vectors(A: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` leading left singular vectors of ``A`` (columns), sign-fixed."""
    U, _ = _left_svd(A)
    return _fix_signs(U[:, :r])[0]


# ---------------------------------------------------------------------------
# SVD
# ---------------------------------------------------------------------------


class TruncatedSVD(NamedTuple):
    """Result of :func:`svd_truncate`: ``M ~ U @ diag(S) @ Vh``.

    Attributes
    ----------
    U : shape ``[m, rank]``, orthonormal columns (an isometry).
    S : shape ``[rank]``, the kept singular values, decreasing.
    Vh : shape ``[rank, n]``, orthonormal rows.
    discarded : shape ``[min(m, n) - rank]``, the singular values thrown away.
    """

    U: Any
    S: Any
    Vh: Any
    discarded: Any

    def reconstruct(self):
        """The rank-``rank`` matrix ``U diag(S) Vh``, shape ``[m, n]``."""
        return svd_reconstruct(self.U, self.S, self.Vh)

    @property
    def error(self) -> float:
        """Eckart-Young error ``sqrt(sum of discarded S^2)`` = ``||M - U S Vh||_F``."""
        d = _to_numpy(self.discarded, "discarded")
        return float(np.sqrt(np.sum(d**2)))

    @property
    def n_params(self) -> int:
        """Numbers stored: ``rank * (m + n + 1)``."""
        return svd_n_params((self.U.shape[0], self.Vh.shape[1]), self.S.shape[0])


def svd_truncate(M: ArrayLike, rank: int) -> TruncatedSVD:
    """Best rank-``rank`` approximation of a matrix (Eckart-Young).

    Keeps the ``rank`` largest singular values of ``M = U S V^T``. By the
    Eckart-Young theorem no matrix of rank ``rank`` is closer to ``M`` in the
    Frobenius norm, and the squared error is the sum of the squared discarded
    singular values.

    Parameters
    ----------
    M : array or tensor, shape ``[m, n]``
    rank : int, ``1 <= rank <= min(m, n)``

    Returns
    -------
    TruncatedSVD
        ``(U [m, rank], S [rank], Vh [rank, n], discarded [min(m, n) - rank])``;
        signs fixed so that the largest entry of each column of ``U`` is positive.

    Used in chapter 2.

    >>> import numpy as np
    >>> M = np.diag([3.0, 2.0, 1.0])
    >>> svd = svd_truncate(M, 2)
    >>> svd.S.tolist(), svd.discarded.tolist(), svd.error
    ([3.0, 2.0], [1.0], 1.0)
    >>> float(np.linalg.norm(M - svd.reconstruct()))
    1.0
    """
    a = _check_tensor(M, "M", ndim=2)
    rank = _check_int(rank, "rank")
    if rank > min(a.shape):
        raise ValueError(
            f"rank = {rank} is larger than a {a.shape[0]}x{a.shape[1]} matrix allows "
            f"(at most {min(a.shape)})"
        )
    U, S, Vh = np.linalg.svd(a, full_matrices=False)
    U, Vh = _fix_signs(U[:, :rank], Vh[:rank])
    back = _converter(M)
    return TruncatedSVD(back(U), back(S[:rank].copy()), back(Vh), back(S[rank:].copy()))


def svd_reconstruct(U: ArrayLike, S: ArrayLike, Vh: ArrayLike) -> ArrayLike:
    """``U @ diag(S) @ Vh``, shapes ``[m, r]``, ``[r]``, ``[r, n]`` -> ``[m, n]``.

    Chapter 2 uses it through :func:`reconstruct`.

    >>> import numpy as np
    >>> svd_reconstruct(np.eye(2), np.array([2.0, 1.0]), np.eye(2)).tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """
    u = _check_tensor(U, "U", ndim=2)
    s = _check_tensor(S, "S", ndim=1)
    vh = _check_tensor(Vh, "Vh", ndim=2)
    if not (u.shape[1] == s.shape[0] == vh.shape[0]):
        raise ValueError(f"U, S, Vh do not fit: shapes {u.shape}, {s.shape}, {vh.shape}")
    return _converter(U)((u * s) @ vh)


def svd_n_params(shape: Sequence[int], rank: int) -> int:
    """Numbers stored by a rank-``rank`` truncated SVD of an ``[m, n]`` matrix: ``rank (m + n + 1)``.

    Used in chapter 2.

    >>> svd_n_params((100, 50), 3)
    453
    """
    shape = _check_dims(shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be [m, n], got {shape}")
    m, n = shape
    return _check_int(rank, "rank", 0) * (m + n + 1)


# ---------------------------------------------------------------------------
# CP
# ---------------------------------------------------------------------------


class CPDecomposition(NamedTuple):
    """Result of :func:`cp_als`: ``T ~ sum_r weights[r] factors[0][:, r] (x) factors[1][:, r] (x) ...``.

    Attributes
    ----------
    weights : shape ``[rank]``, decreasing.
    factors : list of N matrices, ``factors[n]`` of shape ``[I_n, rank]`` with
        unit-norm columns.
    errors : numpy array, the relative error after initialisation and after
        each ALS sweep (so ``len(errors) - 1`` sweeps ran).
    """

    weights: Any
    factors: list[Any]
    errors: np.ndarray

    def reconstruct(self):
        """The full tensor ``[I_0, ..., I_{N-1}]``."""
        return cp_reconstruct(self.weights, self.factors)

    @property
    def rank(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_iter(self) -> int:
        """Number of ALS sweeps run."""
        return len(self.errors) - 1

    @property
    def n_params(self) -> int:
        """Numbers stored: ``rank * (sum_n I_n + 1)``."""
        return cp_n_params(tuple(f.shape[0] for f in self.factors), self.rank)


def cp_reconstruct(weights: ArrayLike, factors: Sequence[ArrayLike]) -> ArrayLike:
    """Full tensor of a CP decomposition (a weighted copy tensor joined to the factors).

    ``T[i, j, k] = sum_r weights[r] A[i, r] B[j, r] C[k, r]``, i.e.
    ``einsum("r,ir,jr,kr->ijk", weights, A, B, C)`` for three factors.

    Parameters
    ----------
    weights : shape ``[R]``, or None for all ones
    factors : sequence of matrices ``[I_n, R]``

    Returns
    -------
    array or tensor, shape ``[I_0, ..., I_{N-1}]``

    Used in chapter 2.

    >>> import numpy as np
    >>> a = np.array([[1.0], [2.0]])
    >>> cp_reconstruct(np.array([3.0]), [a, a]).tolist()
    [[3.0, 6.0], [6.0, 12.0]]
    """
    fs = _check_factors(factors, "factors")
    if not fs:
        raise ValueError("factors must hold at least one matrix")
    R = fs[0].shape[1]
    w = np.ones(R) if weights is None else _check_tensor(weights, "weights", ndim=1)
    if w.shape[0] != R:
        raise ValueError(f"weights must have {R} entries (the rank); got {w.shape[0]}")
    return _converter(factors[0])(_cp_full(w, fs))


def _cp_full(w: np.ndarray, fs: list[np.ndarray]) -> np.ndarray:
    shape = tuple(f.shape[0] for f in fs)
    if len(fs) == 1:
        return fs[0] @ w
    return ((fs[0] * w) @ _khatri_rao(fs[1:]).T).reshape(shape)


def cp_n_params(shape: Sequence[int], rank: int) -> int:
    """Numbers stored by a rank-``rank`` CP decomposition: ``rank (sum_n I_n + 1)``.

    Chapter 2 uses it through :func:`n_params`.

    >>> cp_n_params((10, 20, 30), 4)
    244
    """
    return _check_int(rank, "rank", 0) * (sum(_check_dims(shape)) + 1)


def cp_normalize(weights: ArrayLike, factors: Sequence[ArrayLike]) -> tuple[Any, list[Any]]:
    """Move every column norm into the weights and sort components by weight.

    Returns ``(weights [R], factors)`` describing the same tensor, with unit-norm
    factor columns and weights in decreasing order (a negative weight is made
    positive by flipping the sign of the first factor's column).

    Used in chapter 2 (comparing two CP decompositions up to scaling and order).

    >>> import numpy as np
    >>> w, f = cp_normalize(np.ones(2), [np.diag([1.0, 4.0]), np.eye(2)])
    >>> w.tolist()
    [4.0, 1.0]
    """
    fs = _check_factors(factors, "factors")
    R = fs[0].shape[1]
    w = np.ones(R) if weights is None else _check_tensor(weights, "weights", ndim=1).copy()
    if w.shape[0] != R:
        raise ValueError(f"weights must have {R} entries (the rank); got {w.shape[0]}")
    w, fs = _normalize_sort(w, fs)
    back = _converter(factors[0])
    return back(w), [back(f) for f in fs]


def _normalize_sort(w: np.ndarray, fs: list[np.ndarray]):
    w = w.copy()
    out = []
    for f in fs:
        nrm = np.linalg.norm(f, axis=0)
        w *= nrm
        out.append(f / np.where(nrm > 0, nrm, 1.0))
    neg = w < 0
    if np.any(neg):
        w[neg] = -w[neg]
        out[0] = out[0] * np.where(neg, -1.0, 1.0)
    order = np.argsort(-w, kind="stable")
    return w[order], [f[:, order] for f in out]


def _split_point(shape: tuple[int, ...]) -> int:
    """Where to cut the modes into a left and a right half for the ALS dimension tree."""
    best, h_best = None, 1
    for h in range(1, len(shape)):
        cost = math.prod(shape[:h]) + math.prod(shape[h:])
        if best is None or cost < best:
            best, h_best = cost, h
    return h_best


_LETTERS = "abcdefghijklmnopqrstuvwxy"


def _half_mttkrp(P: np.ndarray, fs: list[np.ndarray], n: int, r_first: bool) -> np.ndarray:
    """MTTKRP inside one half of the dimension tree.

    ``P`` holds the tensor already contracted with the Khatri-Rao product of the
    other half: shape ``[I_0, ..., I_{h-1}, R]`` (``r_first=False``) or
    ``[R, I_h, ..., I_{N-1}]`` (``r_first=True``). Contract every mode except
    ``n`` with its factor, keeping the rank index: result ``[I_n, R]``.
    """
    k = len(fs)
    if k == 1:
        return P.T if r_first else P
    modes = _LETTERS[:k]
    p_sub = ("z" + modes) if r_first else (modes + "z")
    subs = [p_sub] + [modes[m] + "z" for m in range(k) if m != n]
    ops = [P] + [fs[m] for m in range(k) if m != n]
    return np.einsum(",".join(subs) + "->" + modes[n] + "z", *ops, optimize=len(ops) > 2)


def _solve_gram(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``M @ inv(V)`` for a symmetric positive semi-definite ``V [R, R]``."""
    try:
        c = np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        return M @ np.linalg.pinv(V, hermitian=True)
    # V = c c^T: X V = M  <=>  V X^T = M^T
    y = np.linalg.solve(c, M.T)
    x = np.linalg.solve(c.T, y)
    if not np.all(np.isfinite(x)):  # pragma: no cover - numerically singular V
        return M @ np.linalg.pinv(V, hermitian=True)
    return x.T


def _cp_init(a: np.ndarray, rank: int, init: Any, seed: int) -> list[np.ndarray]:
    shape = a.shape
    rng = np.random.default_rng(_check_seed(seed))
    if isinstance(init, str):
        if init == "random":
            return [rng.standard_normal((I, rank)) for I in shape]
        if init == "svd":
            fs = []
            for n, I in enumerate(shape):
                k = min(rank, I)
                U = _leading_left_singular_vectors(_unfold(a, n), k)
                if k < rank:
                    U = np.concatenate([U, rng.standard_normal((I, rank - k)) / math.sqrt(I)], axis=1)
                fs.append(U)
            return fs
        raise ValueError(f"init must be 'svd', 'random' or a list of factor matrices; got {init!r}")
    return [f.copy() for f in _check_factors(init, "init", shape=shape, rank=rank)]


def cp_initial_factors(T: ArrayLike, rank: int, init: str = "svd", seed: int = 0) -> list[Any]:
    """The starting factors :func:`cp_als` uses, so another implementation can start from the same point.

    ``"svd"``: the ``rank`` leading left singular vectors of each unfolding
    (signs fixed), padded with seeded random columns of norm about 1 when
    ``rank > I_n``; ``"random"``: standard normal entries.

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``, ``N >= 3``
    rank : int, ``>= 1``
    init : ``"svd"`` or ``"random"``
    seed : int

    Returns
    -------
    list of N matrices ``[I_n, rank]``, the same kind as ``T``

    Used in chapter 2 (to give tensorly the very same start in the cross-check).

    >>> fs = cp_initial_factors(random_cp_tensor((4, 5, 6), 2), 2)
    >>> [f.shape for f in fs]
    [(4, 2), (5, 2), (6, 2)]
    """
    a = _check_tensor(T, "T", min_ndim=3)
    rank = _check_int(rank, "rank")
    seed = _check_int(seed, "seed", minimum=0)
    if not isinstance(init, str):
        raise TypeError(f"init must be 'svd' or 'random'; got {type(init).__name__}")
    back = _converter(T)
    return [back(f) for f in _cp_init(a, rank, init, seed)]


def cp_als(
    T: ArrayLike,
    rank: int,
    *,
    init: str | Sequence[ArrayLike] = "svd",
    seed: int = 0,
    tol: float | None = 1e-10,
    max_iter: int = 500,
) -> CPDecomposition:
    """CP (CANDECOMP/PARAFAC) decomposition by alternating least squares.

    Fits ``T ~ sum_r w_r a^0_r (x) a^1_r (x) ... (x) a^{N-1}_r``: a weighted
    copy tensor with one leg per mode, joined to one factor matrix per mode.
    Each sweep solves, mode by mode, the linear least-squares problem for one
    factor with the others fixed:

    ``A_n <- MTTKRP_n @ inv(hadamard_{m != n} A_m^T A_m)``,

    where ``MTTKRP_n = unfold(T, n) @ khatri_rao(A_m, m != n)`` is computed
    without forming the unfolding, and the small ``[R, R]`` system is solved by
    Cholesky (pseudo-inverse if singular). The error is tracked cheaply from
    norms and inner products (recomputed exactly when it is below 1e-4).

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``, ``N >= 3``
    rank : int, ``>= 1`` (may exceed the dimensions)
    init : ``"svd"``, ``"random"`` or a list of N matrices ``[I_n, rank]``
        ``"svd"``: leading left singular vectors of each unfolding (padded with
        seeded random columns when ``rank > I_n``); ``"random"``: standard
        normal entries from ``seed``.
    seed : int
    tol : float or None
        Stop when the relative error changes by less than ``tol`` between
        sweeps. ``None`` or ``0`` runs exactly ``max_iter`` sweeps.
    max_iter : int, ``>= 0``

    Returns
    -------
    CPDecomposition
        ``(weights [rank], factors [I_n, rank] with unit columns, errors)``,
        components sorted by decreasing weight.

    Used in chapter 2.

    >>> T = random_cp_tensor((5, 6, 7), rank=3, seed=1)
    >>> cp = cp_als(T, 3)
    >>> cp.weights.shape, [f.shape for f in cp.factors]
    ((3,), [(5, 3), (6, 3), (7, 3)])
    >>> bool(cp.errors[-1] < 1e-8)
    True
    """
    a = _check_tensor(T, "T", min_ndim=3)
    rank = _check_int(rank, "rank")
    seed = _check_int(seed, "seed", minimum=0)
    max_iter = _check_int(max_iter, "max_iter", minimum=0)
    if tol is not None and (not isinstance(tol, numbers.Real) or not tol >= 0):
        raise ValueError(f"tol must be a number >= 0 or None; got {tol!r}")
    N = a.ndim
    fs = _cp_init(a, rank, init, seed)
    norm2 = float(np.dot(a.ravel(), a.ravel()))
    if not math.isfinite(norm2):
        raise ValueError(f"T's squared norm overflows float64 (max |T| = {np.abs(a).max():.3g}); rescale T first")
    norm = math.sqrt(norm2)
    back = _converter(T)
    if norm == 0:
        w, fs = _normalize_sort(np.zeros(rank), fs)
        return CPDecomposition(back(w), [back(f) for f in fs], np.zeros(1))

    # unit columns, weights separate
    w = np.ones(rank)
    w, fs = _normalize_sort(w, fs)
    fs[-1] = fs[-1] * w  # absorb so the model is sum_r of outer products of columns
    grams = [f.T @ f for f in fs]
    errors = [_cp_error_exact(a, norm, np.ones(rank), fs)]
    # Dimension tree: cut the modes into a left half [0, h) and a right half
    # [h, N). One large matrix product contracts T with the Khatri-Rao product
    # of the right factors; every left mode's MTTKRP is then a small
    # contraction of that. Likewise for the right half. Two large products per
    # sweep instead of N.
    h = _split_point(a.shape)
    L = math.prod(a.shape[:h])
    a2 = a.reshape(L, -1)
    left_shape, right_shape = a.shape[:h], a.shape[h:]
    for _ in range(max_iter):
        for n in range(N):
            if n == 0:
                P = (a2 @ _khatri_rao(fs[h:])).reshape(left_shape + (rank,))
            elif n == h:
                P = (_khatri_rao(fs[:h]).T @ a2).reshape((rank,) + right_shape)
            M = _half_mttkrp(P, fs[:h], n, False) if n < h else _half_mttkrp(P, fs[h:], n - h, True)
            V = np.ones((rank, rank))
            for m in range(N):
                if m != n:
                    V *= grams[m]
            A = _solve_gram(V, M)
            if n == N - 1:
                # error from norms: ||T||^2 - 2 <T, T_hat> + ||T_hat||^2
                inner = float(np.sum(M * A))
                gram_A = A.T @ A
                fit2 = float(np.sum(V * gram_A))
                err = math.sqrt(max(norm2 - 2 * inner + fit2, 0.0)) / norm
                fs[n] = A
                grams[n] = gram_A
            else:
                nrm = np.linalg.norm(A, axis=0)
                nrm = np.where(nrm > 0, nrm, 1.0)
                A = A / nrm
                fs[n] = A
                grams[n] = A.T @ A
        if err < 1e-4:  # the norm formula loses digits near an exact fit
            err = _cp_error_exact(a, norm, np.ones(rank), fs)
        errors.append(err)
        if tol and abs(errors[-2] - errors[-1]) < tol:
            break
    w, fs = _normalize_sort(np.ones(rank), fs)
    return CPDecomposition(back(w), [back(f) for f in fs], np.asarray(errors))


def _cp_error_exact(a, norm, w, fs) -> float:
    return float(np.linalg.norm(a - _cp_full(w, fs)) / norm)


# ---------------------------------------------------------------------------
# Tucker
# ---------------------------------------------------------------------------


class TuckerDecomposition(NamedTuple):
    """Result of :func:`tucker_hosvd` / :func:`tucker_hooi`: ``T ~ core x_0 U_0 x_1 U_1 ...``.

    Attributes
    ----------
    core : shape ``[r_0, ..., r_{N-1}]``
    factors : list of N matrices ``[I_n, r_n]`` with orthonormal columns.
    errors : numpy array, relative error of HOSVD and then after each HOOI sweep,
        from ``sqrt(||T||^2 - ||core||^2)`` (exact in exact arithmetic because the
        factors are orthonormal; use :func:`relative_error` below ~1e-7).
    """

    core: Any
    factors: list[Any]
    errors: np.ndarray

    def reconstruct(self):
        """The full tensor ``[I_0, ..., I_{N-1}]``."""
        return tucker_reconstruct(self.core, self.factors)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.core.shape)

    @property
    def n_params(self) -> int:
        """Numbers stored: ``prod r_n + sum_n I_n r_n``."""
        return tucker_n_params(tuple(f.shape[0] for f in self.factors), self.ranks)


def _multi_project(a: np.ndarray, fs: list[np.ndarray], only: Sequence[int] | None = None) -> np.ndarray:
    """``a x_m fs[m]^T`` for every mode ``m`` in ``only`` (default all), biggest reductions first."""
    modes = range(a.ndim) if only is None else only
    order = sorted(modes, key=lambda m: fs[m].shape[1] / fs[m].shape[0])
    for m in order:
        a = _mode_dot(a, fs[m].T, m)
    return a


def _tucker_error(norm2: float, core: np.ndarray) -> float:
    c2 = float(np.dot(core.ravel(), core.ravel()))
    return math.sqrt(max(norm2 - c2, 0.0) / norm2) if norm2 > 0 else 0.0


def tucker_hosvd(T: ArrayLike, ranks: int | Sequence[int]) -> TuckerDecomposition:
    """Truncated higher-order SVD (HOSVD) Tucker decomposition.

    ``U_n`` = the ``r_n`` leading left singular vectors of ``unfold(T, n)``;
    ``core = T x_0 U_0^T x_1 U_1^T ...``. Quasi-optimal: its error is at most
    ``sqrt(N)`` times the best Tucker error of those ranks; exact when ``ranks``
    are the multilinear ranks (the ranks of the unfoldings).

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``, ``N >= 3``
    ranks : int or sequence of N ints, ``1 <= r_n <= I_n``

    Returns
    -------
    TuckerDecomposition
        ``(core [r_0, ..., r_{N-1}], factors [I_n, r_n], errors [1])``

    Used in chapter 2.

    >>> T = random_tucker_tensor((6, 7, 8), (2, 3, 4), seed=0)
    >>> tk = tucker_hosvd(T, (2, 3, 4))
    >>> tk.core.shape
    (2, 3, 4)
    >>> bool(relative_error(T, tk.reconstruct()) < 1e-12)
    True
    """
    a = _check_tensor(T, "T", min_ndim=3)
    ranks = _check_ranks(ranks, a.shape)
    fs = [_leading_left_singular_vectors(_unfold(a, n), r) for n, r in enumerate(ranks)]
    core = _multi_project(a, fs)
    norm2 = float(np.dot(a.ravel(), a.ravel()))
    back = _converter(T)
    return TuckerDecomposition(back(core), [back(f) for f in fs], np.array([_tucker_error(norm2, core)]))


def tucker_hooi(
    T: ArrayLike,
    ranks: int | Sequence[int],
    *,
    tol: float | None = 1e-10,
    max_iter: int = 50,
) -> TuckerDecomposition:
    """Tucker decomposition by higher-order orthogonal iteration (HOOI).

    Starts from :func:`tucker_hosvd` and sweeps: for each mode ``n``, project
    ``T`` on the other factors, ``Y = T x_{m != n} U_m^T``, and set ``U_n`` to
    the ``r_n`` leading left singular vectors of ``unfold(Y, n)``. Each update
    maximises ``||core||`` (equivalently minimises the error) over ``U_n``, so
    the error never increases.

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``, ``N >= 3``
    ranks : int or sequence of N ints, ``1 <= r_n <= I_n``
    tol : float or None
        Stop when the relative error changes by less than ``tol`` between
        sweeps; ``None`` or ``0`` runs exactly ``max_iter`` sweeps.
    max_iter : int, ``>= 0``

    Returns
    -------
    TuckerDecomposition
        ``(core, factors, errors)``; ``errors[0]`` is the HOSVD error.

    Used in chapter 2.

    >>> import numpy as np
    >>> T = np.random.default_rng(0).standard_normal((8, 8, 8))
    >>> tk = tucker_hooi(T, 3)
    >>> bool(tk.errors[-1] <= tk.errors[0])
    True
    """
    a = _check_tensor(T, "T", min_ndim=3)
    ranks = _check_ranks(ranks, a.shape)
    max_iter = _check_int(max_iter, "max_iter", minimum=0)
    if tol is not None and (not isinstance(tol, numbers.Real) or not tol >= 0):
        raise ValueError(f"tol must be a number >= 0 or None; got {tol!r}")
    N = a.ndim
    norm2 = float(np.dot(a.ravel(), a.ravel()))
    fs = [_leading_left_singular_vectors(_unfold(a, n), r) for n, r in enumerate(ranks)]
    core = _multi_project(a, fs)
    errors = [_tucker_error(norm2, core)]
    # Dimension tree, as in cp_als: project T on the right half's factors once
    # and reuse it for every left mode, then the same the other way round.
    h = _split_point(a.shape)
    left, right = list(range(h)), list(range(h, N))
    for _ in range(max_iter):
        P = _multi_project(a, fs, only=right)
        for n in left:
            Y = _multi_project(P, fs, only=[m for m in left if m != n])
            fs[n] = _leading_left_singular_vectors(_unfold(Y, n), ranks[n])
        P = _multi_project(a, fs, only=left)
        for n in right:
            Y = _multi_project(P, fs, only=[m for m in right if m != n])
            fs[n] = _leading_left_singular_vectors(_unfold(Y, n), ranks[n])
        core = _mode_dot(Y, fs[N - 1].T, N - 1)
        errors.append(_tucker_error(norm2, core))
        if tol and abs(errors[-2] - errors[-1]) < tol:
            break
    back = _converter(T)
    return TuckerDecomposition(back(core), [back(f) for f in fs], np.asarray(errors))


def tucker_reconstruct(core: ArrayLike, factors: Sequence[ArrayLike]) -> ArrayLike:
    """Full tensor ``core x_0 U_0 x_1 U_1 ... x_{N-1} U_{N-1}``.

    In einsum for three modes: ``einsum("abc,ia,jb,kc->ijk", core, U0, U1, U2)``.

    Parameters
    ----------
    core : shape ``[r_0, ..., r_{N-1}]``
    factors : N matrices ``[I_n, r_n]``

    Returns
    -------
    array or tensor, shape ``[I_0, ..., I_{N-1}]``

    Chapter 2 uses it through :func:`reconstruct`.

    >>> import numpy as np
    >>> tucker_reconstruct(np.ones((1, 1, 1)), [np.ones((2, 1))] * 3).shape
    (2, 2, 2)
    """
    g = _check_tensor(core, "core")
    fs = _check_factors_list(factors, "factors")
    if len(fs) != g.ndim:
        raise ValueError(f"factors must hold {g.ndim} matrices (one per core mode); got {len(fs)}")
    for n, f in enumerate(fs):
        if f.shape[1] != g.shape[n]:
            raise ValueError(f"factors[{n}] must have {g.shape[n]} columns; got shape {f.shape}")
    out = g
    for n, f in enumerate(fs):
        out = _mode_dot(out, f, n)
    return _converter(core)(out)


def _check_factors_list(factors, name):
    if isinstance(factors, np.ndarray) or _is_torch(factors):
        raise TypeError(f"{name} must be a list of matrices, not a single array")
    return [_check_tensor(f, f"{name}[{n}]", ndim=2) for n, f in enumerate(factors)]


def tucker_n_params(shape: Sequence[int], ranks: Sequence[int]) -> int:
    """Numbers stored by a Tucker decomposition: ``prod r_n + sum_n I_n r_n``.

    Chapter 2 uses it through :func:`n_params`.

    >>> tucker_n_params((10, 10, 10), (2, 2, 2))
    68
    """
    shape = _check_dims(shape)
    ranks = _check_ranks(ranks, shape)
    return math.prod(ranks) + sum(i * r for i, r in zip(shape, ranks))


# ---------------------------------------------------------------------------
# tensor trains / matrix product states
# ---------------------------------------------------------------------------


class TensorTrain(NamedTuple):
    """Result of :func:`tt_svd`: ``T[i_0, ..., i_{N-1}] ~ G_0[:, i_0, :] @ G_1[:, i_1, :] @ ...``.

    Attributes
    ----------
    cores : list of N arrays ``[r_{k-1}, I_k, r_k]`` with ``r_{-1} = r_{N-1} = 1``.
        From :func:`tt_svd` the first N-1 cores are left-orthonormal.
    discarded : numpy array ``[N-1]``, the Frobenius norm of what each SVD step
        threw away. The total error obeys ``||T - TT|| <= sqrt(sum discarded^2)``
        (:attr:`bound`; an equality in exact arithmetic for TT-SVD).
    norm : float, ``||T||_F``.
    """

    cores: list[Any]
    discarded: np.ndarray
    norm: float

    def reconstruct(self):
        """The full tensor ``[I_0, ..., I_{N-1}]``."""
        return tt_reconstruct(self.cores)

    @property
    def ranks(self) -> tuple[int, ...]:
        """The N-1 bond dimensions ``(r_0, ..., r_{N-2})``."""
        return tuple(int(c.shape[2]) for c in self.cores[:-1])

    @property
    def bound(self) -> float:
        """``sqrt(sum of discarded^2)``, an upper bound on ``||T - TT||_F``."""
        return float(np.sqrt(np.sum(np.asarray(self.discarded) ** 2)))

    @property
    def relative_bound(self) -> float:
        """:attr:`bound` divided by ``||T||_F``."""
        return self.bound / self.norm if self.norm > 0 else self.bound

    @property
    def n_params(self) -> int:
        """Numbers stored: ``sum_k r_{k-1} I_k r_k``."""
        return sum(math.prod(c.shape) for c in self.cores)


def _check_bond_ranks(max_rank, shape, name="max_rank") -> list[int | None]:
    """Per-bond caps. An int caps every bond (clipped where the bond allows less);
    a sequence gives each bond's rank, which must be feasible."""
    N = len(shape)
    feasible = [min(math.prod(shape[: k + 1]), math.prod(shape[k + 1 :])) for k in range(N - 1)]
    if max_rank is None:
        return [None] * (N - 1)
    if isinstance(max_rank, numbers.Integral) and not isinstance(max_rank, bool):
        r = _check_int(max_rank, name)
        return [min(r, f) for f in feasible]
    try:
        ranks = tuple(max_rank)
    except TypeError:
        raise TypeError(f"{name} must be None, an int or a sequence of {N - 1} ints; got {max_rank!r}") from None
    if len(ranks) != N - 1:
        raise ValueError(
            f"{name} must have one entry per bond ({N - 1} for a {N}-way tensor); got {len(ranks)}: {ranks}"
        )
    out = [_check_int(r, f"{name}[{k}]") for k, r in enumerate(ranks)]
    for k, (r, f) in enumerate(zip(out, feasible)):
        if r > f:
            raise ValueError(
                f"{name}[{k}] = {r} is larger than bond {k} allows: for shape {tuple(shape)} the "
                f"unfolding [{math.prod(shape[: k + 1])} x {math.prod(shape[k + 1:])}] has rank at most {f}"
            )
    return out


def tt_svd(
    T: ArrayLike,
    max_rank: None | int | Sequence[int] = None,
    eps: float | None = None,
) -> TensorTrain:
    """Tensor-train (matrix product state) decomposition by sequential SVDs (TT-SVD).

    Reshape ``T`` to ``[I_0, rest]``, take an SVD, keep ``r_0`` singular
    triplets: ``U`` becomes the first core, ``S Vh`` is reshaped to
    ``[r_0 I_1, rest]`` and split again, and so on. The bond dimension ``r_k``
    is chosen, per step, as the smallest of

    * the numerical rank of the step's matrix (singular values above
      ``max(shape) * machine epsilon * largest``), so with no truncation the
      bond dimensions are exactly the ranks of the unfoldings
      ``[I_0 ... I_k, I_{k+1} ... I_{N-1}]``;
    * ``max_rank`` (an int caps every bond, a sequence gives each bond);
    * with ``eps``: the fewest triplets whose discarded part has norm at most
      ``eps ||T|| / sqrt(N - 1)``, which guarantees
      ``||T - TT|| <= eps ||T||`` (Oseledets, 2011).

    The total error is bounded by the per-step discards:
    ``||T - TT||^2 <= sum_k discarded_k^2``.

    Parameters
    ----------
    T : array or tensor, shape ``[I_0, ..., I_{N-1}]``, ``N >= 3``
    max_rank : None, int ``>= 1`` or sequence of N-1 ints
        A sequence entry larger than its bond allows is a ``ValueError``; an
        int is clipped per bond.
    eps : float ``>= 0`` or None
        Target relative error.

    Returns
    -------
    TensorTrain
        ``(cores [r_{k-1}, I_k, r_k], discarded [N-1], norm)``

    Used in chapter 2.

    >>> T = random_tt_tensor((4, 5, 6, 7), (2, 3, 2), seed=0)
    >>> tt = tt_svd(T)
    >>> tt.ranks, [c.shape for c in tt.cores]
    ((2, 3, 2), [(1, 4, 2), (2, 5, 3), (3, 6, 2), (2, 7, 1)])
    >>> bool(relative_error(T, tt.reconstruct()) < 1e-12)
    True
    """
    a = _check_tensor(T, "T", min_ndim=3)
    shape = a.shape
    N = a.ndim
    caps = _check_bond_ranks(max_rank, shape)
    if eps is not None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0 or not math.isfinite(eps):
            raise ValueError(f"eps must be a finite number >= 0 or None; got {eps!r}")
    norm = float(np.linalg.norm(a))
    delta = None if eps is None else eps * norm / math.sqrt(N - 1)
    cores, discarded = [], []
    C = a
    r_prev = 1
    for k in range(N - 1):
        C = C.reshape(r_prev * shape[k], -1)
        U, S = _left_svd(C)
        if S[0] > 0:
            r = int(np.sum(S > S[0] * max(C.shape) * np.finfo(float).eps))
        else:
            r = 1
        if delta is not None:
            # tail[j] = norm of S[j:]; keep the fewest j with tail[j] <= delta
            tail = np.sqrt(np.cumsum((S**2)[::-1])[::-1])
            ok = np.nonzero(tail <= delta)[0]
            r = int(ok[0]) if ok.size else len(S)
        if caps[k] is not None:
            r = min(r, caps[k])
        r = max(1, min(r, len(S)))
        discarded.append(float(np.sqrt(np.sum(S[r:] ** 2))))
        Ur = _fix_signs(U[:, :r])[0]
        cores.append(Ur.reshape(r_prev, shape[k], r))
        C = Ur.T @ C  # = S[:r] Vh[:r], the rest of the train still to split
        r_prev = r
    cores.append(C.reshape(r_prev, shape[-1], 1))
    back = _converter(T)
    return TensorTrain([back(c) for c in cores], np.asarray(discarded), norm)


def _check_cores(cores: Any, name: str = "cores") -> list[np.ndarray]:
    if isinstance(cores, np.ndarray) or _is_torch(cores):
        raise TypeError(f"{name} must be a list of 3-way cores, not a single array")
    try:
        cores = list(cores)
    except TypeError:
        raise TypeError(f"{name} must be a list of 3-way cores; got {type(cores).__name__}") from None
    if not cores:
        raise ValueError(f"{name} must hold at least one core")
    cs = [_check_tensor(c, f"{name}[{k}]", ndim=3) for k, c in enumerate(cores)]
    if cs[0].shape[0] != 1 or cs[-1].shape[2] != 1:
        raise ValueError(
            f"{name}: the first core's left bond and the last core's right bond must have size 1; "
            f"got {cs[0].shape} and {cs[-1].shape}"
        )
    for k in range(len(cs) - 1):
        if cs[k].shape[2] != cs[k + 1].shape[0]:
            raise ValueError(
                f"{name}[{k}] has right bond {cs[k].shape[2]} but {name}[{k + 1}] has left bond "
                f"{cs[k + 1].shape[0]}"
            )
    return cs


def tt_reconstruct(cores: Sequence[ArrayLike]) -> ArrayLike:
    """Full tensor of a tensor train: contract all bonds.

    In einsum for three cores: ``einsum("aib,bjc,ckd->ijk", G0, G1, G2)``
    (``a = d = 1``).

    Parameters
    ----------
    cores : N arrays ``[r_{k-1}, I_k, r_k]``, ``r_{-1} = r_{N-1} = 1``

    Returns
    -------
    array or tensor, shape ``[I_0, ..., I_{N-1}]``

    Used in chapter 2.

    >>> import numpy as np
    >>> tt_reconstruct([np.ones((1, 2, 3)), np.ones((3, 4, 1))]).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
    """
    cs = _check_cores(cores)
    return _converter(cores[0])(_tt_full(cs))


def _tt_full(cs: list[np.ndarray]) -> np.ndarray:
    shape = tuple(c.shape[1] for c in cs)
    out = cs[0].reshape(-1, cs[0].shape[2])
    for c in cs[1:]:
        out = (out @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[2])
    return out.reshape(shape)


def tt_ranks(cores: Sequence[ArrayLike]) -> tuple[int, ...]:
    """The N-1 bond dimensions of a tensor train.

    Chapter 2 uses it through :func:`rank_sweep`.

    >>> import numpy as np
    >>> tt_ranks([np.ones((1, 2, 3)), np.ones((3, 2, 1))])
    (3,)
    """
    cs = _check_cores(cores)
    return tuple(int(c.shape[2]) for c in cs[:-1])


def tt_n_params(shape: Sequence[int], ranks: int | Sequence[int]) -> int:
    """Numbers stored by a tensor train: ``sum_k r_{k-1} I_k r_k``.

    With ``N`` modes of size ``d`` and every bond ``chi`` this is about
    ``N d chi^2``, against ``d^N`` for the full tensor.

    Parameters
    ----------
    shape : N ints
    ranks : one int for every bond, or N-1 ints

    Used in chapter 2.

    >>> tt_n_params((2,) * 10, 4)      # 2*4 + 8*(4*2*4) + 4*2, against 2**10 = 1024
    272
    """
    shape = _check_dims(shape)
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
        ranks = [ranks] * (len(shape) - 1)
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
        raise TypeError(f"ranks must be an int or a sequence of ints, got {ranks!r}")
    r = [1] + [_check_int(x, "ranks entry", 0) for x in ranks] + [1]
    if len(r) != len(shape) + 1:
        raise ValueError(f"ranks must have {len(shape) - 1} entries for {len(shape)} modes; got {len(r) - 2}")
    return sum(r[k] * shape[k] * r[k + 1] for k in range(len(shape)))


def tt_orthogonalize(cores: Sequence[ArrayLike], center: int = 0) -> list[Any]:
    """Mixed canonical form of a tensor train by QR sweeps.

    Cores left of ``center`` become left-orthonormal
    (``einsum("aib,aic->bc", G, G) = I``), cores right of it right-orthonormal
    (``einsum("aib,cib->ac", G, G) = I``); all of the norm ends up in core
    ``center`` (the orthogonality centre). The tensor is unchanged. Each QR
    leaves at most ``min(rows, columns)`` of its bond, so an oversized bond
    shrinks (not necessarily to the rank of its unfolding: :func:`tt_svd`
    finds that).

    Parameters
    ----------
    cores : N arrays ``[r_{k-1}, I_k, r_k]``
    center : int, ``0 <= center < N`` (negative counts from the end)

    Returns
    -------
    list of N cores, same kind as given

    Used in chapter 2.

    >>> import numpy as np
    >>> T = np.random.default_rng(0).standard_normal((3, 4, 5))
    >>> cores = tt_orthogonalize(tt_svd(T).cores, center=2)
    >>> tt_is_canonical(cores, 2)
    True
    >>> bool(np.isclose(np.linalg.norm(cores[2]), np.linalg.norm(T)))
    True
    """
    cs = [c.copy() for c in _check_cores(cores)]
    N = len(cs)
    center = _check_mode(center, N, "center")
    for k in range(center):
        r0, I, r1 = cs[k].shape
        Q, R = np.linalg.qr(cs[k].reshape(r0 * I, r1))
        cs[k] = Q.reshape(r0, I, Q.shape[1])
        cs[k + 1] = np.tensordot(R, cs[k + 1], axes=(1, 0))
    for k in range(N - 1, center, -1):
        r0, I, r1 = cs[k].shape
        Q, R = np.linalg.qr(cs[k].reshape(r0, I * r1).T)
        cs[k] = Q.T.reshape(Q.shape[1], I, r1)
        cs[k - 1] = np.tensordot(cs[k - 1], R.T, axes=(2, 0))
    back = _converter(cores[0])
    return [back(c) for c in cs]


def tt_is_canonical(cores: Sequence[ArrayLike], center: int, atol: float = 1e-10) -> bool:
    """Whether ``cores`` are in mixed canonical form around ``center``.

    Checks ``einsum("aib,aic->bc", G_k, G_k) = I`` for ``k < center`` and
    ``einsum("aib,cib->ac", G_k, G_k) = I`` for ``k > center``, to ``atol``.

    Used in chapter 2.

    >>> import numpy as np
    >>> tt_is_canonical([np.ones((1, 2, 1)), np.ones((1, 2, 1))], 0)
    False
    """
    cs = _check_cores(cores)
    center = _check_mode(center, len(cs), "center")
    for k, c in enumerate(cs):
        if k < center:
            g = np.einsum("aib,aic->bc", c, c)
        elif k > center:
            g = np.einsum("aib,cib->ac", c, c)
        else:
            continue
        if not np.allclose(g, np.eye(g.shape[0]), atol=atol, rtol=0):
            return False
    return True


def tt_to_mps(cores: Sequence[ArrayLike], center: int | None = None, backend: str = "numpy"):
    """A ``tensornetwork.FiniteMPS`` holding the tensor train (norm kept).

    ``FiniteMPS`` stores cores with the same axes, ``(left bond, physical,
    right bond)``. Its own canonicalisation normalises the state, so it is not
    used: with ``center`` given, the cores are first brought to mixed canonical
    form by :func:`tt_orthogonalize` (all of the norm in core ``center``) and
    the MPS's ``center_position`` is set to ``center``; with ``center=None``
    the cores are stored as they are (``center_position`` None).

    Parameters
    ----------
    cores : N arrays ``[r_{k-1}, I_k, r_k]``
    center : int or None
    backend : tensornetwork backend name, ``"numpy"`` (default) or ``"pytorch"``

    Returns
    -------
    tensornetwork.FiniteMPS

    Used in chapter 2.

    >>> import numpy as np
    >>> T = np.arange(24.0).reshape(2, 3, 4)
    >>> mps = tt_to_mps(tt_svd(T).cores, center=1)
    >>> mps.center_position, mps.bond_dimensions
    (1, [1, 2, 2, 1])
    >>> bool(np.allclose(tt_reconstruct(mps_to_tt(mps)), T))
    True
    """
    import tensornetwork as tn

    cs = _check_cores(cores)
    if center is not None:
        center = _check_mode(center, len(cs), "center")
        cs = tt_orthogonalize(cs, center)
    if backend == "pytorch":
        import torch

        cs = [torch.from_numpy(c) for c in cs]
    mps = tn.FiniteMPS(cs, canonicalize=False, backend=backend)
    mps.center_position = center
    return mps


def mps_to_tt(mps) -> list[np.ndarray]:
    """The cores of a ``tensornetwork.FiniteMPS`` as a list of float64 numpy arrays.

    Inverse of :func:`tt_to_mps`: ``mps_to_tt(tt_to_mps(cores))`` equals
    ``cores``. (A ``FiniteMPS`` that ``tensornetwork`` canonicalised itself is
    normalised to norm 1.)

    Parameters
    ----------
    mps : tensornetwork.FiniteMPS

    Returns
    -------
    list of N numpy arrays ``[r_{k-1}, I_k, r_k]``

    Used in chapter 2.
    """
    tensors = getattr(mps, "tensors", None)
    if tensors is None:
        raise TypeError(f"mps must be a tensornetwork FiniteMPS; got {type(mps).__name__}")
    return _check_cores([_to_numpy(t, f"mps.tensors[{k}]") for k, t in enumerate(tensors)], "mps.tensors")


# ---------------------------------------------------------------------------
# test tensors
# ---------------------------------------------------------------------------


def random_cp_tensor(shape: Sequence[int], rank: int, seed: int = 0) -> np.ndarray:
    """A random tensor of CP rank at most ``rank`` (exactly ``rank`` generically).

    Factors have standard normal entries; the tensor is scaled to unit
    Frobenius norm.

    Used in chapter 2 (exact recovery).

    >>> random_cp_tensor((3, 4, 5), 2).shape
    (3, 4, 5)
    """
    rank = _check_int(rank, "rank")
    shape = _check_dims(shape)
    rng = np.random.default_rng(_check_seed(seed))
    T = _cp_full(np.ones(rank), [rng.standard_normal((I, rank)) for I in shape])
    return T / np.linalg.norm(T)


def random_tucker_tensor(shape: Sequence[int], ranks: Sequence[int], seed: int = 0) -> np.ndarray:
    """A random tensor of multilinear rank ``ranks`` (generically), unit norm.

    Used in chapter 2.

    >>> random_tucker_tensor((3, 4, 5), (1, 2, 2)).shape
    (3, 4, 5)
    """
    shape = _check_dims(shape)
    ranks = _check_ranks(ranks, shape)
    rng = np.random.default_rng(_check_seed(seed))
    core = rng.standard_normal(ranks)
    T = core
    for n, (I, r) in enumerate(zip(shape, ranks)):
        T = _mode_dot(T, rng.standard_normal((I, r)), n)
    return T / np.linalg.norm(T)


def random_tt_tensor(shape: Sequence[int], ranks: Sequence[int], seed: int = 0) -> np.ndarray:
    """A random tensor with TT ranks ``ranks`` (generically), unit norm.

    Used in chapter 2.

    >>> random_tt_tensor((2, 3, 4, 5), (2, 3, 2)).shape
    (2, 3, 4, 5)
    """
    shape = _check_dims(shape)
    r = [1] + [_check_int(x, "ranks") for x in ranks] + [1]
    if len(r) != len(shape) + 1:
        raise ValueError(f"ranks must have {len(shape) - 1} entries for {len(shape)} modes; got {len(r) - 2}")
    rng = np.random.default_rng(_check_seed(seed))
    T = _tt_full([rng.standard_normal((r[k], I, r[k + 1])) for k, I in enumerate(shape)])
    return T / np.linalg.norm(T)


def synthetic_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """A procedural colour image, ``[size, size, 3]``, values in ``[0, 1]``.

    Smooth colour gradients and blurred blobs (low rank) plus a hard-edged
    disc, a rotated square, thin stripes and a little pixel noise (high rank),
    so that truncation shows the usual trade-off: smooth parts survive small
    ranks, edges and texture need large ones. Deterministic given ``seed``;
    nothing is downloaded.

    Used in chapter 2.

    >>> img = synthetic_image(32)
    >>> img.shape, bool(img.min() >= 0 and img.max() <= 1)
    ((32, 32, 3), True)
    """
    size = _check_int(size, "size", minimum=8)
    rng = np.random.default_rng(_check_seed(seed))
    y, x = np.mgrid[0:size, 0:size] / (size - 1)  # [0, 1]
    img = np.empty((size, size, 3))
    # sky-like vertical gradient and a soft horizontal one
    img[..., 0] = 0.35 + 0.45 * y
    img[..., 1] = 0.45 + 0.25 * np.cos(2.5 * x) * (1 - y)
    img[..., 2] = 0.85 - 0.5 * y
    # smooth coloured blobs
    for _ in range(4):
        cx, cy = rng.uniform(0.1, 0.9, size=2)
        s = rng.uniform(0.08, 0.2)
        colour = rng.uniform(-0.35, 0.35, size=3)
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))[..., None] * colour
    # a hard-edged disc
    disc = (x - 0.68) ** 2 + (y - 0.35) ** 2 < 0.16**2
    img[disc] = [0.95, 0.8, 0.2]
    # a rotated square (edges not aligned with the axes)
    u = (x - 0.3) * np.cos(0.5) + (y - 0.68) * np.sin(0.5)
    v = -(x - 0.3) * np.sin(0.5) + (y - 0.68) * np.cos(0.5)
    square = (np.abs(u) < 0.14) & (np.abs(v) < 0.14)
    img[square] = [0.15, 0.55, 0.3]
    # stripes inside a band (texture)
    band = (y > 0.86) & (y < 0.96)
    stripes = band & (np.sin(2 * np.pi * 14 * x) > 0)
    img[stripes] = [0.1, 0.1, 0.15]
    img += 0.02 * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0)


_MATMUL_TENSOR_MAX_N = 12
"""Largest ``n`` :func:`matmul_tensor` builds (``12**6`` float64 entries = 23 MiB)."""


def matmul_tensor(n: int = 2) -> np.ndarray:
    """The ``n x n`` matrix-multiplication tensor, shape ``[n^2, n^2, n^2]``.

    ``M[(i,j), (j,k), (k,i)] = 1``, so that for ``C = A @ B``:
    ``einsum("abc,a,b->c", M, A.ravel(), B.ravel())`` is ``C.T.ravel()``.
    Its CP rank is the number of multiplications a bilinear algorithm needs:
    8 naively, 7 by Strassen's algorithm for ``n = 2`` (which is optimal).

    Used in chapter 2 (an exercise on why tensor rank is hard).

    >>> import numpy as np
    >>> M = matmul_tensor(2)
    >>> A, B = np.arange(4.0).reshape(2, 2), np.arange(4.0, 8.0).reshape(2, 2)
    >>> bool(np.allclose(np.einsum("abc,a,b->c", M, A.ravel(), B.ravel()), (A @ B).T.ravel()))
    True
    """
    n = _check_int(n, "n")
    if n > _MATMUL_TENSOR_MAX_N:
        raise ValueError(f"n must be <= {_MATMUL_TENSOR_MAX_N}: the tensor has n^6 entries "
                         f"({n ** 6 * 8 / 2**30:.3g} GiB of float64 for n = {n})")
    M = np.zeros((n * n,) * 3)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                M[i * n + j, j * n + k, k * n + i] = 1.0
    return M


# ---------------------------------------------------------------------------
# comparing decompositions: error against rank and against numbers stored
# ---------------------------------------------------------------------------

DECOMPOSITIONS = ("SVD", "CP", "Tucker", "TT")
"""The four decompositions of chapter 2, in the order of its figures."""

DECOMPOSITION_COLORS = {"SVD": "#4C72B0", "CP": "#DD8452", "Tucker": "#55A868", "TT": "#C44E52"}
"""One colour per decomposition, shared by every figure of chapter 2."""

ERROR_FLOOR = 1e-16
"""Errors at machine precision are drawn on this floor in log-scale plots."""


def error_floor(errors: Any, floor: float = ERROR_FLOOR) -> np.ndarray:
    """``errors`` as a float array, raised to at least ``floor`` (for log axes).

    An exact reconstruction has error ``0.0`` (or a few ulp), which a log axis
    cannot show; drawing it on ``floor`` keeps the point visible.

    Parameters
    ----------
    errors : array-like of float, any shape
    floor : float, > 0

    Returns
    -------
    numpy.ndarray, same shape as ``errors``

    Used in chapter 2.

    >>> error_floor([0.5, 0.0, 1e-20]).tolist()
    [0.5, 1e-16, 1e-16]
    """
    if isinstance(floor, bool) or not isinstance(floor, numbers.Real) or not floor > 0:
        raise ValueError(f"floor must be a positive number; got {floor!r}")
    a = _to_numpy(errors, "errors")
    if np.any(np.isnan(a)):
        raise ValueError("errors contains NaN")
    return np.maximum(a, float(floor))


def _check_rank_list(ranks: Any, name: str) -> list[int]:
    if isinstance(ranks, (str, bytes)) or isinstance(ranks, numbers.Number):
        raise TypeError(f"{name} must be a sequence of ints (possibly empty); got {ranks!r}")
    try:
        ranks = list(ranks)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints (possibly empty); got {ranks!r}") from None
    return [_check_int(r, f"{name}[{k}]") for k, r in enumerate(ranks)]


def rank_sweep(
    T: ArrayLike,
    svd_ranks: Sequence[int] = (),
    cp_ranks: Sequence[int] = (),
    tucker_ranks: Sequence[int] = (),
    tt_ranks: Sequence[int] = (),
    *,
    svd: str = "unfold",
    cp_iter: int = 500,
    cp_tol: float = 1e-10,
    tucker_iter: int = 20,
) -> dict:
    if isinstance(cp_tol, bool) or not isinstance(cp_tol, (int, float)) or not cp_tol >= 0:
        raise TypeError(f"cp_tol must be a number >= 0, got {cp_tol!r}")
    """Relative error and parameter count of each decomposition at each rank knob.

    * ``"SVD"``, rank ``r``: with ``svd="unfold"`` the truncated SVD of the
      unfolding along the first leg, ``unfold(T, 0)`` ``[I_0, I_1 * ... ]``;
      with ``svd="slices"`` a separate rank-``r`` SVD of every slice ``T[h]``
      (a matrix per head, for a stack of circuits ``[n_heads, d_model,
      d_model]``), and the stored numbers add up over the slices.
    * ``"CP"``, rank ``R``: :func:`cp_als` from its SVD start (deterministic),
      at most ``cp_iter`` sweeps, tolerance ``cp_tol``.
    * ``"Tucker"``, rank ``r``: :func:`tucker_hooi` with ranks ``min(r, I_n)``
      on every leg, ``tucker_iter`` sweeps at most.
    * ``"TT"``, cap ``chi``: :func:`tt_svd` with every bond at most ``chi``.

    The error is :func:`relative_error` of the reconstruction (of the unfolding
    for ``svd="unfold"``, which has the same norm as ``T``); the parameter count
    is the decomposition's ``n_params``.

    Parameters
    ----------
    T : array or tensor with at least 3 ways (``svd="slices"``: exactly 3)
    svd_ranks, cp_ranks, tucker_ranks, tt_ranks : sequences of int >= 1
        Knob values to try for each decomposition (an empty sequence skips it).
        Ranks above what a leg allows are clipped for Tucker and TT; SVD ranks
        must not exceed the smaller side of the matrix they cut.
    svd : {"unfold", "slices"}
    cp_iter, tucker_iter : int
    cp_tol : float

    Returns
    -------
    dict
        ``{name: {"rank": [...], "error": [...], "params": [...]}}`` for every
        name in :data:`DECOMPOSITIONS`, the lists in the order of the ranks
        given (empty for a skipped decomposition).

    Used in chapter 2.

    >>> T = random_tucker_tensor((6, 6, 6), (2, 2, 2), seed=0)
    >>> res = rank_sweep(T, [1, 2], [], [1, 2], [1, 2])
    >>> [first_exact_rank(res[name]) for name in ("SVD", "Tucker", "TT")]
    [2, 2, 2]
    >>> res["CP"]["rank"]
    []
    """
    if svd not in ("unfold", "slices"):
        raise ValueError(f'svd must be "unfold" or "slices"; got {svd!r}')
    a = _check_tensor(T, "T", **({"ndim": 3} if svd == "slices" else {"min_ndim": 3}))
    lists = {name: _check_rank_list(r, arg) for name, r, arg in (
        ("SVD", svd_ranks, "svd_ranks"), ("CP", cp_ranks, "cp_ranks"),
        ("Tucker", tucker_ranks, "tucker_ranks"), ("TT", tt_ranks, "tt_ranks"))}
    cp_iter = _check_int(cp_iter, "cp_iter")
    tucker_iter = _check_int(tucker_iter, "tucker_iter")
    out = {name: {"rank": [], "error": [], "params": []} for name in DECOMPOSITIONS}

    def add(name, rank, error, params):
        out[name]["rank"].append(rank)
        out[name]["error"].append(float(error))
        out[name]["params"].append(int(params))

    X = _unfold(a, 0)
    side = min(a.shape[1:]) if svd == "slices" else min(X.shape)
    for r in lists["SVD"]:
        if r > side:
            raise ValueError(f"svd_ranks has {r}, more than the matrices cut by the SVD allow (at most {side})")
        if svd == "unfold":
            s = svd_truncate(X, r)
            add("SVD", r, relative_error(X, s.reconstruct()), s.n_params)
        else:
            approx = np.stack([svd_truncate(a[h], r).reconstruct() for h in range(a.shape[0])])
            add("SVD", r, relative_error(a, approx), a.shape[0] * svd_n_params(a.shape[1:], r))
    for r in lists["CP"]:
        c = cp_als(a, r, max_iter=cp_iter, tol=cp_tol)
        add("CP", r, relative_error(a, c.reconstruct()), c.n_params)
    for r in lists["Tucker"]:
        k = tucker_hooi(a, [min(r, dim) for dim in a.shape], max_iter=tucker_iter)
        add("Tucker", r, relative_error(a, k.reconstruct()), k.n_params)
    for r in lists["TT"]:
        t = tt_svd(a, max_rank=r)
        add("TT", r, relative_error(a, t.reconstruct()), t.n_params)
    return out


def _check_curve(curve: Any, name: str = "curve", keys=("rank", "error")) -> dict:
    if not isinstance(curve, dict) or not all(k in curve for k in keys):
        raise TypeError(
            f"{name} must be one entry of rank_sweep's result, a dict with keys {list(keys)}; "
            f"got {type(curve).__name__}" + (f" with keys {sorted(curve)}" if isinstance(curve, dict) else "")
        )
    lengths = {k: len(curve[k]) for k in keys}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name}'s lists must have equal lengths; got {lengths}")
    return curve


def first_exact_rank(curve: dict, tol: float = 1e-8) -> int | None:
    """The first rank of a :func:`rank_sweep` curve whose relative error is below ``tol``.

    Parameters
    ----------
    curve : dict with lists ``"rank"`` and ``"error"`` (one entry of
        :func:`rank_sweep`'s result)
    tol : float, > 0

    Returns
    -------
    int or None
        ``None`` if no rank tried reaches ``tol``.

    Used in chapter 2.

    >>> first_exact_rank({"rank": [1, 2, 3], "error": [0.5, 1e-12, 1e-13]})
    2
    >>> first_exact_rank({"rank": [1], "error": [0.5]}) is None
    True
    """
    _check_curve(curve)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    hits = [r for r, e in zip(curve["rank"], curve["error"]) if e < tol]
    return hits[0] if hits else None


def params_for_error(curve: dict, target: float = 0.1) -> int | None:
    """Fewest numbers stored, among the ranks tried, for relative error <= ``target``.

    Parameters
    ----------
    curve : dict with lists ``"params"`` and ``"error"`` (one entry of
        :func:`rank_sweep`'s result)
    target : float, > 0

    Returns
    -------
    int or None
        ``None`` if no rank tried is accurate enough.

    Used in chapter 2.

    >>> params_for_error({"params": [10, 20, 40], "error": [0.3, 0.08, 0.01]}, target=0.1)
    20
    """
    _check_curve(curve, keys=("params", "error"))
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not target > 0:
        raise ValueError(f"target must be a positive number; got {target!r}")
    ok = [int(p) for p, e in zip(curve["params"], curve["error"]) if e <= target]
    return min(ok) if ok else None


def interpolate_error(params: Sequence[float], errors: Sequence[float], at: float) -> float:
    """Error of a curve at a parameter count, by linear interpolation in log-log.

    Outside the range of ``params`` the end values are returned (no
    extrapolation).

    Parameters
    ----------
    params : sequence of float ``[n_points]``, positive and strictly increasing
    errors : sequence of float ``[n_points]``, positive
    at : float, > 0

    Returns
    -------
    float

    Used in chapter 2.

    >>> round(interpolate_error([10, 1000], [1.0, 0.01], 100), 12)
    0.1
    """
    p = _to_numpy(params, "params").ravel()
    e = _to_numpy(errors, "errors").ravel()
    if p.shape != e.shape or p.size == 0:
        raise ValueError(f"params and errors must be non-empty and of equal length; got {p.size} and {e.size}")
    if np.any(p <= 0) or np.any(e <= 0):
        raise ValueError("params and errors must be positive (they are interpolated in log-log)")
    if np.any(np.diff(p) <= 0):
        raise ValueError(f"params must be strictly increasing; got {p.tolist()}")
    if isinstance(at, bool) or not isinstance(at, numbers.Real) or not at > 0:
        raise ValueError(f"at must be a positive number; got {at!r}")
    return float(np.exp(np.interp(np.log(at), np.log(p), np.log(e))))


def energy_rank(M: ArrayLike, share: float = 0.99) -> int:
    """Fewest singular values of ``M`` that hold ``share`` of its squared Frobenius norm.

    By Eckart–Young, the smallest ``r`` with relative error
    ``sqrt(1 - share)`` or less for the best rank-``r`` approximation.

    Parameters
    ----------
    M : matrix ``[m, n]`` (numpy or torch), not all zero
    share : float in (0, 1]

    Returns
    -------
    int, between 1 and ``min(m, n)``

    Used in chapter 2.

    >>> energy_rank(np.diag([10.0, 1.0, 0.1]), share=0.99)
    1
    >>> energy_rank(np.diag([10.0, 1.0, 0.1]), share=0.9999)
    2
    """
    a = _check_tensor(M, "M", ndim=2)
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share <= 1:
        raise ValueError(f"share must be a number in (0, 1]; got {share!r}")
    s2 = np.linalg.svd(a, compute_uv=False) ** 2
    if s2.sum() == 0:
        raise ValueError("M is all zeros: it has no energy to share")
    frac = np.cumsum(s2) / s2.sum()
    # with share=1 the last cumulative fraction may fall short of 1 by rounding: clip
    return int(min(np.searchsorted(frac, share) + 1, len(s2)))


def tt_bond_caps(shape: Sequence[int], max_rank: int) -> list[int]:
    """Bond dimensions of a tensor train with every bond at most ``max_rank``.

    Bond ``k`` (between legs ``k`` and ``k+1``) can never exceed the rank of the
    unfolding it cuts, so it is ``min(max_rank, I_0 ... I_k, I_{k+1} ... I_{N-1})``;
    these are the bonds :func:`tt_svd` gives a generic tensor with
    ``max_rank=max_rank``. With :func:`tt_n_params` they count the numbers stored.

    Parameters
    ----------
    shape : sequence of int ``[N]``, N >= 2
    max_rank : int >= 1

    Returns
    -------
    list of int ``[N - 1]``

    Used in chapter 2.

    >>> tt_bond_caps((2,) * 6, 4)
    [2, 4, 4, 4, 2]
    """
    shp = _check_shape(shape, "shape", min_len=2)
    max_rank = _check_int(max_rank, "max_rank")
    return [min(max_rank, math.prod(shp[: k + 1]), math.prod(shp[k + 1:])) for k in range(len(shp) - 1)]


def _check_shape(shape: Any, name: str, min_len: int = 1) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or isinstance(shape, numbers.Number):
        raise TypeError(f"{name} must be a sequence of ints; got {shape!r}")
    try:
        shp = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints; got {shape!r}") from None
    if len(shp) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries; got {shp}")
    return tuple(_check_int(d, f"{name}[{k}]") for k, d in enumerate(shp))


def plot_rank_sweep(results: dict, axes, title: str, size: int | None = None,
                    logx: bool = False, bottom: float | None = None):
    """Draw a :func:`rank_sweep` result: error against the rank knob and against numbers stored.

    Parameters
    ----------
    results : dict, as returned by :func:`rank_sweep`
    axes : two matplotlib axes (left: error against rank; right: error
        against parameter count, log-log)
    title : str
    size : int, optional
        Size of the full tensor, drawn as a dotted vertical line on the right.
    logx : bool
        Log scale for the rank axis too.
    bottom : float, optional
        Zoom the error axes to ``[bottom, 1.5]``; exact points then fall
        below the axes.

    Returns
    -------
    axes

    Used in chapter 2.
    """
    if not isinstance(results, dict) or not results:
        raise TypeError(f"results must be rank_sweep's dict; got {type(results).__name__}")
    try:
        ax_rank, ax_params = axes
    except (TypeError, ValueError):
        raise TypeError("axes must be a pair of matplotlib axes") from None
    for name, res in results.items():
        _check_curve(res, f"results[{name!r}]", keys=("rank", "error", "params"))
        if not res["rank"]:
            continue
        kw = dict(color=DECOMPOSITION_COLORS.get(name), marker="o", ms=3, label=name)
        ax_rank.semilogy(res["rank"], error_floor(res["error"]), **kw)
        ax_params.loglog(res["params"], error_floor(res["error"]), **kw)
    ax_rank.set(xlabel="rank knob ($r$, $R$ or $\\chi$)", ylabel="relative error", title=title)
    ax_params.set(xlabel="numbers stored", title=title)
    if logx:
        ax_rank.set_xscale("log")
    if bottom is not None:
        for ax in (ax_rank, ax_params):
            ax.set_ylim(bottom=bottom, top=1.5)
    if size is not None:
        ax_params.axvline(size, color="gray", ls=":", lw=1)
    ax_rank.legend(frameon=False, fontsize=10)
    return axes


# ---------------------------------------------------------------------------
# a trained attention model whose circuits chapter 2 decomposes
# ---------------------------------------------------------------------------


def lookup_task(n: int, n_positions: int = 8, n_tokens: int = 16, seed: int = 0):
    """Data for the look-up task: "which token sits at position k?".

    Each sequence is ``n_positions`` random content tokens (ids ``0 .. n_tokens-1``)
    followed by one pointer token ``n_tokens + k`` that asks for the token at
    position ``k``. One attention layer solves it: the pointer's query matches
    the key of position ``k`` (a QK circuit from tokens to positions) and the
    OV circuit copies the content token found there.

    Parameters
    ----------
    n : int, number of sequences
    n_positions, n_tokens : int
    seed : int

    Returns
    -------
    tokens : torch.LongTensor ``[n, n_positions + 1]``
    targets : torch.LongTensor ``[n]``, in ``0 .. n_tokens-1``

    The data of chapter 2's look-up recipes; not used by a page.

    >>> tokens, targets = lookup_task(3, n_positions=4, n_tokens=5, seed=0)
    >>> tokens.shape, bool((tokens[:, -1] >= 5).all())
    (torch.Size([3, 5]), True)
    >>> bool((tokens[range(3), tokens[:, -1] - 5] == targets).all())
    True
    """
    check_int(n_positions, "n_positions", 1)
    check_int(n_tokens, "n_tokens", 1)
    _check_seed(seed)
    import torch

    n = _check_int(n, "n")
    n_positions = _check_int(n_positions, "n_positions")
    n_tokens = _check_int(n_tokens, "n_tokens")
    gen = torch.Generator().manual_seed(_check_int(seed, "seed", minimum=0))
    content = torch.randint(0, n_tokens, (n, n_positions), generator=gen)
    k = torch.randint(0, n_positions, (n,), generator=gen)
    tokens = torch.cat([content, (n_tokens + k)[:, None]], dim=1)
    return tokens, content[torch.arange(n), k]


def lookup_config(seed: int = 0, n_positions: int = 8, n_tokens: int = 16):
    """The attention-only model of chapter 2: 1 layer, 4 heads, ``d_model`` 64, ``d_head`` 16.

    Each head's ``W_QK = W_Q W_K^T`` and ``W_OV = W_V W_O`` is a
    ``[d_model, d_model] = [64, 64]`` matrix of rank at most ``d_head = 16``.

    The model of chapter 2's look-up recipes; not used by a page.
    """
    check_int(n_positions, "n_positions", 1)
    check_int(n_tokens, "n_tokens", 1)
    _check_seed(seed)
    from helpers.transformer import TransformerConfig

    return TransformerConfig(
        n_layers=1, d_model=64, n_heads=4, d_head=16, d_mlp=0,
        d_vocab=n_tokens + n_positions, d_vocab_out=n_tokens, n_ctx=n_positions + 1,
        attn_only=True, seed=seed,
    )


LOOKUP_MODEL = "lookup_1l"
LOOKUP_MODEL_NO_DECAY = "lookup_1l_nowd"


def _check_weight_decay(weight_decay: Any) -> float:
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real):
        raise TypeError(f"weight_decay must be a number; got {weight_decay!r} ({type(weight_decay).__name__})")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be finite and >= 0; got {weight_decay}")
    return float(weight_decay)


@recipe(LOOKUP_MODEL, "chapter 2: 1-layer attention-only model on the look-up task (AdamW, weight decay 1.0)")
def train_lookup_model(seed: int = 0, steps: int = 800, weight_decay: float = 1.0,
                       progress: bool | None = False):
    """Train :func:`lookup_config`'s model on :func:`lookup_task`; returns ``(model, TrainResult)``.

    AdamW (lr 3e-3, batch 512, 50 warm-up steps) on 8192 sequences; the test
    accuracy on 2048 fresh sequences is logged every 50 steps as ``test_acc``.
    Runs on one torch thread, so a re-run reproduces the shipped checkpoint
    (``store.load("lookup_1l")``) up to the last bits of float32 rounding.
    About 20 s on one busy CPU core; reaches 100% test accuracy within a few
    hundred steps.

    Parameters
    ----------
    seed : int
        Seeds the model's initialisation, the data and the batch order.
    steps : int
        Optimiser steps.
    weight_decay : float
        AdamW's decoupled weight decay; the chapter compares 1.0 (the
        ``lookup_1l`` checkpoint) with 0.0 (``lookup_1l_nowd``).
    progress : bool or None
        Progress bar (``None``: only in a terminal).

    Returns
    -------
    model : helpers.transformer.HookedTransformer
    result : helpers.training.TrainResult

    Used in chapter 2 (through the store: ``store.train_or_load("lookup_1l")``).
    """
    from helpers.training import accuracy, cross_entropy, torch_threads, train
    from helpers.transformer import HookedTransformer

    seed = _check_int(seed, "seed", minimum=0)
    steps = _check_int(steps, "steps")
    weight_decay = _check_weight_decay(weight_decay)
    cfg = lookup_config(seed)
    n_positions, n_tokens = cfg.n_ctx - 1, cfg.d_vocab_out
    model = HookedTransformer(cfg)
    data = lookup_task(8192, n_positions, n_tokens, seed=seed)
    test_tokens, test_targets = lookup_task(2048, n_positions, n_tokens, seed=seed + 10_000)

    def loss_fn(m, batch):
        return cross_entropy(m(batch[0], read_positions=[-1])[:, 0], batch[1])

    def metrics(m):
        logits = m(test_tokens, read_positions=[-1])[:, 0]
        return {"test_acc": accuracy(logits, test_targets), "test_loss": cross_entropy(logits, test_targets).item()}

    with torch_threads(1):
        result = train(
            model, data, loss_fn, steps=steps, lr=3e-3, weight_decay=weight_decay, warmup_steps=50,
            batch_size=512, seed=seed, log_every=50, metrics_fn=metrics, progress=progress,
            description="look-up model",
        )
    return model, result


@recipe(LOOKUP_MODEL_NO_DECAY, "chapter 2: the look-up model trained without weight decay (control)")
def train_lookup_model_no_decay(seed: int = 0, steps: int = 800, progress: bool | None = False):
    """:func:`train_lookup_model` with ``weight_decay=0``: the control run of chapter 2.

    Everything else (data, initialisation, batch order, optimiser) is the same,
    so the difference between the two checkpoints' circuits is what weight
    decay does.

    Used in chapter 2 (``store.train_or_load("lookup_1l_nowd")``).
    """
    return train_lookup_model(seed=seed, steps=steps, weight_decay=0.0, progress=progress)


def attention_circuits(model) -> tuple[np.ndarray, np.ndarray]:
    """The QK and OV circuits of every head, as float64 numpy tensors.

    ``model.QK`` and ``model.OV`` as float64 arrays (read through the model's
    weight transform, as the forward pass uses them):
    ``W_QK[l, h] = W_Q[h] @ W_K[h]^T`` (so the attention score of a query
    residual ``x_q`` and a key residual ``x_k`` is ``x_q W_QK x_k^T``) and
    ``W_OV[l, h] = W_V[h] @ W_O[h]`` (a residual vector ``x`` attended to
    writes ``x W_OV``), row-vector convention.

    Parameters
    ----------
    model : helpers.transformer.HookedTransformer

    Returns
    -------
    W_QK, W_OV : numpy arrays ``[n_layers, n_heads, d_model, d_model]``,
        each ``[d_model, d_model]`` slice of rank at most ``d_head``.

    Used in chapter 2 (and defined properly in chapter 3).

    >>> from helpers.transformer import HookedTransformer
    >>> W_QK, W_OV = attention_circuits(HookedTransformer(lookup_config()))
    >>> W_QK.shape, int(np.linalg.matrix_rank(W_OV[0, 0]))
    ((1, 4, 64, 64), 16)
    """
    import torch

    with torch.no_grad():  # the model's own QK/OV views, read through its weight transform
        qk = model.QK.to(torch.float64).AB
        ov = model.OV.to(torch.float64).AB
    return to_numpy(qk), to_numpy(ov)


# ---------------------------------------------------------------------------
# Reading a trained model's decompositions (chapter 2's interpretability payoff)
# ---------------------------------------------------------------------------


class QKReading(NamedTuple):
    """Result of :func:`qk_reading`: what a QK circuit's top singular directions read.

    Attributes
    ----------
    S : ``[k]``
        The top singular values of ``W_QK``.
    query : ``[n_query, k]``
        Each query-side input projected onto the top left singular vectors.
    key : ``[n_key, k]``
        Each key-side input projected onto the top right singular vectors.

    Chapter 2 uses it through :func:`qk_reading`.
    """

    S: np.ndarray
    query: np.ndarray
    key: np.ndarray

    def scores(self) -> np.ndarray:
        """Scores ``[n_query, n_key]`` through the top ``k`` directions only: ``query diag(S) key^T``."""
        return (self.query * self.S) @ self.key.T


def qk_reading(W_QK: ArrayLike, query_inputs: ArrayLike, key_inputs: ArrayLike, k: int = 3) -> QKReading:
    """Project query-side and key-side inputs onto a QK circuit's top ``k`` singular directions.

    With ``W_QK = U diag(S) V^T`` (row-vector convention: the score of a query
    residual ``x_q`` and a key residual ``x_k`` is ``x_q W_QK x_k^T``), the
    query inputs are projected onto ``U[:, :k]`` and the key inputs onto
    ``V[:, :k]``; the rank-``k`` part of the score is
    ``sum_i S_i (x_q . u_i)(x_k . v_i)``.  Singular vectors are signed so
    that each ``u_i`` has a positive sum of query projections (SVD signs are
    arbitrary; flipping ``u_i`` and ``v_i`` together changes no score).

    Parameters
    ----------
    W_QK : ``[d_model, d_model]``
    query_inputs : ``[n_query, d_model]``
        E.g. the embeddings of the tokens that ask (plus their position).
    key_inputs : ``[n_key, d_model]``
        E.g. the positional embeddings, or the token embeddings.
    k : int
        How many singular directions (``1 .. d_model``).

    Returns
    -------
    QKReading

    Used in chapter 2.

    >>> rng = np.random.default_rng(0)
    >>> P = np.linalg.qr(rng.standard_normal((6, 6)))[0].T   # orthonormal "positions", one per row
    >>> r = qk_reading(P[:3].T @ P[:3], P, P, k=3)    # a QK circuit matching positions 0-2 to themselves
    >>> bool(np.allclose(r.scores(), np.diag([1., 1., 1., 0., 0., 0.])))
    True
    """
    W = _check_tensor(W_QK, "W_QK", ndim=2)
    Xq = _check_tensor(query_inputs, "query_inputs", ndim=2)
    Xk = _check_tensor(key_inputs, "key_inputs", ndim=2)
    if Xq.shape[1] != W.shape[0] or Xk.shape[1] != W.shape[1]:
        raise ValueError(f"query_inputs [n, {W.shape[0]}] and key_inputs [n, {W.shape[1]}] must match W_QK "
                         f"{W.shape}; got {Xq.shape} and {Xk.shape}")
    k = _check_int(k, "k")
    if k > min(W.shape):
        raise ValueError(f"k must be at most {min(W.shape)} for W_QK of shape {W.shape}; got {k}")
    U, S, Vt = np.linalg.svd(W)
    U, S, V = U[:, :k], S[:k], Vt[:k].T
    q, key = Xq @ U, Xk @ V
    sign = np.where(q.sum(0) < 0, -1.0, 1.0)
    return QKReading(S, q * sign, key * sign)


def input_share(reading: np.ndarray, other: np.ndarray) -> float:
    """Share of the squared projection carried by one group of inputs: ``|a|^2 / (|a|^2 + |b|^2)``.

    Parameters
    ----------
    reading, other : ``[n_a, k]`` and ``[n_b, k]``
        Two groups of inputs projected onto the same directions (e.g. the
        positional and the token embeddings onto a QK circuit's top right
        singular vectors, :attr:`QKReading.key`).

    Returns
    -------
    float in [0, 1]
        1 when the directions see only the first group.

    Used in chapter 2.

    >>> input_share(np.ones((2, 3)), np.zeros((5, 3)))
    1.0
    """
    a = _check_tensor(reading, "reading", ndim=2)
    b = _check_tensor(other, "other", ndim=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"reading and other must be projected on the same number of directions; got "
                         f"{a.shape} and {b.shape}")
    na, nb = float((a ** 2).sum()), float((b ** 2).sum())
    if na + nb == 0:
        raise ValueError("both groups project to zero; the share is undefined")
    return na / (na + nb)


def match_accuracy(scores: ArrayLike) -> float:
    """Fraction of rows ``i`` of a square score matrix whose largest entry is at column ``i``.

    For a QK circuit read on pointers (rows) and positions (columns) this is
    how often pointer ``k`` attends most to position ``k``; for a full OV
    circuit (token in, logit out) how often a token's largest logit is
    itself.

    Used in chapter 2.

    >>> match_accuracy(np.eye(3) + 0.1)
    1.0
    """
    M = _check_tensor(scores, "scores", ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"scores must be square [n, n]; got {M.shape}")
    return float((M.argmax(1) == np.arange(M.shape[0])).mean())


def copying_score(F: ArrayLike) -> float:
    """Elhage et al.'s copying score of a square circuit: ``sum(eig) / sum(|eig|)``, real part.

    ``F`` maps an input token to output logits over the same tokens (the full
    OV circuit ``W_E W_OV W_U`` restricted to those tokens).  Positive
    eigenvalues mean that reading a token raises its own logit; the score is
    1 for a pure copier (all eigenvalues positive) and -1 for a pure
    anti-copier.

    Parameters
    ----------
    F : ``[n_tokens, n_tokens]``

    Returns
    -------
    float in [-1, 1]

    Used in chapter 2.

    >>> copying_score(np.diag([3., 1., 2.])), copying_score(-np.eye(2))
    (1.0, -1.0)
    """
    M = _check_tensor(F, "F", ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"F must be square [n_tokens, n_tokens]; got {M.shape}")
    lam = np.linalg.eigvals(M)
    total = float(np.abs(lam).sum())
    if total == 0:
        raise ValueError("F is zero; the copying score is undefined")
    return float(lam.real.sum() / total)


class HeadLoadings(NamedTuple):
    """Result of :func:`cp_head_loadings`.

    Attributes
    ----------
    cp : CPDecomposition
        Of the stacked ``[n_heads, d_model, d_model]`` tensor; ``cp.factors[0]``
        is the head factor.
    share : ``[n_heads, rank]``
        Each component's squared head loadings, normalised to sum to 1.
    n_eff : ``[rank]``
        Effective number of heads of each component, ``1 / sum_h share[h]^2``
        (1: one head only; ``n_heads``: spread evenly).
    error : float
        Relative error of the CP fit.

    Chapter 2 uses it through :func:`cp_head_loadings`.
    """

    cp: Any
    share: np.ndarray
    n_eff: np.ndarray
    error: float

    def single_head(self, threshold: float = 0.9) -> np.ndarray:
        """Mask ``[rank]`` of the components that put at least ``threshold`` of their loading on one head."""
        return self.share.max(0) >= threshold


def cp_head_loadings(T: ArrayLike, rank: int, *, max_iter: int = 300, tol: float | None = 1e-9,
                     seed: int = 0) -> HeadLoadings:
    """CP-decompose stacked per-head circuits and ask how each component spreads over the heads.

    A CP component ``w_r a_r (x) b_r (x) c_r`` of ``T[head, d_model, d_model]``
    is one input direction ``b_r`` and one output direction ``c_r`` used by the
    heads in proportion to ``a_r``.  Components that load on one head are that
    head's own; components spread over several are shared structure.

    Parameters
    ----------
    T : ``[n_heads, d_model, d_model]``
        E.g. the QK or OV circuits of one layer (:func:`attention_circuits`).
    rank : int
        CP rank.
    max_iter, tol, seed
        Passed to :func:`cp_als` (SVD initialisation, so deterministic).

    Returns
    -------
    HeadLoadings

    Used in chapter 2.

    >>> rng = np.random.default_rng(0)
    >>> b, c = rng.standard_normal((2, 2, 5))
    >>> T = np.stack([np.outer(b[0], c[0]), np.outer(b[1], c[1]), np.zeros((5, 5))])  # one direction per head
    >>> hl = cp_head_loadings(T, 2)
    >>> bool(hl.error < 1e-8), hl.single_head().tolist()
    (True, [True, True])
    """
    X = _check_tensor(T, "T", ndim=3)
    rank = _check_int(rank, "rank")
    cp = cp_als(X, rank, init="svd", seed=seed, tol=tol, max_iter=max_iter)
    A = np.asarray(cp.factors[0], dtype=float)
    norms = (A ** 2).sum(0)
    if np.any(norms == 0):
        raise ValueError("a CP component has a zero head factor; try a lower rank")
    share = A ** 2 / norms
    return HeadLoadings(cp, share, 1.0 / (share ** 2).sum(0), relative_error(X, cp.reconstruct()))
