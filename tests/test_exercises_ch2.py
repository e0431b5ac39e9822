"""Chapter 2 exercises: each check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import decompositions as D
from helpers.exercises import ch2


def test_tt_svd():
    assert ch2.check_tt_svd(ch2.solution_tt_svd)
    T = D.random_tt_tensor((4, 5, 6, 5, 4), (3, 6, 4, 2), seed=1)
    cores = ch2.solution_tt_svd(T, 10)
    assert [c.shape[2] for c in cores[:-1]] == list(D.tt_svd(T).ranks)  # the ranks of the unfoldings

    def vh_only(T, max_rank):  # drops the singular values
        a, cores, r_prev = np.asarray(T), [], 1
        C = a
        for k in range(a.ndim - 1):
            U, S, Vh = np.linalg.svd(C.reshape(r_prev * a.shape[k], -1), full_matrices=False)
            r = min(max_rank, int((S > 1e-12 * S[0]).sum()))
            cores.append(U[:, :r].reshape(r_prev, a.shape[k], r))
            C, r_prev = Vh[:r], r
        cores.append(C.reshape(r_prev, a.shape[-1], 1))
        return cores

    def trailing(T, max_rank):  # keeps the smallest singular triplets when truncating
        a, cores, r_prev = np.asarray(T), [], 1
        C = a
        for k in range(a.ndim - 1):
            U, S, Vh = np.linalg.svd(C.reshape(r_prev * a.shape[k], -1), full_matrices=False)
            n = int((S > 1e-12 * S[0]).sum())
            keep = slice(max(0, n - max_rank), n)
            r = keep.stop - keep.start
            cores.append(U[:, keep].reshape(r_prev, a.shape[k], r))
            C, r_prev = S[keep, None] * Vh[keep], r
        cores.append(C.reshape(r_prev, a.shape[-1], 1))
        return cores

    with pytest.raises(AssertionError, match="carry S Vh"):
        ch2.check_tt_svd(vh_only)
    with pytest.raises(AssertionError, match="LEADING triplets"):
        ch2.check_tt_svd(trailing)
    with pytest.raises(AssertionError, match="keep at most max_rank"):
        ch2.check_tt_svd(lambda T, max_rank: ch2.solution_tt_svd(T, 100))


def test_cp_rescale_permute():
    assert ch2.check_cp_rescale_permute(ch2.solution_cp_rescale_permute)
    T = D.random_cp_tensor((4, 5, 6), 3, seed=0)
    cp = D.cp_als(T, 3)
    scales = [[2.0, -1.0, 0.5], [1.0, 3.0, -2.0], [0.25, 1.0, 1.0]]
    w2, f2 = ch2.solution_cp_rescale_permute(cp.weights, cp.factors, scales, [2, 0, 1])
    assert np.allclose(D.cp_reconstruct(w2, f2), cp.reconstruct(), atol=1e-12)
    assert not np.allclose(f2[0], cp.factors[0])  # a genuinely different decomposition
    w3, f3 = D.cp_normalize(w2, f2)  # ... that normalises back to the same one
    assert np.allclose(w3, cp.weights)
    with pytest.raises(ValueError, match="perm must be a permutation"):
        ch2.solution_cp_rescale_permute(cp.weights, cp.factors, scales, [0, 0, 1])
    with pytest.raises(ValueError, match="scales must be"):
        ch2.solution_cp_rescale_permute(cp.weights, cp.factors, [[0.0] * 3] * 3, [0, 1, 2])

    def weights_untouched(w, fs, scales, perm):
        _, f = ch2.solution_cp_rescale_permute(w, fs, scales, perm)
        return np.asarray(w)[perm], f

    def weights_not_permuted(w, fs, scales, perm):
        new_w, f = ch2.solution_cp_rescale_permute(w, fs, scales, perm)
        return np.asarray(w) / np.prod(np.asarray(scales), axis=0), f

    with pytest.raises(AssertionError, match="divide weight r"):
        ch2.check_cp_rescale_permute(weights_untouched)
    with pytest.raises(AssertionError, match="reorder the weights"):
        ch2.check_cp_rescale_permute(weights_not_permuted)


def test_strassen():
    assert ch2.check_strassen(ch2.solution_strassen)
    w, f = ch2.solution_strassen()
    assert np.array_equal(D.cp_reconstruct(w, f), D.matmul_tensor(2))
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    alpha, beta, gamma = f
    products = (A.ravel() @ alpha) * (B.ravel() @ beta)  # the seven multiplications
    assert np.allclose((gamma @ products).reshape(2, 2).T, A @ B)

    def not_transposed():  # gamma indexed by C ravelled instead of C^T ravelled
        w, (a, b, g) = ch2.solution_strassen()
        return w, [a, b, g[[0, 2, 1, 3]]]

    def schoolbook():
        M = D.matmul_tensor(2)
        idx = np.argwhere(M)
        return np.ones(8), [np.eye(4)[:, idx[:, n]] for n in range(3)]

    with pytest.raises(AssertionError, match="TRANSPOSED"):
        ch2.check_strassen(not_transposed)
    with pytest.raises(AssertionError, match="schoolbook"):
        ch2.check_strassen(schoolbook)


def test_move_center():
    assert ch2.check_move_center(ch2.solution_move_center)
    T = np.random.default_rng(0).standard_normal((3, 4, 5, 2))
    cores = D.tt_orthogonalize(D.tt_svd(T).cores, 0)
    for c in range(3):
        cores = ch2.solution_move_center(cores, c)
        assert D.tt_is_canonical(cores, c + 1) and np.allclose(D.tt_reconstruct(cores), T)
    with pytest.raises(ValueError, match="center must be < 1"):
        ch2.solution_move_center([np.ones((1, 2, 1))] * 2, 1)

    def r_dropped(cores, c):  # keeps Q but forgets to push R on
        cs = [np.array(x) for x in cores]
        r0, I, r1 = cs[c].shape
        Q, _ = np.linalg.qr(cs[c].reshape(r0 * I, r1))
        cs[c] = Q.reshape(r0, I, -1)
        return cs

    def r_on_the_right(cores, c):  # multiplies R into the wrong bond
        cs = [np.array(x) for x in cores]
        r0, I, r1 = cs[c].shape
        Q, R = np.linalg.qr(cs[c].reshape(r0 * I, r1))
        cs[c] = Q.reshape(r0, I, -1)
        cs[c + 1] = np.einsum("ajb,cb->ajc", cs[c + 1], R) if cs[c + 1].shape[2] == R.shape[1] else cs[c + 1]
        return cs

    for wrong in (r_dropped, r_on_the_right):
        with pytest.raises(AssertionError, match="changed the tensor"):
            ch2.check_move_center(wrong)
