"""Binary and ternary transformers: quantized linear maps, their training and a control.

Li (2024) trained the grokking model of chapter 4 with every hidden linear map
quantized to two or three values and found the same Fourier algorithm as in
full precision, only noisier. This module supplies the pieces:

* **Quantizers** — :func:`centre`, :func:`binary_quantize`,
  :func:`ternary_quantize` (forward values) and :func:`straight_through`
  (forward the quantized weight, pass the gradient to the full-precision weight
  unchanged). Importing this module registers the weight transforms
  ``"binary"`` and ``"ternary"`` with :func:`helpers.transformer.register_weight_transform`,
  so a :class:`~helpers.transformer.TransformerConfig` with
  ``weight_transform="ternary"`` quantizes ``W_Q, W_K, W_V, W_O, W_in, W_out``
  on every forward pass; the embedding, positional embedding and unembedding
  stay full precision.
* **Models** — :func:`precision_config` (the canonical p = 113 model of
  chapter 4 at a given precision, with or without an RMSNorm before the
  unembedding) and :func:`train_precision` (chapter 4's canonical recipe,
  :func:`helpers.modular.train_modular`, stopping once the test loss is
  below a threshold). Store recipes ``modadd_p113_full_rms``,
  ``modadd_p113_ternary`` and ``modadd_p113_binary``.
* **The control** — :func:`steps_to_generalise` and
  :func:`precision_control`: steps to generalise for full precision without
  and with the final RMSNorm, ternary and binary, over several seeds.
* **Chapter 4's clock/pizza family, quantized** —
  :func:`train_clock_pizza_quantized` (p = 59, normal or constant
  attention, ternary / binary / full-precision hidden weights, each with the
  final RMSNorm), store recipes ``modadd_p59_{normal,constant}_{variant}_s{seed}``
  and :func:`family_rows` (gradient symmetricity and distance irrelevance of
  every shipped family model, chapter 4's included).

Both quantizers work per parameter tensor: ``W' = W - mean(W)`` over the
whole tensor (all heads of ``W_Q`` together) and one scale
``gamma = mean |W'|``. Binary is ``gamma * sign(W')`` (``sign(0) = +1``):
like BitNet (Wang et al. 2023) we keep the scale, so a binary matrix has the
same mean absolute value as its full-precision weights. Ternary is BitNet
b1.58's absmean rule ``gamma * clamp(round(W'/gamma), -1, 1)``.

>>> import torch
>>> w = torch.tensor([[0.3, -0.1], [0.05, -0.25]])   # centred already; gamma = mean |w| = 0.175
>>> (binary_quantize(w) / 0.175).round().tolist()
[[1.0, -1.0], [1.0, -1.0]]
>>> (ternary_quantize(w) / 0.175).round().tolist()     # |0.05| < gamma / 2 becomes 0
[[1.0, -1.0], [0.0, -1.0]]

Used in chapter 8.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from helpers import modular as M
from helpers._util import check_int as _check_int
from helpers._util import check_seed as _check_seed
from helpers.modular import CANONICAL_TRAINING, canonical_config, make_data, train_modular
from helpers.store import CHECKPOINT_DIR, exists, load, recipe
from helpers.training import TrainResult
from helpers.transformer import HookedTransformer, TransformerConfig, act_name, register_weight_transform

__all__ = [
    "PRECISIONS", "TRANSFORM_OF", "centre", "binary_quantize", "ternary_quantize", "straight_through",
    "binary_ste", "ternary_ste", "quantized_weights", "weight_values",
    "precision_config", "train_precision", "precision_name", "steps_to_generalise",
    "key_frequency_directions", "key_frequency_overlap", "embedding_svd_energy", "attention_from_equals",
    "sign_agreement", "metric_suite",
    "FAMILY_VARIANTS", "FAMILY_SEEDS", "train_clock_pizza_quantized", "clock_pizza_quantized_name",
    "family_rows",
    "CONTROL_VARIANTS", "control_run", "precision_control", "CONTROL_PATH", "load_control", "control_summary",
]

PRECISIONS = ("full", "ternary", "binary")
"""Precisions of the hidden linear maps."""

TRANSFORM_OF = {"full": "none", "ternary": "ternary", "binary": "binary"}
"""Precision -> the registered weight-transform name of :class:`TransformerConfig`."""

_EPS = 1e-8


def _check_weight(w) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"w must be a floating-point tensor, got dtype {w.dtype}")
    if w.numel() == 0:
        raise ValueError("w must be non-empty")
    return w


def centre(w: torch.Tensor) -> torch.Tensor:
    """``W' = W - mean(W)``, the mean over the whole tensor (any shape).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    w = _check_weight(w)
    return w - w.mean()


