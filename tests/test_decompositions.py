"""Tests for helpers.decompositions (chapter 2).

Each test asserts a property: an identity to 1e-10, a recovery rate, a bound
that holds, an agreement with tensorly (the independent cross-check).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import decompositions as D

tl = pytest.importorskip("tensorly")
from tensorly.decomposition import parafac, tensor_train, tucker  # noqa: E402


def unfolding_rank(T, k):
    """Rank of the [I_0..I_k, I_{k+1}..] unfolding (the k-th TT rank)."""
    return int(np.linalg.matrix_rank(T.reshape(math.prod(T.shape[: k + 1]), -1)))


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------


def test_unfold_fold_mode_dot_khatri_rao_match_einsum():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((3, 4, 5))
    A, B, C = (rng.standard_normal((n, 2)) for n in (3, 4, 5))
    M = rng.standard_normal((6, 4))
    for n in range(3):
        assert np.array_equal(D.fold(D.unfold(T, n), n, T.shape), T)
    assert np.allclose(D.unfold(T, 1), np.moveaxis(T, 1, 0).reshape(4, -1))
    assert np.allclose(D.mode_dot(T, M, 1), np.einsum("aib,ji->ajb", T, M))
    P = rng.standard_normal((2, 5))
    assert np.allclose(D.mode_dot(T, P, 2), np.einsum("abk,jk->abj", T, P))
    assert np.allclose(D.mode_dot(T, P[:, :3], 0), np.einsum("iab,ji->jab", T, P[:, :3]))
    kr = D.khatri_rao([B, C])
    assert np.allclose(kr, np.einsum("jr,kr->jkr", B, C).reshape(20, 2))
    # the ALS identity: unfold(T, 0) = A @ khatri_rao([B, C]).T for T = [[A, B, C]]
    X = D.cp_reconstruct(None, [A, B, C])
    assert np.allclose(D.unfold(X, 0), A @ kr.T)
    assert np.allclose(X, np.einsum("ir,jr,kr->ijk", A, B, C))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=3, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_tt_svd_is_exact_for_any_shape(shape, seed):
    T = np.random.default_rng(seed).standard_normal(shape)
    tt = D.tt_svd(T)
    assert D.relative_error(T, tt.reconstruct()) < 1e-12
    for k, r in enumerate(tt.ranks):
        assert r == unfolding_rank(T, k)


def test_relative_error():
    assert D.relative_error(np.ones(4), np.ones(4)) == 0.0
    assert D.relative_error(np.zeros(3), np.ones(3)) == pytest.approx(math.sqrt(3))
    with pytest.raises(ValueError, match="same shape"):
        D.relative_error(np.ones(3), np.ones(4))


# ---------------------------------------------------------------------------
# SVD
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 8), (20, 7), (5, 30), (40, 40)])
@pytest.mark.parametrize("seed", range(3))
def test_eckart_young(shape, seed):
    """||M - M_r||_F^2 = sum of the discarded sigma_i^2, for every r, to 1e-10."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal(shape)
    sigma = np.linalg.svd(M, compute_uv=False)
    for r in range(1, min(shape) + 1):
        svd = D.svd_truncate(M, r)
        err2 = np.linalg.norm(M - svd.reconstruct()) ** 2
        assert abs(err2 - np.sum(sigma[r:] ** 2)) < 1e-10 * np.sum(sigma**2)
        assert abs(svd.error**2 - err2) < 1e-10 * np.sum(sigma**2)
        assert np.allclose(svd.U.T @ svd.U, np.eye(r), atol=1e-12)
        assert np.allclose(svd.Vh @ svd.Vh.T, np.eye(r), atol=1e-12)
        assert svd.n_params == r * (shape[0] + shape[1] + 1)
    # and no other rank-1 matrix beats the truncation
    best = np.linalg.norm(M - D.svd_truncate(M, 1).reconstruct())
    for _ in range(20):
        u, v = rng.standard_normal(shape[0]), rng.standard_normal(shape[1])
        c = u @ M @ v / (u @ u * (v @ v))  # the best multiple of u v^T
        assert np.linalg.norm(M - c * np.outer(u, v)) >= best


# ---------------------------------------------------------------------------
# CP
# ---------------------------------------------------------------------------


def test_cp_exact_recovery_9_of_10_seeds():
    """Random tensors of known CP rank R <= 5, shapes up to 20^3: rel. error <= 1e-6."""
    successes, report = 0, []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        R = int(rng.integers(1, 6))
        shape = tuple(int(s) for s in rng.integers(2, 21, size=3))
        T = D.random_cp_tensor(shape, R, seed=seed)
        cp = D.cp_als(T, R, max_iter=1000)
        err = D.relative_error(T, cp.reconstruct())
        report.append((shape, R, err, cp.n_iter))
        successes += err <= 1e-6
    assert successes >= 9, report


def test_cp_recovers_the_components_up_to_scale_and_order():
    rng = np.random.default_rng(3)
    fs = [rng.standard_normal((n, 3)) for n in (9, 10, 11)]
    w_true, f_true = D.cp_normalize(np.ones(3), fs)
    T = D.cp_reconstruct(w_true, f_true)
    cp = D.cp_als(T, 3)
    assert np.allclose(cp.weights, w_true, rtol=1e-6)
    for a, b in zip(cp.factors, f_true):
        # same columns up to sign
        assert np.allclose(np.abs(np.sum(a * b, axis=0)), 1.0, atol=1e-6)


def test_cp_error_history_is_right_and_monotone():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((12, 13, 14))
    cp = D.cp_als(T, 4, init="random", seed=1, tol=0, max_iter=30)
    assert cp.n_iter == 30 and len(cp.errors) == 31
    assert cp.errors[-1] == pytest.approx(D.relative_error(T, cp.reconstruct()), rel=1e-9)
    assert np.all(np.diff(cp.errors) <= 1e-12)  # ALS never increases the error
    assert np.all(np.diff(cp.weights) <= 0)
    for f in cp.factors:
        assert np.allclose(np.linalg.norm(f, axis=0), 1.0)
    assert cp.n_params == 4 * (12 + 13 + 14 + 1) == D.cp_n_params(T.shape, 4)


