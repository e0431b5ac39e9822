"""Transformer circuits and induction heads.

The tools of chapter 3, which reads small attention-only transformers the way
Elhage et al. (2021) and Olsson et al. (2022) do: as sums of paths through the
residual stream, each path a product of weight matrices.

* **Circuit matrices** (row-vector convention, ``x @ W``): the QK circuit
  ``W_QK = W_Q W_K^T`` and the OV circuit ``W_OV = W_V W_O`` of a head, both
  ``[d_model, d_model]`` of rank at most ``d_head``
  (:func:`qk_matrix`, :func:`ov_matrix`); the full circuits through the
  embeddings, ``W_E W_QK W_E^T`` (or with ``W_pos`` on either side) and
  ``W_E W_OV W_U`` (:func:`full_qk_circuit`, :func:`full_ov_circuit`); and the
  K-composition circuit of a layer-1 head read through a layer-0 head
  (:func:`k_composition_circuit`).
* **Composition scores** ``||A B||_F / (||A||_F ||B||_F)`` for Q-, K- and
  V-composition between every pair of heads in two layers
  (:func:`composition_scores`), with a baseline of random matrices of the same
  shapes (:func:`composition_baseline`) or of the same matrices in a randomly
  rotated basis (:func:`rotated_baseline`).
* **Attention-pattern scores** on ``[BOS] r r`` sequences (r random, length
  ``n``): induction, previous-token and duplicate-token scores
  (:func:`induction_score`, :func:`previous_token_score`,
  :func:`duplicate_token_score`, all at once with :func:`head_scores`), and the
  copying scores of a full OV circuit (:func:`copying_score`,
  :func:`eigenvalue_copying_score`).
* **The hand-built induction head** (:func:`induction_head_model`): a
  two-layer attention-only transformer whose weights are written down, not
  trained, with its residual-stream layout (:func:`induction_head_layout`).
* **Data**: ``[BOS] r r`` evaluation sequences (:func:`repeated_tokens`) and
  training sequences whose repeat starts at a random offset
  (:func:`repeat_data`).
* **Ablation and per-position loss**: :func:`ablation_hooks`,
  :func:`run_ablated`, :func:`per_position_loss`, :func:`repeat_metrics`.
* **Activation and path patching**: a clean and a corrupted run
  (:func:`corrupt_first_copy`), the normalised second-copy loss
  (:func:`second_copy_loss`, :func:`normalised_metric`), patching one
  activation (:func:`activation_patch`, :func:`head_patching_table`), a head's
  attention scores split by query and key source (:func:`residual_components`,
  :func:`decompose_attention_scores`), one head's output replaced only in the
  queries, keys or values of later heads (:func:`path_patch`), and Olsson et
  al.'s in-context learning score (:func:`in_context_learning_score`).
* **Trained models**: the recipes ``induction_2l``, ``induction_1l`` and
  ``induction_1l_fixed`` (:func:`train_induction`), shipped as checkpoints.
* The exercises' answer keys and checks are in :mod:`helpers.exercises.ch3`.

Used in chapter 3.

>>> model = induction_head_model(d_vocab=16, n_ctx=21)
>>> data = repeated_tokens(64, seq_len=10, d_vocab=16, seed=0)
>>> round(repeat_metrics(model, data)["second_acc"], 3)
1.0
>>> scores = head_scores(model, data)
>>> round(float(scores["previous_token"][0, 0]), 3), round(float(scores["induction"][1, 0]), 3)
(1.0, 1.0)
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from helpers._util import attention_patterns as _patterns
from helpers._util import check_finite as _check_finite
from helpers._util import check_int as _check_int
from helpers._util import check_seed as _check_seed
from helpers.store import recipe
from helpers.training import TrainResult, cross_entropy, train
from helpers.transformer import HookedTransformer, TransformerConfig, act_name

__all__ = [
    # circuit matrices
    "qk_matrix",
    "ov_matrix",
    "full_qk_circuit",
    "full_ov_circuit",
    "k_composition_circuit",
    "positional_pattern",
    # composition
    "composition_score",
    "composition_scores",
    "all_composition_scores",
    "CompositionBaseline",
    "composition_baseline",
    "rotated_baseline",
    # pattern and copying scores
    "induction_score",
    "previous_token_score",
    "duplicate_token_score",
    "head_scores",
    "attention_patterns",
    "head_pattern_grid",
    "head_pattern_explorer",
    "copying_score",
    "eigenvalue_copying_score",
    "ov_copying_scores",
    # data
    "RepeatData",
    "repeated_tokens",
    "repeat_data",
    "varied_eval_data",
    # losses, accuracy, ablation
    "per_position_loss",
    "lm_loss",
    "repeat_metrics",
    "ablation_hooks",
    "run_ablated",
    # the hand-built induction head
    "induction_head_layout",
    "induction_head_weights",
    "induction_head_model",
    # trained models
    "induction_config",
    "train_induction",
    "train_induction_2l",
    "train_induction_1l",
    "train_induction_1l_fixed",
    # activation patching, score decomposition, path patching, in-context learning
    "corrupt_first_copy",
    "second_copy_loss",
    "normalised_metric",
    "activation_patch",
    "head_patching_table",
    "residual_components",
    "decompose_attention_scores",
    "path_patch",
    "in_context_learning_score",
]

Head = tuple  # (layer, head)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------
def _check_model(model, *, qk: bool = False, name: str = "model") -> None:
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"{name} must be a helpers.transformer.HookedTransformer, got {type(model).__name__}")
    if qk and model.cfg.attention_mode != "normal":
        raise ValueError(
            f"{name} uses attention_mode={model.cfg.attention_mode!r}, which has no W_Q/W_K: "
            "QK circuits need attention_mode='normal'"
        )


def _check_layer(model, layer, name: str = "layer") -> int:
    return _check_int(layer, name, 0, model.cfg.n_layers - 1)


def _check_head(model, head, name: str = "head") -> int:
    return _check_int(head, name, 0, model.cfg.n_heads - 1)


def _as_matrix(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions [..., rows, cols], got shape {tuple(x.shape)}")
    if x.is_complex() or not x.dtype.is_floating_point:
        x = x.to(torch.float64)
    return x


# ---------------------------------------------------------------------------
# Circuit matrices
# ---------------------------------------------------------------------------
@torch.no_grad()
def qk_matrix(model: HookedTransformer, layer: int, head: int | None = None) -> torch.Tensor:
    """The QK circuit ``W_QK = W_Q W_K^T`` of one head (or all heads of a layer).

    In the row-vector convention the attention score of a query residual
    vector ``x_q`` on a key residual vector ``x_k`` is
    ``x_q W_QK x_k^T / sqrt(d_head)`` (plus bias terms, if the model has them).

    Parameters
    ----------
    model : HookedTransformer
    layer : int
    head : int or None
        ``None`` returns every head of the layer.

    Returns
    -------
    Tensor ``[d_model, d_model]`` (or ``[n_heads, d_model, d_model]``), rank at
    most ``d_head``; rows index the query side, columns the key side.

    Used in chapter 3.

    >>> cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=3, d_mlp=0, d_vocab=5, n_ctx=4,
    ...                         attn_only=True)
    >>> m = HookedTransformer(cfg)
    >>> qk_matrix(m, 0).shape, int(torch.linalg.matrix_rank(qk_matrix(m, 0, 1)))
    (torch.Size([2, 8, 8]), 3)
    """
    _check_model(model, qk=True)
    layer = _check_layer(model, layer)
    out = model.QK[layer].AB
    return out if head is None else out[_check_head(model, head)]


@torch.no_grad()
def ov_matrix(model: HookedTransformer, layer: int, head: int | None = None) -> torch.Tensor:
    """The OV circuit ``W_OV = W_V W_O`` of one head (or all heads of a layer).

    A head adds ``sum_k A[q, k] x_k W_OV`` to the residual stream at position
    ``q``: ``W_OV`` says *what* is moved, the pattern ``A`` says *from where*.

    Returns
    -------
    Tensor ``[d_model, d_model]`` (or ``[n_heads, d_model, d_model]``), rank at
    most ``d_head``; rows index what is read, columns what is written.

    Used in chapter 3.

    >>> cfg = TransformerConfig(n_layers=2, d_model=8, n_heads=2, d_head=3, d_mlp=0, d_vocab=5, n_ctx=4,
    ...                         attn_only=True)
    >>> m = HookedTransformer(cfg)
    >>> torch.allclose(ov_matrix(m, 1, 0), m.W_V[1, 0] @ m.W_O[1, 0])
    True
    """
    _check_model(model)
    layer = _check_layer(model, layer)
    out = model.OV[layer].AB
    return out if head is None else out[_check_head(model, head)]


def _side(model: HookedTransformer, which: str, name: str) -> torch.Tensor:
    if which in ("embed", "token", "W_E"):
        return model.W_E
    if which in ("pos", "W_pos"):
        return model.W_pos
    raise ValueError(f"{name} must be 'embed' (token embeddings W_E) or 'pos' (positional W_pos), got {which!r}")


@torch.no_grad()
def full_qk_circuit(model: HookedTransformer, layer: int, head: int, query: str = "embed",
                    key: str = "embed") -> torch.Tensor:
    """The QK circuit read through the embeddings: ``X_q W_QK X_k^T``.

    ``X_q`` and ``X_k`` are ``W_E`` (``"embed"``) or ``W_pos`` (``"pos"``).
    Entry ``[i, j]`` is the attention score (times ``sqrt(d_head)``) that a
    query made of token/position ``i`` alone puts on a key made of
    token/position ``j`` alone. For a layer-0 head in a model without
    normalization these are exactly the four terms of its score: the
    residual stream there is ``W_E[t] + W_pos[p]``. ``query="embed",
    key="embed"`` gives the token-token circuit ``W_E W_QK W_E^T``;
    ``query="pos", key="pos"`` shows a positional head such as a
    previous-token head as a stripe below the diagonal.

    Returns
    -------
    Tensor ``[d_vocab or n_ctx, d_vocab or n_ctx]``.

    Chapter 3 uses it through :func:`positional_pattern`.

    >>> m = induction_head_model(d_vocab=6, n_ctx=5)
    >>> pp = full_qk_circuit(m, 0, 0, "pos", "pos")      # previous-token head
    >>> [int(pp[i].argmax()) for i in range(1, 5)]
    [0, 1, 2, 3]
    """
    _check_model(model, qk=True)
    _check_head(model, head)  # one head: the result is documented 2-D
    w = qk_matrix(model, layer, head)
    return _side(model, query, "query") @ w @ _side(model, key, "key").T


@torch.no_grad()
def full_ov_circuit(model: HookedTransformer, layer: int, head: int) -> torch.Tensor:
    """The OV circuit read from the token embedding to the logits: ``W_E W_OV W_U``.

    Entry ``[i, j]`` is how much attending to a token ``i`` raises the logit
    of token ``j`` (through this head alone, ignoring everything else in the
    residual stream). A copying head has a large diagonal.

    Returns
    -------
    Tensor ``[d_vocab, d_vocab_out]``.

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=6, n_ctx=5)
    >>> copying_score(full_ov_circuit(m, 1, 0)[1:, 1:])   # the induction head copies
    1.0
    """
    _check_model(model)
    _check_head(model, head)  # one head: the result is documented 2-D
    return model.W_E @ ov_matrix(model, layer, head) @ model.W_U


@torch.no_grad()
def positional_pattern(model: HookedTransformer, layer: int, head: int, n_pos: int | None = None) -> torch.Tensor:
    """The attention pattern a head would have from positions alone.

    ``softmax(W_pos W_QK W_pos^T / sqrt(d_head))`` with the causal mask: the
    pattern of the head on a residual stream that held only the positional
    embeddings. For a layer-0 head this isolates the position-position term
    of its scores; a purely positional head (a previous-token head, or a head
    that looks a fixed distance back) shows its offset as a sharp stripe.

    Returns
    -------
    Tensor ``[n_pos, n_pos]`` (rows: queries; each row sums to 1).

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=6, n_ctx=5)
    >>> positional_pattern(m, 0, 0).diagonal(-1).round(decimals=4).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    _check_model(model, qk=True)
    n = model.cfg.n_ctx if n_pos is None else _check_int(n_pos, "n_pos", 1, model.cfg.n_ctx)
    scores = full_qk_circuit(model, layer, head, "pos", "pos")[:n, :n] / math.sqrt(model.cfg.d_head)
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.double().masked_fill(future, float("-inf")), dim=-1)