def _gamma(wc: torch.Tensor) -> torch.Tensor:
    return wc.abs().mean().clamp_min(_EPS)


def binary_quantize(w: torch.Tensor) -> torch.Tensor:
    """``gamma * sign(W')`` with ``W'`` centred, ``gamma = mean |W'|`` and ``sign(0) = +1``.

    Shape in = shape out (e.g. ``W_in [d_model, d_mlp]``); every entry is
    ``+gamma`` or ``-gamma``. No gradient (see :func:`binary_ste`).

    Used in chapter 8.
    """
    with torch.no_grad():
        wc = centre(w)
        g = _gamma(wc)
        return torch.where(wc >= 0, g, -g).to(w.dtype)


def ternary_quantize(w: torch.Tensor) -> torch.Tensor:
    """BitNet b1.58's absmean rule on centred weights: ``gamma * clamp(round(W'/gamma), -1, 1)``.

    ``gamma = mean |W'|``; every entry is ``-gamma``, ``0`` or ``+gamma``
    (zero where ``|W'| < gamma / 2``). No gradient (see :func:`ternary_ste`).

    Used in chapter 8.
    """
    with torch.no_grad():
        wc = centre(w)
        g = _gamma(wc)
        return (torch.round(wc / g).clamp(-1, 1) * g).to(w.dtype)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized tensor exactly; backward: the gradient unchanged."""

    @staticmethod
    def forward(ctx, w, q):  # noqa: D401 - autograd signature
        return q.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The straight-through estimator: the value of ``q``, the gradient of ``w``.

    The forward pass sees exactly ``q`` (no ``w + (q - w)`` rounding), and the
    gradient with respect to the output reaches ``w`` unchanged, as if the
    quantizer were the identity.

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    w = _check_weight(w)
    if not isinstance(q, torch.Tensor) or q.shape != w.shape:
        raise ValueError(f"q must be a tensor of w's shape {tuple(w.shape)}, got "
                         f"{tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__}")
    return _StraightThrough.apply(w, q.detach())


def binary_ste(w: torch.Tensor) -> torch.Tensor:
    """Binary weight with a straight-through gradient (the ``"binary"`` transform).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    return straight_through(w, binary_quantize(w))


def ternary_ste(w: torch.Tensor) -> torch.Tensor:
    """Ternary weight with a straight-through gradient (the ``"ternary"`` transform).

    Used in chapter 8.
    """
    return straight_through(w, ternary_quantize(w))


register_weight_transform("binary", binary_ste)
register_weight_transform("ternary", ternary_ste)

_HIDDEN = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")


