"""Chapter 7 exercises: reference solutions and the checks a reader runs on an attempt.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on fresh inputs and raises
``AssertionError`` with a hint when it is wrong; ``solution_<x>`` passes.

>>> check_gram_null(solution_gram_null)
True
"""
from __future__ import annotations

import numpy as np
import torch

from helpers import degeneracy as D

__all__ = ["solution_gram_null", "check_gram_null", "solution_whitening", "check_whitening",
           "solution_edges_for_mass", "check_edges_for_mass"]


def solution_gram_null(acts: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """Orthonormal null vectors ``[d, k]`` of the (uncentred) Gram matrix ``E[f f^T]`` of ``acts [batch, d]``."""
    f = acts.double()
    ev, vecs = torch.linalg.eigh(f.T @ f / len(f))
    return vecs[:, ev <= rtol * ev.max()]


def check_gram_null(fn) -> bool:
    """Check an attempt at :func:`solution_gram_null` on one-hot inputs with known dependencies."""
    X, _ = D.two_sums_data(3)
    torch.manual_seed(0)
    acts = torch.cat([X, X[:, :3] @ torch.randn(3, 2)], dim=1).double()   # 3 + 2 dependencies
    null = fn(acts)
    assert isinstance(null, torch.Tensor) and null.ndim == 2 and null.shape[0] == acts.shape[1], (
        f"return a [d, k] tensor of null vectors (d = {acts.shape[1]}), got {getattr(null, 'shape', type(null))}")
    null = null.double()
    assert torch.allclose(null.T @ null, torch.eye(null.shape[1], dtype=torch.float64), atol=1e-8), (
        "the null vectors should be orthonormal (take eigenvectors of the symmetric Gram matrix)")
    assert (acts @ null).abs().max() < 1e-8, (
        "f . v should be 0 on every input: use the uncentred Gram E[f f^T], not the covariance "
        "(a centred null vector need not annihilate the activations)")
    assert null.shape[1] == 5, (
        f"expected 5 null directions (3 from one-hot groups summing to the same constant, 2 from copied "
        f"columns), got {null.shape[1]}: check the threshold is relative to the largest eigenvalue")
    return True


def solution_whitening(acts: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """The whitening matrix ``U D^(-1/2)`` ``[d, k]`` of the kept Gram eigenvectors."""
    f = acts.double()
    ev, U = torch.linalg.eigh(f.T @ f / len(f))
    keep = ev > rtol * ev.max()
    return U[:, keep] / ev[keep].sqrt()


def check_whitening(fn) -> bool:
    """Check an attempt at :func:`solution_whitening`: whitened Gram = identity on the kept subspace."""
    X, _ = D.two_sums_data(3)
    gen = torch.Generator().manual_seed(1)
    acts = torch.relu(X.double() @ torch.randn(12, 9, generator=gen, dtype=torch.float64))
    W = fn(acts)
    assert isinstance(W, torch.Tensor) and W.ndim == 2 and W.shape[0] == acts.shape[1], (
        f"return a [d, k] matrix (d = {acts.shape[1]}), got {getattr(W, 'shape', type(W))}")
    k = int(torch.linalg.matrix_rank(acts.T @ acts).item())
    assert W.shape[1] == k, f"keep only eigenvalues above the threshold: expected {k} columns, got {W.shape[1]}"
    y = acts @ W.double()
    G = y.T @ y / len(y)
    assert torch.allclose(G, torch.eye(k, dtype=torch.float64), atol=1e-6), (
        "E[y y^T] should be the identity: divide each eigenvector by the square root of its eigenvalue "
        "(D^(-1/2), not D^(-1) or D^(1/2)), and use the uncentred Gram matrix")
    return True


def solution_edges_for_mass(E, mass: float = 0.9) -> int:
    """The smallest number of edges whose weights sum to at least ``mass`` of the total."""
    w = np.sort(np.asarray(E, dtype=float).ravel())[::-1]
    if w.sum() == 0:
        return 0
    return int(np.argmax(np.cumsum(w) >= mass * w.sum() * (1 - 1e-12)) + 1)


def check_edges_for_mass(fn) -> bool:
    """Check an attempt at :func:`solution_edges_for_mass` against the library's count."""
    rng = np.random.default_rng(0)
    cases = [np.array([[9.0, 1.0], [0.0, 0.0]]), np.array([[5.0, 5.0], [0.0, 0.0]]),
             rng.exponential(size=(6, 5)), rng.exponential(size=(4, 4)) ** 4]
    for E in cases:
        for mass in (0.5, 0.9):
            want = D.edges_for_mass(E, mass)
            got = fn(E, mass)
            assert got == want, (
                f"for weights {np.round(E, 2).tolist()} and mass {mass} expected {want} edges, got {got}: sort "
                "the weights in decreasing order and count until the running sum reaches mass * total "
                "(the edge that crosses the line counts)")
    return True
