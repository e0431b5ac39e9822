"""Chapter 4 exercises: reference solutions and check functions.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on cases with known answers
and raises ``AssertionError`` with a hint when it is wrong (it returns True
otherwise); ``solution_<x>`` is the reference answer (tested in
``tests/test_exercises_ch4.py``).

Used in chapter 4.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from helpers import modular as M
from helpers.training import cross_entropy

__all__ = [
    "solution_key_freqs_from_embedding", "check_key_freqs_from_embedding",
    "solution_neuron_fve", "check_neuron_fve",
    "solution_ideal_logits", "check_ideal_logits",
    "solution_distance_irrelevance", "check_distance_irrelevance",
]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------
# 1. Read the key frequencies off the embedding
# ---------------------------------------------------------------------------
def solution_key_freqs_from_embedding(W_E, p: int, top: int | None = None) -> list[int]:
    """Exercise ch4-ex-keys: Fourier-transform the rows of ``W_E``, rank the frequencies.

    Projects ``W_E[:p]`` on the normalised ``cos/sin(2 pi k x / p)`` by hand,
    takes each frequency's norm (cos and sin together), and keeps those before
    the largest drop in the sorted norms (or the ``top`` largest).

    Used in chapter 4.
    """
    W = _np(W_E)[:p]
    x = np.arange(p)
    norms = []
    for k in range(1, (p - 1) // 2 + 1):
        cos = np.cos(2 * np.pi * k * x / p)
        sin = np.sin(2 * np.pi * k * x / p)
        cos, sin = cos / np.linalg.norm(cos), sin / np.linalg.norm(sin)
        norms.append(np.sqrt(np.sum((cos @ W) ** 2) + np.sum((sin @ W) ** 2)))
    norms = np.array(norms)
    order = np.argsort(-norms)
    if top is None:
        s = norms[order]
        top = int(np.argmax(s[:-1] / np.maximum(s[1:], 1e-300))) + 1
    return sorted(int(k) + 1 for k in order[:top])


def _synthetic_embedding(p: int, keys: dict, d_model: int = 24, extra_rows: int = 1, seed: int = 0) -> np.ndarray:
    """``W_E`` ``[p + extra_rows, d_model]`` whose rows 0..p-1 carry the given ``{k: (cos amp, sin amp)}``."""
    rng = np.random.default_rng(seed)
    x = np.arange(p)[:, None]
    W = 0.01 * rng.standard_normal((p, d_model))
    for k, (ac, as_) in keys.items():
        W += ac * np.cos(2 * np.pi * k * x / p) * rng.standard_normal(d_model)
        W += as_ * np.sin(2 * np.pi * k * x / p) * rng.standard_normal(d_model)
    return np.concatenate([W, 5 * rng.standard_normal((extra_rows, d_model))])


def check_key_freqs_from_embedding(fn: Callable) -> bool:
    """Check a reader's ``fn(W_E, p) -> sorted list of key frequencies`` on embeddings with planted frequencies.

    Used in chapter 4.
    """
    cases = ((31, {3: (1.0, 0.2), 7: (0.0, 1.0), 11: (0.8, 0.8)}),   # 7 is a pure sine
             (37, {2: (1.0, 1.0), 17: (0.0, 1.2)}),
             (23, {5: (1.0, 0.0), 6: (0.0, 1.0), 9: (0.7, 0.7), 10: (1.0, 0.5)}))
    for seed, (p, keys) in enumerate(cases):
        W_E = _synthetic_embedding(p, keys, seed=seed)
        got = [int(k) for k in fn(W_E, p)]
        want = sorted(keys)
        if got == want:
            continue
        if got == [k - 1 for k in want]:
            raise AssertionError(f"p={p}: expected {want}, got {got}: frequency k is the wave cos(2 pi k x / p), "
                                 "counted from 1, not the index in your array")
        if set(got) < set(want):
            missing = sorted(set(want) - set(got))
            raise AssertionError(f"p={p}: missing {missing} (planted: {want}). A frequency's norm combines its cos "
                                 "AND its sin projection; some planted waves are pure sines")
        raise AssertionError(f"p={p}: expected {want}, got {got}. Use only the rows 0..p-1 (the numbers), and "
                             "cut the norms sorted from large to small at the largest RATIO between neighbours")
    return True


# ---------------------------------------------------------------------------
# 2. Per-neuron variance explained (implement)
# ---------------------------------------------------------------------------
def solution_neuron_fve(acts, k: int) -> np.ndarray:
    """Exercise ch4-ex-fve: the share of each neuron's variance over ``(a, b)`` explained by frequency ``k``.

    With the orthonormal waves ``u = 1/sqrt(p)``, ``c = cos w_k x``, ``s =
    sin w_k x`` (each normalised), the explained part is the sum of the squared
    coefficients of the eight 2-D terms built from them (``u`` times ``u``, the
    constant, excluded); the total is the sum of the squared centred
    activations.

    Parameters
    ----------
    acts : ``[p, p, d_mlp]``
    k : frequency, ``1 <= k <= (p-1)/2``

    Returns
    -------
    array ``[d_mlp]`` in [0, 1]

    Used in chapter 4.
    """
    x = _np(acts)
    p = x.shape[0]
    t = np.arange(p)
    F = np.stack([np.ones(p), np.cos(2 * np.pi * k * t / p), np.sin(2 * np.pi * k * t / p)])
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    coef = np.einsum("ia,jb,abn->ijn", F, F, x)
    explained = (coef ** 2).sum((0, 1)) - coef[0, 0] ** 2
    total = ((x - x.mean((0, 1))) ** 2).sum((0, 1))
    return np.divide(explained, total, out=np.zeros_like(total), where=total > 0)


def check_neuron_fve(fn: Callable) -> bool:
    """Check a reader's ``fn(acts [p, p, d_mlp], k) -> [d_mlp]`` against ``M.neuron_frequency_fve``.

    Used in chapter 4.
    """
    p = 13
    a, b = np.arange(p)[:, None], np.arange(p)[None, :]
    w = 2 * np.pi / p
    rng = np.random.default_rng(0)
    z = np.zeros((p, p))
    acts = np.stack([z + x for x in (
        np.maximum(0, np.cos(4 * w * a + 0.3) + np.cos(4 * w * b + 0.3)) + 2.0,  # a ReLU neuron of frequency 4
        np.cos(4 * w * a) * np.sin(4 * w * b) + 0.5 * np.cos(2 * w * b),        # a product term, and frequency 2
        rng.standard_normal((p, p)),                                            # noise
        np.sin(5 * w * a) + 3.0,                                                # a pure wave plus a constant
    )], axis=-1)
    ref = M.neuron_frequency_fve(acts)
    for k in (4, 2, 5):
        got = np.asarray(fn(acts, k), dtype=np.float64)
        if got.shape != (acts.shape[2],):
            raise AssertionError(f"return one share per neuron, shape {(acts.shape[2],)}, got {got.shape}")
        if np.allclose(got, ref[:, k], atol=1e-8):
            continue
        if got[3] < 0.9 * ref[3, k] or np.any(got > 1 + 1e-9):
            raise AssertionError(f"k={k}: neuron 3 is sin(w a) plus a constant, explained fully by its frequency; "
                                 "subtract the mean (the constant term) before dividing by the variance")
        if k == 4 and got[1] < ref[1, 4] - 1e-6:
            raise AssertionError("k=4: neuron 1 contains cos(w_4 a) sin(w_4 b); include the products of the "
                                 "a-waves and b-waves of frequency k, not only the waves of a and of b alone")
        raise AssertionError(f"k={k}: expected {np.round(ref[:, k], 4)}, got {np.round(got, 4)}; normalise "
                             "each wave over the p points before projecting")
    return True


# ---------------------------------------------------------------------------
# 3. The algorithm without the network
# ---------------------------------------------------------------------------
def solution_ideal_logits(p: int, key_freqs: Sequence[int], scale: float = 10.0) -> dict:
    """Exercise ch4-ex-ideal: accuracy, loss and margin of ``scale * sum_k cos w_k(a+b-c)``.

    Returns ``{"accuracy", "loss", "margin"}`` over all ``p^2`` inputs; the
    margin is the smallest gap between the correct logit and the best wrong one.

    Used in chapter 4.
    """
    a, b, c = np.ogrid[:p, :p, :p]
    L = scale * sum(np.cos(2 * np.pi * k * (a + b - c) / p) for k in key_freqs)
    flat = L.reshape(p * p, p)
    labels = (np.arange(p)[:, None] + np.arange(p)[None, :]).ravel() % p
    correct = flat[np.arange(p * p), labels]
    wrong = flat.copy()
    wrong[np.arange(p * p), labels] = -np.inf
    return {
        "accuracy": float((flat.argmax(1) == labels).mean()),
        "loss": float(cross_entropy(torch.from_numpy(flat), torch.from_numpy(labels))),
        "margin": float((correct - wrong.max(1)).min()),
    }


def check_ideal_logits(fn: Callable) -> bool:
    """Check a reader's ``fn(p, key_freqs, scale) -> {"accuracy", "loss", "margin"}``.

    Used in chapter 4.
    """
    for p, keys, scale in ((31, [4], 10.0), (31, [4, 9, 13], 10.0), (113, [14, 35, 41, 42, 52], 2.0)):
        got, want = fn(p, keys, scale), solution_ideal_logits(p, keys, scale)
        if not isinstance(got, dict) or not {"accuracy", "loss", "margin"} <= set(got):
            raise AssertionError("return a dict with the keys 'accuracy', 'loss' and 'margin'")
        if abs(float(got["accuracy"]) - want["accuracy"]) > 1e-9:
            raise AssertionError(f"p={p}, keys={keys}: accuracy should be {want['accuracy']}, got {got['accuracy']}; "
                                 "the label of (a, b) is (a + b) mod p and the prediction is the argmax over c")
        if abs(float(got["margin"])) < 1e-12 < want["margin"]:
            raise AssertionError("your margin is 0: the best WRONG logit must exclude the correct one (set it to "
                                 "-inf before taking the max)")
        if abs(float(got["margin"]) - want["margin"]) > 1e-8:
            raise AssertionError(f"p={p}, keys={keys}: margin should be {want['margin']:.6f}, got "
                                 f"{float(got['margin']):.6f}: the SMALLEST over all inputs of correct minus best wrong")
        if abs(float(got["loss"]) - want["loss"]) > 1e-8:
            raise AssertionError(f"p={p}, keys={keys}: loss should be {want['loss']:.6f}, got {float(got['loss']):.6f}; "
                                 "cross-entropy is logsumexp over c minus the correct logit, averaged over the p^2 "
                                 "inputs")
    return True


# ---------------------------------------------------------------------------
# 4. Distance irrelevance by hand
# ---------------------------------------------------------------------------
def solution_distance_irrelevance(logits) -> float:
    """Exercise ch4-ex-di: loop over (a, b), bin the correct logit by ``a - b``.

    Table ``[a - b mod p, a + b mod p]`` of the correct logits; the mean over
    rows of each row's standard deviation, over the standard deviation of the
    whole table.

    Used in chapter 4.
    """
    L = _np(logits)
    p = L.shape[0]
    table = np.zeros((p, p))  # [a - b, a + b]
    for a in range(p):
        for b in range(p):
            table[(a - b) % p, (a + b) % p] = L[a, b, (a + b) % p]
    return float(np.mean([row.std() for row in table]) / table.std())


def check_distance_irrelevance(fn: Callable) -> bool:
    """Check a reader's ``fn(logits [p, p, p]) -> float`` against ``M.distance_irrelevance``.

    Used in chapter 4.
    """
    p = 13
    a, b, c = np.ogrid[:p, :p, :p]
    rng = np.random.default_rng(0)
    pizza = np.abs(np.cos(np.pi * 3 * (a - b) / p)) * np.cos(2 * np.pi * 3 * (a + b - c) / p)
    cases = {"a pizza-like logit table": pizza + 0.1 * rng.standard_normal((p, p, p)),
             "a clock-like logit table": np.cos(2 * np.pi * 3 * (a + b - c) / p) + 0.3 * rng.standard_normal((p, p, p)),
             "random logits": rng.standard_normal((p, p, p))}
    for name, L in cases.items():
        got, want = float(fn(L)), M.distance_irrelevance(L)
        if abs(got - want) < 1e-9:
            continue
        D = M.correct_logit_by_sum_diff(L)  # [a + b, a - b]
        swapped = float(D.std(axis=1).mean() / D.std())
        if abs(got - swapped) < 1e-9:
            raise AssertionError(f"on {name}: you grouped by a + b; group by the DISTANCE a - b mod p and take the "
                                 "spread of each group over a + b")
        raise AssertionError(f"on {name}: expected {want:.6f}, got {got:.6f}; correct logit = L[a, b, (a+b) % p], "
                             "population standard deviations (np.std), mean of the rows' std over the whole table's std")
    return True