def quantized_weights(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """The hidden weights as the forward pass uses them, keyed ``blocks.{l}.attn.W_Q`` etc.

    Full-precision models return their weights unchanged.

    Used in chapter 8.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    out = {}
    with torch.no_grad():
        for name in _HIDDEN:
            try:
                stacked = getattr(model, name)  # [n_layers, ...], transformed
            except ValueError:  # constant attention has no W_Q / W_K
                continue
            sub = "attn" if name in ("W_Q", "W_K", "W_V", "W_O") else "mlp"
            for layer in range(stacked.shape[0]):
                out[f"blocks.{layer}.{sub}.{name}"] = stacked[layer].detach()
    return out


def weight_values(w: torch.Tensor, decimals: int = 6) -> np.ndarray:
    """Sorted distinct values of ``w`` (rounded to ``decimals``): 2 for binary, 3 for ternary.

    Used in chapter 8.
    """
    w = _check_weight(w)
    return np.unique(np.round(w.detach().double().cpu().numpy(), decimals))


# ---------------------------------------------------------------------------
# Models and training
# ---------------------------------------------------------------------------
def _check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def precision_config(precision: str = "ternary", seed: int = 0, final_norm: bool = True,
                     p: int = 113, **overrides) -> TransformerConfig:
    """Chapter 4's canonical model with quantized hidden weights and an optional final RMSNorm.

    ``final_norm=True`` puts an RMSNorm (with a learned gain) between the last
    residual stream and ``W_U``, which Li (2024) needs to train quantized
    models; ``final_norm=False`` with ``precision="full"`` is exactly
    :func:`helpers.modular.canonical_config`.

    >>> precision_config("binary").weight_transform, precision_config("binary").final_normalization
    ('binary', 'RMS')

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    _check_precision(precision)
    _check_seed(seed)
    if not isinstance(final_norm, bool):
        raise TypeError(f"final_norm must be a bool, got {final_norm!r}")
    return canonical_config(p=p, seed=seed, weight_transform=TRANSFORM_OF[precision],
                            final_normalization="RMS" if final_norm else None, **overrides)


def train_precision(precision: str = "ternary", seed: int = 0, final_norm: bool = True, steps: int = 10000,
                    stop_test_loss: float | None = 0.01, log_every: int = 100, n_snapshots: int = 6,
                    p: int = 113, progress: bool | None = False) -> tuple[HookedTransformer, TrainResult]:
    """Train :func:`precision_config` with chapter 4's canonical recipe; returns ``(model, TrainResult)``.

    Full-batch AdamW (lr 1e-3, weight decay 1, betas (0.9, 0.98)) on 30% of the
    ``p^2`` pairs, through :func:`helpers.modular.train_modular` (same logged
    history, progress measures and snapshots as chapter 4), stopping at the
    first logged step with test loss below ``stop_test_loss`` and 100%
    training accuracy, or after ``steps``.

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    _check_precision(precision)
    t = CANONICAL_TRAINING
    model = HookedTransformer(precision_config(precision, seed=seed, final_norm=final_norm, p=p))
    data = make_data(p, t["frac_train"], seed=seed, layout="equals")
    return model, train_modular(
        model, data, steps=steps, lr=t["lr"], weight_decay=t["weight_decay"], betas=t["betas"],
        warmup_steps=t["warmup_steps"], log_every=log_every, n_snapshots=n_snapshots,
        stop_test_loss=stop_test_loss, seed=seed, progress=progress,
        description=f"{precision}{' + RMSNorm' if final_norm else ''} p={p} seed {seed}",
    )


def precision_name(precision: str, final_norm: bool = True) -> str:
    """Checkpoint name of a shipped chapter-8 model, e.g. ``modadd_p113_ternary``.

    Full precision without the final norm is chapter 4's ``modadd_p113``.

    Used in chapter 8.
    """
    _check_precision(precision)
    if precision == "full":
        return "modadd_p113_full_rms" if final_norm else "modadd_p113"
    if not final_norm:
        raise ValueError("only full precision is shipped without the final RMSNorm")
    return f"modadd_p113_{precision}"


def _precision_recipe(precision: str):
    def fn(seed: int = 0, steps: int = 10000, stop_test_loss: float | None = 0.01, log_every: int = 100,
           n_snapshots: int = 0, progress: bool | None = False):
        return train_precision(precision, seed=seed, final_norm=True, steps=steps, stop_test_loss=stop_test_loss,
                               log_every=log_every, n_snapshots=n_snapshots, progress=progress)

    fn.__doc__ = (f"Canonical p=113 model, {precision} hidden weights, RMSNorm before W_U, "
                  "trained until test loss < 0.01 (Li 2024).")
    fn.__name__ = fn.__qualname__ = f"train_{precision_name(precision)}"
    return fn


for _precision in PRECISIONS:
    recipe(precision_name(_precision), _precision_recipe(_precision).__doc__)(_precision_recipe(_precision))



# ---------------------------------------------------------------------------
# Chapter 4's clock/pizza family, quantized
# ---------------------------------------------------------------------------
FAMILY_VARIANTS = ("ternary", "binary", "full_rms")
"""Hidden-weight variants of the quantized clock/pizza family: ternary and binary with the final RMSNorm,
and full precision with the same norm (the control for the norm)."""

FAMILY_SEEDS = (0, 1)
"""Seeds of the shipped quantized clock/pizza models."""


def _check_family_variant(variant) -> tuple[str, bool]:
    if variant not in FAMILY_VARIANTS:
        raise ValueError(f"variant must be one of {list(FAMILY_VARIANTS)}, got {variant!r}")
    return ("full", True) if variant == "full_rms" else (variant, True)


def train_clock_pizza_quantized(attention: str = "normal", variant: str = "ternary", seed: int = 0,
                                steps: int = 3000, log_every: int = 100, p: int = 59,
                                progress: bool | None = False):
    """Chapter 4's p = 59 clock/pizza model and recipe, with quantized hidden weights; ``(model, TrainResult)``.

    Everything is :func:`helpers.modular.train_clock_pizza`'s (tokens ``[a, b]``,
    80% train, AdamW lr 1e-3, weight decay 2, Zhong et al.'s ``W_in``
    initialisation, 3,000 steps, distance irrelevance logged and exact
    gradient symmetricity at the end) except the hidden weights: ``variant``
    ``"ternary"`` or ``"binary"`` quantizes them, ``"full_rms"`` keeps them full
    precision; all three put an RMSNorm before ``W_U`` as the quantized
    canonical models do.

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    precision, final_norm = _check_family_variant(variant)
    t = M.CLOCK_PIZZA_TRAINING
    cfg = M.clock_pizza_config(attention, p=p, seed=seed, weight_transform=TRANSFORM_OF[precision],
                               final_normalization="RMS" if final_norm else None)
    model = HookedTransformer(cfg)
    with torch.no_grad():  # Zhong et al.'s W_in scale, as in helpers.modular.train_clock_pizza
        for block in model.blocks:
            block.mlp.W_in.mul_(math.sqrt(cfg.d_model / cfg.d_mlp))
    data = make_data(p, t["frac_train"], seed=seed, layout="pair")
    result = train_modular(
        model, data, steps=steps, lr=t["lr"], weight_decay=t["weight_decay"], betas=t["betas"],
        warmup_steps=t["warmup_steps"], log_every=log_every, n_snapshots=0, clock_pizza_metrics=True,
        seed=seed, progress=progress, description=f"{attention} attention, {variant}, p={p} seed {seed}",
    )
    return model, result


