"""MLPs that integrate: the pizza model's neurons as a quadrature rule.

Yip, Agrawal, Chan and Gross (2024) read the ReLU MLP of a one-layer "pizza"
model (constant attention, Zhong et al. 2023) as a numerical integration. This
module turns their reading into code that runs on chapter 4's shipped models.

**Conventions.** The model reads tokens ``[a, b]`` at the last position
(:func:`helpers.modular.all_pairs`, layout ``"pair"``). Our constant attention
*averages* the two positions (weight 1/2 each) while Zhong et al.'s code *sums*
them (weight 1 each); every formula here is written in terms of the model's own
pre-activations, so the factor 2 is absorbed into the fitted amplitudes and
nothing else changes. ``w_k = 2 pi k / p``. The logit tensor is indexed
``[a, b, c]``.

**1. Neurons as rotations.** With constant attention the MLP input is exactly
additive, ``pre_i(a, b) = u_i(a) + v_i(b) + const_i`` (:func:`factor_mlp`). We
fit every neuron as (:func:`fit_neurons`)::

    pre_i(a, b) ~ A_i [cos(w_k a + phi_i) + cos(w_k b + phi_i)] + C_i
               = 2 A_i cos(w_k (a-b)/2) cos(w_k (a+b)/2 + phi_i) + C_i.

**2. The output phase doubles.** Neuron ``i``'s row of ``W_out W_U`` (its
effect on logit ``c``) is fitted as ``B_i cos(w_k c + psi_i)``
(:func:`fit_output_phases`); the pizza has ``psi_i ~ 2 phi_i``.

**3. The infinite-width lens.** With ``sigma = cos(w_k (a-b)/2)``,
``theta = w_k (a+b)/2`` and the sign of ``sigma`` absorbed into ``phi -> phi +
pi`` (which leaves ``2 phi`` unchanged mod ``2 pi``), neuron ``i`` adds
``2 |sigma| m_i h_x(theta + phi_i)`` to logit ``c``, where ``m_i = A_i B_i``,
``x = w_k (a + b - c)`` and ``h_x(u) = ReLU(cos u) cos(2u - x)``. If the
phases covered the circle with density proportional to ``m``, the sum over a
frequency's neurons would be ``M_k / (2 pi)`` times the integral of ``h_x``
(``M_k = sum_i m_i``), and (:func:`relu_cos_integral`)::

    int_0^{2 pi} ReLU(cos u) cos(2u - x) du = (2/3) cos x,

so the frequency's logits become (:func:`integral_logits`)::

    (2 / (3 pi)) M_k |cos(w_k (a-b)/2)| cos(w_k (a+b-c)),

the pizza logit. The finite MLP is a quadrature rule for this integral: each
neuron is one rectangle of width ``2 pi m_i / M_k`` and height
``h_x(theta + phi_i)`` (:func:`quadrature_rectangles`).

**5. The bound.** :func:`quadrature_bound` bounds ``|finite - integral|``
uniformly over all inputs without a pass over them; see its docstring for the
derivation. :func:`brute_force_error` is the exhaustive check over all ``p^3``
triples ``(a, b, c)``.

Used in chapter 5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from helpers._util import check_seed as _check_seed
from helpers.modular import all_pairs, task_of
from helpers.transformer import HookedTransformer

__all__ = [
    "INTEGRAL_CONSTANT", "LIPSCHITZ_G", "relu_cos_integral", "FactoredMLP", "factor_mlp", "NeuronFit",
    "fit_neurons", "fit_neurons_factored", "OutputFit", "fit_output_phases", "wrap_angle",
    "circular_correlation", "mean_resultant_length", "neuron_weights", "rotation_logits",
    "integral_logits", "lens_logits", "quadrature_rectangles", "QuadratureBound", "quadrature_bound",
    "brute_force_error", "harmonic_share", "fold_freq", "synthetic_pizza", "harmonic_logits", "lens_summary",
    "nonadditive_share", "synthetic_factored", "time_bound_and_brute",
]

INTEGRAL_CONSTANT = 2.0 / 3.0
"""``int_0^{2 pi} ReLU(cos u) cos(2u) du = 2/3`` (and the ``sin 2u`` part is 0)."""

LIPSCHITZ_G = 2.0
"""Lipschitz constant of ``g(u) = ReLU(cos u) (cos 2u, sin 2u)`` (Euclidean norm):
``|g'(u)| = sqrt(sin^2 u + 4 cos^2 u) <= 2`` where ``cos u > 0``, ``g = 0`` elsewhere."""