@torch.no_grad()
def k_composition_circuit(model: HookedTransformer, head0: Sequence[int], head1: Sequence[int]) -> torch.Tensor:
    """Query token against the token a *key* received through an earlier head.

    ``W_E W_QK^{(1)} (W_E W_OV^{(0)})^T`` for ``head1 = (l1, h1)`` reading its
    keys from what ``head0 = (l0, h0)`` wrote (``l0 < l1``). Entry ``[a, b]``:
    the score a query holding token ``a`` puts on a key position to which
    ``head0`` moved token ``b``. For an induction head and a previous-token
    head, ``b`` is the token *before* the key, and the circuit is
    diagonal: "attend to the position after an earlier copy of me".

    Returns
    -------
    Tensor ``[d_vocab, d_vocab]`` (query token, token moved by ``head0``).

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=6, n_ctx=5)
    >>> c = k_composition_circuit(m, (0, 0), (1, 0))
    >>> bool((c[1:, 1:].argmax(1) == torch.arange(5)).all())
    True
    """
    _check_model(model, qk=True)
    (l0, h0), (l1, h1) = _pair(model, head0, "head0"), _pair(model, head1, "head1")
    if not l0 < l1:
        raise ValueError(f"head0 must be in an earlier layer than head1, got layers {l0} and {l1}")
    moved = model.W_E @ ov_matrix(model, l0, h0)
    return model.W_E @ qk_matrix(model, l1, h1) @ moved.T


def _pair(model, pair, name: str) -> tuple[int, int]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"{name} must be a (layer, head) pair, got {pair!r}")
    return _check_layer(model, pair[0], f"{name}[0] (layer)"), _check_head(model, pair[1], f"{name}[1] (head)")


# ---------------------------------------------------------------------------
# Composition scores
# ---------------------------------------------------------------------------
def composition_score(A, B) -> torch.Tensor:
    """``||A B||_F / (||A||_F ||B||_F)``: how much of ``B`` reads what ``A`` writes.

    In the row-vector convention ``A`` writes to the residual stream (its
    columns) and ``B`` reads from it (its rows). The score lies in [0, 1]: 0
    when ``A``'s output space and ``B``'s input space are orthogonal, 1 only
    when both are rank one and aligned. A product of two aligned rank-``r``
    projections scores ``1/sqrt(r)``, so compare scores with a baseline
    (:func:`composition_baseline`) rather than with 1.

    Parameters
    ----------
    A : Tensor ``[..., n, m]``
    B : Tensor ``[..., m, k]``
        Leading dimensions broadcast.

    Returns
    -------
    Tensor ``[...]``

    Chapter 3 uses it through :func:`composition_baseline` and :func:`rotated_baseline`.

    >>> P = torch.diag(torch.tensor([1., 1., 0., 0.]))
    >>> Q = torch.diag(torch.tensor([0., 0., 1., 1.]))
    >>> float(composition_score(P, Q)), round(float(composition_score(P, P)), 4)   # 1/sqrt(2)
    (0.0, 0.7071)
    """
    A, B = _as_matrix(A, "A"), _as_matrix(B, "B")
    _check_finite(A, "A")
    _check_finite(B, "B")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"A [..., n, m] and B [..., m, k] must share m, got A {tuple(A.shape)} and B {tuple(B.shape)}")
    dtype = torch.promote_types(A.dtype, B.dtype)
    A, B = A.to(dtype), B.to(dtype)
    num = torch.linalg.matrix_norm(A @ B)
    den = torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))


_KINDS = ("Q", "K", "V")


@torch.no_grad()
def composition_scores(model: HookedTransformer, kind: str = "K", layer0: int = 0, layer1: int = 1) -> torch.Tensor:
    """Q-, K- or V-composition scores between every head of ``layer0`` and ``layer1``.

    With ``A = W_OV`` of a head in ``layer0`` (what it writes):

    * Q-composition: ``B = W_QK`` of the later head (its queries read ``A``'s output);
    * K-composition: ``B = W_QK^T`` (its keys read it);
    * V-composition: ``B = W_OV`` (its values read it).

    Returns
    -------
    Tensor ``[n_heads (layer0), n_heads (layer1)]`` of :func:`composition_score`.

    Chapter 3 uses it through :func:`all_composition_scores`.

    >>> m = induction_head_model(d_vocab=6, n_ctx=5)
    >>> [round(float(composition_scores(m, k)[0, 0]), 3) for k in "QKV"]   # only K-composition
    [0.0, 0.365, 0.0]
    """
    _check_model(model, qk=(kind in ("Q", "K")))
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {list(_KINDS)}, got {kind!r}")
    layer0, layer1 = _check_layer(model, layer0, "layer0"), _check_layer(model, layer1, "layer1")
    if not layer0 < layer1:
        raise ValueError(f"layer0 must come before layer1, got layer0={layer0}, layer1={layer1}")
    A = ov_matrix(model, layer0)  # [H0, d, d]
    if kind == "Q":
        B = qk_matrix(model, layer1)
    elif kind == "K":
        B = qk_matrix(model, layer1).transpose(-1, -2)
    else:
        B = ov_matrix(model, layer1)
    return composition_score(A[:, None], B[None, :])


def all_composition_scores(model: HookedTransformer, layer0: int = 0, layer1: int = 1) -> dict[str, torch.Tensor]:
    """``{"Q": ..., "K": ..., "V": ...}``, each ``[n_heads, n_heads]`` (see :func:`composition_scores`).

    Used in chapter 3.
    """
    return {k: composition_scores(model, k, layer0, layer1) for k in _KINDS}


@dataclass
class CompositionBaseline:
    """Scores of random pairs: what a composition score is compared against.

    Attributes
    ----------
    mean, std : float
    percentile : float
        Which percentile ``value`` is (e.g. 99.0).
    value : float
        That percentile of ``samples``.
    samples : Tensor ``[n_samples]``
    description : str
    """

    mean: float
    std: float
    percentile: float
    value: float
    samples: torch.Tensor = field(repr=False)
    description: str = ""

    def exceeds(self, score) -> bool:
        """True if ``score`` is above the baseline's percentile."""
        return float(score) > self.value


def _check_baseline_args(n_samples, percentile):
    _check_int(n_samples, "n_samples", 10)
    if not (isinstance(percentile, (int, float)) and 0 < percentile < 100):
        raise ValueError(f"percentile must be a number in (0, 100), got {percentile!r}")


def _summarise(samples: torch.Tensor, percentile: float, description: str) -> CompositionBaseline:
    return CompositionBaseline(
        mean=float(samples.mean()), std=float(samples.std()), percentile=float(percentile),
        value=float(torch.quantile(samples, percentile / 100)), samples=samples, description=description,
    )


def composition_baseline(d_model: int, d_head: int, *, n_samples: int = 2000, percentile: float = 99.0,
                         seed: int = 0) -> CompositionBaseline:
    """Composition scores of random matrices with the shapes of real circuits.

    Each sample draws ``A = G_1 G_2`` and ``B = G_3 G_4`` with independent
    standard Gaussian factors ``G_1, G_3 [d_model, d_head]`` and
    ``G_2, G_4 [d_head, d_model]``: two random ``d_model x d_model`` matrices
    of rank ``d_head``, like ``W_OV`` and ``W_QK`` of freshly initialised
    heads. The score is scale-free, and the Gaussian law is unchanged by
    transposes and rotations, so the same baseline serves Q-, K- and
    V-composition. For ``d_head << d_model`` the mean is close to
    ``1/sqrt(d_model)``.

    Returns
    -------
    CompositionBaseline

    Used in chapter 3.

    >>> b = composition_baseline(64, 16, n_samples=500, seed=0)
    >>> 0.09 < b.mean < 0.16 and b.value > b.mean
    True
    """
    d_model = _check_int(d_model, "d_model", 1)
    d_head = _check_int(d_head, "d_head", 1)
    _check_baseline_args(n_samples, percentile)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    out = []
    for start in range(0, n_samples, 500):
        n = min(500, n_samples - start)
        g = [torch.randn(n, *shape, generator=gen, dtype=torch.float64)
             for shape in [(d_model, d_head), (d_head, d_model)] * 2]
        out.append(composition_score(g[0] @ g[1], g[2] @ g[3]))
    return _summarise(torch.cat(out), percentile,
                      f"random rank-{d_head} matrices in d_model={d_model}, {n_samples} pairs, seed {seed}")