def clock_pizza_quantized_name(attention: str, variant: str, seed: int) -> str:
    """Checkpoint name of a quantized clock/pizza model, e.g. ``modadd_p59_constant_binary_s1``.

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    if attention not in ("normal", "constant"):
        raise ValueError(f"attention must be 'normal' or 'constant', got {attention!r}")
    _check_family_variant(variant)
    return f"modadd_p59_{attention}_{variant}_s{int(seed)}"


def _family_recipe(attention: str, variant: str, s: int):
    def fn(seed: int = s, steps: int = 3000, progress: bool | None = False):
        return train_clock_pizza_quantized(attention, variant, seed=seed, steps=steps, progress=progress)

    fn.__doc__ = f"Zhong et al.'s p=59 model, {attention} attention, {variant} hidden weights + RMSNorm, seed {s}."
    fn.__name__ = fn.__qualname__ = f"train_{clock_pizza_quantized_name(attention, variant, s)}"
    return fn


for _attention in ("normal", "constant"):
    for _variant in FAMILY_VARIANTS:
        for _s in FAMILY_SEEDS:
            _fn = _family_recipe(_attention, _variant, _s)
            recipe(clock_pizza_quantized_name(_attention, _variant, _s), _fn.__doc__)(_fn)
del _attention, _variant, _s, _fn


def family_rows(variants: Sequence[str] = ("full",) + FAMILY_VARIANTS, root=None) -> list[dict]:
    """One row per shipped clock/pizza model: chapter 4's (``variant="full"``, no norm) and the quantized ones.

    Row keys: ``attention``, ``variant``, ``seed``, ``name``, ``steps``,
    ``test_acc``, ``grad_symmetricity`` (exact, all ``p^3`` triples, at the
    last step), ``distance_irrelevance`` (last step), ``seconds`` (wall time
    of the training run). Models not shipped are skipped.

    Used in chapter 8.
    """
    rows = []
    for attention in ("normal", "constant"):
        for variant in variants:
            if variant == "full":
                names = [(s, M.clock_pizza_name(attention, s)) for s in M.CLOCK_PIZZA_SEEDS]
            else:
                names = [(s, clock_pizza_quantized_name(attention, variant, s)) for s in FAMILY_SEEDS]
            for s, name in names:
                if not exists(name, root=root):
                    continue
                ck = load(name, root=root)
                h = ck.history
                rows.append({
                    "attention": attention, "variant": variant, "seed": int(s), "name": name,
                    "steps": int(h["step"][-1]), "test_acc": float(h["test_acc"][-1]),
                    "grad_symmetricity": float(h["grad_symmetricity"][-1]),
                    "distance_irrelevance": float(h["distance_irrelevance"][-1]),
                    "seconds": ck.manifest.get("seconds"),
                })
    return rows

# ---------------------------------------------------------------------------
# The side-by-side suite (built on helpers.modular's metrics)
# ---------------------------------------------------------------------------
def key_frequency_directions(model: HookedTransformer, key_freqs: Sequence[int]) -> np.ndarray:
    """Unit directions in the residual stream of ``cos w_k a`` and ``sin w_k a``: array [2 * n_keys, d_model].

    Row ``2i`` is ``F_cos(k_i) @ W_E[:p]`` normalised, row ``2i + 1`` the sine
    (``F`` = :func:`helpers.modular.fourier_basis`).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    p, _ = M.task_of(model)
    F = M.fourier_basis(p).to(torch.float64)
    W = model.W_E.detach().double().cpu()[:p]
    rows = []
    for k in key_freqs:
        if not (isinstance(k, (int, np.integer)) and 1 <= k <= (p - 1) // 2):
            raise ValueError(f"key_freqs must be ints in 1..{(p - 1) // 2}, got {k!r}")
        for r in (2 * k - 1, 2 * k):
            v = F[r] @ W
            rows.append((v / v.norm().clamp_min(1e-30)).numpy())
    return np.stack(rows)


def key_frequency_overlap(model: HookedTransformer, key_freqs: Sequence[int]) -> dict[str, float]:
    """How orthogonal the key-frequency embeddings are.

    Returns ``within`` (mean ``|cos|`` between the cos and sin direction of the
    same frequency), ``across`` (largest cosine of the principal angles between
    the 2-D planes of two different key frequencies) and ``baseline`` (the
    expected ``|cos|`` of two random directions in ``d_model`` dimensions,
    ``sqrt(2 / (pi d_model))``).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    D = key_frequency_directions(model, key_freqs)
    n = len(key_freqs)
    within = float(np.mean([abs(D[2 * i] @ D[2 * i + 1]) for i in range(n)])) if n else math.nan
    across = 0.0
    for i in range(n):
        Qi, _ = np.linalg.qr(D[2 * i:2 * i + 2].T)
        for j in range(i + 1, n):
            Qj, _ = np.linalg.qr(D[2 * j:2 * j + 2].T)
            across = max(across, float(np.linalg.svd(Qi.T @ Qj, compute_uv=False).max()))
    return {"within": within, "across": across, "baseline": math.sqrt(2 / (math.pi * D.shape[1]))}


def embedding_svd_energy(model: HookedTransformer, rank: int) -> float:
    """Share of ``||W_E[:p]||_F^2`` (rows centred) in its top ``rank`` singular values.

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    _check_int(rank, "rank", 1)
    p, _ = M.task_of(model)
    W = model.W_E.detach().double().cpu().numpy()[:p]
    s = np.linalg.svd(W - W.mean(0), compute_uv=False)
    return float((s[:rank] ** 2).sum() / (s ** 2).sum())


def attention_from_equals(model: HookedTransformer) -> np.ndarray:
    """Mean attention of the ``=`` position to ``[a, b, =]`` over all ``p^2`` inputs: array [n_heads, 3].

    Used in chapter 8.
    """
    p, layout = M.task_of(model)
    if layout != "equals":
        raise ValueError("attention_from_equals needs the [a, b, =] layout")
    tokens, _ = M.all_pairs(p, layout)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.device), names_filter=act_name("pattern", 0),
                                        read_positions=[-1])
    return cache[act_name("pattern", 0)][:, :, -1, :].mean(0).double().cpu().numpy()