def test_cp_four_way_and_rank_above_dimensions():
    T = D.random_cp_tensor((4, 5, 3, 6), 4, seed=2)
    cp = D.cp_als(T, 4, max_iter=2000)
    assert D.relative_error(T, cp.reconstruct()) < 1e-6
    # rank 4 > dimension 3 of the third mode is allowed for CP
    cp5 = D.cp_als(T, 5, max_iter=50)
    assert cp5.factors[2].shape == (3, 5)


def test_cp_zero_tensor_and_explicit_init():
    cp = D.cp_als(np.zeros((2, 3, 4)), 2)
    assert np.all(cp.weights == 0) and np.allclose(cp.reconstruct(), 0)
    T = D.random_cp_tensor((5, 6, 7), 2, seed=5)
    init = [np.random.default_rng(0).standard_normal((n, 2)) for n in T.shape]
    a = D.cp_als(T, 2, init=init, tol=0, max_iter=5)
    b = D.cp_als(T, 2, init=init, tol=0, max_iter=5)
    assert np.array_equal(a.weights, b.weights)  # deterministic
    assert np.array_equal(init[0], np.random.default_rng(0).standard_normal((5, 2)))  # not modified


def test_cp_initial_factors_are_what_cp_als_starts_from():
    T = D.random_cp_tensor((4, 5, 3), 2, seed=0)
    for init in ("svd", "random"):
        fs = D.cp_initial_factors(T, 4, init=init, seed=3)
        assert [f.shape for f in fs] == [(4, 4), (5, 4), (3, 4)]
        a = D.cp_als(T, 4, init=init, seed=3, tol=0, max_iter=3)
        b = D.cp_als(T, 4, init=fs, tol=0, max_iter=3)
        assert np.allclose(a.errors, b.errors) and np.allclose(a.weights, b.weights)
    svd_init = D.cp_initial_factors(T, 2)
    assert np.allclose(svd_init[0].T @ svd_init[0], np.eye(2))
    with pytest.raises(TypeError, match="init must be 'svd' or 'random'"):
        D.cp_initial_factors(T, 2, init=svd_init)


def test_cp_tol_stops_early():
    T = D.random_cp_tensor((8, 8, 8), 2, seed=0)
    cp = D.cp_als(T, 2, tol=1e-10, max_iter=1000)
    assert cp.n_iter < 1000 and cp.errors[-1] < 1e-8


# ---------------------------------------------------------------------------
# Tucker
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, ranks",
    [((10, 11, 12), (2, 3, 4)), ((20, 20, 20), (5, 5, 5)), ((6, 7, 8, 9), (2, 3, 3, 4)), ((5, 5, 5), (1, 5, 5))],
)
def test_hosvd_with_true_multilinear_ranks_is_exact(shape, ranks):
    T = D.random_tucker_tensor(shape, ranks, seed=1)
    assert [np.linalg.matrix_rank(D.unfold(T, n)) for n in range(len(shape))] == list(ranks)
    for decomp in (D.tucker_hosvd(T, ranks), D.tucker_hooi(T, ranks)):
        assert decomp.core.shape == ranks
        assert D.relative_error(T, decomp.reconstruct()) < 1e-10
        for f in decomp.factors:
            assert np.allclose(f.T @ f, np.eye(f.shape[1]), atol=1e-12)
        assert decomp.n_params == math.prod(ranks) + sum(i * r for i, r in zip(shape, ranks))


def test_hooi_improves_on_hosvd_and_tracks_its_error():
    rng = np.random.default_rng(0)
    T = D.random_tucker_tensor((15, 16, 17), (4, 4, 4), seed=0) + 0.3 * rng.standard_normal((15, 16, 17)) / 80
    hosvd = D.tucker_hosvd(T, 3)
    hooi = D.tucker_hooi(T, 3, tol=0, max_iter=10)
    assert len(hooi.errors) == 11 and hooi.errors[0] == pytest.approx(hosvd.errors[0])
    assert np.all(np.diff(hooi.errors) <= 1e-12)
    assert D.relative_error(T, hooi.reconstruct()) <= D.relative_error(T, hosvd.reconstruct()) + 1e-12
    assert hooi.errors[-1] == pytest.approx(D.relative_error(T, hooi.reconstruct()), rel=1e-8)


# ---------------------------------------------------------------------------
# tensor trains
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, ranks",
    [((4, 5, 6, 7), (2, 3, 2)), ((3, 4, 5, 4, 3), (3, 5, 4, 2)), ((10, 10, 10), (4, 6)), ((2,) * 10, (2, 4, 8, 8, 8, 8, 8, 4, 2))],
)
def test_tt_svd_recovers_known_tt_ranks(shape, ranks):
    T = D.random_tt_tensor(shape, ranks, seed=7)
    tt = D.tt_svd(T)
    assert tt.ranks == ranks
    assert tt.ranks == tuple(unfolding_rank(T, k) for k in range(len(shape) - 1))
    assert D.relative_error(T, tt.reconstruct()) < 1e-10
    assert tt.n_params == D.tt_n_params(shape, ranks)
    # the first N-1 cores are left-orthonormal
    assert D.tt_is_canonical(tt.cores, len(shape) - 1)


