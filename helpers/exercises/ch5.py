"""Chapter 5 exercises: reference solutions and check functions.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on cases with known answers
and raises ``AssertionError`` with a hint when it is wrong; ``solution_<x>`` is
the reference answer (tested in ``tests/test_exercises_ch5.py``).

Used in chapter 5.
"""
from __future__ import annotations

import numpy as np

from helpers import integration as I

__all__ = [
    "solution_fit_neuron", "check_fit_neuron",
    "solution_identity", "check_identity",
    "solution_integral_one_freq", "check_integral_one_freq",
]


# ---------------------------------------------------------------------------
# 1. Fit one neuron as a rotation pair
# ---------------------------------------------------------------------------
def solution_fit_neuron(pre) -> tuple[int, float, float, float]:
    """Fit ``pre[a, b] ~ A [cos(w_k a + phi) + cos(w_k b + phi)] + C``: return ``(k, phi, A, fve)``.

    Project on ``cos w_k a + cos w_k b`` and ``sin w_k a + sin w_k b`` (orthogonal,
    squared norm ``p^2`` each) for every ``k``; keep the ``k`` with most variance.
    """
    pre = np.asarray(pre, dtype=np.float64)
    p = pre.shape[0]
    x = np.arange(p)
    centred = pre - pre.mean()
    total = (centred ** 2).sum()
    best = None
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * np.pi * k / p
        c = np.cos(w * x)[:, None] + np.cos(w * x)[None, :]
        s = np.sin(w * x)[:, None] + np.sin(w * x)[None, :]
        alpha, beta = (centred * c).sum() / p ** 2, (centred * s).sum() / p ** 2
        # A cos(wx + phi) = A cos(phi) cos(wx) - A sin(phi) sin(wx)
        A, phi = np.hypot(alpha, beta), np.arctan2(-beta, alpha)
        fve = p ** 2 * A ** 2 / total
        if best is None or fve > best[3]:
            best = (k, float(phi), float(A), float(fve))
    return best


def check_fit_neuron(fn) -> None:
    """Check a reader's ``fn(pre [p, p]) -> (k, phi, A, fve)``."""
    p = 23
    a = np.arange(p)[:, None]
    b = np.arange(p)[None, :]
    for k, phi, A, C in ((3, 0.4, 2.0, 0.5), (10, -2.5, 0.7, -1.0), (1, 3.0, 1.3, 0.0)):
        w = 2 * np.pi * k / p
        pre = A * (np.cos(w * a + phi) + np.cos(w * b + phi)) + C
        got = fn(pre)
        assert len(got) == 4, "return a tuple (k, phi, A, fve)"
        gk, gphi, gA, gfve = got
        assert int(gk) == k, f"frequency: expected {k}, got {gk}; try every k in 1..(p-1)/2 and keep the best fit"
        assert abs(float(gA) - A) < 1e-6, (
            f"amplitude: expected {A}, got {gA}; the basis function cos(w a) + cos(w b) has squared norm p^2 "
            "on the grid, not p^2 / 2")
        assert abs(float(I.wrap_angle(float(gphi) - phi))) < 1e-6, (
            f"phase: expected {phi}, got {gphi}; check the sign: A cos(wx + phi) = A cos(phi) cos(wx) "
            "- A sin(phi) sin(wx)")
        assert abs(float(gfve) - 1) < 1e-6, f"a pure rotation pair has fve 1, got {gfve}; subtract the mean first"
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(p, p))
    ref, got = solution_fit_neuron(pre), fn(pre)
    assert int(got[0]) == ref[0] and abs(float(got[3]) - ref[3]) < 1e-6, (
        "on a random neuron your best frequency or fve differs from the reference: fve is the share of the "
        "variance (after removing the mean) explained by the fit")


# ---------------------------------------------------------------------------
# 2. The identity, numerically
# ---------------------------------------------------------------------------
def solution_identity(x: float, n: int = 10_000) -> float:
    """``int_0^{2 pi} ReLU(cos u) cos(2u - x) du`` by the midpoint rule with ``n`` points."""
    u = (np.arange(n) + 0.5) * 2 * np.pi / n
    return float((np.maximum(np.cos(u), 0) * np.cos(2 * u - x)).sum() * 2 * np.pi / n)


def check_identity(fn) -> None:
    """Check a reader's ``fn(x) -> float`` against ``(2/3) cos x`` (to 1e-5)."""
    for x in (0.0, 1.0, 2.5, -0.7, np.pi):
        got = float(fn(x))
        want = 2 / 3 * np.cos(x)
        if abs(got) < 1e-6 and abs(want) > 1e-3:
            raise AssertionError(f"at x={x} you get ~0: did you forget the ReLU? Without it the integral "
                                 "of cos u cos(2u - x) over a full period is 0")
        assert abs(got - want) < 1e-5, (
            f"at x={x}: expected (2/3) cos x = {want:.6f}, got {got:.6f}; integrate over the whole circle "
            "[0, 2 pi) and multiply the sum by the step 2 pi / n")


# ---------------------------------------------------------------------------
# 3. The integral model of one frequency
# ---------------------------------------------------------------------------
def solution_integral_one_freq(M: float, k: int, p: int) -> np.ndarray:
    """``(2 / (3 pi)) M |cos(w_k (a-b)/2)| cos(w_k (a+b-c))`` as a ``[p, p, p]`` array."""
    x = np.arange(p)
    w = 2 * np.pi * k / p
    a, b, c = x[:, None, None], x[None, :, None], x[None, None, :]
    return (2 / (3 * np.pi)) * M * np.abs(np.cos(w * (a - b) / 2)) * np.cos(w * (a + b - c))


def check_integral_one_freq(fn) -> None:
    """Check a reader's ``fn(M, k, p) -> [p, p, p]`` against the reference and against a neuron sum."""
    for M, k, p in ((1.0, 3, 11), (2.5, 7, 17)):
        got = np.asarray(fn(M, k, p), dtype=np.float64)
        assert got.shape == (p, p, p), f"expected shape {(p, p, p)} indexed [a, b, c], got {got.shape}"
        ref = solution_integral_one_freq(M, k, p)
        if np.allclose(np.abs(got), np.abs(ref)) and not np.allclose(got, ref):
            raise AssertionError("signs differ: the sign of cos(w (a-b)/2) is absorbed by phi -> phi + pi, "
                                 "so the amplitude is |cos(w (a-b)/2)|")
        if np.allclose(got * (2 / 3) / np.abs(got).max(), ref * (2 / 3) / np.abs(ref).max()) \
                and not np.allclose(got, ref):
            raise AssertionError("right shape, wrong scale: the neuron sum is M/(2 pi) times the integral, "
                                 "the integral is (2/3) cos x and the pre-activation carries a factor 2")
        assert np.allclose(got, ref, atol=1e-10), "values differ from (2/(3 pi)) M |cos(w(a-b)/2)| cos(w(a+b-c))"
    # the integral is the limit of many equally spaced neurons
    n, p, k = 720, 13, 4
    phase = 2 * np.pi * np.arange(n) / n
    finite = I.rotation_logits(np.full(n, k), phase, np.full(n, 1.0 / n), p)
    assert np.abs(np.asarray(fn(1.0, k, p)) - finite).max() < 1e-3, "should match a sum over 720 uniform neurons"