def rotated_baseline(A, B, *, n_samples: int = 2000, percentile: float = 99.0, seed: int = 0) -> CompositionBaseline:
    """Scores of ``(A R, B)`` for random orthogonal ``R``: same spectra, random alignment.

    A stricter baseline than :func:`composition_baseline`: it keeps each
    matrix exactly (its singular values, its rank) and destroys only how
    ``A``'s output space lines up with ``B``'s input space. A score above this
    baseline's high percentile says the alignment, not the spectra, is special.

    Parameters
    ----------
    A : Tensor ``[d_model, d_model]`` (writes)
    B : Tensor ``[d_model, d_model]`` (reads)

    Used in chapter 3.

    >>> A = torch.diag(torch.tensor([1., 0., 0., 0.]))
    >>> b = rotated_baseline(A, A, n_samples=200)
    >>> b.value < float(composition_score(A, A)) == 1.0
    True
    """
    A, B = _as_matrix(A, "A"), _as_matrix(B, "B")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0] or A.shape[1] != A.shape[0]:
        raise ValueError(f"A and B must be square [d_model, d_model] matrices of one size, got {tuple(A.shape)}, "
                         f"{tuple(B.shape)}")
    _check_baseline_args(n_samples, percentile)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    d = A.shape[1]
    A, B = A.to(torch.float64), B.to(torch.float64)
    out = []
    for start in range(0, n_samples, 250):
        n = min(250, n_samples - start)
        q, r = torch.linalg.qr(torch.randn(n, d, d, generator=gen, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # Haar-distributed
        out.append(composition_score(A @ q, B))
    return _summarise(torch.cat(out), percentile, f"randomly rotated residual basis, {n_samples} rotations, seed {seed}")


# ---------------------------------------------------------------------------
# Attention-pattern scores
# ---------------------------------------------------------------------------
def _score_weights(kind: str, n_pos: int, seq_len, start) -> torch.Tensor:
    """Weights ``[pos, pos]`` or ``[batch, pos, pos]`` summing to 1 per sequence over the scored entries."""
    per_row = (isinstance(seq_len, torch.Tensor) and seq_len.ndim == 1) or (
        isinstance(start, torch.Tensor) and start.ndim == 1)
    n = torch.as_tensor(seq_len).reshape(-1).long()
    s = torch.as_tensor(start).reshape(-1).long()
    if per_row and n.numel() != s.numel():
        n, s = torch.broadcast_tensors(n, s)
    if (n < 1).any():
        raise ValueError(f"seq_len must be >= 1, got {n.min().item()}")
    if (s < 0).any():
        raise ValueError(f"start must be >= 0, got {s.min().item()}")
    if (s + 2 * n > n_pos).any():
        raise ValueError(
            f"a repeat of length seq_len starting at start needs start + 2*seq_len <= {n_pos} positions "
            f"(the pattern's size); got start + 2*seq_len = {int((s + 2 * n).max())}"
        )
    q = torch.arange(n_pos)[None, :, None]
    k = torch.arange(n_pos)[None, None, :]
    n3, s3 = n[:, None, None], s[:, None, None]
    second = (q >= s3 + n3) & (q < s3 + 2 * n3)
    if kind == "induction":
        hit = second & (k == q - n3 + 1)
    elif kind == "duplicate":
        hit = second & (k == q - n3)
    else:
        raise AssertionError(kind)
    w = hit.to(torch.float64) / n3.to(torch.float64)
    return w if per_row else w[0]


def _check_pattern(pattern) -> torch.Tensor:
    if isinstance(pattern, np.ndarray):
        pattern = torch.from_numpy(pattern)
    if not isinstance(pattern, torch.Tensor):
        raise TypeError(f"pattern must be a tensor [..., query_pos, key_pos], got {type(pattern).__name__}")
    if pattern.ndim < 2 or pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"pattern must be [..., pos, pos] (square in its last two dims), got {tuple(pattern.shape)}")
    return pattern


def _apply_weights(pattern: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    p = pattern.to(torch.float64)
    if w.ndim == 3:  # per sequence: align with the pattern's first (batch) axis
        if p.ndim < 3 or p.shape[0] != w.shape[0]:
            raise ValueError(
                f"per-sequence seq_len/start ({w.shape[0]} sequences) need a pattern [batch, ..., pos, pos] "
                f"with batch={w.shape[0]}, got {tuple(p.shape)}"
            )
        w = w.reshape(w.shape[0], *([1] * (p.ndim - 3)), *w.shape[1:])
    return (p * w).sum((-1, -2))


def induction_score(pattern, seq_len, start=1) -> torch.Tensor:
    """Mean attention from each token of the second copy to the token after its first copy.

    On a sequence whose positions ``start .. start+n-1`` hold ``r`` and
    ``start+n .. start+2n-1`` hold ``r`` again (``[BOS] r r`` has
    ``start=1``), this is the mean of ``A[q, q-n+1]`` over the ``n`` queries
    ``q`` of the second copy: the diagonal at offset ``1-n``, restricted to the
    second copy. An ideal induction head scores 1; a threshold such as 0.4 flags
    one.

    Parameters
    ----------
    pattern : Tensor ``[..., pos, pos]``
        Attention patterns (rows are queries), e.g. ``[batch, n_heads, pos, pos]``.
    seq_len : int or Tensor ``[batch]``
        ``n``, the length of ``r``; per sequence if a tensor.
    start : int or Tensor ``[batch]``
        Position of the first token of the first copy (default 1, after BOS).

    Returns
    -------
    Tensor ``pattern.shape[:-2]`` (float64): the score of each pattern; average
    over the batch axis yourself (or use :func:`head_scores`).

    Chapter 3 uses it through :func:`head_scores`.

    >>> n = 3; pos = 2 * n + 1
    >>> ideal = torch.zeros(pos, pos)
    >>> for q in range(pos): ideal[q, max(q - n + 1, 0) if q > n else 0] = 1
    >>> float(induction_score(ideal, n)), round(float(previous_token_score(ideal)), 3)
    (1.0, 0.167)
    """
    pattern = _check_pattern(pattern)
    return _apply_weights(pattern, _score_weights("induction", pattern.shape[-1], seq_len, start))


def duplicate_token_score(pattern, seq_len, start=1) -> torch.Tensor:
    """Mean attention from each token of the second copy to its own first occurrence.

    The mean of ``A[q, q-n]`` over the second copy (the diagonal at offset
    ``-n``). Arguments and shapes as :func:`induction_score`.

    Chapter 3 uses it through :func:`head_scores`.

    >>> n = 2; ideal = torch.zeros(5, 5); ideal[3, 1] = ideal[4, 2] = 1
    >>> float(duplicate_token_score(ideal, n))
    1.0
    """
    pattern = _check_pattern(pattern)
    return _apply_weights(pattern, _score_weights("duplicate", pattern.shape[-1], seq_len, start))


def previous_token_score(pattern) -> torch.Tensor:
    """Mean attention from each position to the one before it.

    The mean of the diagonal at offset -1, ``A[q, q-1]`` for ``q >= 1``. It
    does not depend on the content of the sequence.

    Parameters
    ----------
    pattern : Tensor ``[..., pos, pos]``

    Returns
    -------
    Tensor ``pattern.shape[:-2]`` (float64)

    Used in chapter 3.

    >>> float(previous_token_score(torch.eye(4).roll(-1, dims=1).tril()))   # rows 1..3 attend to q-1
    1.0
    """
    pattern = _check_pattern(pattern)
    if pattern.shape[-1] < 2:
        raise ValueError("pattern needs at least 2 positions for a previous-token score")
    return pattern.to(torch.float64).diagonal(-1, -2, -1).mean(-1)


@torch.no_grad()
def attention_patterns(model: HookedTransformer, tokens, fwd_hooks: Sequence[tuple] = ()) -> torch.Tensor:
    """Every attention pattern of ``model`` on ``tokens``.

    Returns
    -------
    Tensor ``[batch, n_layers, n_heads, pos, pos]``.

    Used in chapter 3.
    """
    _check_model(model)
    tokens = tokens.tokens if isinstance(tokens, RepeatData) else tokens
    return _patterns(model, tokens, fwd_hooks=fwd_hooks)


@torch.no_grad()
def head_scores(model: HookedTransformer, data: RepeatData | None = None, *, seq_len: int = 20,
                n_seq: int = 200, seed: int = 0) -> dict[str, torch.Tensor]:
    """Induction, previous-token and duplicate-token scores of every head.

    Parameters
    ----------
    model : HookedTransformer
    data : RepeatData, optional
        Sequences with one repeat each (:func:`repeated_tokens` or
        :func:`repeat_data`); their per-sequence ``start`` and ``seq_len`` are
        used. Default: ``n_seq`` sequences ``[BOS] r r`` with ``r`` of length
        ``seq_len`` (distinct random tokens), seeded.

    Returns
    -------
    dict with ``"induction"``, ``"previous_token"``, ``"duplicate_token"``:
    each a Tensor ``[n_layers, n_heads]`` averaged over the sequences.

    Used in chapter 3.
    """
    _check_model(model)
    if data is None:
        data = repeated_tokens(n_seq, seq_len, model.cfg.d_vocab, seed=seed)
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData (from repeated_tokens or repeat_data), got {type(data).__name__}")
    patterns = attention_patterns(model, data.tokens)  # [b, L, H, q, k]
    return {
        "induction": induction_score(patterns, data.seq_len, data.start).mean(0),
        "previous_token": previous_token_score(patterns).mean(0),
        "duplicate_token": duplicate_token_score(patterns, data.seq_len, data.start).mean(0),
    }


def _mark_repeat(ax, n: int, start: int = 1) -> None:
    """Thin lines at the start of the second copy, and the induction stripe."""
    b = start + n - 0.5
    ax.axhline(b, color="#d62728", lw=0.6, alpha=0.6)
    ax.axvline(b, color="#d62728", lw=0.6, alpha=0.6)


def head_pattern_grid(model: HookedTransformer, data: RepeatData, seq: int = 0, ncols: int | None = None,
                      size: float = 2.3, scores: dict | None = None):
    """Static figure: the attention pattern of every head on one sequence.

    One panel per head (rows: layers), titled with its induction and
    previous-token scores (``scores`` from :func:`head_scores`, computed on
    ``data`` if not given). Red lines mark where the second copy of ``r``
    starts. The static twin of :func:`head_pattern_explorer`.

    Returns
    -------
    matplotlib Figure

    Used in chapter 3.
    """
    import matplotlib.pyplot as plt

    from helpers.plotting import attention_heatmap

    _check_model(model)
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData, got {type(data).__name__}")
    seq = _check_int(seq, "seq", 0, len(data) - 1)
    if scores is None:
        scores = head_scores(model, data)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ncols = ncols or H
    pats = attention_patterns(model, data.tokens[seq:seq + 1])[0]  # [L, H, q, k]
    nrows = -(-(L * H) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= L * H:
            ax.axis("off")
            continue
        l, h = divmod(i, H)
        attention_heatmap(pats[l, h], ax=ax, colorbar=False,
                          title=f"L{l}H{h}  ind {float(scores['induction'][l, h]):.2f}"
                                f"  prev {float(scores['previous_token'][l, h]):.2f}")
        ax.title.set_fontsize(8.5)
        _mark_repeat(ax, int(data.seq_len[seq]), int(data.start[seq]))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("key" if i >= (nrows - 1) * ncols else "")
        ax.set_ylabel("query" if i % ncols == 0 else "")
    fig.tight_layout()
    return fig


def head_pattern_explorer(model: HookedTransformer, data: RepeatData, static_heads: Sequence[Sequence[int]] = ((0, 0),),
                          static_seq: int = 0):
    """Pick any head (``L{layer}H{head}``) and a sequence, see its pattern (an interactive figure).

    The tokens label the axes, and red lines mark the start of the second
    copy. The static twin (what the HTML book shows) draws ``static_heads``
    on sequence ``static_seq``; :func:`head_pattern_grid` shows every head.

    Returns
    -------
    helpers.widgets.InteractiveFigure

    Used in chapter 3.
    """
    from helpers.plotting import attention_heatmap
    from helpers.widgets import interactive_figure

    _check_model(model)
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData, got {type(data).__name__}")
    static_seq = _check_int(static_seq, "static_seq", 0, len(data) - 1)
    statics = [_pair(model, hd, "static_heads[]") for hd in static_heads]
    pats = attention_patterns(model, data.tokens)  # [b, L, H, q, k]
    L, H = model.cfg.n_layers, model.cfg.n_heads

    def draw(fig, head, seq):
        (l, h), ax = head, fig.subplots()
        attention_heatmap(pats[seq, l, h], data.tokens[seq].tolist(), ax=ax, title=f"L{l}H{h} on sequence {seq}")
        ax.tick_params(labelsize=6)
        _mark_repeat(ax, int(data.seq_len[seq]), int(data.start[seq]))

    names = ", ".join(f"L{l}H{h}" for l, h in statics)
    return interactive_figure(
        draw, {"head": [(f"L{l}H{h}", (l, h)) for l in range(L) for h in range(H)], "seq": range(len(data))},
        static_values=[{"head": hd, "seq": static_seq} for hd in statics], figsize=(6.2, 5.6), ncols=1,
        caption=f"{names} on sequence {static_seq}. Run this page in Jupyter to pick any head and sequence.")


# ---------------------------------------------------------------------------
# Copying scores of a full OV circuit
# ---------------------------------------------------------------------------
def _square(M, name: str = "M") -> torch.Tensor:
    M = _as_matrix(M, name)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square matrix [d_vocab, d_vocab], got shape {tuple(M.shape)}")
    return M


def copying_score(M) -> float:
    """Share of rows whose largest entry is on the diagonal.

    For a full OV circuit ``W_E W_OV W_U`` (rows: attended token, columns:
    logit), this is the share of tokens the head, when it attends to them,
    promotes above every other token: 1 for a perfect copying head.

    Parameters
    ----------
    M : Tensor ``[d_vocab, d_vocab]``

    Chapter 3 uses it through :func:`ov_copying_scores`.

    >>> copying_score(torch.eye(5)), copying_score(torch.eye(5).roll(1, dims=1))
    (1.0, 0.0)
    """
    M = _square(M)
    _check_finite(M, "M")
    return float((M.argmax(dim=1) == torch.arange(M.shape[0], device=M.device)).double().mean())


def eigenvalue_copying_score(M) -> float:
    """``sum(lambda) / sum(|lambda|)`` over the eigenvalues of ``M``.

    Elhage et al.'s summary of a full OV circuit: if the matrix maps most
    tokens to themselves with a positive weight, its eigenvalues are mostly
    positive and the score is near 1; a head that suppresses what it attends
    to scores near -1. Complex eigenvalues come in conjugate pairs, so
    ``sum(lambda)`` (the trace) is real. Zero eigenvalues change neither sum,
    so for ``W_E W_OV W_U`` one may equally use the ``d_model x d_model``
    matrix ``W_OV W_U W_E``, which has the same nonzero eigenvalues (see the
    exercise ``ch3-ex-eigen``). Returns 0.0 for the zero matrix.

    Parameters
    ----------
    M : Tensor ``[n, n]``

    Chapter 3 uses it through :func:`ov_copying_scores`.

    >>> eigenvalue_copying_score(torch.eye(4)), eigenvalue_copying_score(-torch.eye(4))
    (1.0, -1.0)
    >>> eigenvalue_copying_score(torch.tensor([[0., 1.], [-1., 0.]]))   # a rotation: eigenvalues +-i
    0.0
    """
    M = _square(M).to(torch.float64)
    lam = torch.linalg.eigvals(M)
    den = float(lam.abs().sum())
    if den == 0:
        return 0.0
    return float(lam.sum().real) / den


@torch.no_grad()
def ov_copying_scores(model: HookedTransformer, exclude: Sequence[int] = ()) -> dict[str, torch.Tensor]:
    """Both copying scores of every head's full OV circuit ``W_E W_OV W_U``.

    Parameters
    ----------
    exclude : sequence of int
        Token ids to leave out of the rows and columns (e.g. the BOS token,
        which is never a target).

    Returns
    -------
    dict with ``"argmax"`` (:func:`copying_score`) and ``"eigenvalue"``
    (:func:`eigenvalue_copying_score`), each ``[n_layers, n_heads]``.

    Used in chapter 3.
    """
    _check_model(model)
    if model.cfg.d_vocab_out != model.cfg.d_vocab:
        raise ValueError("copying scores need d_vocab_out == d_vocab (a square full OV circuit)")
    keep = torch.tensor([t for t in range(model.cfg.d_vocab) if t not in set(exclude)])
    L, H = model.cfg.n_layers, model.cfg.n_heads
    out = {"argmax": torch.zeros(L, H, dtype=torch.float64), "eigenvalue": torch.zeros(L, H, dtype=torch.float64)}
    for l, h in itertools.product(range(L), range(H)):
        M = full_ov_circuit(model, l, h)[keep][:, keep]
        out["argmax"][l, h] = copying_score(M)
        out["eigenvalue"][l, h] = eigenvalue_copying_score(M)
    return out


# ---------------------------------------------------------------------------
# Data: sequences with a repeat
# ---------------------------------------------------------------------------
@dataclass
class RepeatData:
    """Token sequences that each contain one repeated random segment ``r r``.

    Attributes
    ----------
    tokens : Tensor ``[batch, pos]`` (int64)
    first : Tensor ``[batch, pos]`` (bool)
        Target positions in the first copy of ``r``, except its first token
        (which nothing can predict): position ``t`` is set when token ``t`` is
        to be predicted from position ``t-1``.
    second : Tensor ``[batch, pos]`` (bool)
        Target positions in the second copy, except its first token (which
        follows the end of the first copy and cannot be predicted either).
    start : Tensor ``[batch]``
        Position of the first token of the first copy.
    seq_len : Tensor ``[batch]``
        Length ``n`` of ``r``.
    bos : int
        The beginning-of-sequence token at position 0.
    """

    tokens: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    start: torch.Tensor
    seq_len: torch.Tensor
    bos: int = 0

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, idx) -> RepeatData:
        """A subset of the sequences (``data[:100]``)."""
        return RepeatData(self.tokens[idx], self.first[idx], self.second[idx], self.start[idx],
                          self.seq_len[idx], self.bos)


def _check_vocab(d_vocab, bos) -> tuple[int, int]:
    d_vocab = _check_int(d_vocab, "d_vocab", 2)
    bos = _check_int(bos, "bos", 0, d_vocab - 1)
    return d_vocab, bos


def repeated_tokens(n_seq: int, seq_len: int, d_vocab: int, *, seed: int = 0, bos: int = 0,
                    distinct: bool = True) -> RepeatData:
    """``n_seq`` sequences ``[BOS] r r`` with ``r`` random of length ``seq_len``.

    Parameters
    ----------
    n_seq, seq_len, d_vocab : int
    seed : int
    bos : int
        The token at position 0, never used inside ``r``.
    distinct : bool
        Draw the tokens of ``r`` without replacement (needs ``seq_len <
        d_vocab``), so that every token of the second copy has exactly one
        earlier occurrence and its successor is well defined. With repeats
        inside ``r``, "what came after this token last time" can have several
        answers, and no one-token induction rule gets them all.

    Returns
    -------
    RepeatData with tokens ``[n_seq, 2*seq_len + 1]``, ``start = 1``.

    Used in chapter 3.

    >>> d = repeated_tokens(2, 4, d_vocab=10, seed=0)
    >>> d.tokens.shape, bool((d.tokens[:, 1:5] == d.tokens[:, 5:]).all()), bool((d.tokens[:, 0] == 0).all())
    (torch.Size([2, 9]), True, True)
    >>> d.second[0].nonzero().flatten().tolist()      # the second copy minus its first token
    [6, 7, 8]
    """
    n_seq = _check_int(n_seq, "n_seq", 1)
    seq_len = _check_int(seq_len, "seq_len", 1)
    return repeat_data(n_seq, 2 * seq_len + 1, d_vocab, seq_len=seq_len, random_offset=False,
                       distinct=distinct, seed=seed, bos=bos)


def repeat_data(n_seq: int, n_ctx: int, d_vocab: int, *, seq_len=(6, 20), random_offset: bool = True,
                distinct: bool = False, seed: int = 0, bos: int = 0) -> RepeatData:
    """Sequences ``[BOS] prefix r r suffix`` of length ``n_ctx``: the training data.

    Each sequence draws the length ``n`` of ``r`` uniformly from
    ``seq_len = (lo, hi)`` (inclusive; or a fixed int), then, when
    ``random_offset``, a prefix length uniformly from ``0 .. n_ctx - 1 - 2n``,
    so that the repeat can start anywhere; the suffix fills the rest. With
    ``random_offset=False`` the repeat always starts right after BOS, and a
    one-layer model can solve the task with a purely *positional* head that
    looks ``n - 1`` positions back: the trap of chapter 3.

    Parameters
    ----------
    n_seq, n_ctx, d_vocab : int
    seq_len : int or (int, int)
    random_offset : bool
    distinct : bool
        ``False`` (the default, used for training): every token is uniform
        over the vocabulary without BOS, independently, as in random text.
        ``True``: ``r`` has distinct tokens and the prefix and suffix avoid
        them, so each token of the second copy has exactly one earlier
        occurrence (for clean evaluation; needs ``hi < d_vocab - 1``).
    seed, bos : int

    Returns
    -------
    RepeatData with tokens ``[n_seq, n_ctx]``.

    Used in chapter 3.

    >>> d = repeat_data(500, 30, 20, seq_len=(4, 8), seed=0)
    >>> d.tokens.shape, int(d.start.min()), int(d.start.max()) > 10
    (torch.Size([500, 30]), 1, True)
    >>> i = 7; s, n = int(d.start[i]), int(d.seq_len[i])
    >>> bool((d.tokens[i, s:s + n] == d.tokens[i, s + n:s + 2 * n]).all())
    True
    """
    n_seq = _check_int(n_seq, "n_seq", 1)
    n_ctx = _check_int(n_ctx, "n_ctx", 3)
    d_vocab, bos = _check_vocab(d_vocab, bos)
    if isinstance(seq_len, (tuple, list)):
        if len(seq_len) != 2:
            raise ValueError(f"seq_len must be an int or a (lo, hi) pair, got {seq_len!r}")
        lo, hi = _check_int(seq_len[0], "seq_len[0]", 1), _check_int(seq_len[1], "seq_len[1]", 1)
        if lo > hi:
            raise ValueError(f"seq_len must have lo <= hi, got {seq_len!r}")
    else:
        lo = hi = _check_int(seq_len, "seq_len", 1)
    if 1 + 2 * hi > n_ctx:
        raise ValueError(f"n_ctx={n_ctx} is too short for [BOS] r r with len(r) up to {hi}: need n_ctx >= {1 + 2 * hi}")
    if distinct and hi >= d_vocab - 1:
        raise ValueError(
            f"distinct=True needs seq_len < d_vocab - 1 = {d_vocab - 1} (r has distinct non-BOS tokens and the "
            f"filler needs at least one other), got seq_len up to {hi}"
        )
    if not isinstance(random_offset, bool) or not isinstance(distinct, bool):
        raise TypeError("random_offset and distinct must be bools")
    gen = torch.Generator().manual_seed(_check_seed(seed))
    B, T, V1 = n_seq, n_ctx, d_vocab - 1
    others = torch.tensor([t for t in range(d_vocab) if t != bos])
    n = torch.randint(lo, hi + 1, (B,), generator=gen)
    if random_offset:
        prefix = (torch.rand(B, generator=gen, dtype=torch.float64) * (T - 2 * n).double()).floor().long()
    else:
        prefix = torch.zeros(B, dtype=torch.long)
    start = 1 + prefix
    rel = torch.arange(T)[None, :] - start[:, None]  # position relative to the start of r
    n2 = n[:, None]
    in_first = (rel >= 0) & (rel < n2)
    in_second = (rel >= n2) & (rel < 2 * n2)
    r_index = torch.where(in_first, rel, rel - n2).clamp(0, T - 1)
    if distinct:
        perm = torch.rand(B, V1, generator=gen).argsort(dim=1)  # r = perm[:n], filler from perm[n:]
        r_tok = perm.gather(1, r_index.clamp(max=V1 - 1))
        pool = (V1 - n).clamp(min=1)[:, None]
        f_index = n2 + (torch.rand(B, T, generator=gen, dtype=torch.float64) * pool.double()).floor().long()
        fill_tok = perm.gather(1, f_index.clamp(max=V1 - 1))
    else:
        draws = torch.randint(0, V1, (B, T), generator=gen)  # r = draws[start : start+n]
        r_tok = draws.gather(1, (start[:, None] + r_index).clamp(max=T - 1))
        fill_tok = draws
    tokens = others[torch.where(in_first | in_second, r_tok, fill_tok)]
    tokens[:, 0] = bos
    return RepeatData(
        tokens=tokens,
        first=in_first & (rel >= 1),
        second=in_second & (rel >= n2 + 1),
        start=start,
        seq_len=n,
        bos=bos,
    )


def varied_eval_data(n_seq: int, seq_len: int, d_vocab: int, *, seed: int = 0, bos: int = 0) -> RepeatData:
    """Like ``[BOS] r r`` but with ``r`` shorter and starting after a random prefix.

    Sequences of the same total length ``2*seq_len + 1`` as
    :func:`repeated_tokens`, with ``len(r)`` uniform in ``seq_len//2 ..
    seq_len`` and a random prefix (distinct tokens, as in
    :func:`repeat_data` with ``distinct=True``). Using only the positions
    ``[BOS] r r`` uses, it separates a real induction head from a head that
    has learned a fixed offset ``seq_len - 1``.

    Returns
    -------
    RepeatData with tokens ``[n_seq, 2*seq_len + 1]``.

    Used in chapter 3.

    >>> d = varied_eval_data(100, 10, 30)
    >>> d.tokens.shape, int(d.seq_len.min()) >= 5, int(d.start.max()) > 1
    (torch.Size([100, 21]), True, True)
    """
    seq_len = _check_int(seq_len, "seq_len", 2)
    return repeat_data(n_seq, 2 * seq_len + 1, d_vocab, seq_len=(seq_len // 2, seq_len), random_offset=True,
                       distinct=True, seed=seed, bos=bos)


# ---------------------------------------------------------------------------
# Losses, accuracy, ablation
# ---------------------------------------------------------------------------
def per_position_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy at every position.

    Parameters
    ----------
    logits : Tensor ``[batch, pos, d_vocab_out]``
    tokens : Tensor ``[batch, pos]``

    Returns
    -------
    Tensor ``[batch, pos - 1]`` (float64): entry ``t - 1`` is the loss of
    predicting ``tokens[:, t]`` from the logits at position ``t - 1``. Index
    it with a target mask ``mask[:, 1:]`` (e.g. ``RepeatData.second``).

    Used in chapter 3.

    >>> per_position_loss(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]])).shape
    torch.Size([1, 2])
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise ValueError(f"logits must be a tensor [batch, pos, d_vocab_out], got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if not isinstance(tokens, torch.Tensor) or tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens must be a tensor of shape {tuple(logits.shape[:2])} (logits' batch and pos), got "
                         f"{tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__}")
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise TypeError(f"tokens must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= logits.shape[-1]):
        raise ValueError(f"tokens must lie in [0, d_vocab_out = {logits.shape[-1]}), got "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    if logits.shape[1] < 2:
        raise ValueError("need at least 2 positions for a next-token loss")
    logp = F.log_softmax(logits[:, :-1].to(torch.float64), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None].long())[..., 0]


def lm_loss(model: HookedTransformer, batch) -> torch.Tensor:
    """Mean next-token cross-entropy over every position (the training loss).

    ``batch`` is ``(tokens,)`` with tokens ``[batch, pos]``, as :func:`train` passes it.

    The loss of chapter 3's recipes; not used by a page.
    """
    tokens = batch[0]
    logits = model(tokens)
    return cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


@torch.no_grad()
def repeat_metrics(model: HookedTransformer, data: RepeatData, fwd_hooks: Sequence[tuple] = ()) -> dict[str, float]:
    """Top-1 accuracy and mean loss on the first and second copies of ``r``.

    Both exclude the first token of each copy (see :class:`RepeatData`).
    ``fwd_hooks`` (e.g. from :func:`ablation_hooks`) are applied during the run.

    Returns
    -------
    dict with ``first_acc``, ``second_acc``, ``first_loss``, ``second_loss``.

    Used in chapter 3.
    """
    _check_model(model)
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData, got {type(data).__name__}")
    logits = model.run_with_hooks(data.tokens, fwd_hooks=list(fwd_hooks))
    loss = per_position_loss(logits, data.tokens)
    correct = logits[:, :-1].argmax(-1) == data.tokens[:, 1:]
    out = {}
    for name, mask in (("first", data.first[:, 1:]), ("second", data.second[:, 1:])):
        out[f"{name}_acc"] = float(correct[mask].double().mean())
        out[f"{name}_loss"] = float(loss[mask].mean())
    return out


def _heads_list(model, heads) -> list[tuple[int, int]]:
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(x, (int, np.integer)) for x in heads):
        heads = [heads]
    if not isinstance(heads, (list, tuple)) or not heads:
        raise TypeError(f"heads must be a (layer, head) pair or a non-empty list of them, got {heads!r}")
    return [_pair(model, h, f"heads[{i}]") for i, h in enumerate(heads)]


