"""Tests for helpers.integration (chapter 5): identities, fits, the lens and the bound."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import integration as I
from helpers import modular as M
from helpers import store
from helpers.transformer import HookedTransformer

torch.set_num_threads(1)
P = 59


@pytest.fixture(scope="module")
def pizzas():
    out = {}
    for s in M.CLOCK_PIZZA_SEEDS:
        model = store.load(M.clock_pizza_name("constant", s)).model
        mlp = I.factor_mlp(model)
        fit = I.fit_neurons_factored(mlp)
        o = I.fit_output_phases(mlp.neuron_logits, fit.freq)
        out[s] = (model, mlp, fit, o)
    return out


def test_identity_to_1e8():
    x = np.linspace(-7, 7, 101)
    assert np.abs(I.relu_cos_integral(x) - (2 / 3) * np.cos(x)).max() < 1e-8
    # an independent check: a plain midpoint rule on the whole circle (no knowledge of the kink)
    n = 200_000
    u = (np.arange(n) + 0.5) * 2 * np.pi / n
    for xx in (0.0, 0.7, 2.0, np.pi):
        mid = (np.maximum(np.cos(u), 0) * np.cos(2 * u - xx)).sum() * 2 * np.pi / n
        assert abs(mid - (2 / 3) * np.cos(xx)) < 1e-8


def test_fit_recovers_synthetic_neurons():
    p = 31
    a = np.arange(p)[:, None]
    b = np.arange(p)[None, :]
    rng = np.random.default_rng(0)
    ks, phis, amps = rng.integers(1, 16, 20), rng.uniform(-np.pi, np.pi, 20), rng.uniform(0.5, 3, 20)
    pre = np.stack([A * (np.cos(2 * np.pi * k * a / p + f) + np.cos(2 * np.pi * k * b / p + f)) + 0.3
                    for k, f, A in zip(ks, phis, amps)], -1)
    fit = I.fit_neurons(pre)
    assert (fit.freq == ks).all()
    assert np.abs(I.wrap_angle(fit.phase - phis)).max() < 1e-10
    assert np.abs(fit.amp - amps).max() < 1e-10 and np.abs(fit.fve - 1).max() < 1e-10
    assert np.abs(fit.const - 0.3).max() < 1e-10


def test_factored_model_matches_forward_pass(pizzas):
    model, mlp, fit, _ = pizzas[0]
    L = M.logit_tensor(model)
    assert np.abs(mlp.logits() - L).max() < 1e-5 * np.abs(L).max()
    pre = M.neuron_activations(model, hook="pre")
    assert np.abs(mlp.pre() - pre).max() < 1e-5 * np.abs(pre).max()
    full = I.fit_neurons(mlp.pre())          # the p^2 fit and the factored fit are the same projection
    assert (full.freq == fit.freq).all() and np.abs(full.amp - fit.amp).max() < 1e-9 * fit.amp.max()
    assert I.nonadditive_share(mlp.pre()).max() < 1e-20 + 1e-12


def test_rotations_and_phase_doubling_on_every_seed(pizzas):
    for s, (_, mlp, fit, o) in pizzas.items():
        assert np.median(fit.fve) >= 0.9, s
        assert I.circular_correlation(o.phase, 2 * fit.phase) >= 0.9, s
        # a wrong doubling (psi vs phi, or vs 2 phi + pi/2) is not what we see
        assert I.mean_resultant_length(o.phase - 2 * fit.phase) > 0.9
        assert I.mean_resultant_length(o.phase - fit.phase) < 0.5


def test_integral_model_accuracy_on_every_seed(pizzas):
    labels = M.all_pairs(P, "pair")[1].numpy().reshape(P, P)
    for s, (model, mlp, fit, o) in pizzas.items():
        lens = I.lens_logits(mlp, fit, o)
        assert (lens.argmax(-1) == labels).mean() >= 0.99, s


def test_bound_holds_and_is_tight_on_every_seed(pizzas):
    for s, (_, mlp, fit, o) in pizzas.items():
        m = I.neuron_weights(fit, o)
        b = I.quadrature_bound(fit.freq, fit.phase, m)
        bf = I.brute_force_error(fit.freq, fit.phase, m, P)
        assert b.bound_rectangles >= bf and b.bound_grid >= bf, s
        assert b.bound >= bf and b.bound <= 10 * bf, (s, b.bound, bf)


def test_bound_holds_per_frequency_and_on_random_rules():
    for p, seed in ((31, 0), (59, 1), (61, 2)):
        freq, phase, m = I.synthetic_pizza(p, d_mlp=96, n_freqs=3, seed=seed)
        b = I.quadrature_bound(freq, phase, m, n_grid=512)
        for k, bk in zip(b.freqs, np.minimum(b.rectangles, b.grid)):
            sel = freq == k
            assert bk >= I.brute_force_error(freq[sel], phase[sel], m[sel], p)
        # clustered phases (a bad quadrature rule): still a valid bound
        phase2 = np.where(np.arange(96) % 2 == 0, 0.1, 0.2) + 0 * phase
        b2 = I.quadrature_bound(freq, phase2, m, n_grid=512)
        assert b2.bound >= I.brute_force_error(freq, phase2, m, p)


def test_uniform_phases_give_small_error():
    # equally spaced phases and equal weights: the Riemann sum of a smooth-ish integrand converges
    n, p = 64, 59
    freq = np.full(n, 5)
    phase = 2 * np.pi * np.arange(n) / n
    err = I.brute_force_error(freq, phase, np.ones(n), p)
    assert err < 0.01 * (2 / (3 * np.pi)) * n


def test_quadrature_rectangles_tile_the_circle():
    rng = np.random.default_rng(3)
    phase, m = rng.uniform(-np.pi, np.pi, 40), rng.uniform(0.5, 1.5, 40)
    r = I.quadrature_rectangles(phase, m, theta=0.3, x=0.5)
    assert abs(r["width"].sum() - 2 * np.pi) < 1e-12
    assert np.allclose(np.diff(r["left"]), r["width"][:-1])
    # area * M / 2pi is the neuron sum at theta, x
    u = phase + 0.3
    direct = (m * np.maximum(np.cos(u), 0) * np.cos(2 * u - 0.5)).sum()
    assert abs(r["area"] * m.sum() / (2 * np.pi) - direct) < 1e-10


def test_secondary_frequency_explains_the_gap(pizzas):
    _, mlp, fit, _ = pizzas[0]
    real = mlp.mlp_logits()

    def rel(x):
        c = lambda y: y - y.mean(-1, keepdims=True)
        return np.linalg.norm(c(x) - c(real)) / np.linalg.norm(c(real))

    assert rel(I.harmonic_logits(mlp, fit, (1, 2))) < 0.5 * rel(I.harmonic_logits(mlp, fit, (1,)))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="pre must"):
        I.fit_neurons(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="weight must be >= 0"):
        I.quadrature_bound([1, 1], [0.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="n_grid"):
        I.quadrature_bound([1], [0.0], [1.0], n_grid=2)
    with pytest.raises(TypeError, match="model must be"):
        I.factor_mlp("not a model")
    clock = HookedTransformer(M.clock_pizza_config("normal", p=7))
    with pytest.raises(ValueError, match="constant attention"):
        I.factor_mlp(clock)
    with pytest.raises(ValueError, match="freq must"):
        I.fit_output_phases(np.zeros((2, 7)), [0, 1])


def test_lens_summary_on_a_clock():
    model = store.load(M.clock_pizza_name("normal", 2)).model
    r = I.lens_summary(model)
    assert r["nonadditive"] > 1e-3          # softmax attention: the MLP input is not a sum u(a) + v(b)
    assert 0 <= r["median_fve"] <= 1 and -1 <= r["circ_corr"] <= 1