def sign_agreement(model_a: HookedTransformer, model_b: HookedTransformer) -> dict[str, float]:
    """Share of entries where two models' hidden latent weights, centred, have the same sign.

    ``sign(W - mean W)`` is the sign a binary or a (non-zero) ternary weight
    takes in the forward pass, so this compares the sign patterns the
    quantizers see; for two models started from the same initialisation
    (same seed), it says how much of the initial pattern training kept.

    Used in chapter 8.
    """
    for m in (model_a, model_b):
        if not isinstance(m, HookedTransformer):
            raise TypeError(f"models must be HookedTransformers, got {type(m).__name__}")
    pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    names = [k for k in pa if k.split(".")[-1] in _HIDDEN]
    if names != [k for k in pb if k.split(".")[-1] in _HIDDEN] or any(pa[k].shape != pb[k].shape for k in names):
        raise ValueError("the two models must have the same hidden weights (names and shapes)")
    with torch.no_grad():
        return {k: float((torch.sign(centre(pa[k])) == torch.sign(centre(pb[k]))).double().mean()) for k in names}


def metric_suite(model: HookedTransformer, data=None, n_triples: int = 1000, acts=None) -> dict:
    """Chapter 4's suite for one model, as numbers (every metric from :mod:`helpers.modular`).

    Keys: ``test_acc``, ``test_loss`` (needs ``data``), ``keys_embedding``,
    ``keys_neurons``, ``keys_logit_map``, ``gini_embed``, ``neuron_share``
    (>= 85% variance from one frequency), ``n_dead``, ``cos_fit_fve`` (share
    of the centred logits explained by ``cos w_k(a+b-c)`` over the neuron key
    frequencies), ``restricted_loss``, ``excluded_loss`` (needs ``data``),
    ``svd_energy`` (top ``2 n_keys`` singular values of ``W_E``),
    ``overlap_within``, ``overlap_across``, ``attn_to_a``, ``attn_to_b``,
    ``attn_to_eq`` (mean over heads), ``grad_symmetricity`` (``n_triples``
    sampled triples), ``distance_irrelevance``. ``acts`` (optional) are the
    model's :func:`helpers.modular.neuron_activations`, if already computed.

    Used in chapter 8.
    """
    _check_int(n_triples, "n_triples", 1)
    L = M.logit_tensor(model)
    p = L.shape[0]
    acts = M.neuron_activations(model) if acts is None else acts
    keys = M.key_freqs_neurons(acts)
    if not keys:
        keys = M.key_frequencies(model, "logit_map")
    clusters = M.neuron_clusters(acts)
    ov = key_frequency_overlap(model, keys)
    attn = attention_from_equals(model).mean(0)
    out = {
        "keys_embedding": M.key_frequencies(model, "embedding"),
        "keys_logit_map": M.key_frequencies(model, "logit_map"),
        "keys_neurons": keys,
        "gini_embed": M.gini(M.embedding_spectrum(model)[1:]),
        "neuron_share": clusters.share_explained,
        "n_dead": clusters.n_dead,
        "cos_fit_fve": M.cos_logit_fit(L, keys)[1],
        "restricted_loss": M.restricted_loss(L, keys),
        "svd_energy": embedding_svd_energy(model, 2 * len(keys)),
        "overlap_within": ov["within"],
        "overlap_across": ov["across"],
        "attn_to_a": float(attn[0]), "attn_to_b": float(attn[1]), "attn_to_eq": float(attn[2]),
        "grad_symmetricity": M.gradient_symmetricity(model, n_triples=n_triples, seed=0),
        "distance_irrelevance": M.distance_irrelevance(L),
    }
    if data is not None:
        flat = torch.as_tensor(L.reshape(p * p, p))
        te = data.test_idx
        out["test_acc"] = float((flat[te].argmax(-1) == data.labels[te]).double().mean())
        out["test_loss"] = float(torch.nn.functional.cross_entropy(flat[te].double(), data.labels[te]))
        out["excluded_loss"] = M.excluded_loss(L, keys, data.train_idx)
    return out


