"""Chapter 5 exercises: each check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import integration as I
from helpers.exercises import ch5


def test_fit_neuron():
    ch5.check_fit_neuron(ch5.solution_fit_neuron)

    def wrong_sign(pre):  # phase sign flipped
        k, phi, A, fve = ch5.solution_fit_neuron(pre)
        return k, -phi, A, fve

    def half_norm(pre):  # squared norm p^2 / 2 instead of p^2
        k, phi, A, fve = ch5.solution_fit_neuron(pre)
        return k, phi, 2 * A, fve

    for wrong in (wrong_sign, half_norm):
        with pytest.raises(AssertionError):
            ch5.check_fit_neuron(wrong)


def test_fit_neuron_matches_library():
    rng = np.random.default_rng(1)
    pre = rng.normal(size=(17, 17))
    k, phi, A, fve = ch5.solution_fit_neuron(pre)
    fit = I.fit_neurons(pre)
    assert k == fit.freq[0] and abs(A - fit.amp[0]) < 1e-12 and abs(fve - fit.fve[0]) < 1e-12
    assert abs(I.wrap_angle(phi - fit.phase[0])) < 1e-12


def test_identity():
    ch5.check_identity(ch5.solution_identity)

    def no_relu(x, n=10_000):
        u = (np.arange(n) + 0.5) * 2 * np.pi / n
        return float((np.cos(u) * np.cos(2 * u - x)).sum() * 2 * np.pi / n)

    def half_circle(x, n=10_000):  # integrates over [0, pi) only
        u = (np.arange(n) + 0.5) * np.pi / n
        return float((np.maximum(np.cos(u), 0) * np.cos(2 * u - x)).sum() * np.pi / n)

    for wrong in (no_relu, half_circle):
        with pytest.raises(AssertionError):
            ch5.check_identity(wrong)


def test_integral_one_freq():
    ch5.check_integral_one_freq(ch5.solution_integral_one_freq)
    assert np.allclose(ch5.solution_integral_one_freq(2.0, 3, 11), I.integral_logits([3, 3], [1.0, 1.0], 11))

    def no_abs(M, k, p):
        x = np.arange(p)
        w = 2 * np.pi * k / p
        a, b, c = x[:, None, None], x[None, :, None], x[None, None, :]
        return (2 / (3 * np.pi)) * M * np.cos(w * (a - b) / 2) * np.cos(w * (a + b - c))

    def no_two_thirds(M, k, p):
        return ch5.solution_integral_one_freq(M, k, p) * 1.5

    for wrong in (no_abs, no_two_thirds):
        with pytest.raises(AssertionError):
            ch5.check_integral_one_freq(wrong)