@torch.no_grad()
def ablation_hooks(model: HookedTransformer, heads, kind: str = "zero", reference=None) -> list[tuple]:
    """Hooks on ``blocks.{l}.attn.hook_z`` that knock out the chosen heads.

    Parameters
    ----------
    heads : (layer, head) or list of them
    kind : {"zero", "mean"}
        ``"zero"`` sets the head's output ``z`` to 0 (so it adds nothing to
        the residual stream); ``"mean"`` replaces it by its mean over the batch
        and positions of ``reference``, which keeps the head's average
        contribution and removes only what depends on the input.
    reference : Tensor ``[batch, pos]`` or RepeatData
        Needed for ``"mean"``.

    Returns
    -------
    list of ``(hook_name, fn)`` for ``model.run_with_hooks`` or ``model.hooks``.

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=8, n_ctx=9)
    >>> d = repeated_tokens(50, 4, 8)
    >>> repeat_metrics(m, d, ablation_hooks(m, (1, 0)))["second_acc"] < 0.5
    True
    """
    _check_model(model)
    heads = _heads_list(model, heads)
    if kind not in ("zero", "mean"):
        raise ValueError(f"kind must be 'zero' or 'mean', got {kind!r}")
    by_layer: dict[int, list[int]] = {}
    for l, h in heads:
        by_layer.setdefault(l, []).append(h)
    means: dict[int, torch.Tensor] = {}
    if kind == "mean":
        if reference is None:
            raise ValueError("kind='mean' needs reference tokens [batch, pos] to average the heads' outputs over")
        ref = reference.tokens if isinstance(reference, RepeatData) else reference
        names = [act_name("z", l) for l in by_layer]
        _, cache = model.run_with_cache(ref, names_filter=names)
        means = {l: cache[act_name("z", l)].mean((0, 1)) for l in by_layer}  # [n_heads, d_head]

    def make(layer: int, hs: list[int]):
        idx = torch.tensor(hs)

        def fn(z, hook):
            z = z.clone()
            z[:, :, idx] = 0.0 if kind == "zero" else means[layer][idx].to(z.dtype)
            return z

        return fn

    return [(act_name("z", l), make(l, hs)) for l, hs in sorted(by_layer.items())]