def test_tt_truncation_error_within_bound_over_eps_sweep():
    rng = np.random.default_rng(1)
    # a tensor with decaying TT spectrum
    T = D.random_tt_tensor((6, 7, 8, 7, 6), (6, 12, 12, 6), seed=3)
    T = T + 1e-2 * rng.standard_normal(T.shape) / math.sqrt(T.size)
    previous = None
    for eps in np.geomspace(1e-6, 0.9, 15):
        tt = D.tt_svd(T, eps=float(eps))
        err = np.linalg.norm(T - tt.reconstruct())
        assert err <= tt.bound * (1 + 1e-9) + 1e-14
        assert err == pytest.approx(tt.bound, rel=1e-6, abs=1e-12)  # TT-SVD: an equality
        assert tt.relative_bound <= eps * (1 + 1e-12)
        if previous is not None:
            assert sum(tt.ranks) <= sum(previous)  # looser eps, smaller ranks
        previous = tt.ranks
    # and with max_rank
    for r in range(1, 13):
        tt = D.tt_svd(T, max_rank=r)
        assert max(tt.ranks) <= r
        assert np.linalg.norm(T - tt.reconstruct()) <= tt.bound * (1 + 1e-9) + 1e-14


def test_tt_max_rank_sequence_and_clipping():
    T = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    assert D.tt_svd(T, max_rank=100).ranks == (2, 6, 5)  # an int is clipped per bond
    assert D.tt_svd(T, max_rank=[1, 2, 3]).ranks == (1, 2, 3)


@pytest.mark.parametrize("center", [0, 1, 2, 3, -1])
def test_tt_orthogonalize(center):
    T = D.random_tt_tensor((3, 4, 5, 6), (3, 4, 3), seed=4)
    cores = [c * 2.0 for c in D.tt_svd(T).cores]  # not canonical any more
    can = D.tt_orthogonalize(cores, center)
    c = center % 4
    assert D.tt_is_canonical(can, c)
    assert np.allclose(D.tt_reconstruct(can), 16 * T, atol=1e-12)
    assert np.linalg.norm(can[c]) == pytest.approx(np.linalg.norm(16 * T))


def test_tt_orthogonalize_shrinks_oversized_bonds():
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal((1, 2, 5)), rng.standard_normal((5, 2, 5)), rng.standard_normal((5, 2, 1))]
    # each QR leaves at most min(rows, columns) of a bond
    can = D.tt_orthogonalize(cores, 0)  # right-to-left: bonds <= (2 * 2, 2 * 1)
    assert D.tt_ranks(can) == (4, 2)
    assert np.allclose(D.tt_reconstruct(can), D.tt_reconstruct(cores))
    can = D.tt_orthogonalize(cores, 2)  # left-to-right: bonds <= (1 * 2, 2 * 2)
    assert D.tt_ranks(can) == (2, 4)
    assert np.allclose(D.tt_reconstruct(can), D.tt_reconstruct(cores))


def test_finite_mps_round_trip():
    tn = pytest.importorskip("tensornetwork")
    T = D.random_tt_tensor((3, 4, 5, 3), (3, 4, 3), seed=2) * 7.0
    cores = D.tt_svd(T).cores
    mps = D.tt_to_mps(cores)
    assert isinstance(mps, tn.FiniteMPS) and mps.center_position is None
    back = D.mps_to_tt(mps)
    assert all(np.array_equal(a, b) for a, b in zip(back, cores))
    for center in range(4):
        mps = D.tt_to_mps(cores, center=center)
        assert mps.center_position == center
        assert float(mps.check_canonical()) < 1e-10  # tensornetwork agrees it is canonical
        assert mps.bond_dimensions == [1, 3, 4, 3, 1]
        assert np.allclose(D.tt_reconstruct(D.mps_to_tt(mps)), T, atol=1e-12)  # norm kept
    mps_t = D.tt_to_mps(cores, backend="pytorch")
    assert np.allclose(D.tt_reconstruct(D.mps_to_tt(mps_t)), T)
    with pytest.raises(TypeError, match="FiniteMPS"):
        D.mps_to_tt(cores)


# ---------------------------------------------------------------------------
# cross-check against tensorly (same tensors, same ranks)
# ---------------------------------------------------------------------------


