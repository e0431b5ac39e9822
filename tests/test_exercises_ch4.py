"""Chapter 4 exercises: each check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import modular as M
from helpers.exercises import ch4


def test_key_freqs_from_embedding():
    assert ch4.check_key_freqs_from_embedding(ch4.solution_key_freqs_from_embedding)
    # the test of the library's rule: five unequal key frequencies and an extra '=' row
    p, d = 113, 128
    keys = [14, 35, 41, 42, 52]
    B = M.fourier_basis(p).numpy()
    rows = [r for k in keys for r in (2 * k - 1, 2 * k)]
    rng = np.random.default_rng(0)
    scales = np.repeat(rng.uniform(0.5, 2.0, size=len(keys)), 2)[:, None]
    W_E = B[rows].T @ (scales * rng.normal(size=(len(rows), d)))
    W_E = np.vstack([W_E + 1e-4 * rng.normal(size=(p, d)), rng.normal(size=(1, d))])
    assert ch4.solution_key_freqs_from_embedding(W_E, p) == keys == M.key_freqs_embedding(W_E, p=p)
    assert ch4.solution_key_freqs_from_embedding(W_E, p, top=5) == keys

    def cos_only(W_E, p):
        W, x = np.asarray(W_E)[:p], np.arange(p)
        norms = np.array([np.linalg.norm(np.cos(2 * np.pi * k * x / p) @ W) for k in range(1, (p - 1) // 2 + 1)])
        s = np.sort(norms)[::-1]
        top = int(np.argmax(s[:-1] / s[1:])) + 1
        return sorted(int(k) + 1 for k in np.argsort(-norms)[:top])

    def zero_based(W_E, p):
        return [k - 1 for k in ch4.solution_key_freqs_from_embedding(W_E, p)]

    with pytest.raises(AssertionError, match="cos AND its sin"):
        ch4.check_key_freqs_from_embedding(cos_only)
    with pytest.raises(AssertionError, match="counted from 1"):
        ch4.check_key_freqs_from_embedding(zero_based)


def test_neuron_fve():
    assert ch4.check_neuron_fve(ch4.solution_neuron_fve)
    acts = np.random.default_rng(1).standard_normal((11, 11, 5))
    ref = M.neuron_frequency_fve(acts)
    for k in range(1, 6):
        assert np.allclose(ch4.solution_neuron_fve(acts, k), ref[:, k], atol=1e-12)
    assert np.all(sum(ch4.solution_neuron_fve(acts, k) for k in range(1, 6)) <= 1 + 1e-12)  # cross terms k_a != k_b remain

    def no_centring(acts, k):
        x = np.asarray(acts)
        p = x.shape[0]
        t = np.arange(p)
        F = np.stack([np.ones(p), np.cos(2 * np.pi * k * t / p), np.sin(2 * np.pi * k * t / p)])
        F /= np.linalg.norm(F, axis=1, keepdims=True)
        coef = np.einsum("ia,jb,abn->ijn", F, F, x)
        return ((coef ** 2).sum((0, 1)) - coef[0, 0] ** 2) / (x ** 2).sum((0, 1))

    def no_products(acts, k):
        x = np.asarray(acts)
        p = x.shape[0]
        t = np.arange(p)
        F = np.stack([np.ones(p), np.cos(2 * np.pi * k * t / p), np.sin(2 * np.pi * k * t / p)])
        F /= np.linalg.norm(F, axis=1, keepdims=True)
        coef = np.einsum("ia,jb,abn->ijn", F, F, x)
        explained = (coef[0, 1:] ** 2).sum(0) + (coef[1:, 0] ** 2).sum(0)
        return explained / ((x - x.mean((0, 1))) ** 2).sum((0, 1))

    with pytest.raises(AssertionError, match="subtract the mean"):
        ch4.check_neuron_fve(no_centring)
    with pytest.raises(AssertionError, match="include the products"):
        ch4.check_neuron_fve(no_products)


def test_ideal_logits():
    assert ch4.check_ideal_logits(ch4.solution_ideal_logits)
    out = ch4.solution_ideal_logits(113, [14, 35, 41, 42, 52])
    assert out["accuracy"] == 1.0 and out["margin"] > 0 and out["loss"] < 1e-3
    one = ch4.solution_ideal_logits(113, [14], scale=10.0)
    assert one["accuracy"] == 1.0 and one["loss"] > out["loss"]
    L = 10.0 * M.ideal_logits(31, [4, 9])
    assert np.allclose(L, 10.0 * sum(np.cos(2 * np.pi * k * (np.arange(31)[:, None, None] + np.arange(31)[None, :, None]
                                                           - np.arange(31)) / 31) for k in (4, 9)))

    def margin_includes_correct(p, keys, scale):
        return {**ch4.solution_ideal_logits(p, keys, scale), "margin": 0.0}

    def loss_without_logsumexp(p, keys, scale):  # "loss" = minus the mean correct logit
        out = ch4.solution_ideal_logits(p, keys, scale)
        return {**out, "loss": -scale * len(keys)}

    with pytest.raises(AssertionError, match="exclude the correct one"):
        ch4.check_ideal_logits(margin_includes_correct)
    with pytest.raises(AssertionError, match="logsumexp"):
        ch4.check_ideal_logits(loss_without_logsumexp)


def test_distance_irrelevance():
    assert ch4.check_distance_irrelevance(ch4.solution_distance_irrelevance)
    p = 31
    a, b, c = np.ogrid[:p, :p, :p]
    w = 2 * np.pi * 5 / p
    sum_only = np.cos(w * (a + b - c)) + np.cos(2 * np.pi * 3 * (a + b) / p) + 0 * c
    pizza = np.abs(np.cos(w * (a - b) / 2)) * np.cos(w * (a + b - c))
    clock = np.cos(w * (a + b - c)) + 0.3 * np.sin(a * 1.7 + b * 1.7) * np.cos(w * (a + b - c))
    for L in (sum_only, pizza, clock):
        assert math.isclose(ch4.solution_distance_irrelevance(L), M.distance_irrelevance(L), abs_tol=1e-12)

    def by_sum(logits):  # groups by a + b instead of a - b
        L = np.asarray(logits)
        p = L.shape[0]
        table = np.zeros((p, p))
        for a_ in range(p):
            for b_ in range(p):
                table[(a_ + b_) % p, (a_ - b_) % p] = L[a_, b_, (a_ + b_) % p]
        return float(np.mean([row.std() for row in table]) / table.std())

    def sample_std(logits):  # ddof=1
        L = np.asarray(logits)
        p = L.shape[0]
        table = np.zeros((p, p))
        for a_ in range(p):
            for b_ in range(p):
                table[(a_ - b_) % p, (a_ + b_) % p] = L[a_, b_, (a_ + b_) % p]
        return float(np.mean([row.std(ddof=1) for row in table]) / table.std())

    with pytest.raises(AssertionError, match="DISTANCE"):
        ch4.check_distance_irrelevance(by_sum)
    with pytest.raises(AssertionError, match="population standard deviations"):
        ch4.check_distance_irrelevance(sample_std)