# ---------------------------------------------------------------------------
# The control: steps to generalise, with and without the norm, per precision
# ---------------------------------------------------------------------------
CONTROL_VARIANTS = (("full", False), ("full", True), ("ternary", True), ("binary", True))
"""(precision, final_norm) pairs of the control, in table order."""

CONTROL_PATH = CHECKPOINT_DIR / "results" / "ch8_precision_control.json"
"""Where :func:`precision_control` results are stored (read by chapter 8's page)."""


def steps_to_generalise(history: dict, threshold: float = 0.01) -> int | None:
    """First logged step with test loss below ``threshold`` and 100% training accuracy (else ``None``).

    The same criterion as ``stop_test_loss`` in :func:`train_precision`, so it
    reads a run that stopped there and one that trained on alike.

    Used in chapter 8.
    """
    if not isinstance(history, dict) or not {"step", "test_loss", "train_acc"} <= set(history):
        raise ValueError("history must be a dict with 'step', 'test_loss' and 'train_acc' lists")
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    for step, loss, acc in zip(history["step"], history["test_loss"], history["train_acc"]):
        if loss < threshold and acc == 1.0:
            return int(step)
    return None


def control_run(precision: str, final_norm: bool, seed: int, steps: int = 10000, threshold: float = 0.01) -> dict:
    """One run of the control: train until generalised, return a result row.

    Row keys: ``precision``, ``final_norm``, ``seed``, ``steps`` (to
    generalise, ``None`` if the cap was reached), ``cap``, ``seconds`` (wall
    time), ``cpu_seconds`` (CPU time of the process, which a busy machine
    inflates less than wall time), ``test_acc`` (at the end), ``threads`` (1).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    _, result = train_precision(precision, seed=seed, final_norm=final_norm, steps=steps,
                                stop_test_loss=threshold, n_snapshots=0)
    return {
        "precision": precision, "final_norm": final_norm, "seed": int(seed),
        "steps": steps_to_generalise(result.history, threshold), "cap": steps,
        "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
        "test_acc": result.history["test_acc"][-1], "threads": 1, "threshold": threshold,
    }


def _row_from_checkpoint(name: str, precision: str, final_norm: bool, threshold: float) -> dict:
    loaded = load(name)
    stopped_here = loaded.manifest.get("recipe_kwargs", {}).get("stop_test_loss") == threshold
    return {
        "precision": precision, "final_norm": final_norm, "seed": int(loaded.manifest["seed"]),
        "steps": steps_to_generalise(loaded.history, threshold), "cap": loaded.manifest["steps"],
        # the training run's wall time, where it stopped at this threshold (chapter 4's trained on)
        "seconds": loaded.manifest.get("seconds") if stopped_here else None,
        "test_acc": loaded.history["test_acc"][-1], "threads": 1, "threshold": threshold,
        "from_checkpoint": name,
    }


def precision_control(seeds: Sequence[int] = (0, 1, 2), variants=CONTROL_VARIANTS, steps: int = 10000,
                      threshold: float = 0.01, path=None, seed0_from_checkpoints: bool = True) -> list[dict]:
    """Run (or read) the control for every variant and seed; merge the rows into ``path``.

    Seed 0 is read from the shipped checkpoints when ``seed0_from_checkpoints``
    and the checkpoint exists
    (they were trained with the same recipe; chapter 4's ``modadd_p113`` trained
    on past the threshold, so its step is read from its history and its wall
    time is not comparable). Rows already in ``path`` for the same
    (precision, final_norm, seed, cap, threshold) are kept, so the control can be
    run in pieces (``python -m helpers.quantized control --variant binary --seeds 1,2``).

    Not named on chapter 8's page: a building block of the functions, recipes or checks behind it.
    """
    path = Path(path) if path is not None else CONTROL_PATH
    rows = json.loads(path.read_text())["rows"] if path.exists() else []

    def key(r):
        return (r["precision"], bool(r["final_norm"]), int(r["seed"]), int(r["cap"]), float(r["threshold"]))

    have = {key(r): r for r in rows}
    for precision, final_norm in variants:
        _check_precision(precision)
        for s in seeds:
            k = (precision, final_norm, int(s), int(steps), float(threshold))
            if k in have:
                continue
            if s == 0 and seed0_from_checkpoints and exists(precision_name(precision, final_norm)):
                row = _row_from_checkpoint(precision_name(precision, final_norm), precision, final_norm, threshold)
                row["cap"] = steps
            else:
                row = control_run(precision, final_norm, s, steps=steps, threshold=threshold)
            have[key(row)] = row
            path.parent.mkdir(parents=True, exist_ok=True)
            # merge with rows another process may have written meanwhile
            disk = json.loads(path.read_text())["rows"] if path.exists() else []
            merged = {key(r): r for r in disk}
            merged.update(have)
            have = merged
            out = sorted(have.values(), key=lambda r: (r["precision"], r["final_norm"], r["seed"]))
            path.write_text(json.dumps({"rows": out}, indent=1) + "\n")
    return sorted(have.values(), key=lambda r: (r["precision"], r["final_norm"], r["seed"]))


def load_control(path=None) -> list[dict]:
    """The stored control rows (see :func:`precision_control`).

    Used in chapter 8.
    """
    path = Path(path) if path is not None else CONTROL_PATH
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python -m helpers.quantized control`")
    return json.loads(path.read_text())["rows"]


def control_summary(rows: list[dict]) -> dict[tuple[str, bool], dict]:
    """Per (precision, final_norm): seeds, steps per seed, mean, median, min, max (``None`` = not generalised).

    Also ``seconds`` and ``cpu_seconds`` per seed (``None`` where not recorded).

    Used in chapter 8.
    """
    out: dict[tuple[str, bool], dict] = {}
    for precision, final_norm in CONTROL_VARIANTS:
        sel = sorted((r for r in rows if r["precision"] == precision and bool(r["final_norm"]) == final_norm),
                     key=lambda r: r["seed"])
        if not sel:
            continue
        steps = [r["steps"] for r in sel]
        done = [s for s in steps if s is not None]
        out[(precision, final_norm)] = {
            "seeds": [r["seed"] for r in sel], "steps": steps, "n_failed": len(steps) - len(done),
            "mean": float(np.mean(done)) if done else math.nan,
            "median": float(np.median(done)) if done else math.nan,
            "min": min(done) if done else None, "max": max(done) if done else None,
            "seconds": [r["seconds"] for r in sel], "cpu_seconds": [r.get("cpu_seconds") for r in sel],
        }
    return out


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.quantized")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("control", help="run the steps-to-generalise control (rows merge into the results file)")
    c.add_argument("--variant", action="append", default=[],
                   help="full, full_rms, ternary or binary (repeatable; default all)")
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args(argv)
    names = {"full": ("full", False), "full_rms": ("full", True), "ternary": ("ternary", True),
             "binary": ("binary", True)}
    variants = [names[v] for v in args.variant] if args.variant else list(CONTROL_VARIANTS)
    torch.set_num_threads(1)
    rows = precision_control(seeds=[int(s) for s in args.seeds.split(",")], variants=variants, steps=args.steps)
    for r in rows:
        print(r, flush=True)
    return 0


if __name__ == "__main__":
    import sys

    from helpers import quantized as _q

    sys.exit(_q._main())