def _cross_check_tensors():
    rng = np.random.default_rng(42)
    noisy = D.random_cp_tensor((15, 16, 17), 4, seed=1) + 0.05 * rng.standard_normal((15, 16, 17)) / math.sqrt(15 * 16 * 17)
    return {
        "gaussian": rng.standard_normal((12, 13, 14)),
        "noisy-low-rank": noisy,
        "image": D.synthetic_image(48, seed=0),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")  # tensorly: rank > a dimension in its SVD init
@pytest.mark.parametrize("name", ["gaussian", "noisy-low-rank", "image"])
def test_cross_check_with_tensorly(name):
    T = _cross_check_tensors()[name]
    for rank in (1, 2, 3, 5):
        ours = D.relative_error(T, D.cp_als(T, rank, max_iter=300).reconstruct())
        theirs = D.relative_error(T, tl.cp_to_tensor(parafac(T, rank, n_iter_max=300, init="svd", tol=1e-10)))
        assert ours <= 1.01 * theirs, ("cp", rank, ours, theirs)
    for rank in (1, 2, 3):
        ranks = [min(rank, s) for s in T.shape]
        ours = D.relative_error(T, D.tucker_hooi(T, ranks).reconstruct())
        theirs = D.relative_error(T, tl.tucker_to_tensor(tucker(T, ranks)))
        assert ours <= 1.01 * theirs, ("tucker", rank, ours, theirs)
    for rank in (1, 2, 4, 8):
        ours = D.relative_error(T, D.tt_svd(T, max_rank=rank).reconstruct())
        ranks = [1] + [min(rank, unfolding_rank(T, k)) for k in range(T.ndim - 1)] + [1]
        theirs = D.relative_error(T, tl.tt_to_tensor(tensor_train(T, ranks)))
        assert ours <= 1.01 * theirs, ("tt", rank, ours, theirs)


# ---------------------------------------------------------------------------
# numpy and torch
# ---------------------------------------------------------------------------


def test_torch_in_torch_out():
    T = torch.tensor(D.random_cp_tensor((5, 6, 7), 2, seed=0), dtype=torch.float32)
    cp = D.cp_als(T, 2)
    assert isinstance(cp.weights, torch.Tensor) and cp.weights.dtype == torch.float64
    assert all(isinstance(f, torch.Tensor) for f in cp.factors)
    assert isinstance(cp.reconstruct(), torch.Tensor)
    assert D.relative_error(T, cp.reconstruct()) < 1e-6
    tk = D.tucker_hooi(T, 2)
    assert isinstance(tk.core, torch.Tensor) and isinstance(tk.reconstruct(), torch.Tensor)
    tt = D.tt_svd(T.double())
    assert all(isinstance(c, torch.Tensor) for c in tt.cores)
    assert D.relative_error(T.double(), tt.reconstruct()) < 1e-12
    svd = D.svd_truncate(torch.eye(3), 2)
    assert isinstance(svd.U, torch.Tensor) and svd.error == pytest.approx(1.0)
    assert isinstance(D.unfold(T, 1), torch.Tensor) and D.unfold(T, 1).shape == (6, 35)
    assert isinstance(D.tt_orthogonalize(tt.cores, 1)[0], torch.Tensor)
    # numpy gives numpy, and the same numbers
    cp_np = D.cp_als(T.numpy(), 2)
    assert isinstance(cp_np.weights, np.ndarray)
    assert np.allclose(cp_np.weights, cp.weights.numpy())


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

GOOD = np.random.default_rng(0).standard_normal((3, 4, 5))
NAN = GOOD.copy()
NAN[1, 2, 3] = np.nan
INF = GOOD.copy()
INF[0, 0, 1] = -np.inf


@pytest.mark.parametrize(
    "call, error, match",
    [
        # too few ways
        (lambda: D.cp_als(np.ones((3, 3)), 2), ValueError, "T must have at least 3 ways"),
        (lambda: D.tucker_hosvd(np.ones(4), 1), ValueError, "T must have at least 3 ways"),
        (lambda: D.tucker_hooi(np.ones((4, 4)), 1), ValueError, "T must have at least 3 ways"),
        (lambda: D.tt_svd(np.ones((4, 4))), ValueError, "T must have at least 3 ways"),
        (lambda: D.svd_truncate(GOOD, 1), ValueError, "M must have exactly 2 ways"),
        # rank < 1 and non-integer ranks
        (lambda: D.cp_als(GOOD, 0), ValueError, "rank must be >= 1"),
        (lambda: D.cp_als(GOOD, -2), ValueError, "rank must be >= 1"),
        (lambda: D.cp_als(GOOD, 2.0), TypeError, "rank must be an integer"),
        (lambda: D.cp_als(GOOD, True), TypeError, "rank must be an integer"),
        (lambda: D.svd_truncate(np.ones((3, 4)), 0), ValueError, "rank must be >= 1"),
        (lambda: D.tucker_hosvd(GOOD, (1, 0, 1)), ValueError, r"ranks\[1\] must be >= 1"),
        (lambda: D.tt_svd(GOOD, max_rank=0), ValueError, "max_rank must be >= 1"),
        (lambda: D.tt_svd(GOOD, max_rank=[2, 0]), ValueError, r"max_rank\[1\] must be >= 1"),
        # rank larger than the tensor allows
        (lambda: D.svd_truncate(np.ones((3, 4)), 4), ValueError, "larger than a 3x4 matrix allows"),
        (lambda: D.tucker_hosvd(GOOD, (2, 5, 2)), ValueError, r"ranks\[1\] = 5 is larger than mode 1 allows"),
        (lambda: D.tucker_hooi(GOOD, 4), ValueError, r"ranks\[0\] = 4 is larger than mode 0 allows"),
        (lambda: D.tt_svd(GOOD, max_rank=[4, 2]), ValueError, r"max_rank\[0\] = 4 is larger than bond 0 allows"),
        (lambda: D.tt_svd(GOOD, max_rank=[3, 6]), ValueError, r"max_rank\[1\] = 6 is larger than bond 1 allows"),
        # wrong number of ranks
        (lambda: D.tucker_hosvd(GOOD, (2, 2)), ValueError, "ranks must have one entry per mode"),
        (lambda: D.tt_svd(GOOD, max_rank=[2, 2, 2]), ValueError, "max_rank must have one entry per bond"),
        # NaN / inf
        (lambda: D.cp_als(NAN, 2), ValueError, r"T contains NaN or inf \(first at index \(1, 2, 3\)\)"),
        (lambda: D.tucker_hosvd(INF, 2), ValueError, "T contains NaN or inf"),
        (lambda: D.tucker_hooi(NAN, 2), ValueError, "T contains NaN or inf"),
        (lambda: D.tt_svd(torch.tensor(INF)), ValueError, "T contains NaN or inf"),
        (lambda: D.svd_truncate(NAN[1], 1), ValueError, "M contains NaN or inf"),
        (lambda: D.relative_error(GOOD, NAN), ValueError, "T_hat contains NaN or inf"),
        # other arguments
        (lambda: D.tt_svd(GOOD, eps=-0.1), ValueError, "eps must be"),
        (lambda: D.tt_svd(GOOD, eps=float("nan")), ValueError, "eps must be"),
        (lambda: D.cp_als(GOOD, 2, init="magic"), ValueError, "init must be 'svd', 'random'"),
        (lambda: D.cp_als(GOOD, 2, init=[np.ones((3, 2))] * 3), ValueError, r"init\[1\] must have 4 rows"),
        (lambda: D.cp_als(GOOD, 2, tol=-1), ValueError, "tol must be"),
        (lambda: D.cp_als(GOOD, 2, max_iter=-1), ValueError, "max_iter must be >= 0"),
        (lambda: D.cp_als("not a tensor", 2), TypeError, "T must be a numeric array"),
        (lambda: D.cp_als(GOOD + 1j, 2), TypeError, "T must be real"),
        (lambda: D.cp_als(np.ones((0, 3, 3)), 1), ValueError, "T is empty"),
        (lambda: D.unfold(GOOD, 3), ValueError, r"mode must be in \[0, 3\)"),
        (lambda: D.mode_dot(GOOD, np.ones((2, 5)), 1), ValueError, "M must have 4 columns"),
        (lambda: D.cp_reconstruct(np.ones(3), [np.ones((2, 2))] * 3), ValueError, "weights must have 2 entries"),
        (lambda: D.cp_reconstruct(None, np.ones((2, 2))), TypeError, "factors must be a list"),
        (lambda: D.tucker_reconstruct(np.ones((2, 2, 2)), [np.ones((3, 2))] * 2), ValueError, "factors must hold 3"),
        (lambda: D.tt_reconstruct([np.ones((1, 2, 3)), np.ones((2, 2, 1))]), ValueError, "right bond 3"),
        (lambda: D.tt_reconstruct([np.ones((2, 2, 1))]), ValueError, "must have size 1"),
        (lambda: D.tt_orthogonalize([np.ones((1, 2, 1))] * 2, 2), ValueError, "center must be in"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------
# test tensors, parameter counts and exercise solutions
# ---------------------------------------------------------------------------


def test_parameter_counts():
    assert D.tt_n_params((2,) * 10, 4) == 2 * 4 + 8 * 32 + 4 * 2
    assert D.tt_n_params((5, 6, 7), (2, 3)) == 5 * 2 + 2 * 6 * 3 + 3 * 7
    assert D.tucker_n_params((10, 11, 12), 2) == 8 + 2 * 33
    assert D.cp_n_params((3, 4), 5) == 5 * 8
    assert D.svd_n_params((3, 4), 2) == 16
    # N d chi^2 << d^N
    assert D.tt_n_params((4,) * 20, 16) < 20 * 4 * 16**2 < 4**20


def test_synthetic_image():
    a, b = D.synthetic_image(64, seed=0), D.synthetic_image(64, seed=0)
    assert np.array_equal(a, b) and a.shape == (64, 64, 3)
    assert a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a, D.synthetic_image(64, seed=1))
    # image-like: a few singular values carry most of the energy, but not all
    s = np.linalg.svd(a.reshape(64, -1), compute_uv=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    assert energy[4] > 0.9 and energy[4] < 0.999


def test_matmul_tensor_unfoldings_have_full_rank():
    """Every unfolding of the 2x2 matmul tensor has rank 4, yet its CP rank is 7."""
    M = D.matmul_tensor(2)
    assert [np.linalg.matrix_rank(D.unfold(M, n)) for n in range(3)] == [4, 4, 4]
    assert D.matmul_tensor(3).shape == (9, 9, 9) and D.matmul_tensor(3).sum() == 27


# ---------------------------------------------------------------------------
# the trained model of the chapter
# ---------------------------------------------------------------------------


def test_lookup_task_targets_are_the_pointed_tokens():
    tokens, targets = D.lookup_task(500, n_positions=6, n_tokens=9, seed=3)
    assert tokens.shape == (500, 7) and targets.shape == (500,)
    k = tokens[:, -1] - 9
    assert bool(((k >= 0) & (k < 6)).all()) and bool((tokens[:, :-1] < 9).all())
    assert bool((tokens[torch.arange(500), k] == targets).all())
    again, _ = D.lookup_task(500, n_positions=6, n_tokens=9, seed=3)
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError, match="n must be >= 1"):
        D.lookup_task(0)


def test_attention_circuits_have_rank_at_most_d_head():
    from helpers.transformer import HookedTransformer

    model = HookedTransformer(D.lookup_config(seed=1))
    W_QK, W_OV = D.attention_circuits(model)
    cfg = model.cfg
    assert W_QK.shape == W_OV.shape == (1, cfg.n_heads, cfg.d_model, cfg.d_model)
    attn = model.blocks[0].attn
    h = 2
    assert np.allclose(W_QK[0, h], (attn.W_Q[h] @ attn.W_K[h].T).detach().double().numpy(), atol=1e-6)
    assert np.allclose(W_OV[0, h], (attn.W_V[h] @ attn.W_O[h]).detach().double().numpy(), atol=1e-6)
    for W in (W_QK, W_OV):
        assert max(np.linalg.matrix_rank(W[0, k]) for k in range(cfg.n_heads)) == cfg.d_head


def test_train_lookup_model_learns_the_task_with_low_rank_circuits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy machine slows multi-threaded torch many-fold
    try:
        model, result = D.train_lookup_model(seed=0, steps=400)
    finally:
        torch.set_num_threads(threads)
    assert result.final()["test_acc"] > 0.99
    W_QK, _ = D.attention_circuits(model)
    s = np.linalg.svd(W_QK[0, 0], compute_uv=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    assert energy[7] > 0.9  # weight decay leaves far fewer than d_head = 16 directions


# ---------------------------------------------------------------------------
# comparing decompositions: rank sweeps and the numbers read off them
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape, ranks", [((8, 9, 10), (2, 3, 3)), ((6, 7, 5, 4), (3, 2, 3, 2))])
def test_rank_sweep_finds_the_true_ranks_and_counts_like_n_params(shape, ranks):
    T = D.random_tucker_tensor(shape, ranks, seed=2)
    knobs = [1, 2, 3, 4, 5, 6]
    res = D.rank_sweep(T, knobs, [], knobs, knobs)
    assert list(res) == list(D.DECOMPOSITIONS) and res["CP"] == {"rank": [], "error": [], "params": []}
    X = D.unfold(T, 0)
    # the first exact rank is the rank of what each method cuts
    assert D.first_exact_rank(res["SVD"]) == np.linalg.matrix_rank(X)
    assert D.first_exact_rank(res["Tucker"]) == max(ranks)
    assert D.first_exact_rank(res["TT"]) == max(unfolding_rank(T, k) for k in range(len(shape) - 1))
    for name in ("SVD", "TT"):  # truncating less never hurts
        assert np.all(np.diff(res[name]["error"]) <= 1e-12), (name, res[name]["error"])
    for r, p in zip(knobs, res["SVD"]["params"]):
        assert p == D.svd_n_params(X.shape, r)
    for r, p in zip(knobs, res["Tucker"]["params"]):
        assert p == D.tucker_n_params(shape, [min(r, d) for d in shape])
    for r, e in zip(knobs, res["SVD"]["error"]):  # Eckart-Young on the unfolding
        s = np.linalg.svd(X, compute_uv=False)
        assert abs(e - np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(X)) < 1e-10


def test_rank_sweep_cp_is_exact_at_the_cp_rank():
    T = D.random_cp_tensor((9, 10, 11), 3, seed=4)
    res = D.rank_sweep(T, [], [1, 2, 3], [], [])
    assert D.first_exact_rank(res["CP"]) == 3
    assert all(p == D.cp_n_params(T.shape, r) for r, p in zip([1, 2, 3], res["CP"]["params"]))


def test_rank_sweep_per_slice_svd_is_eckart_young_head_by_head():
    rng = np.random.default_rng(5)
    # a stack of 3 matrices of ranks 2, 4 and 3, like per-head circuits [n_heads, d_model, d_model]
    W = np.stack([rng.standard_normal((12, k)) @ rng.standard_normal((k, 12)) for k in (2, 4, 3)])
    res = D.rank_sweep(W, [1, 2, 3, 4], [], [], [], svd="slices")
    sv = [np.linalg.svd(W[h], compute_uv=False) for h in range(3)]
    for r, e, p in zip(*(res["SVD"][k] for k in ("rank", "error", "params"))):
        discarded = sum(np.sum(s[r:] ** 2) for s in sv)
        assert abs(e - np.sqrt(discarded) / np.linalg.norm(W)) < 1e-10
        assert p == 3 * D.svd_n_params((12, 12), r)
    assert D.first_exact_rank(res["SVD"]) == 4  # the largest slice rank


def test_rank_sweep_matches_a_by_hand_tensor_train():
    T = np.random.default_rng(6).standard_normal((5, 6, 7))
    res = D.rank_sweep(T, [], [], [], [2, 5])
    for chi, e, p in zip([2, 5], res["TT"]["error"], res["TT"]["params"]):
        tt = D.tt_svd(T, max_rank=chi)
        assert e == pytest.approx(D.relative_error(T, tt.reconstruct()), abs=1e-12) and p == tt.n_params


@pytest.mark.parametrize("shape", [(2,) * 7, (3, 4, 5), (6, 2, 2, 9), (5, 30, 2)])
@pytest.mark.parametrize("chi", [1, 3, 8])
def test_tt_bond_caps_are_the_bonds_tt_svd_gives_a_generic_tensor(shape, chi):
    T = np.random.default_rng(7).standard_normal(shape)
    caps = D.tt_bond_caps(shape, chi)
    assert tuple(caps) == D.tt_svd(T, max_rank=chi).ranks
    assert D.tt_n_params(shape, caps) == D.tt_svd(T, max_rank=chi).n_params
    assert all(1 <= c <= chi for c in caps)


@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=12), st.floats(1e-6, 1.0))
@settings(max_examples=50, deadline=None)
def test_params_for_error_is_the_cheapest_point_under_the_target(errors, target):
    params = list(range(10, 10 * (len(errors) + 1), 10))[::-1]  # not sorted: any order works
    curve = {"params": params, "error": errors, "rank": list(range(len(errors)))}
    p = D.params_for_error(curve, target)
    if p is None:
        assert min(errors) > target
    else:
        assert errors[params.index(p)] <= target
        assert all(e > target for q, e in zip(params, errors) if q < p)


@given(st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=12), st.floats(1e-13, 1e-1))
@settings(max_examples=50, deadline=None)
def test_first_exact_rank_is_the_first_rank_below_tol(errors, tol):
    curve = {"rank": list(range(1, len(errors) + 1)), "error": errors}
    r = D.first_exact_rank(curve, tol)
    if r is None:
        assert min(errors) >= tol
    else:
        assert errors[r - 1] < tol and all(e >= tol for e in errors[: r - 1])


def test_interpolate_error_is_exact_on_power_laws_and_at_the_knots():
    p = np.array([10.0, 100.0, 3000.0, 5e4])
    e = 2.0 * p ** -0.7
    for x in [10.0, 37.0, 100.0, 999.0, 5e4]:
        assert D.interpolate_error(p, e, x) == pytest.approx(2.0 * x ** -0.7, rel=1e-12)
    assert D.interpolate_error(p, e, 1.0) == pytest.approx(e[0])  # no extrapolation
    assert D.interpolate_error(p, e, 1e9) == pytest.approx(e[-1])
    # between two knots the value lies between the knots' values
    rng = np.random.default_rng(8)
    e2 = np.sort(rng.uniform(1e-3, 1, 4))[::-1]
    for x in np.geomspace(10, 5e4, 25):
        v = D.interpolate_error(p, e2, x)
        k = np.searchsorted(p, x)
        lo, hi = (e2[max(k - 1, 0)], e2[min(k, 3)])
        assert min(lo, hi) * (1 - 1e-12) <= v <= max(lo, hi) * (1 + 1e-12)


@given(st.integers(2, 12), st.integers(2, 12), st.floats(0.05, 1.0), st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_energy_rank_is_the_eckart_young_rank_for_the_share(m, n, share, seed):
    M = np.random.default_rng(seed).standard_normal((m, n))
    r = D.energy_rank(M, share)
    assert 1 <= r <= min(m, n)
    total = np.linalg.norm(M) ** 2
    kept = lambda k: total - np.linalg.norm(M - D.svd_truncate(M, k).reconstruct()) ** 2  # noqa: E731
    assert kept(r) >= share * total * (1 - 1e-12)
    if r > 1:
        assert kept(r - 1) < share * total
    # invariant under scaling and orthogonal changes of basis
    Q, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((m, m)))
    assert D.energy_rank(3.0 * Q @ M, share) == r


def test_energy_rank_of_an_exactly_low_rank_matrix_and_torch_input():
    rng = np.random.default_rng(9)
    M = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 15))
    assert D.energy_rank(M, 1.0) <= 3 and D.energy_rank(torch.tensor(M), 1.0) == D.energy_rank(M, 1.0)
    assert D.energy_rank(M, 1.0 - 1e-9) == 3