@torch.no_grad()
def run_ablated(model: HookedTransformer, tokens, heads, kind: str = "zero", reference=None, **kwargs) -> torch.Tensor:
    """Logits ``[batch, pos, d_vocab_out]`` with the chosen heads ablated (see :func:`ablation_hooks`).

    Not used by a page; a library helper.
    """
    tokens = tokens.tokens if isinstance(tokens, RepeatData) else tokens
    if kind == "mean" and reference is None:
        reference = tokens
    return model.run_with_hooks(tokens, fwd_hooks=ablation_hooks(model, heads, kind, reference), **kwargs)


# ---------------------------------------------------------------------------
# The hand-built induction head
# ---------------------------------------------------------------------------
def induction_head_layout(d_vocab: int, n_ctx: int) -> dict[str, slice]:
    """The residual-stream layout of :func:`induction_head_model`.

    Four orthogonal blocks of coordinates (before any change of basis)::

        "token"     d_vocab dims   one-hot current token        (written by W_E)
        "position"  n_ctx dims     one-hot position             (written by W_pos)
        "previous"  d_vocab dims   one-hot previous token       (written by the layer-0 head)
        "output"    d_vocab dims   the token to predict         (written by the layer-1 head, read by W_U)

    Returns
    -------
    dict name -> slice, plus ``"d_model"`` -> ``slice(0, d_model)``.

    Used in chapter 3.

    >>> induction_head_layout(4, 6)["previous"]
    slice(10, 14, None)
    """
    V, N = _check_int(d_vocab, "d_vocab", 2), _check_int(n_ctx, "n_ctx", 2)
    return {
        "token": slice(0, V),
        "position": slice(V, V + N),
        "previous": slice(V + N, 2 * V + N),
        "output": slice(2 * V + N, 3 * V + N),
        "d_model": slice(0, 3 * V + N),
    }


