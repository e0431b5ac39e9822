"""Chapter 2 exercises: reference solutions and check functions.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on cases with known answers
and raises ``AssertionError`` with a hint when it is wrong (it returns True
otherwise); ``solution_<x>`` is the reference answer (tested in
``tests/test_exercises_ch2.py``).

Used in chapter 2.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from helpers import decompositions as D

__all__ = [
    "solution_tt_svd", "check_tt_svd",
    "solution_cp_rescale_permute", "check_cp_rescale_permute",
    "solution_strassen", "check_strassen",
    "solution_move_center", "check_move_center",
]


# ---------------------------------------------------------------------------
# 1. TT-SVD (implement)
# ---------------------------------------------------------------------------
def solution_tt_svd(T, max_rank: int) -> list[np.ndarray]:
    """Exercise ch2-ex-tt-svd: a tensor train by sequential truncated SVDs.

    Reshape to ``[I_0, rest]``, SVD, keep at most ``max_rank`` triplets (and
    no more than the numerical rank): ``U`` is core 0, ``S Vh`` is reshaped to
    ``[r_0 I_1, rest]`` and split again; the last remainder is the last core.

    Returns
    -------
    list of N cores ``[r_{k-1}, I_k, r_k]``

    Used in chapter 2.
    """
    a = np.asarray(T, dtype=float)
    shape = a.shape
    cores, C, r_prev = [], a, 1
    for k in range(a.ndim - 1):
        C = C.reshape(r_prev * shape[k], -1)
        U, S, Vh = np.linalg.svd(C, full_matrices=False)
        r = int(np.sum(S > S[0] * max(C.shape) * np.finfo(float).eps)) if S[0] > 0 else 1
        r = max(1, min(r, int(max_rank)))
        cores.append(U[:, :r].reshape(r_prev, shape[k], r))
        C = S[:r, None] * Vh[:r]
        r_prev = r
    cores.append(C.reshape(r_prev, shape[-1], 1))
    return cores


def check_tt_svd(fn: Callable) -> bool:
    """Check a reader's ``fn(T, max_rank) -> cores`` against ``D.tt_svd`` on tensors of known TT rank.

    Exact at the true rank (relative error below 1e-10); truncated below it,
    the relative error must match the library's (TT-SVD's truncation is
    unique up to signs).

    Used in chapter 2.
    """
    for shape, ranks, seed in (((4, 5, 6, 5), (3, 6, 4), 0), ((3, 4, 5, 4, 3), (2, 4, 4, 2), 1)):
        T = D.random_tt_tensor(shape, ranks, seed=seed)
        for cap in (max(ranks), 2, 1):
            cores = fn(T, cap)
            try:
                full = D.tt_reconstruct(cores)
            except (ValueError, TypeError) as e:
                raise AssertionError(f"your cores do not form a tensor train ({e}); core k has shape "
                                     "[r_(k-1), I_k, r_k] with r_(-1) = r_(N-1) = 1") from None
            if full.shape != T.shape:
                raise AssertionError(f"your train reconstructs to shape {full.shape}, expected {T.shape}")
            bonds = [np.shape(c)[2] for c in cores[:-1]]
            if max(bonds) > cap:
                raise AssertionError(f"max_rank={cap} but your bonds are {bonds}: keep at most max_rank singular "
                                     "triplets at each step")
            err = D.relative_error(T, full)
            ref = D.relative_error(T, D.tt_svd(T, max_rank=cap).reconstruct())
            if cap == max(ranks) and err > 1e-10:
                raise AssertionError(f"at the true TT rank {ranks} the train should be exact, error {err:.2e}: "
                                     "carry S Vh (not Vh alone) into the next step")
            if abs(err - ref) > 1e-8:
                raise AssertionError(f"max_rank={cap} on a tensor of TT rank {ranks}: relative error {err:.6f}, the "
                                     f"library's TT-SVD gets {ref:.6f}. Truncate each SVD to the LEADING triplets "
                                     "and pass S[:r, None] * Vh[:r] on, reshaped to [r * I_(k+1), rest]")
    return True


# ---------------------------------------------------------------------------
# 2. Two decompositions, one tensor
# ---------------------------------------------------------------------------
def solution_cp_rescale_permute(
    weights, factors: Sequence, scales: Sequence[Sequence[float]], perm: Sequence[int],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Exercise ch2-ex-rescale: a different CP decomposition of the same tensor.

    Multiplies column ``r`` of factor ``n`` by ``scales[n][r]`` and divides the
    weight ``r`` by the product of those scales (scaling indeterminacy), then
    reorders the components by ``perm`` (permutation indeterminacy). The result
    reconstructs to the same tensor.

    Parameters
    ----------
    weights : ``[R]``
    factors : N matrices ``[I_n, R]``
    scales : N sequences of R non-zero numbers
    perm : a permutation of ``range(R)``

    Returns
    -------
    (weights [R], factors)

    Used in chapter 2.
    """
    fs = [np.asarray(f, dtype=float) for f in factors]
    R = fs[0].shape[1]
    w = np.asarray(weights, dtype=float)
    s = np.asarray(scales, dtype=float)
    if s.shape != (len(fs), R) or np.any(s == 0):
        raise ValueError(f"scales must be {len(fs)} rows of {R} non-zero numbers; got shape {s.shape}")
    perm = np.asarray(perm)
    if sorted(perm.tolist()) != list(range(R)):
        raise ValueError(f"perm must be a permutation of range({R}); got {perm.tolist()}")
    new_w = w / np.prod(s, axis=0)
    return new_w[perm], [(f * s[n])[:, perm] for n, f in enumerate(fs)]