def test_error_floor():
    e = D.error_floor([0.0, 1e-20, 0.3, -1.0], floor=1e-12)
    assert np.all(e >= 1e-12) and e[2] == 0.3
    assert D.error_floor(np.zeros((2, 3))).shape == (2, 3)


def test_plot_rank_sweep_draws_one_line_per_decomposition():
    import matplotlib.pyplot as plt

    T = D.random_tucker_tensor((6, 6, 6), (2, 2, 2), seed=0)
    res = D.rank_sweep(T, [1, 2, 3], [], [1, 2], [1, 2, 3])
    fig, axes = plt.subplots(1, 2)
    D.plot_rank_sweep(res, axes, "t", size=T.size, logx=True, bottom=1e-3)
    assert len(axes[0].get_lines()) == 3  # CP was skipped
    assert len(axes[1].get_lines()) == 4  # three curves and the full-size line
    assert axes[0].get_ylim() == pytest.approx((1e-3, 1.5))
    with pytest.raises(TypeError, match="axes must be a pair"):
        D.plot_rank_sweep(res, axes[0], "t")
    plt.close(fig)


CURVE = {"rank": [1, 2], "error": [0.5, 0.1], "params": [10, 20]}


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: D.rank_sweep(GOOD, 3), TypeError, "svd_ranks must be a sequence of ints"),
        (lambda: D.rank_sweep(GOOD, [], [0]), ValueError, r"cp_ranks\[0\] must be >= 1"),
        (lambda: D.rank_sweep(GOOD, [], [], [1.5]), TypeError, r"tucker_ranks\[0\] must be an integer"),
        (lambda: D.rank_sweep(GOOD, [4]), ValueError, "svd_ranks has 4, more than"),
        (lambda: D.rank_sweep(GOOD, [1], svd="heads"), ValueError, 'svd must be "unfold" or "slices"'),
        (lambda: D.rank_sweep(np.ones((3, 4)), [1]), ValueError, "T must have at least 3 ways"),
        (lambda: D.rank_sweep(np.ones((2, 3, 4, 5)), [1], svd="slices"), ValueError, "T must have exactly 3 ways"),
        (lambda: D.rank_sweep(GOOD, [1], cp_iter=0), ValueError, "cp_iter must be >= 1"),
        (lambda: D.first_exact_rank([0.1, 0.2]), TypeError, "curve must be one entry of rank_sweep"),
        (lambda: D.first_exact_rank({"rank": [1, 2], "error": [0.1]}), ValueError, "equal lengths"),
        (lambda: D.first_exact_rank(CURVE, tol=0), ValueError, "tol must be a positive number"),
        (lambda: D.params_for_error({"rank": [1], "error": [0.1]}), TypeError, r"keys \['params', 'error'\]"),
        (lambda: D.params_for_error(CURVE, target=-1), ValueError, "target must be a positive number"),
        (lambda: D.interpolate_error([1, 2], [0.5], 1.5), ValueError, "equal length"),
        (lambda: D.interpolate_error([2, 1], [0.5, 0.2], 1.5), ValueError, "strictly increasing"),
        (lambda: D.interpolate_error([1, 2], [0.5, 0.0], 1.5), ValueError, "must be positive"),
        (lambda: D.interpolate_error([1, 2], [0.5, 0.2], 0), ValueError, "at must be a positive number"),
        (lambda: D.energy_rank(GOOD), ValueError, "M must have exactly 2 ways"),
        (lambda: D.energy_rank(np.eye(3), share=0), ValueError, r"share must be a number in \(0, 1\]"),
        (lambda: D.energy_rank(np.eye(3), share=1.5), ValueError, r"share must be a number in \(0, 1\]"),
        (lambda: D.energy_rank(np.zeros((3, 3))), ValueError, "M is all zeros"),
        (lambda: D.tt_bond_caps((4,), 2), ValueError, "shape must have at least 2 entries"),
        (lambda: D.tt_bond_caps(4, 2), TypeError, "shape must be a sequence of ints"),
        (lambda: D.tt_bond_caps((4, 0), 2), ValueError, r"shape\[1\] must be >= 1"),
        (lambda: D.tt_bond_caps((4, 4), 0), ValueError, "max_rank must be >= 1"),
        (lambda: D.error_floor([0.1], floor=0), ValueError, "floor must be a positive number"),
        (lambda: D.error_floor([np.nan]), ValueError, "errors contains NaN"),
        (lambda: D.plot_rank_sweep({}, None, "t"), TypeError, "results must be rank_sweep's dict"),
        (lambda: D.train_lookup_model(weight_decay=-1.0), ValueError, "weight_decay must be finite and >= 0"),
        (lambda: D.train_lookup_model(weight_decay="a"), TypeError, "weight_decay must be a number"),
        (lambda: D.train_lookup_model(steps=0), ValueError, "steps must be >= 1"),
    ],
)
def test_bad_input_to_the_comparison_helpers_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------
# the shipped look-up checkpoints (store recipes)
# ---------------------------------------------------------------------------