# ---------------------------------------------------------------------------
# Checks and small tools
# ---------------------------------------------------------------------------
def _as_np(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from e


def _pre_grid(pre) -> np.ndarray:
    """Pre-activations over all inputs as ``[p, p, d_mlp]`` (one neuron ``[p, p]`` gets a last axis)."""
    x = _as_np(pre, "pre")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[0] != x.shape[1]:
        raise ValueError(f"pre must have shape [p, p, d_mlp] or [p, p], got {x.shape}")
    return x


def _check_p(p) -> int:
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 3 or p % 2 == 0:
        raise ValueError(f"p must be an odd int >= 3, got {p!r}")
    return int(p)


def wrap_angle(x) -> np.ndarray:
    """Angles mapped to ``(-pi, pi]``.

    >>> float(wrap_angle(3 * np.pi / 2))
    -1.5707963267948966

    Used in chapter 5.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.pi - np.mod(np.pi - x, 2 * np.pi)


def fold_freq(k, p: int) -> np.ndarray:
    """Frequency ``k`` mod ``p`` folded into ``0 .. (p-1)/2`` (``cos`` does not see the sign).

    >>> int(fold_freq(40, 59)), int(fold_freq(2 * 20, 59))
    (19, 19)

    Used in chapter 5.
    """
    k = np.mod(np.asarray(k), _check_p(p))
    return np.minimum(k, p - k)


def circular_correlation(x, y) -> float:
    """Circular correlation coefficient of two angle samples (Jammalamadaka and SenGupta).

    ``sum sin(x - x_bar) sin(y - y_bar) / sqrt(sum sin^2(x - x_bar) sum sin^2(y - y_bar))``
    with ``x_bar``, ``y_bar`` the circular means. 1 when ``y = x + const``.

    >>> x = np.linspace(0, 6, 50)
    >>> round(circular_correlation(x, x + 1.0), 6)
    1.0

    Used in chapter 5.
    """
    x, y = _as_np(x, "x").ravel(), _as_np(y, "y").ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must be angle arrays of the same size >= 2, got {x.shape} and {y.shape}")
    sx = np.sin(x - np.angle(np.exp(1j * x).mean()))
    sy = np.sin(y - np.angle(np.exp(1j * y).mean()))
    return float((sx * sy).sum() / math.sqrt((sx ** 2).sum() * (sy ** 2).sum()))


def mean_resultant_length(r, weights=None) -> float:
    """``|mean exp(i r)|``: 1 when all angles ``r`` agree, near 0 when they are spread out.

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """
    r = _as_np(r, "r").ravel()
    w = np.ones_like(r) if weights is None else _as_np(weights, "weights").ravel()
    return float(abs((w * np.exp(1j * r)).sum()) / w.sum())


# ---------------------------------------------------------------------------
# 3. The identity
# ---------------------------------------------------------------------------
def relu_cos_integral(x, n_nodes: int = 24) -> np.ndarray:
    """``int_0^{2 pi} ReLU(cos u) cos(2u - x) du``, by Gauss-Legendre quadrature.

    ``ReLU(cos u)`` vanishes outside ``[-pi/2, pi/2]`` and is smooth inside, so
    ``n_nodes`` Gauss-Legendre nodes on that interval are exact to rounding.
    The closed form is ``(2/3) cos x``: expand ``cos(2u - x) = cos 2u cos x +
    sin 2u sin x``; the ``sin 2u`` part is odd and integrates to 0, and
    ``int_{-pi/2}^{pi/2} cos u cos 2u du = int cos u (2 cos^2 u - 1) du =
    2 (4/3) - 2 = 2/3``. The function computes the integral numerically, so a
    test can check the closed form rather than assume it.

    Parameters
    ----------
    x : float or array
    n_nodes : int

    Returns
    -------
    numpy array shaped like ``x``

    >>> bool(np.allclose(relu_cos_integral([0.0, 1.0]), (2 / 3) * np.cos([0.0, 1.0]), atol=1e-12))
    True

    Used in chapter 5.
    """
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an int >= 2, got {n_nodes!r}")
    x = _as_np(x, "x")
    t, w = np.polynomial.legendre.leggauss(n_nodes)
    u = t * (np.pi / 2)
    w = w * (np.pi / 2)
    vals = np.cos(u)[:, None] * np.cos(2 * u[:, None] - x.ravel()[None, :])
    return (w @ vals).reshape(x.shape)


# ---------------------------------------------------------------------------
# The model's MLP, factored into functions of a, of b, and of c
# ---------------------------------------------------------------------------
@dataclass
class FactoredMLP:
    """A constant-attention model's logits, split into additive pieces (float64).

    ``pre(a, b) = pre_a[a] + pre_b[b] + pre_const`` is the MLP pre-activation at
    the read position, and the logits are ``direct_a[a] + direct_b[b] +
    direct_const + sum_i ReLU(pre_i(a, b)) neuron_logits[i]``.

    Attributes
    ----------
    p : int
    pre_a, pre_b : array [p, d_mlp]
    pre_const : array [d_mlp]
        ``W_pos`` terms and ``b_in``.
    neuron_logits : array [d_mlp, p]
        ``W_out W_U``: neuron ``i``'s effect on each logit ``c``.
    direct_a, direct_b : array [p, p]  (token, c)
    direct_const : array [p]
        The paths that skip the MLP (and ``b_out W_U``).

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """

    p: int
    pre_a: np.ndarray
    pre_b: np.ndarray
    pre_const: np.ndarray
    neuron_logits: np.ndarray
    direct_a: np.ndarray
    direct_b: np.ndarray
    direct_const: np.ndarray

    @property
    def d_mlp(self) -> int:
        return self.pre_a.shape[1]

    def pre(self) -> np.ndarray:
        """Pre-activations on every input, ``[a, b, d_mlp]``."""
        return self.pre_a[:, None, :] + self.pre_b[None, :, :] + self.pre_const

    def mlp_logits(self) -> np.ndarray:
        """The MLP's contribution to the logits, ``[a, b, c]``."""
        p = self.p
        return (np.maximum(self.pre(), 0).reshape(p * p, -1) @ self.neuron_logits).reshape(p, p, p)

    def direct_logits(self) -> np.ndarray:
        """The logits that skip the MLP, ``[a, b, c]``."""
        return self.direct_a[:, None, :] + self.direct_b[None, :, :] + self.direct_const

    def logits(self) -> np.ndarray:
        """The model's logits, ``[a, b, c]`` (equal to the forward pass up to float32 rounding)."""
        return self.direct_logits() + self.mlp_logits()


def factor_mlp(model: HookedTransformer) -> FactoredMLP:
    """Split a one-layer constant-attention model into functions of ``a``, ``b`` and ``c``.

    With uniform attention over ``[a, b]`` the read position's residual stream
    is ``x_b + (x_a + x_b) OV / 2`` with ``x_t = W_E[t] + W_pos[t's position]``
    and ``OV = sum_h W_V[h] W_O[h]``, so everything up to the ReLU is a sum of a
    function of ``a`` and a function of ``b``. Cost: a few matrix products of
    the weights, ``O(p d_model d_mlp)``; no pass over the ``p^2`` inputs.

    Parameters
    ----------
    model : HookedTransformer
        One layer, ``attention_mode="constant"``, layout ``"pair"``, no normalisation, ReLU.

    Returns
    -------
    FactoredMLP

    Used in chapter 5.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    cfg = model.cfg
    p, layout = task_of(model)
    problems = []
    if cfg.n_layers != 1 or cfg.attn_only:
        problems.append("one layer with an MLP")
    if cfg.attention_mode != "constant":
        problems.append("constant attention (this one is 'normal': use fit_neurons on its activations)")
    if layout != "pair":
        problems.append("layout 'pair'")
    if cfg.normalization or cfg.final_normalization:
        problems.append("no LayerNorm")
    if cfg.act_fn != "relu":
        problems.append("ReLU")
    if cfg.weight_transform != "none":
        problems.append("weight_transform='none'")
    if problems:
        raise ValueError("factor_mlp needs a model with " + ", ".join(problems))
    sd = {k: v.detach().double().cpu() for k, v in model.state_dict().items()}
    W_E, W_U = sd["embed.W_E"][:p], sd["unembed.W_U"]
    d_model = W_E.shape[1]
    pos = sd["pos_embed.W_pos"] if "pos_embed.W_pos" in sd else torch.zeros(2, d_model, dtype=torch.float64)
    OV = torch.einsum("hde,hef->df", sd["blocks.0.attn.W_V"], sd["blocks.0.attn.W_O"])
    eye = torch.eye(d_model, dtype=torch.float64)
    to_a, to_b = 0.5 * OV, eye + 0.5 * OV
    res_const = pos[0] @ to_a + pos[1] @ to_b
    if "blocks.0.attn.b_V" in sd:
        res_const = res_const + torch.einsum("he,hef->f", sd["blocks.0.attn.b_V"], sd["blocks.0.attn.W_O"])
    if "blocks.0.attn.b_O" in sd:
        res_const = res_const + sd["blocks.0.attn.b_O"]
    res_a, res_b = W_E @ to_a, W_E @ to_b                   # [p, d_model]
    W_in, W_out = sd["blocks.0.mlp.W_in"], sd["blocks.0.mlp.W_out"]
    b_in = sd.get("blocks.0.mlp.b_in", torch.zeros(W_in.shape[1], dtype=torch.float64))
    b_out = sd.get("blocks.0.mlp.b_out", torch.zeros(d_model, dtype=torch.float64))
    b_U = sd.get("unembed.b_U", torch.zeros(p, dtype=torch.float64))
    return FactoredMLP(
        p=p,
        pre_a=(res_a @ W_in).numpy(), pre_b=(res_b @ W_in).numpy(), pre_const=(res_const @ W_in + b_in).numpy(),
        neuron_logits=(W_out @ W_U).numpy(),
        direct_a=(res_a @ W_U).numpy(), direct_b=(res_b @ W_U).numpy(),
        direct_const=((res_const + b_out) @ W_U + b_U).numpy(),
    )


# ---------------------------------------------------------------------------
# 1. Neurons as rotations
# ---------------------------------------------------------------------------
@dataclass
class NeuronFit:
    """Each neuron fitted as ``A [cos(w_k a + phi) + cos(w_k b + phi)] + C``.

    Attributes
    ----------
    freq : int array [d_mlp]
        The ``k`` with the largest explained variance.
    phase : float array [d_mlp]
        ``phi`` in ``(-pi, pi]``.
    amp : float array [d_mlp]
        ``A >= 0``.
    const : float array [d_mlp]
        ``C`` (the mean over all inputs).
    fve : float array [d_mlp]
        Share of the neuron's variance over all ``p^2`` inputs explained by the fit.
    fve_all : float array [d_mlp, (p-1)/2 + 1]
        The same share for every frequency (column 0 unused).

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """

    freq: np.ndarray
    phase: np.ndarray
    amp: np.ndarray
    const: np.ndarray
    fve: np.ndarray
    fve_all: np.ndarray

    def counts(self, freqs=None) -> dict:
        """Number of neurons per frequency (largest first), or for the given frequencies."""
        ks, n = np.unique(self.freq, return_counts=True)
        d = {int(k): int(c) for k, c in zip(ks, n)}
        if freqs is not None:
            return {int(k): d.get(int(k), 0) for k in freqs}
        return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))


def _fit_from_sums(g: np.ndarray, total_ss: np.ndarray, const: np.ndarray, p: int, scale: float) -> NeuronFit:
    """g: [p, n] with pre's projection on cos(w_k a) + cos(w_k b) equal to scale * DFT(g)[k]."""
    F = np.fft.rfft(g, axis=0)[1:(p - 1) // 2 + 1]             # [K, n], F[k-1] = sum_x g[x] e^{-i w_k x}
    coef = F * scale                                            # A e^{i phi} for each k
    explained = (p * p) * np.abs(coef) ** 2                     # ||A (cos + cos)||^2 over the grid = p^2 A^2
    safe = np.where(total_ss > 0, total_ss, 1.0)
    fve_k = np.where(total_ss > 0, explained / safe, 0.0)       # [K, n]
    best = fve_k.argmax(0)
    n = np.arange(g.shape[1])
    fve_all = np.zeros((g.shape[1], (p - 1) // 2 + 1))
    fve_all[:, 1:] = fve_k.T
    c = coef[best, n]
    return NeuronFit(freq=best + 1, phase=np.angle(c), amp=np.abs(c), const=const, fve=fve_k[best, n],
                     fve_all=fve_all)


def fit_neurons(pre) -> NeuronFit:
    """Fit every neuron's pre-activation over all ``p^2`` inputs as a rotation pair.

    For each frequency ``k`` the functions ``cos w_k a + cos w_k b`` and ``sin
    w_k a + sin w_k b`` are orthogonal on the ``p x p`` grid (to each other, to
    the constant and to every other frequency), each with squared norm ``p^2``,
    so the least-squares fit ``A [cos(w_k a + phi) + cos(w_k b + phi)] + C`` is a
    projection: ``A e^{i phi} = DFT_k(r + s) / p^2`` with ``r[a] = sum_b pre[a,
    b]`` and ``s[b] = sum_a pre[a, b]``. The explained variance is ``p^2 A^2``
    over the neuron's variance summed over the grid; the chosen ``k`` is the best.

    Parameters
    ----------
    pre : array [p, p, d_mlp] (or [p, p] for one neuron)
        Pre-activations indexed ``[a, b]`` (:func:`helpers.modular.neuron_activations`
        with ``hook="pre"``, or :meth:`FactoredMLP.pre`).

    Returns
    -------
    NeuronFit

    >>> p = 11; a = np.arange(p)[:, None]; b = np.arange(p)[None, :]; w = 2 * np.pi * 3 / p
    >>> fit = fit_neurons(2.0 * (np.cos(w * a + 0.5) + np.cos(w * b + 0.5)) + 1.0)
    >>> int(fit.freq[0]), round(float(fit.phase[0]), 6), round(float(fit.amp[0]), 6), round(float(fit.fve[0]), 6)
    (3, 0.5, 2.0, 1.0)

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """
    x = _pre_grid(pre)
    p = _check_p(x.shape[0])
    const = x.mean((0, 1))
    total_ss = ((x - const) ** 2).sum((0, 1))
    g = x.sum(1) + x.sum(0)                                    # r[a] + s[a]
    return _fit_from_sums(g, total_ss, const, p, 1.0 / (p * p))


def fit_neurons_factored(mlp: FactoredMLP) -> NeuronFit:
    """:func:`fit_neurons` from the factored pre-activations, without forming the ``p^2`` grid.

    Since ``pre = u(a) + v(b) + const``, the row and column sums are ``p u + sum
    v + p const`` and so on, so ``A e^{i phi} = DFT_k(u + v) / p`` and the
    variance over the grid is ``p (|u - mean u|^2 + |v - mean v|^2)``. Cost
    ``O(d_mlp p log p)`` (one real FFT per neuron). Same result as
    ``fit_neurons(mlp.pre())`` up to rounding.

    Used in chapter 5.
    """
    if not isinstance(mlp, FactoredMLP):
        raise TypeError(f"mlp must be a FactoredMLP (see factor_mlp), got {type(mlp).__name__}")
    p = mlp.p
    u = mlp.pre_a - mlp.pre_a.mean(0)
    v = mlp.pre_b - mlp.pre_b.mean(0)
    total_ss = p * ((u ** 2).sum(0) + (v ** 2).sum(0))
    const = mlp.pre_a.mean(0) + mlp.pre_b.mean(0) + mlp.pre_const
    return _fit_from_sums(u + v, total_ss, const, p, 1.0 / p)


@dataclass
class OutputFit:
    """Each neuron's logit map fitted as ``B cos(w_k c + psi)`` at a given frequency ``k``.

    Attributes
    ----------
    amp : float array [d_mlp]  (``B >= 0``)
    phase : float array [d_mlp]  (``psi`` in ``(-pi, pi]``)
    fve : float array [d_mlp]
        Share of the row's variance over ``c`` at that frequency.

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """

    amp: np.ndarray
    phase: np.ndarray
    fve: np.ndarray


def fit_output_phases(neuron_logits, freq) -> OutputFit:
    """Fit row ``i`` of ``W_out W_U`` as ``B_i cos(w_k c + psi_i) + const`` with ``k = freq[i]``.

    ``B e^{i psi} = (2/p) DFT_k(row)``. The pizza predicts ``psi_i = 2 phi_i``.

    Parameters
    ----------
    neuron_logits : array [d_mlp, p]
    freq : int array [d_mlp]
        Each neuron's frequency (e.g. :attr:`NeuronFit.freq`).

    >>> p = 13; c = np.arange(p)
    >>> out = fit_output_phases(3.0 * np.cos(2 * np.pi * 4 * c / p - 1.0)[None], [4])
    >>> round(float(out.amp[0]), 6), round(float(out.phase[0]), 6), round(float(out.fve[0]), 6)
    (3.0, -1.0, 1.0)

    Used in chapter 5.
    """
    W = _as_np(neuron_logits, "neuron_logits")
    if W.ndim != 2:
        raise ValueError(f"neuron_logits must be [d_mlp, p], got shape {W.shape}")
    p = _check_p(W.shape[1])
    k = np.asarray(freq).astype(int).ravel()
    if k.shape[0] != W.shape[0] or (k < 1).any() or (k > (p - 1) // 2).any():
        raise ValueError(f"freq must hold {W.shape[0]} ints in 1..{(p - 1) // 2}")
    F = np.fft.rfft(W, axis=1)[np.arange(W.shape[0]), k] * (2.0 / p)
    var = ((W - W.mean(1, keepdims=True)) ** 2).sum(1)
    fve = np.where(var > 0, (p / 2) * np.abs(F) ** 2 / np.where(var > 0, var, 1.0), 0.0)
    return OutputFit(amp=np.abs(F), phase=np.angle(F), fve=fve)


def harmonic_share(fve_all, freq, multiple: int = 2) -> np.ndarray:
    """Each neuron's explained share at the folded harmonic ``multiple * k`` of its frequency.

    Parameters
    ----------
    fve_all : array [d_mlp, (p-1)/2 + 1]  (e.g. :attr:`NeuronFit.fve_all`)
    freq : int array [d_mlp]

    Used in chapter 5.
    """
    fve_all = _as_np(fve_all, "fve_all")
    p = 2 * (fve_all.shape[1] - 1) + 1
    k2 = fold_freq(multiple * np.asarray(freq).astype(int), p)
    return fve_all[np.arange(fve_all.shape[0]), k2]


# ---------------------------------------------------------------------------
# 3. The rotation model and the integral model
# ---------------------------------------------------------------------------
def neuron_weights(fit: NeuronFit, out: OutputFit) -> np.ndarray:
    """``m_i = A_i B_i``: neuron ``i``'s weight in the quadrature (its rectangle's area scale).

    Used in chapter 5.
    """
    return fit.amp * out.amp


def _check_rule(freq, phase, weight, p):
    p = _check_p(p)
    k = np.asarray(freq).astype(int).ravel()
    phi = _as_np(phase, "phase").ravel()
    m = _as_np(weight, "weight").ravel()
    if not (k.shape == phi.shape == m.shape):
        raise ValueError(f"freq, phase and weight must have one entry per neuron, got {k.shape}, {phi.shape}, {m.shape}")
    if (k < 1).any() or (k > (p - 1) // 2).any():
        raise ValueError(f"freq must be in 1..{(p - 1) // 2}")
    return k, phi, m, p


def rotation_logits(freq, phase, weight, p: int) -> np.ndarray:
    """The finite-width pizza MLP: ``sum_i m_i ReLU(cos(w a + phi_i) + cos(w b + phi_i)) cos(w c + 2 phi_i)``.

    The idealised MLP (each neuron exactly a rotation pair, output phase
    exactly doubled, no constant), whose quadrature error
    :func:`quadrature_bound` bounds. Cost ``O(p^3 d_mlp)``.

    Returns
    -------
    array [p, p, p]  ([a, b, c])

    Used in chapter 5.
    """
    k, phi, m, p = _check_rule(freq, phase, weight, p)
    x = np.arange(p)
    w = 2 * np.pi * k / p
    ca = np.cos(np.outer(x, w) + phi)                                # [p, n]
    post = np.maximum(ca[:, None, :] + ca[None, :, :], 0).reshape(p * p, -1)
    out = m[:, None] * np.cos(np.outer(w, x) + 2 * phi[:, None])    # [n, p]
    return (post @ out).reshape(p, p, p)


def integral_logits(freq, weight, p: int) -> np.ndarray:
    """The infinite-width lens: ``sum_k (2 / (3 pi)) M_k |cos(w_k (a-b)/2)| cos(w_k (a+b-c))``.

    ``M_k`` is the total weight ``sum m_i`` of the neurons at frequency ``k``.
    Derivation in the module docstring.

    Returns
    -------
    array [p, p, p]  ([a, b, c])

    Used in chapter 5.
    """
    k, _, m, p = _check_rule(freq, np.zeros(len(np.ravel(freq))), weight, p)
    x = np.arange(p)
    d = x[:, None] - x[None, :]
    s = x[:, None] + x[None, :]
    out = np.zeros((p, p, p))
    for kk in np.unique(k):
        M = m[k == kk].sum()
        w = 2 * np.pi * kk / p
        amp = (2 / (3 * np.pi)) * M * np.abs(np.cos(w * d / 2))
        out += amp[:, :, None] * np.cos(w * (s[:, :, None] - x[None, None, :]))
    return out


def lens_logits(mlp: FactoredMLP, fit: NeuronFit, out: OutputFit, keys=None) -> np.ndarray:
    """The model's logits with its MLP replaced by the integral: ``direct + integral_logits``.

    Parameters
    ----------
    keys : iterable of int, optional
        Keep only the neurons whose frequency is in ``keys`` (default: all).

    Used in chapter 5.
    """
    m = neuron_weights(fit, out)
    if keys is not None:
        m = np.where(np.isin(fit.freq, list(keys)), m, 0.0)
    return mlp.direct_logits() + integral_logits(fit.freq, m, mlp.p)


def _keep_freqs(u: np.ndarray, ks: list[np.ndarray]) -> np.ndarray:
    """Keep, in each column of u [p, n], only the Fourier components at that column's frequencies."""
    p, n = u.shape
    F = np.fft.rfft(u, axis=0)
    G = np.zeros_like(F)
    cols = np.arange(n)
    for k in ks:
        G[k, cols] = F[k, cols]
    return np.fft.irfft(G, n=p, axis=0)


def harmonic_logits(mlp: FactoredMLP, fit: NeuronFit, multiples=(1,)) -> np.ndarray:
    """MLP logits with each neuron's input cut to the frequencies ``j k`` for ``j`` in ``multiples``.

    The input of neuron ``i`` is replaced by the symmetric part (the mean of its
    ``a`` and ``b`` functions) restricted to the folded frequencies ``j k_i``,
    plus its constant; the ReLU and the real output row ``W_out W_U`` are kept.
    ``multiples=(1,)`` keeps the rotation fit of :func:`fit_neurons` (with its
    constant), ``(1, 2)`` adds the secondary frequency ``2k``.

    Returns
    -------
    array [p, p, p]  ([a, b, c])

    Used in chapter 5.
    """
    p = mlp.p
    if not multiples or any(isinstance(j, bool) or not isinstance(j, (int, np.integer)) or j < 1 for j in multiples):
        raise ValueError(f"multiples must be a non-empty list of ints >= 1, got {multiples!r}")
    ks = [fold_freq(int(j) * fit.freq, p) for j in multiples]
    sym = (_keep_freqs(mlp.pre_a, ks) + _keep_freqs(mlp.pre_b, ks)) / 2
    post = np.maximum(sym[:, None, :] + sym[None, :, :] + fit.const, 0).reshape(p * p, -1)
    return (post @ mlp.neuron_logits).reshape(p, p, p)


def nonadditive_share(pre) -> np.ndarray:
    """Share of each neuron's variance over ``(a, b)`` that is not a sum ``u(a) + v(b)``.

    The interaction part is ``pre - row mean - column mean + grand mean``. It is
    zero (to rounding) for a constant-attention model, where the lens's first
    step holds exactly, and it is what softmax attention adds.

    pre: [p, p, d_mlp] -> [d_mlp] (0 for a neuron with no variance).

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """
    x = _pre_grid(pre)
    inter = x - x.mean(0, keepdims=True) - x.mean(1, keepdims=True) + x.mean((0, 1), keepdims=True)
    total = ((x - x.mean((0, 1))) ** 2).sum((0, 1))
    return np.where(total > 0, (inter ** 2).sum((0, 1)) / np.where(total > 0, total, 1.0), 0.0)


def lens_summary(model: HookedTransformer) -> dict:
    """The chapter's measurements on any one-layer ``"pair"`` model, pizza or clock.

    Fits the neurons on the real pre-activations over all ``p^2`` inputs (so it
    also works where :func:`factor_mlp` does not: softmax attention), fits the
    output phases, and replaces the MLP by the integral.

    Returns
    -------
    dict
        ``median_fve`` (median share of a neuron's variance explained by its
        rotation fit), ``circ_corr`` (circular correlation of ``psi`` with
        ``2 phi``), ``resultant`` (mean resultant length of ``psi - 2 phi``,
        weighted by ``m``), ``integral_acc`` (accuracy of the integral MLP
        alone on all ``p^2`` inputs), ``nonadditive`` (median
        :func:`nonadditive_share`), ``mlp_acc`` (the real MLP alone),
        ``rel_change`` (relative change of the centred MLP logits), ``fit``,
        ``out``.

    Used in chapter 5.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    from helpers.modular import neuron_activations

    p, _ = task_of(model)
    pre = neuron_activations(model, hook="pre")
    fit = fit_neurons(pre)
    W = (model.blocks[0].mlp.W_out @ model.unembed.W_U).detach().double().cpu().numpy()
    out = fit_output_phases(W, fit.freq)
    m = neuron_weights(fit, out)
    real = (np.maximum(pre, 0).reshape(p * p, -1) @ W).reshape(p, p, p)
    real = real - real.mean(-1, keepdims=True)
    integ = integral_logits(fit.freq, m, p)
    labels = all_pairs(p, "pair")[1].numpy().reshape(p, p)
    return dict(
        median_fve=float(np.median(fit.fve)), nonadditive=float(np.median(nonadditive_share(pre))),
        circ_corr=circular_correlation(out.phase, 2 * fit.phase),
        resultant=mean_resultant_length(out.phase - 2 * fit.phase, m),
        integral_acc=float((integ.argmax(-1) == labels).mean()), mlp_acc=float((real.argmax(-1) == labels).mean()),
        rel_change=float(np.linalg.norm(integ - real) / np.linalg.norm(real)), fit=fit, out=out,
    )


# ---------------------------------------------------------------------------
# 4. The quadrature picture
# ---------------------------------------------------------------------------
def quadrature_rectangles(phase, weight, theta: float = 0.0, x: float = 0.0) -> dict:
    """One frequency's neurons as rectangles under ``h_x(u) = ReLU(cos u) cos(2u - x)``.

    Phases are shifted by ``theta``, wrapped to ``[0, 2 pi)`` and sorted. Each
    neuron gets a rectangle of width ``2 pi m_i / M`` (widths tile the circle;
    placed consecutively and shifted so the rectangles sit as close to their
    nodes as the widths allow) and height ``h_x(node)``; the rectangles' total
    area times ``M / (2 pi)`` is the neuron sum.

    Returns
    -------
    dict with ``node``, ``left``, ``width``, ``height`` (sorted by node), ``area``
    (sum of width * height) and ``integral`` (``(2/3) cos x``).

    Used in chapter 5.
    """
    phi = np.mod(_as_np(phase, "phase").ravel() + theta, 2 * np.pi)
    m = _as_np(weight, "weight").ravel()
    if phi.shape != m.shape or (m < 0).any() or m.sum() <= 0:
        raise ValueError("phase and weight must have the same length, weights >= 0 with a positive sum")
    order = np.argsort(phi, kind="stable")
    phi, m = phi[order], m[order]
    width = 2 * np.pi * m / m.sum()
    left, _ = _place_rectangles(phi, width)
    height = np.maximum(np.cos(phi), 0) * np.cos(2 * phi - x)
    return dict(node=phi, left=left, width=width, height=height, area=float((width * height).sum()),
                integral=float(INTEGRAL_CONSTANT * np.cos(x)))


def _place_rectangles(phi_sorted: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive intervals of the given widths, shifted by the weighted median offset to their nodes.

    Returns the left ends and each node's offset from its interval's centre (wrapped).
    """
    centre0 = np.cumsum(width) - width / 2
    d = wrap_angle(phi_sorted - centre0)
    ref = np.angle((width * np.exp(1j * d)).sum())            # circular mean of the offsets
    d = ref + wrap_angle(d - ref)
    order = np.argsort(d)
    cw = np.cumsum(width[order])
    shift = d[order][np.searchsorted(cw, cw[-1] / 2)]          # weighted median
    delta = wrap_angle(phi_sorted - (centre0 + shift))
    return centre0 + shift - width / 2, delta


# ---------------------------------------------------------------------------
# 5. The bound
# ---------------------------------------------------------------------------
@dataclass
class QuadratureBound:
    """Per-frequency bounds on ``|rotation_logits - integral_logits|`` over every input.

    Attributes
    ----------
    freqs : int array [n_freq]
    total_weight : float array [n_freq]   (``M_k``)
    rectangles : float array [n_freq]
        The Lipschitz-rectangle bound of each frequency.
    grid : float array [n_freq]
        The certified grid bound of each frequency.
    bound : float
        ``sum_k min(rectangles_k, grid_k)``: bounds the error of the whole sum.
    n_grid : int

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it.
    """

    freqs: np.ndarray
    total_weight: np.ndarray
    rectangles: np.ndarray
    grid: np.ndarray
    bound: float
    n_grid: int

    @property
    def bound_rectangles(self) -> float:
        return float(self.rectangles.sum())

    @property
    def bound_grid(self) -> float:
        return float(self.grid.sum())


def quadrature_bound(freq, phase, weight, n_grid: int = 2048) -> QuadratureBound:
    """Bound ``max_{a,b,c} |rotation_logits - integral_logits|`` without touching the inputs.

    Derivation. Fix a frequency ``k`` with neurons ``i`` (weights ``m_i >= 0``,
    ``M = sum m_i``). For input ``(a, b, c)`` put ``sigma = cos(w (a-b)/2)``,
    ``theta = w (a+b)/2``, ``x = w (a+b-c)``. Then
    ``cos(w a + phi) + cos(w b + phi) = 2 sigma cos(theta + phi)`` and, after
    ``phi_i -> phi_i + pi`` when ``sigma < 0`` (which leaves ``2 phi_i`` alone),
    the frequency's error is ``2 |sigma| E`` with::

        E(theta, x) = sum_i m_i h_x(theta + phi_i) - (M / 2 pi) int h_x,
        h_x(u) = ReLU(cos u) cos(2u - x) = cos x g_c(u) + sin x g_s(u),

    ``g(u) = ReLU(cos u) (cos 2u, sin 2u)``. Writing ``G(theta) = sum_i m_i
    g(theta + phi_i) - M (1/3 pi, 0)``, ``E = <(cos x, sin x), G(theta)>`` so
    ``max_x |E| = |G(theta)|`` exactly, and since ``|sigma| <= 1`` every input's
    error is at most ``2 max_theta |G(theta)|``. The shift by ``pi`` is a
    rotation of ``theta``, so one maximum over all ``theta`` covers both signs.
    Two ways to bound ``max_theta |G|``, both valid for every ``theta`` in the
    circle (not only the ``2p`` values the inputs reach):

    * **rectangles** (the quadrature picture): give neuron ``i`` an interval
      ``I_i`` of width ``2 pi m_i / M``, the intervals tiling the circle in the
      order of the phases. Then ``M / (2 pi) int g = sum_i (M / 2 pi) int_{I_i} g``
      and ``m_i = (M / 2 pi) |I_i|``, so ``|G| <= (M / 2 pi) sum_i int_{I_i}
      |g(theta + phi_i) - g(theta + u)| du <= (M / 2 pi) L sum_i int_{I_i}
      |phi_i - u| du`` with ``L = 2`` the Lipschitz constant of ``g``
      (:data:`LIPSCHITZ_G`). For a node at offset ``delta`` from the centre of an
      interval of width ``W`` the integral is ``delta^2 + W^2 / 4`` if
      ``|delta| <= W / 2``, else ``W |delta|``. Cost ``O(n log n)`` (a sort).
    * **grid**: evaluate ``|G|`` at ``n_grid`` equally spaced ``theta`` and add
      ``L M pi / n_grid`` (``|G|`` is ``L M``-Lipschitz in ``theta``, and every
      ``theta`` is within ``pi / n_grid`` of a grid point). Cost ``O(n n_grid)``.

    The frequency's bound is ``2 min(rectangles, grid)`` and the whole MLP's is
    the sum over frequencies. Neither depends on ``p``: the cost is linear in
    the number of neurons (given each neuron's fitted ``k, phi, A, B``, which
    :func:`fit_neurons_factored` and :func:`fit_output_phases` read off the
    ``O(p d_mlp)`` factored weights with FFTs).

    Parameters
    ----------
    freq : int array [d_mlp]
    phase : float array [d_mlp]
    weight : float array [d_mlp]  (``m_i >= 0``)
    n_grid : int

    Returns
    -------
    QuadratureBound

    Used in chapter 5.
    """
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 8:
        raise ValueError(f"n_grid must be an int >= 8, got {n_grid!r}")
    k = np.asarray(freq).astype(int).ravel()
    phi = _as_np(phase, "phase").ravel()
    m = _as_np(weight, "weight").ravel()
    if not (k.shape == phi.shape == m.shape):
        raise ValueError(f"freq, phase and weight must have one entry per neuron, got {k.shape}, {phi.shape}, {m.shape}")
    if (m < 0).any():
        raise ValueError("weight must be >= 0 (m_i = A_i B_i with amplitudes A_i, B_i >= 0)")
    freqs = np.unique(k[m > 0])
    theta = 2 * np.pi * np.arange(n_grid) / n_grid
    rect, grid, total = [], [], []
    for kk in freqs:
        sel = (k == kk) & (m > 0)
        ph, mm = np.mod(phi[sel], 2 * np.pi), m[sel]
        M = mm.sum()
        order = np.argsort(ph, kind="stable")
        ph, mm = ph[order], mm[order]
        width = 2 * np.pi * mm / M
        _, delta = _place_rectangles(ph, width)
        inside = np.abs(delta) <= width / 2
        per = np.where(inside, delta ** 2 + width ** 2 / 4, width * np.abs(delta))
        rect.append(2 * (M / (2 * np.pi)) * LIPSCHITZ_G * per.sum())
        u = theta[:, None] + ph[None, :]                          # [n_grid, n]
        r = np.maximum(np.cos(u), 0) * mm
        Gc = (r * np.cos(2 * u)).sum(1) - M / (3 * np.pi)
        Gs = (r * np.sin(2 * u)).sum(1)
        grid.append(2 * (np.sqrt(Gc ** 2 + Gs ** 2).max() + LIPSCHITZ_G * M * np.pi / n_grid))
        total.append(M)
    rect, grid = np.array(rect), np.array(grid)
    return QuadratureBound(freqs=freqs, total_weight=np.array(total), rectangles=rect, grid=grid,
                           bound=float(np.minimum(rect, grid).sum()), n_grid=n_grid)


def brute_force_error(freq, phase, weight, p: int) -> float:
    """``max_{a,b,c} |rotation_logits - integral_logits|`` over all ``p^3`` triples (cost ``O(p^3 d_mlp)``).

    Used in chapter 5.
    """
    return float(np.abs(rotation_logits(freq, phase, weight, p) - integral_logits(freq, weight, p)).max())


# ---------------------------------------------------------------------------
# Synthetic pizza MLPs (for the cost benchmark and tests)
# ---------------------------------------------------------------------------
def synthetic_pizza(p: int, d_mlp: int = 512, n_freqs: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A random idealised pizza MLP: ``(freq, phase, weight)`` for ``d_mlp`` neurons.

    Frequencies are ``n_freqs`` distinct values in ``1..(p-1)/2``, neurons split
    evenly among them, phases uniform on the circle, weights ``m_i`` uniform in
    ``[0.5, 1.5]``. Deterministic given ``seed``.

    Not named on chapter 5's page: a building block of the functions, recipes or checks behind it. (the cost-vs-p benchmark).
    """
    for _name, _value in (("d_mlp", d_mlp), ("n_freqs", n_freqs)):
        if isinstance(_value, bool) or not isinstance(_value, int) or _value < 1:
            raise TypeError(f"{_name} must be a positive int, got {_value!r}")
    p = _check_p(p)
    if n_freqs > (p - 1) // 2:
        raise ValueError(f"n_freqs must be <= (p-1)/2 = {(p - 1) // 2}, got {n_freqs}")
    rng = np.random.default_rng(_check_seed(seed))
    keys = rng.choice(np.arange(1, (p - 1) // 2 + 1), size=n_freqs, replace=False)
    freq = keys[np.arange(d_mlp) % n_freqs]
    return freq, rng.uniform(-np.pi, np.pi, d_mlp), rng.uniform(0.5, 1.5, d_mlp)


def synthetic_factored(p: int, d_mlp: int = 512, n_freqs: int = 5, seed: int = 0) -> FactoredMLP:
    """An ideal pizza MLP with the shapes of a real one (:func:`synthetic_pizza`'s rule as weights).

    ``pre_a = pre_b = A cos(w_k x + phi)`` with ``A = sqrt(m)``, output rows
    ``sqrt(m) cos(w_k c + 2 phi)``, no direct path. For timing the bound
    against brute force at any ``p`` without training a model.

    Used in chapter 5 (the cost-vs-p benchmark).
    """
    for _name, _value in (("d_mlp", d_mlp), ("n_freqs", n_freqs)):
        if isinstance(_value, bool) or not isinstance(_value, int) or _value < 1:
            raise TypeError(f"{_name} must be a positive int, got {_value!r}")
    freq, phase, m = synthetic_pizza(p, d_mlp, n_freqs, seed)
    x = np.arange(p)
    w = 2 * np.pi * freq / p
    A = np.sqrt(m)
    pre = A * np.cos(np.outer(x, w) + phase)
    out = A[:, None] * np.cos(np.outer(w, x) + 2 * phase[:, None])
    z = np.zeros((p, p))
    return FactoredMLP(p=p, pre_a=pre, pre_b=pre.copy(), pre_const=np.zeros(d_mlp), neuron_logits=out,
                       direct_a=z, direct_b=z.copy(), direct_const=np.zeros(p))


def time_bound_and_brute(mlp: FactoredMLP, n_grid: int = 2048, repeats: int = 3) -> dict:
    """Time the bound (fits + :func:`quadrature_bound`) and the brute-force maximum on one factored MLP.

    The bound's pipeline reads only the ``[p, d_mlp]`` and ``[d_mlp, p]``
    factors (FFT fits, then ``O(d_mlp n_grid)``); the brute force evaluates the
    finite and the integral logits on all ``p^3`` triples. Each is timed
    ``repeats`` times, interleaved, and the median kept.

    Returns
    -------
    dict with ``p``, ``bound``, ``brute``, ``bound_s``, ``brute_s``, ``ratio`` (brute_s / bound_s)

    Used in chapter 5.
    """
    import time

    if not isinstance(mlp, FactoredMLP):
        raise TypeError(f"mlp must be a FactoredMLP, got {type(mlp).__name__}")
    tb, tf = [], []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fit = fit_neurons_factored(mlp)
        out = fit_output_phases(mlp.neuron_logits, fit.freq)
        m = neuron_weights(fit, out)
        b = quadrature_bound(fit.freq, fit.phase, m, n_grid=n_grid)
        t1 = time.perf_counter()
        bf = brute_force_error(fit.freq, fit.phase, m, mlp.p)
        t2 = time.perf_counter()
        tb.append(t1 - t0)
        tf.append(t2 - t1)
    bs, fs = float(np.median(tb)), float(np.median(tf))
    return dict(p=mlp.p, bound=b.bound, brute=bf, bound_s=bs, brute_s=fs, ratio=fs / bs)