def check_cp_rescale_permute(fn: Callable) -> bool:
    """Check a reader's ``fn(weights, factors, scales, perm) -> (weights, factors)``.

    Used in chapter 2.
    """
    T = D.random_cp_tensor((4, 5, 6), 3, seed=0)
    cp = D.cp_als(T, 3)
    scales = [[2.0, -1.0, 0.5], [1.0, 3.0, -2.0], [0.25, 1.0, 1.0]]
    perm = [2, 0, 1]
    w2, f2 = fn(cp.weights, cp.factors, scales, perm)
    rw, rf = solution_cp_rescale_permute(cp.weights, cp.factors, scales, perm)
    if not np.allclose(D.cp_reconstruct(w2, f2), cp.reconstruct(), atol=1e-12):
        scaled_only = all(np.allclose(np.abs(f), np.abs(g)) for f, g in zip(f2, rf))
        if scaled_only and np.allclose(np.abs(w2), np.abs(cp.weights[perm])):
            raise AssertionError("the tensor changed: after scaling the columns, divide weight r by the product "
                                 "of its scales over the factors")
        raise AssertionError("the tensor changed: reorder the weights with the same perm as the columns of "
                             "every factor")
    if not (np.allclose(w2, rw) and all(np.allclose(f, g) for f, g in zip(f2, rf))):
        raise AssertionError("same tensor, but not the decomposition asked for: column r of factor n times "
                             "scales[n][r], then component perm[i] in place i")
    return True


# ---------------------------------------------------------------------------
# 3. Strassen's algorithm is a rank-7 decomposition
# ---------------------------------------------------------------------------
def solution_strassen() -> tuple[np.ndarray, list[np.ndarray]]:
    """Exercise ch2-ex-strassen: a rank-7 CP decomposition of ``matmul_tensor(2)``.

    Strassen's seven products ``m_1 ... m_7`` of sums of entries of ``A`` and
    ``B``, each added to some entries of ``C``. Component ``r`` is
    ``alpha_r (x) beta_r (x) gamma_r``: ``alpha_r`` lists which entries of ``A``
    (ravelled, ``a11 a12 a21 a22``) enter product ``r``, ``beta_r`` the same for
    ``B``, and ``gamma_r`` where the product goes in ``C^T`` ravelled (the
    third mode of the tensor is indexed ``(k, i)``).

    Returns
    -------
    (weights [7] of ones, [alpha [4, 7], beta [4, 7], gamma [4, 7]])

    Used in chapter 2.
    """
    # rows: a11 a12 a21 a22 ; columns: m1..m7
    alpha = np.array([[1, 0, 1, 0, 1, -1, 0],
                      [0, 0, 0, 0, 1, 0, 1],
                      [0, 1, 0, 0, 0, 1, 0],
                      [1, 1, 0, 1, 0, 0, -1]], dtype=float)
    beta = np.array([[1, 1, 0, -1, 0, 1, 0],
                     [0, 0, 1, 0, 0, 1, 0],
                     [0, 0, 0, 1, 0, 0, 1],
                     [1, 0, -1, 0, 1, 0, 1]], dtype=float)
    # where each product goes in C: c11 = m1+m4-m5+m7, c12 = m3+m5, c21 = m2+m4, c22 = m1-m2+m3+m6
    c = np.array([[1, 0, 0, 1, -1, 0, 1],   # c11
                  [0, 0, 1, 0, 1, 0, 0],    # c12
                  [0, 1, 0, 1, 0, 0, 0],    # c21
                  [1, -1, 1, 0, 0, 1, 0]],  # c22
                 dtype=float)
    gamma = c[[0, 2, 1, 3]]  # rows of gamma index C^T ravelled: c11, c21, c12, c22
    return np.ones(7), [alpha, beta, gamma]