def _accuracy(model, seed=4242):
    tokens, targets = D.lookup_task(2048, seed=seed)
    with torch.no_grad():
        logits = model(tokens, read_positions=[-1])[:, 0]
    return float((logits.argmax(-1) == targets).float().mean())


def test_lookup_recipes_are_registered_and_their_checkpoints_solve_the_task():
    from helpers import store

    assert {D.LOOKUP_MODEL, D.LOOKUP_MODEL_NO_DECAY} <= set(store.recipes())
    for name in (D.LOOKUP_MODEL, D.LOOKUP_MODEL_NO_DECAY):
        loaded = store.load(name)
        assert _accuracy(loaded.model) > 0.99, name  # fresh sequences, not the logged test set
        assert loaded.manifest["steps"] == 800
    assert store.load(D.LOOKUP_MODEL).manifest["recipe_kwargs"]["weight_decay"] == 1.0


def test_weight_decay_is_what_lowers_the_circuits_effective_rank():
    """The claim of chapter 2: with weight decay every head needs fewer directions."""
    from helpers import store

    ranks = {}
    for name in (D.LOOKUP_MODEL, D.LOOKUP_MODEL_NO_DECAY):
        W_QK, W_OV = D.attention_circuits(store.load(name).model)
        ranks[name] = [[D.energy_rank(W[0, h]) for h in range(W.shape[1])] for W in (W_QK, W_OV)]
    for decayed, control in zip(ranks[D.LOOKUP_MODEL], ranks[D.LOOKUP_MODEL_NO_DECAY]):
        assert max(decayed) < min(control)


