"""Speed of helpers.decompositions against tensorly, as ratios measured in one run.

    .venv/bin/python benchmarks/decompositions.py [--threads 1] [--repeats 7]

Prints, for each decomposition, our median time, tensorly's median time on the
same tensor with the same settings, the ratio ours / tensorly (goal: <= 1.0)
and both relative errors (they should agree):

* CP-ALS, rank 10, 60x60x60 Gaussian tensor, the same random initial factors
  for both, tolerance disabled so both run exactly 100 sweeps;
* Tucker by HOOI, ranks (10, 10, 10), same tensor, HOSVD start + 10 sweeps each,
  tolerance disabled;
* TT-SVD with bond dimension 10 on the same tensor, and with bond dimension 20
  on the same numbers reshaped to a 6-way tensor [6, 10, 6, 10, 6, 10];
* the three tensors of chapter 2's cross-check table, with the page's settings
  (the timing columns of that table live here, not on the page): a CP-rank-5
  20x20x20 tensor plus noise, the 128x128x3 synthetic image and the stacked QK
  circuits [4, 64, 64] of the shipped ``lookup_1l`` model; CP from the same
  SVD start ``cp_initial_factors`` with tolerance 1e-10 and at most 300 sweeps
  (so the two may stop after different numbers of sweeps), Tucker by HOOI with
  20 sweeps, TT-SVD with the bonds the page uses.

Thread counts are pinned (BLAS via environment variables set before numpy is
imported, torch via ``torch.set_num_threads``) because a second busy process
makes BLAS timings swing by large factors; every case is warmed up once and the
median of ``--repeats`` runs is reported. Compare ratios, not absolute times.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per case (default 7)")
    return p.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import decompositions as D  # noqa: E402

try:
    import tensorly as tl
    from tensorly.decomposition import parafac, tensor_train, tucker
except ImportError:  # pragma: no cover
    sys.exit("tensorly is needed for this benchmark: pip install tensorly==0.10.0")


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chapter_cases() -> list:
    """The cross-check cases of chapter 2 (same tensors and settings as its table)."""
    import math

    from helpers import store

    rng = np.random.default_rng(0)
    shape = (20, 20, 20)
    T_cp5 = D.random_cp_tensor(shape, 5, seed=0)
    noisy_cp5 = T_cp5 + 0.05 * rng.standard_normal(shape) / math.sqrt(T_cp5.size)
    img = D.synthetic_image(128, seed=0)
    W_QK, _ = D.attention_circuits(store.load(D.LOOKUP_MODEL).model)
    out = []
    for label, T, r in (("CP-rank-5 + noise 20^3", noisy_cp5, 3), ("image 128x128x3", img, 16),
                        ("QK circuits 4x64x64", W_QK[0], 8)):
        tucker_r = [min(r, dim) for dim in T.shape]
        tt_r = [min(r, int(np.linalg.matrix_rank(T.reshape(math.prod(T.shape[:k + 1]), -1))))
                for k in range(T.ndim - 1)]
        start = D.cp_initial_factors(T, r, init="svd")

        def ours_cp(T=T, r=r, start=start):
            return D.cp_als(T, r, init=start, tol=1e-10, max_iter=300).reconstruct()

        def theirs_cp(T=T, r=r, start=start):
            return tl.cp_to_tensor(parafac(T, r, init=(np.ones(r), [f.copy() for f in start]),
                                           tol=1e-10, n_iter_max=300))

        def ours_tucker(T=T, tucker_r=tucker_r):
            return D.tucker_hooi(T, tucker_r, tol=0, max_iter=20).reconstruct()

        def theirs_tucker(T=T, tucker_r=tucker_r):
            return tl.tucker_to_tensor(tucker(T, tucker_r, init="svd", tol=0, n_iter_max=20))

        def ours_tt(T=T, tt_r=tt_r):
            return D.tt_svd(T, max_rank=tt_r).reconstruct()

        def theirs_tt(T=T, tt_r=tt_r):
            return tl.tt_to_tensor(tensor_train(T, [1] + tt_r + [1]))

        out += [
            (f"ch2 {label}: CP R={r}", ours_cp, theirs_cp, T),
            (f"ch2 {label}: Tucker {tuple(tucker_r)}", ours_tucker, theirs_tucker, T),
            (f"ch2 {label}: TT {tuple(tt_r)}", ours_tt, theirs_tt, T),
        ]
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    T = rng.standard_normal((60, 60, 60))
    T6 = T.reshape(6, 10, 6, 10, 6, 10)
    rank = 10
    init = [rng.standard_normal((60, rank)) for _ in range(3)]

    cases = []

    # CP-ALS: same initial factors, exactly 100 sweeps each
    def ours_cp():
        return D.cp_als(T, rank, init=init, tol=0, max_iter=100).reconstruct()

    def theirs_cp():
        cp = parafac(T, rank, init=(np.ones(rank), [f.copy() for f in init]), tol=0, n_iter_max=100)
        return tl.cp_to_tensor(cp)

    cases.append(("CP-ALS  rank 10, 60^3, 100 sweeps", ours_cp, theirs_cp, T))

    # Tucker by HOOI: HOSVD start + 10 sweeps each
    def ours_tucker():
        return D.tucker_hooi(T, (10, 10, 10), tol=0, max_iter=10).reconstruct()

    def theirs_tucker():
        return tl.tucker_to_tensor(tucker(T, [10, 10, 10], init="svd", tol=0, n_iter_max=10))

    cases.append(("Tucker  HOOI (10,10,10), 60^3, 10 sweeps", ours_tucker, theirs_tucker, T))

    # TT-SVD
    def ours_tt3():
        return D.tt_svd(T, max_rank=10).reconstruct()

    def theirs_tt3():
        return tl.tt_to_tensor(tensor_train(T, [1, 10, 10, 1]))

    cases.append(("TT-SVD  bond 10, 60^3", ours_tt3, theirs_tt3, T))

    def ours_tt6():
        return D.tt_svd(T6, max_rank=20).reconstruct()

    def theirs_tt6():
        return tl.tt_to_tensor(tensor_train(T6, [1, 6, 20, 20, 20, 10, 1]))

    cases.append(("TT-SVD  bond 20, same numbers as 6-way", ours_tt6, theirs_tt6, T6))

    cases += chapter_cases()

    print(f"threads={ARGS.threads}  repeats={ARGS.repeats}  numpy {np.__version__}  tensorly {tl.__version__}")
    print(f"{'case':50s} {'ours ms':>9s} {'tensorly ms':>12s} {'ratio':>7s}   {'our error':>10s} {'tensorly error':>14s}")
    ratios = []
    for name, ours, theirs, X in cases:
        t_ours = median_time(ours, ARGS.repeats)
        t_theirs = median_time(theirs, ARGS.repeats)
        e_ours = D.relative_error(X, ours())
        e_theirs = D.relative_error(X, theirs())
        ratio = t_ours / t_theirs
        ratios.append(ratio)
        print(
            f"{name:50s} {1e3 * t_ours:9.1f} {1e3 * t_theirs:12.1f} {ratio:7.2f}   "
            f"{e_ours:10.6f} {e_theirs:14.6f}"
        )
    print(f"worst ratio ours / tensorly: {max(ratios):.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