def check_strassen(fn: Callable) -> bool:
    """Check a reader's ``fn() -> (weights [7], [alpha, beta, gamma])``, each factor ``[4, 7]``.

    Used in chapter 2.
    """
    w, fs = fn()
    fs = [np.asarray(f, dtype=float) for f in fs]
    R = len(np.atleast_1d(w))
    if R == 8:
        raise AssertionError("8 components is the schoolbook algorithm; Strassen's uses 7 products")
    if R != 7 or len(fs) != 3 or any(f.shape != (4, 7) for f in fs):
        raise AssertionError("return 7 weights and three factors of shape [4, 7] (entries of A, B, C x products)")
    M = D.matmul_tensor(2)
    got = D.cp_reconstruct(np.asarray(w, dtype=float), fs)
    if np.allclose(got, M):
        return True
    swapped = D.cp_reconstruct(np.asarray(w, dtype=float), [fs[0], fs[1], fs[2][[0, 2, 1, 3]]])
    if np.allclose(swapped, M):
        raise AssertionError("almost: the third mode indexes C TRANSPOSED, ravelled (c11, c21, c12, c22); swap "
                             "rows 1 and 2 of gamma")
    raise AssertionError(f"the reconstruction differs from matmul_tensor(2) in {int((~np.isclose(got, M)).sum())} "
                         "entries; write out c11 = m1 + m4 - m5 + m7 etc. and read off the signs")


# ---------------------------------------------------------------------------
# 4. Move the orthogonality centre
# ---------------------------------------------------------------------------
def solution_move_center(cores: Sequence, center: int) -> list[np.ndarray]:
    """Exercise ch2-ex-move-center: move the orthogonality centre one site right.

    ``cores`` are in mixed canonical form around ``center``. One QR of the
    centre core, reshaped ``[r_{c-1} I_c, r_c]``, gives a left-orthonormal
    ``Q`` (the new core ``center``) and ``R``, which is pushed into core
    ``center + 1``: the new centre. The tensor is unchanged.

    Returns
    -------
    list of N cores, canonical around ``center + 1``

    Used in chapter 2.
    """
    cs = [np.array(c, dtype=float) for c in cores]
    if not 0 <= center < len(cs) - 1:
        raise ValueError(f"center must be < {len(cs) - 1} to move right; got {center}")
    r0, I, r1 = cs[center].shape
    Q, R = np.linalg.qr(cs[center].reshape(r0 * I, r1))
    cs[center] = Q.reshape(r0, I, Q.shape[1])
    cs[center + 1] = np.einsum("ab,bjc->ajc", R, cs[center + 1])
    return cs


def check_move_center(fn: Callable) -> bool:
    """Check a reader's ``fn(cores, center) -> cores`` (centre moved from ``center`` to ``center + 1``).

    Used in chapter 2.
    """
    T = np.random.default_rng(0).standard_normal((3, 4, 5, 2))
    cores = D.tt_orthogonalize(D.tt_svd(T).cores, 0)
    for c in range(3):
        cores = fn(cores, c)
        if not np.allclose(D.tt_reconstruct(cores), T):
            raise AssertionError(f"moving the centre from {c} to {c + 1} changed the tensor: multiply R into "
                                 f"core {c + 1} along its LEFT bond ('ab,bjc->ajc')")
        if not D.tt_is_canonical(cores, c + 1):
            raise AssertionError(f"same tensor, but not canonical around {c + 1}: core {c} must be left-orthonormal, "
                                 "i.e. Q of the QR of core c reshaped to [r_(c-1) I_c, r_c]")
    return True