@pytest.mark.slow
def test_lookup_recipe_reproduces_the_shipped_checkpoint():
    from helpers import store

    model, result = D.train_lookup_model(**{k: v for k, v in store.load(D.LOOKUP_MODEL).manifest[
        "recipe_kwargs"].items() if k != "progress"})
    shipped = store.load(D.LOOKUP_MODEL).model.state_dict()
    for key, value in model.state_dict().items():  # float32 rounding differs between CPUs: a tolerance
        assert torch.allclose(value, shipped[key], atol=1e-3, rtol=1e-3), key
    assert result.final()["test_acc"] > 0.99


# --- reading a trained model's decompositions ---------------------------------


def test_qk_reading_is_the_rank_k_part_of_the_scores():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((10, 4)) @ rng.standard_normal((4, 10))  # rank 4
    Xq, Xk = rng.standard_normal((6, 10)), rng.standard_normal((7, 10))
    full = D.qk_reading(W, Xq, Xk, k=4)
    assert np.max(np.abs(full.scores() - Xq @ W @ Xk.T)) < 1e-10  # rank 4: nothing is left out
    part = D.qk_reading(W, Xq, Xk, k=2)
    U, S, Vt = np.linalg.svd(W)
    want = Xq @ (U[:, :2] * S[:2]) @ Vt[:2] @ Xk.T
    assert np.max(np.abs(part.scores() - want)) < 1e-10
    assert np.all(part.query.sum(0) >= 0)  # the sign convention
    with pytest.raises(ValueError, match="k must be at most"):
        D.qk_reading(W, Xq, Xk, k=11)
    with pytest.raises(ValueError, match="query_inputs"):
        D.qk_reading(W, Xq[:, :5], Xk)