def induction_head_weights(d_vocab: int, n_ctx: int, *, bos: int = 0, attn_strength: float = 20.0,
                           copy_strength: float = 20.0, basis: str = "onehot", seed: int = 0
                           ) -> tuple[TransformerConfig, dict[str, torch.Tensor]]:
    """Config and closed-form weights of the hand-built induction head.

    Two attention-only layers with one head each, ``d_model = 3*d_vocab +
    n_ctx`` and ``d_head = max(d_vocab, n_ctx)`` (layout in
    :func:`induction_head_layout`). With ``s = sqrt(d_head)`` undoing the
    score scaling, ``beta = attn_strength`` and ``gamma = copy_strength``:

    * ``W_E[t] = e_token(t)``, ``W_pos[p] = e_position(p)``.
    * Layer 0, the previous-token head. Query: position ``p`` -> head
      coordinate ``p`` (times ``beta s``); key: position ``j`` -> coordinate
      ``j + 1``. So the score of query ``p`` on key ``j`` is ``beta`` when
      ``j = p - 1`` and 0 otherwise: ``W_QK^0`` restricted to positions is a
      shifted identity. Value: token ``t`` -> coordinate ``t``; output:
      coordinate ``t`` -> ``e_previous(t)``. So ``W_OV^0`` maps the token block
      to the previous-token block, and after layer 0 position ``p`` holds its
      own token, its position and the token at ``p - 1``.
    * Layer 1, the induction head. Query: current token ``a`` -> coordinate
      ``a`` (times ``beta s``); key: *previous* token ``b`` -> coordinate ``b``.
      The score is ``beta`` exactly on keys whose previous token equals the
      query's token: K-composition with layer 0 (``W_QK^1`` reads on its key
      side what ``W_OV^0`` wrote). A "no match" sink: every non-BOS query also
      has ``beta s / 2`` on coordinate ``bos``, which the BOS *token* fills on
      the key side, so a query with no earlier occurrence rests on BOS (score
      ``beta/2``). Value: token ``a != bos`` -> coordinate ``a``; output:
      coordinate ``a`` -> ``gamma e_output(a)`` (BOS is not copied).
    * ``W_U`` reads the output block: ``W_U[e_output(t), t] = 1``.

    On the second copy of ``[BOS] r r`` the induction head attends to the
    token after the first occurrence and its logit is ``gamma`` against 0;
    on tokens seen for the first time it rests on BOS and outputs nothing
    (uniform prediction, loss ``log d_vocab``).

    Parameters
    ----------
    d_vocab, n_ctx : int
    bos : int
    attn_strength, copy_strength : float
        ``beta`` and ``gamma`` above; larger is sharper.
    basis : {"onehot", "random"}
        ``"random"`` rotates the residual stream by a random orthogonal
        matrix (seeded by ``seed``): every weight changes, the function the
        model computes does not, nor do its circuits' scores.
    seed : int

    Returns
    -------
    (TransformerConfig, dict of TransformerLens-named float64 tensors)

    Chapter 3 uses it through :func:`induction_head_model`.
    """
    lay = induction_head_layout(d_vocab, n_ctx)
    V, N = d_vocab, n_ctx
    bos = _check_int(bos, "bos", 0, V - 1)
    for name, v in (("attn_strength", attn_strength), ("copy_strength", copy_strength)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if basis not in ("onehot", "random"):
        raise ValueError(f"basis must be 'onehot' or 'random', got {basis!r}")
    D, E = 3 * V + N, max(V, N)
    s = math.sqrt(E)
    tok, pos, prev, outb = (lay[k].start for k in ("token", "position", "previous", "output"))
    f64 = torch.float64
    W_E = torch.zeros(V, D, dtype=f64)
    W_E[torch.arange(V), tok + torch.arange(V)] = 1.0
    W_pos = torch.zeros(N, D, dtype=f64)
    W_pos[torch.arange(N), pos + torch.arange(N)] = 1.0
    # layer 0: previous-token head
    Q0, K0, V0 = (torch.zeros(1, D, E, dtype=f64) for _ in range(3))
    O0 = torch.zeros(1, E, D, dtype=f64)
    Q0[0, pos + torch.arange(N), torch.arange(N)] = attn_strength * s
    K0[0, pos + torch.arange(N - 1), torch.arange(1, N)] = 1.0
    V0[0, tok + torch.arange(V), torch.arange(V)] = 1.0
    O0[0, torch.arange(V), prev + torch.arange(V)] = 1.0
    # layer 1: induction head
    Q1, K1, V1 = (torch.zeros(1, D, E, dtype=f64) for _ in range(3))
    O1 = torch.zeros(1, E, D, dtype=f64)
    non_bos = torch.tensor([t for t in range(V) if t != bos])
    Q1[0, tok + non_bos, non_bos] = attn_strength * s
    Q1[0, tok + non_bos, bos] = attn_strength * s / 2  # the no-match sink
    K1[0, prev + non_bos, non_bos] = 1.0
    K1[0, tok + bos, bos] = 1.0
    V1[0, tok + non_bos, non_bos] = 1.0
    O1[0, non_bos, outb + non_bos] = copy_strength
    W_U = torch.zeros(D, V, dtype=f64)
    W_U[outb + torch.arange(V), torch.arange(V)] = 1.0
    if basis == "random":
        gen = torch.Generator().manual_seed(_check_seed(seed))
        q, r = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=f64))
        R = q * torch.sign(torch.diagonal(r))[None, :]
        W_E, W_pos, W_U = W_E @ R, W_pos @ R, R.T @ W_U
        Q0, K0, V0, Q1, K1, V1 = (R.T @ w for w in (Q0, K0, V0, Q1, K1, V1))
        O0, O1 = O0 @ R, O1 @ R
    cfg = TransformerConfig(n_layers=2, d_model=D, n_heads=1, d_head=E, d_mlp=0, d_vocab=V, n_ctx=N,
                            attn_only=True, normalization=None, seed=seed)
    weights = {"embed.W_E": W_E, "pos_embed.W_pos": W_pos, "unembed.W_U": W_U}
    for l, (q_, k_, v_, o_) in enumerate([(Q0, K0, V0, O0), (Q1, K1, V1, O1)]):
        weights.update({f"blocks.{l}.attn.W_Q": q_, f"blocks.{l}.attn.W_K": k_,
                        f"blocks.{l}.attn.W_V": v_, f"blocks.{l}.attn.W_O": o_})
    return cfg, weights


def induction_head_model(d_vocab: int, n_ctx: int, *, bos: int = 0, attn_strength: float = 20.0,
                         copy_strength: float = 20.0, basis: str = "onehot", seed: int = 0,
                         dtype: str = "float32") -> HookedTransformer:
    """A two-layer attention-only transformer that does induction by construction.

    No training: the weights are written in closed form by
    :func:`induction_head_weights` (read its docstring for every term). Token
    and position live in separate subspaces; the layer-0 head attends from
    each position to the previous one and writes the previous token into a
    free subspace; the layer-1 head's key reads that subspace while its query
    reads the current token (K-composition), and its OV circuit copies the
    attended token to the output subspace that ``W_U`` reads.

    Parameters
    ----------
    d_vocab : int
        Vocabulary size, BOS included.
    n_ctx : int
        Longest sequence.
    bos, attn_strength, copy_strength, basis, seed :
        See :func:`induction_head_weights`.
    dtype : {"float32", "float64"}

    Returns
    -------
    HookedTransformer with ``d_model = 3*d_vocab + n_ctx``, one head per layer.

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=10, n_ctx=11)
    >>> tokens = torch.tensor([[0, 3, 7, 5, 2, 3, 7, 5, 2]])
    >>> m(tokens)[0, 5:8].argmax(-1).tolist()        # after "3" comes "7", then "5", then "2"
    [7, 5, 2]
    """
    cfg, weights = induction_head_weights(d_vocab, n_ctx, bos=bos, attn_strength=attn_strength,
                                          copy_strength=copy_strength, basis=basis, seed=seed)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    cfg.dtype = dtype
    model = HookedTransformer.from_weights(cfg, weights)
    model.eval()
    return model


