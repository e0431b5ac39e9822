"""Chapter 7 exercises: every check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.exercises import ch7


def test_gram_null():
    assert ch7.check_gram_null(ch7.solution_gram_null)

    def centred(acts, rtol=1e-10):          # covariance instead of Gram
        f = acts.double() - acts.double().mean(0)
        ev, vecs = torch.linalg.eigh(f.T @ f / len(f))
        return vecs[:, ev <= rtol * ev.max()]

    with pytest.raises(AssertionError, match="uncentred"):
        ch7.check_gram_null(centred)


def test_whitening():
    assert ch7.check_whitening(ch7.solution_whitening)

    def wrong_power(acts, rtol=1e-10):
        f = acts.double()
        ev, U = torch.linalg.eigh(f.T @ f / len(f))
        keep = ev > rtol * ev.max()
        return U[:, keep] / ev[keep]

    with pytest.raises(AssertionError, match="D\\^\\(-1/2\\)"):
        ch7.check_whitening(wrong_power)


def test_edges_for_mass():
    assert ch7.check_edges_for_mass(ch7.solution_edges_for_mass)

    def off_by_one(E, mass=0.9):
        w = np.sort(np.asarray(E, float).ravel())[::-1]
        return int(np.sum(np.cumsum(w) < mass * w.sum()))

    with pytest.raises(AssertionError, match="crosses"):
        ch7.check_edges_for_mass(off_by_one)