def test_input_share_match_accuracy_and_copying_score():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    assert abs(D.input_share(a, b) + D.input_share(b, a) - 1) < 1e-12
    with pytest.raises(ValueError, match="same number of directions"):
        D.input_share(a, b[:, :1])
    perm = np.eye(5)[[1, 0, 2, 3, 4]]
    assert D.match_accuracy(np.eye(5)) == 1.0 and D.match_accuracy(perm) == 0.6
    with pytest.raises(ValueError, match="square"):
        D.match_accuracy(np.ones((2, 3)))
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    assert abs(D.copying_score(Q @ np.diag([1., 2., 3., 4., 5.]) @ Q.T) - 1) < 1e-10  # basis-free
    assert abs(D.copying_score(np.diag([1., -1.]))) < 1e-12
    assert abs(D.copying_score(perm) - 3 / 5) < 1e-10  # eigenvalues 1, -1, 1, 1, 1
    with pytest.raises(ValueError, match="zero"):
        D.copying_score(np.zeros((3, 3)))


def test_cp_head_loadings_separates_private_and_shared_components():
    rng = np.random.default_rng(2)
    b, c = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    heads = np.array([[1.0, 0.0, 0.7], [0.0, 1.0, 0.7], [0.0, 0.0, 0.7]])  # components 0, 1 private; 2 shared
    T = np.einsum("hr,ri,rj->hij", heads, b, c)
    hl = D.cp_head_loadings(T, 3, max_iter=500, tol=1e-12)
    assert hl.error < 1e-6
    assert hl.share.shape == (3, 3) and np.allclose(hl.share.sum(0), 1)
    assert sorted(np.round(hl.n_eff, 3).tolist()) == [1.0, 1.0, 3.0]
    assert int(hl.single_head().sum()) == 2
    with pytest.raises(ValueError, match="3 ways"):
        D.cp_head_loadings(T[0], 2)


@pytest.mark.slow
def test_lookup_heads_read_positions_and_copy():
    from helpers import store

    m = store.load(D.LOOKUP_MODEL).model
    W_QK, W_OV = (W[0] for W in D.attention_circuits(m))
    W_E, W_pos, W_U = (t.detach().double().numpy() for t in (m.W_E, m.W_pos, m.W_U))
    n_tok, n_pos = m.cfg.d_vocab_out, m.cfg.n_ctx - 1
    for h in range(m.cfg.n_heads):
        r = D.qk_reading(W_QK[h], W_E[n_tok:] + W_pos[n_pos], W_pos[:n_pos], 3)
        assert D.match_accuracy(r.scores()) == 1.0
        assert D.copying_score(W_E[:n_tok] @ W_OV[h] @ W_U) > 0.99