# ---------------------------------------------------------------------------
# Trained models: recipes and their training function
# ---------------------------------------------------------------------------
def induction_config(n_layers: int = 2, *, d_vocab: int = 48, n_ctx: int = 48, d_model: int = 64,
                     n_heads: int = 4, seed: int = 0) -> TransformerConfig:
    """Config of the chapter's trained models: attention-only, no LayerNorm, learned positions.

    No normalization keeps every path a plain product of weight matrices, so
    the circuit scores of this module describe the model exactly.

    The configuration of chapter 3's recipes; not used by a page.
    """
    for _name, _value in (("n_layers", n_layers), ("d_vocab", d_vocab), ("n_ctx", n_ctx), ("d_model", d_model),
                         ("n_heads", n_heads)):
        _check_int(_value, _name, 1)
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    return TransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
                             d_mlp=0, d_vocab=d_vocab, n_ctx=n_ctx, attn_only=True, normalization=None, seed=seed)


def train_induction(n_layers: int = 2, *, random_offset: bool = True, seed: int = 0, steps: int = 1500,
                    lr: float = 5e-3, weight_decay: float = 0.05, batch_size: int = 64, n_train: int = 32768,
                    log_every: int = 50, d_vocab: int = 48, n_ctx: int = 48, d_model: int = 64, n_heads: int = 4,
                    seq_len=(6, 20), eval_seq_len: int = 20, n_eval: int = 256,
                    progress: bool | None = False, threads: int | None = 1) -> tuple[HookedTransformer, TrainResult]:
    """Train an attention-only model on random sequences with one repeat.

    The data are :func:`repeat_data` sequences (uniform random tokens with a
    repeated segment of random length). With ``random_offset`` the repeat
    starts at a random position; without it, ``r`` always has length
    ``eval_seq_len`` and starts after BOS (the fixed-offset trap). The loss is
    plain next-token cross-entropy on every position.

    Logged every ``log_every`` steps (``TrainResult.history``):
    ``second_acc``/``first_acc`` (top-1 accuracy on the two copies of
    ``[BOS] r r``, distinct tokens, ``len(r) = eval_seq_len``),
    ``varied_second_acc`` (the same on sequences of the same total length
    ``2*eval_seq_len + 1`` whose ``r`` is shorter, ``eval_seq_len//2 ..
    eval_seq_len``, and starts after a random prefix), and the best
    ``induction`` score in the last layer and ``previous_token`` score in
    layer 0.

    ``threads`` sets torch's thread count while training (restored after):
    for a model this small one thread is fastest, and several times faster
    than two when other processes share the CPU. ``None`` leaves it alone.

    Returns
    -------
    (HookedTransformer, TrainResult)

    Trains chapter 3's checkpoints (the recipes below); not used by a page.
    """
    n_layers = _check_int(n_layers, "n_layers", 1)
    cfg = induction_config(n_layers, d_vocab=d_vocab, n_ctx=n_ctx, d_model=d_model, n_heads=n_heads, seed=seed)
    model = HookedTransformer(cfg)
    if random_offset:
        data = repeat_data(n_train, n_ctx, d_vocab, seq_len=tuple(seq_len), seed=seed)
    else:
        data = repeat_data(n_train, 2 * eval_seq_len + 1, d_vocab, seq_len=eval_seq_len, random_offset=False,
                           seed=seed)
    eval_plain = repeated_tokens(n_eval, eval_seq_len, d_vocab, seed=seed + 10_001)
    eval_varied = varied_eval_data(n_eval, eval_seq_len, d_vocab, seed=seed + 10_002)
    probe = eval_plain[:64]

    def metrics(m):
        plain = repeat_metrics(m, eval_plain)
        varied = repeat_metrics(m, eval_varied)
        scores = head_scores(m, probe)
        return {
            "second_acc": plain["second_acc"], "first_acc": plain["first_acc"],
            "second_loss": plain["second_loss"], "varied_second_acc": varied["second_acc"],
            "induction": float(scores["induction"][-1].max()),
            "previous_token": float(scores["previous_token"][0].max()),
        }

    result = train(model, (data.tokens,), lm_loss, steps=steps, lr=lr, weight_decay=weight_decay,
                   warmup_steps=50, batch_size=batch_size, seed=seed, log_every=log_every, metrics_fn=metrics,
                   progress=progress, description=f"{n_layers}-layer induction model", threads=threads)
    return model, result


@recipe("induction_2l", "2-layer attention-only model that learns induction heads (chapter 3)")
def train_induction_2l(seed: int = 0, steps: int = 1500, progress: bool | None = False):
    """The chapter's main trained model: two layers, four heads, repeats at random offsets."""
    return train_induction(2, seed=seed, steps=steps, progress=progress)


@recipe("induction_1l", "1-layer attention-only model on the same data (cannot do induction)")
def train_induction_1l(seed: int = 0, steps: int = 1500, progress: bool | None = False):
    """One layer, same data and budget as ``induction_2l``: shows why induction needs two layers."""
    return train_induction(1, seed=seed, steps=steps, progress=progress)


@recipe("induction_1l_fixed", "1-layer model trained with the repeat at a fixed offset (the trap)")
def train_induction_1l_fixed(seed: int = 0, steps: int = 1500, progress: bool | None = False):
    """One layer trained on ``[BOS] r r`` with ``len(r)`` fixed: solvable by a positional head."""
    return train_induction(1, random_offset=False, seed=seed, steps=steps, progress=progress)

# ---------------------------------------------------------------------------
# Activation patching, score decomposition, path patching, in-context learning
# ---------------------------------------------------------------------------
def _check_patchable(model) -> None:
    _check_model(model, qk=True)
    c = model.cfg
    if c.normalization or c.final_normalization:
        raise ValueError("patching by adding to q/k/v here needs a model without normalization (normalization=None)")
    if c.positional_embedding != "learned":
        raise ValueError(f"needs learned positional embeddings, got positional_embedding={c.positional_embedding!r}")


def _tokens_of(x, name: str) -> torch.Tensor:
    t = x.tokens if isinstance(x, RepeatData) else x
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise ValueError(f"{name} must be a RepeatData or a token tensor [batch, pos], got "
                         f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    return t


def corrupt_first_copy(data: RepeatData, d_vocab: int, *, seed: int = 0) -> RepeatData:
    """The same sequences with the first copy of ``r`` replaced by fresh tokens.

    Each sequence's first copy becomes ``r'``: distinct tokens that occur
    nowhere else in that sequence (and are not BOS). The second copy, and so
    every target of :attr:`RepeatData.second`, is unchanged, but nothing in
    the context predicts it any more: the **corrupted run** of chapter 3's
    activation patching.

    Parameters
    ----------
    data : RepeatData
    d_vocab : int
        The vocabulary the fresh tokens are drawn from.
    seed : int

    Returns
    -------
    RepeatData with the same masks, ``start`` and ``seq_len``.

    Used in chapter 3.

    >>> d = repeated_tokens(3, 5, d_vocab=20, seed=0)
    >>> c = corrupt_first_copy(d, 20, seed=1)
    >>> bool((c.tokens[:, 6:] == d.tokens[:, 6:]).all()), bool((c.tokens[:, 1:6] != d.tokens[:, 1:6]).all())
    (True, True)
    """
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData, got {type(data).__name__}")
    d_vocab = _check_int(d_vocab, "d_vocab", 2)
    gen = torch.Generator().manual_seed(_check_int(seed, "seed"))
    tokens = data.tokens.cpu().clone()
    if int(tokens.max()) >= d_vocab:
        raise ValueError(f"data has token {int(tokens.max())}, outside d_vocab={d_vocab}")
    for i in range(len(data)):
        s, n = int(data.start[i]), int(data.seq_len[i])
        used = set(tokens[i].tolist()) | {data.bos}
        free = torch.tensor([t for t in range(d_vocab) if t not in used], dtype=tokens.dtype)
        if len(free) < n:
            raise ValueError(f"sequence {i} has only {len(free)} unused tokens for a fresh r of length {n}; "
                             "use a larger d_vocab or shorter repeats")
        tokens[i, s:s + n] = free[torch.randperm(len(free), generator=gen)[:n]]
    return RepeatData(tokens.to(data.tokens.device), data.first, data.second, data.start, data.seq_len, data.bos)


def second_copy_loss(logits: torch.Tensor, data: RepeatData) -> float:
    """Mean next-token loss on the second copy of ``r`` (the patching metric of chapter 3).

    Parameters
    ----------
    logits : Tensor ``[batch, pos, d_vocab_out]``
    data : RepeatData
        The **clean** sequences: their ``tokens`` are the targets, their
        ``second`` mask the positions.

    Used in chapter 3.
    """
    if not isinstance(data, RepeatData):
        raise TypeError(f"data must be a RepeatData, got {type(data).__name__}")
    loss = per_position_loss(logits.detach(), data.tokens.to(logits.device))
    return float(loss[data.second[:, 1:].to(logits.device)].mean())


def normalised_metric(value, clean, corrupted) -> float:
    """``(value - corrupted) / (clean - corrupted)``: 0 at the corrupted run, 1 at the clean run.

    Works for a metric of either sign (a loss, which the clean run makes
    small, or a logit difference, which it makes large).

    Used in chapter 3.

    >>> normalised_metric(2.0, clean=0.5, corrupted=3.5)
    0.5
    """
    value, clean, corrupted = float(value), float(clean), float(corrupted)
    if clean == corrupted:
        raise ValueError(f"clean and corrupted must differ to normalise, both are {clean}")
    return (value - corrupted) / (clean - corrupted)


@torch.no_grad()
def activation_patch(model: HookedTransformer, clean, corrupted, hook_name: str, *, head: int | None = None,
                     positions=None) -> torch.Tensor:
    """Logits of the corrupted run with one activation taken from the clean run.

    Runs ``clean`` once and caches ``hook_name``; then runs ``corrupted`` with a
    hook that overwrites that activation by the clean one: all of it, or only
    head ``head`` (dimension 2 of ``hook_q/k/v/z``), only at ``positions``
    (dimension 1), or both. Everything downstream is recomputed.

    Parameters
    ----------
    clean, corrupted : RepeatData or Tensor ``[batch, pos]`` of the same shape
    hook_name : str
        e.g. ``act_name("z", 0)`` or ``act_name("resid_pre", 1)``.
    head : int, optional
    positions : int, sequence of ints or bool Tensor ``[pos]``, optional

    Returns
    -------
    Tensor ``[batch, pos, d_vocab_out]``

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=12, n_ctx=11)
    >>> d = repeated_tokens(20, 5, d_vocab=12, seed=0); c = corrupt_first_copy(d, 12)
    >>> torch.equal(activation_patch(m, d, c, act_name("embed")), m(d.tokens))   # patch everything: the clean run
    True
    """
    _check_model(model)
    clean_t, corr_t = _tokens_of(clean, "clean"), _tokens_of(corrupted, "corrupted")
    if clean_t.shape != corr_t.shape:
        raise ValueError(f"clean and corrupted must have the same shape, got {tuple(clean_t.shape)} and "
                         f"{tuple(corr_t.shape)}")
    if hook_name not in model.hook_dict:
        raise ValueError(f"hook_name {hook_name!r} is not a hook point of this model")
    _, cache = model.run_with_cache(clean_t, names_filter=[hook_name])
    src = cache[hook_name]
    if head is not None:
        if src.ndim != 4:
            raise ValueError(f"head= needs a per-head activation [batch, pos, n_heads, d_head], {hook_name!r} has "
                             f"shape {tuple(src.shape)}")
        head = _check_head(model, head, "head")
    if positions is None:
        pos = slice(None)
    else:
        pos = torch.as_tensor(positions, device=src.device)
        if pos.dtype != torch.bool:
            pos = pos.long()
        if pos.ndim == 0:
            pos = pos[None]

    def fn(x, hook):
        x = x.clone()
        if head is None:
            x[:, pos] = src[:, pos]
        else:
            x[:, pos, head] = src[:, pos, head]
        return x

    return model.run_with_hooks(corr_t, fwd_hooks=[(hook_name, fn)])


@torch.no_grad()
def head_patching_table(model: HookedTransformer, clean: RepeatData, corrupted) -> torch.Tensor:
    """Normalised second-copy loss when each head's output ``z`` is patched from clean into corrupted.

    Entry ``[l, h]`` is :func:`normalised_metric` of :func:`second_copy_loss`
    after :func:`activation_patch` of ``act_name("z", l)``, head ``h``, at every
    position: 0 = as corrupted, 1 = as clean.

    Returns
    -------
    Tensor ``[n_layers, n_heads]`` (float64)

    Used in chapter 3.
    """
    _check_model(model)
    if not isinstance(clean, RepeatData):
        raise TypeError(f"clean must be a RepeatData (its second copy is the metric), got {type(clean).__name__}")
    loss_clean = second_copy_loss(model(clean.tokens), clean)
    loss_corr = second_copy_loss(model(_tokens_of(corrupted, "corrupted")), clean)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.float64)
    for l in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            logits = activation_patch(model, clean, corrupted, act_name("z", l), head=h)
            out[l, h] = normalised_metric(second_copy_loss(logits, clean), loss_clean, loss_corr)
    return out


@torch.no_grad()
def residual_components(model: HookedTransformer, tokens, layer: int) -> tuple[list[str], torch.Tensor]:
    """Split the residual stream entering ``layer`` into the pieces that wrote it.

    In an attention-only model without normalization, ``resid_pre[layer]`` is
    the token embedding, plus the positional embedding, plus the output
    ``z^h W_O^h`` of every head in earlier layers (plus their ``b_O`` when the
    model has attention biases).

    Returns
    -------
    names : list of str
        ``"embed"``, ``"pos"``, then ``"L0H0"``, ``"L0H1"``, ... (and ``"b_O"``).
    parts : Tensor ``[component, batch, pos, d_model]``
        Summing over ``component`` gives ``resid_pre[layer]``.

    Used in chapter 3.
    """
    _check_patchable(model)
    if not model.cfg.attn_only:
        raise ValueError("residual_components needs an attention-only model (attn_only=True)")
    layer = _check_layer(model, layer)
    tokens = _tokens_of(tokens, "tokens")
    names = [act_name("embed"), act_name("pos_embed")] + [act_name("z", l) for l in range(layer)]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    batch, n_pos = tokens.shape
    parts = [cache[act_name("embed")], cache[act_name("pos_embed")].expand(batch, n_pos, -1)]
    labels = ["embed", "pos"]
    for l in range(layer):
        W_O = model.blocks[l].attn.W_O  # [n_heads, d_head, d_model]
        z = cache[act_name("z", l)]
        for h in range(model.cfg.n_heads):
            parts.append(z[:, :, h] @ W_O[h])
            labels.append(f"L{l}H{h}")
    if model.cfg.attn_bias and layer > 0:
        parts.append(sum(model.blocks[l].attn.b_O for l in range(layer)).expand(batch, n_pos, -1))
        labels.append("b_O")
    return labels, torch.stack(parts)


@torch.no_grad()
def decompose_attention_scores(model: HookedTransformer, tokens, layer: int, head: int
                               ) -> tuple[list[str], torch.Tensor]:
    """An attention head's scores as a sum over (query source, key source) pairs.

    With the residual stream split into components ``x = sum_i x_i``
    (:func:`residual_components`), the score of query position ``q`` on key
    position ``k`` is bilinear::

        score[q, k] = (x[q] W_Q + b_Q) (x[k] W_K + b_K)^T / sqrt(d_head)
                    = sum_{i, j} (x_i[q] W_Q) (x_j[k] W_K)^T / sqrt(d_head)   (+ bias terms)

    so each term says how much component ``i`` in the query, matched against
    component ``j`` in the key, adds to the score.

    Returns
    -------
    names : list of str
        The components (as :func:`residual_components`, plus ``"bias"`` for
        ``b_Q``/``b_K`` when the model has them).
    terms : Tensor ``[query_component, key_component, batch, query_pos, key_pos]``
        Summing over the first two dimensions gives the head's scores
        (``hook_attn_scores`` before the causal mask).

    Used in chapter 3.
    """
    _check_patchable(model)
    head = _check_head(model, head)
    names, parts = residual_components(model, tokens, layer)
    attn = model.blocks[layer].attn
    q = parts @ attn.W_Q[head]  # [comp, batch, pos, d_head]
    k = parts @ attn.W_K[head]
    if model.cfg.attn_bias:
        names = names + ["bias"]
        q = torch.cat([q, attn.b_Q[head].expand(1, *q.shape[1:3], -1)])
        k = torch.cat([k, attn.b_K[head].expand(1, *k.shape[1:3], -1)])
    terms = torch.einsum("ibqe,jbke->ijbqk", q, k) / math.sqrt(model.cfg.d_head)
    return names, terms


@torch.no_grad()
def path_patch(model: HookedTransformer, tokens, replacement, sender: Sequence[int], receivers,
               inputs: str = "k") -> torch.Tensor:
    """Logits when one head's output is replaced only on its path into chosen inputs of later heads.

    The run is on ``tokens``. The sender head's output ``z W_O`` on
    ``replacement`` (another batch of the same shape) differs from its output
    on ``tokens`` by ``delta`` ``[batch, pos, d_model]``. Each receiver head's
    query, key and/or value (``inputs``, any of ``"q"``, ``"k"``, ``"v"``) is
    recomputed from the residual stream plus ``delta``, which for a model
    without normalization means adding ``delta W_Q`` (``W_K``, ``W_V``) of
    that head. Everything else — the sender's other paths, the receiver's other
    inputs, other heads — sees the unchanged run. With ``replacement`` equal to
    ``tokens`` the output is the plain run.

    Parameters
    ----------
    sender : (layer, head)
    receivers : (layer, head) or list of them, all in later layers than the sender
    inputs : str
        A combination of ``"q"``, ``"k"``, ``"v"`` (e.g. ``"k"`` or ``"qkv"``).

    Returns
    -------
    Tensor ``[batch, pos, d_vocab_out]``

    Used in chapter 3.

    >>> m = induction_head_model(d_vocab=12, n_ctx=11)
    >>> d = repeated_tokens(50, 5, d_vocab=12, seed=0); other = repeated_tokens(50, 5, d_vocab=12, seed=1)
    >>> loss = lambda lg: round(second_copy_loss(lg, d), 2)
    >>> loss(m(d.tokens)), loss(path_patch(m, d, other, (0, 0), (1, 0), "q")) == loss(m(d.tokens))
    (0.0, True)
    >>> loss(path_patch(m, d, other, (0, 0), (1, 0), "k")) > 1   # the previous token feeds the keys only
    True
    """
    _check_patchable(model)
    tokens, replacement = _tokens_of(tokens, "tokens"), _tokens_of(replacement, "replacement")
    if tokens.shape != replacement.shape:
        raise ValueError(f"tokens and replacement must have the same shape, got {tuple(tokens.shape)} and "
                         f"{tuple(replacement.shape)}")
    l0, h0 = _pair(model, sender, "sender")
    recv = _heads_list(model, receivers)
    if any(l <= l0 for l, _ in recv):
        raise ValueError(f"every receiver must be in a later layer than the sender (layer {l0}), got {recv}")
    if not isinstance(inputs, str) or not inputs or set(inputs) - set("qkv"):
        raise ValueError(f"inputs must be a non-empty combination of 'q', 'k', 'v', got {inputs!r}")
    z_name = act_name("z", l0)
    _, c_run = model.run_with_cache(tokens, names_filter=[z_name])
    _, c_rep = model.run_with_cache(replacement, names_filter=[z_name])
    delta = (c_rep[z_name][:, :, h0] - c_run[z_name][:, :, h0]) @ model.blocks[l0].attn.W_O[h0]

    hooks = []
    for inp in sorted(set(inputs)):
        by_layer: dict[int, list[int]] = {}
        for l, h in recv:
            by_layer.setdefault(l, []).append(h)
        for l, hs in by_layer.items():
            W = getattr(model.blocks[l].attn, "W_" + inp.upper())  # [n_heads, d_model, d_head]

            def fn(x, hook, hs=hs, W=W):
                x = x.clone()
                for h in hs:
                    x[:, :, h] = x[:, :, h] + delta @ W[h]
                return x

            hooks.append((act_name(inp, l), fn))
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


@torch.no_grad()
def in_context_learning_score(model: HookedTransformer, tokens, early: int, late: int) -> float:
    """Olsson et al.'s in-context learning score: mean loss at a late token minus at an early one.

    The loss of token ``t`` is that of predicting ``tokens[:, t]`` from
    position ``t - 1``. Olsson et al. (2022) use tokens 500 and 50 of
    512-token contexts; a negative score means the model predicts later tokens
    better, having more context to learn from.

    Parameters
    ----------
    tokens : RepeatData or Tensor ``[batch, pos]``
    early, late : int
        Token positions, ``1 <= early < late < pos``.

    Used in chapter 3.
    """
    _check_model(model)
    tokens = _tokens_of(tokens, "tokens")
    n_pos = tokens.shape[1]
    early = _check_int(early, "early", 1, n_pos - 2)
    late = _check_int(late, "late", early + 1, n_pos - 1)
    loss = per_position_loss(model(tokens), tokens)  # entry t-1: loss of token t
    return float(loss[:, late - 1].mean() - loss[:, early - 1].mean())
