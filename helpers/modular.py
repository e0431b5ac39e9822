"""Modular addition: data, models, Fourier tools, progress measures, clock and pizza.

The task: given ``a, b`` in ``Z_p``, predict ``c = (a + b) mod p``. Nanda et al.
(2023) showed that a one-layer transformer trained on 30% of the ``p^2`` pairs
first memorises them and only much later *groks* the rule, by an algorithm that
can be read off its weights: embed ``a`` as ``(cos w_k a, sin w_k a)`` for a few
key frequencies ``w_k = 2 pi k / p``, combine into ``cos w_k(a+b)`` and ``sin
w_k(a+b)``, and read out ``cos w_k(a+b-c)``, which interferes constructively
only at ``c = a+b``. Zhong et al. (2023) showed that the same task has a second
solution, the "pizza", which constant (uniform) attention tends to find.

This module is a library, not chapter code: chapters 5, 7 and 8 reuse its data,
models and metric suite. Its parts:

* **Data** — :func:`all_pairs`, :func:`make_data` (seeded split by fraction,
  ``p`` checked prime), in either input *layout* (a config choice every tool
  accepts): ``"equals"`` = tokens ``[a, b, =]`` read at ``=`` (Nanda et al.;
  ``d_vocab = p + 1``, ``n_ctx = 3``) or ``"pair"`` = tokens ``[a, b]`` read at
  ``b`` (Zhong et al.; ``d_vocab = p``, ``n_ctx = 2``). Tools infer the layout
  from a model's config (:func:`task_of`).
* **Models** — :func:`canonical_config` (p = 113, the grokking model) and
  :func:`clock_pizza_config` (p = 59, normal or constant attention); store
  recipes ``modadd_p113`` and ``modadd_p59_{normal,constant}_s{0..4}``;
  :func:`model_from_weights` for weights trained elsewhere.
* **Training** — :func:`train_modular` logs train/test loss and accuracy, the
  Gini coefficient of ``W_E``'s Fourier norms and the sum of squared weights
  every ``log_every`` steps, and afterwards adds restricted and excluded loss
  (with the *final* model's key frequencies, as the paper does) at every logged
  step, so progress-measure curves come from the history.
* **Fourier tools** — :func:`fourier_basis`, :func:`embedding_spectrum`,
  :func:`fourier_2d`, :func:`fourier_2d_freq_norms`, :func:`neuron_frequency_fve`, :func:`neuron_clusters`,
  key frequencies by three rules (:func:`key_freqs_embedding`,
  :func:`key_freqs_logit_map`, :func:`key_freqs_neurons`),
  :func:`restricted_loss` / :func:`excluded_loss` (two definitions),
  :func:`cos_logit_fit`.
* **Clock vs pizza** — :func:`gradient_symmetricity`,
  :func:`distance_irrelevance` (both on the *correct* logit),
  :func:`correct_logit_by_sum_diff`, :func:`plot_logit_pattern`.

Conventions: ``p`` is odd (prime where the method needs it); the logit tensor is
indexed ``[a, b, c]``; analysis results are numpy ``float64`` arrays; the real
Fourier basis orders its rows ``[1, cos 1, sin 1, cos 2, sin 2, ...]`` and
"frequency ``k``" means ``w_k = 2 pi k / p``, ``k = 1 .. (p-1)/2``.

>>> data = make_data(p=7, frac_train=0.5, seed=0)
>>> data.tokens.shape, data.labels.shape, len(data.train_idx) + len(data.test_idx)
(torch.Size([49, 3]), torch.Size([49]), 49)
>>> model = HookedTransformer(canonical_config(p=7, seed=0))
>>> task_of(model)
(7, 'equals')
>>> logit_tensor(model).shape
(7, 7, 7)

Used in chapter 4 (and in chapters 5, 7 and 8).
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from helpers._util import check_finite, check_int, check_positive_int, eval_mode, to_numpy
from helpers._util import check_seed as _check_seed
from helpers.store import recipe
from helpers.training import TrainResult, accuracy, cross_entropy, last_position_loss, train
from helpers.transformer import HookedTransformer, TransformerConfig, act_name

__all__ = [
    # data
    "LAYOUTS", "is_prime", "all_pairs", "split_indices", "ModularData", "make_data", "task_of",
    # models
    "canonical_config", "clock_pizza_config", "model_from_weights", "CANONICAL_TRAINING", "CLOCK_PIZZA_TRAINING",
    "train_canonical", "train_clock_pizza", "clock_pizza_name", "CLOCK_PIZZA_SEEDS",
    # training
    "train_modular", "grokking_phases", "last_position_loss",
    # forward passes
    "logit_tensor", "neuron_activations",
    # Fourier tools
    "fourier_basis", "fourier_basis_names", "fourier_norms", "embedding_spectrum", "fourier_2d",
    "fourier_2d_freq_norms",
    "neuron_frequency_fve", "NeuronClusters", "neuron_clusters", "key_freqs_embedding",
    "key_freqs_logit_map", "key_freqs_neurons", "key_frequencies", "gini", "sum_of_squared_weights",
    "restricted_loss", "excluded_loss", "progress_measures", "cos_logit_fit", "ideal_logits",
    # clock and pizza
    "gradient_symmetricity", "distance_irrelevance", "correct_logit_by_sum_diff", "plot_logit_pattern",
    "plot_embedding_spectrum", "plot_grokking", "snapshot_explorer", "snapshot_explorer_static",
]

LAYOUTS = ("equals", "pair")


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------
def is_prime(n: int) -> bool:
    """True if ``n`` is a prime number (trial division; fine for the p of this book).

    >>> [n for n in range(20) if is_prime(n)]
    [2, 3, 5, 7, 11, 13, 17, 19]

    Not used by a page; a library helper.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        return False
    n = int(n)
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, int(math.isqrt(n)) + 1, 2))


def _check_p(p, *, prime: bool = True, name: str = "p") -> int:
    p = check_int(p, name)
    if prime and (not is_prime(p) or p == 2):
        raise ValueError(f"{name} must be an odd prime (the Fourier tools need Z_p to be a field), got {p}")
    if not prime and (p < 3 or p % 2 == 0):
        raise ValueError(f"{name} must be an odd integer >= 3, got {p}")
    return p


def _check_layout(layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout must be one of {list(LAYOUTS)} ('equals' = tokens [a, b, =] read at '=', "
            f"'pair' = tokens [a, b] read at b), got {layout!r}"
        )
    return layout


def _check_fraction(frac, name: str = "frac_train") -> float:
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {frac!r}")
    return float(frac)


def _check_freqs(freqs, p: int, name: str = "key_freqs") -> list[int]:
    if isinstance(freqs, (str, bytes)) or not hasattr(freqs, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {freqs!r}")
    out = [check_int(k, f"{name} entry") for k in freqs]  # 1.5 is refused, not truncated
    bad = [k for k in out if not 1 <= k <= (p - 1) // 2]
    if bad:
        raise ValueError(f"{name} must lie in 1..{(p - 1) // 2} for p={p}, got {bad}")
    return sorted(set(out))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def all_pairs(p: int, layout: str = "equals") -> tuple[torch.Tensor, torch.Tensor]:
    """Every input of the task and its answer, row ``i = a * p + b``.

    Parameters
    ----------
    p : int
        Modulus (odd, >= 3).
    layout : {"equals", "pair"}
        ``"equals"``: tokens ``[a, b, p]`` (``p`` is the ``=`` token);
        ``"pair"``: tokens ``[a, b]``.

    Returns
    -------
    tokens : LongTensor [p*p, 3] or [p*p, 2]
    labels : LongTensor [p*p]
        ``(a + b) mod p``.

    >>> tokens, labels = all_pairs(5, "pair")
    >>> tokens[7].tolist(), labels[7].item()
    ([1, 2], 3)
    >>> all_pairs(5)[0][7].tolist()
    [1, 2, 5]

    Chapter 4 uses it through :func:`make_data`.
    """
    p = _check_p(p, prime=False)
    _check_layout(layout)
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    cols = [a, b] + ([torch.full_like(a, p)] if layout == "equals" else [])
    return torch.stack(cols, dim=1), (a + b) % p


def split_indices(n: int, frac_train: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into ``round(frac_train * n)`` train and the rest test.

    >>> tr, te = split_indices(10, 0.3, seed=0)
    >>> len(tr), len(te), sorted(tr.tolist() + te.tolist()) == list(range(10))
    (3, 7, True)

    Chapter 4 uses it through :func:`make_data`.
    """
    frac_train = _check_fraction(frac_train)
    n = check_int(n, "n", 2)
    n_train = int(round(frac_train * n))
    if not 0 < n_train < n:
        raise ValueError(f"frac_train={frac_train} leaves an empty train or test set for n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_check_seed(seed)))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


@dataclass
class ModularData:
    """All ``p^2`` inputs of the task with a train/test split.

    Attributes
    ----------
    p, layout, frac_train, seed
    tokens : LongTensor [p*p, n_ctx]
        Row ``a * p + b``.
    labels : LongTensor [p*p]
    train_idx, test_idx : LongTensor
        Sorted row indices of the two sets.

    Chapter 4 uses it through :func:`make_data`.
    """

    p: int
    layout: str
    frac_train: float
    seed: int
    tokens: torch.Tensor
    labels: torch.Tensor
    train_idx: torch.Tensor
    test_idx: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, labels)`` of the training pairs."""
        return self.tokens[self.train_idx], self.labels[self.train_idx]

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, labels)`` of the held-out pairs."""
        return self.tokens[self.test_idx], self.labels[self.test_idx]

    @property
    def train_mask(self) -> np.ndarray:
        """Boolean ``[p, p]`` array, True where ``(a, b)`` is a training pair."""
        mask = np.zeros(self.p * self.p, dtype=bool)
        mask[self.train_idx.numpy()] = True
        return mask.reshape(self.p, self.p)


def make_data(p: int = 113, frac_train: float = 0.3, seed: int = 0, layout: str = "equals") -> ModularData:
    """All pairs of ``Z_p`` and a seeded train/test split by fraction.

    ``p`` must be an odd prime (the Fourier analysis needs a field).

    >>> d = make_data(p=11, frac_train=0.3, seed=1, layout="pair")
    >>> d.tokens.shape, len(d.train_idx), d.train_mask.sum()
    (torch.Size([121, 2]), 36, np.int64(36))
    >>> make_data(p=12)
    Traceback (most recent call last):
    ...
    ValueError: p must be an odd prime (the Fourier tools need Z_p to be a field), got 12

    Used in chapter 4.
    """
    p = _check_p(p)
    tokens, labels = all_pairs(p, layout)
    tr, te = split_indices(p * p, frac_train, seed)
    return ModularData(p, layout, float(frac_train), int(seed), tokens, labels, tr, te)


def task_of(model_or_cfg, layout: str | None = None) -> tuple[int, str]:
    """``(p, layout)`` of a modular-addition model, read from its config.

    ``p`` is ``d_vocab_out``. With ``layout=None`` it is ``"equals"`` when the
    model has an extra ``=`` token and three positions, ``"pair"`` when it has
    exactly ``p`` tokens; anything else must be named explicitly.

    >>> task_of(clock_pizza_config(p=59))
    (59, 'pair')

    Chapter 4 uses it through :func:`train_modular`.
    """
    cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
    if not isinstance(cfg, TransformerConfig):
        raise TypeError(f"model must be a HookedTransformer (or its TransformerConfig), got {type(model_or_cfg).__name__}")
    p = cfg.d_vocab_out
    if layout is None:
        if cfg.d_vocab == p + 1 and cfg.n_ctx >= 3:
            layout = "equals"
        elif cfg.d_vocab == p and cfg.n_ctx >= 2:
            layout = "pair"
        else:
            raise ValueError(
                f"cannot tell the layout of a model with d_vocab={cfg.d_vocab}, d_vocab_out={p}, "
                f"n_ctx={cfg.n_ctx}; pass layout='equals' or 'pair'"
            )
    _check_layout(layout)
    if layout == "pair" and cfg.d_vocab == p + 1:
        raise ValueError(f"layout='pair' on a model with an '=' token (d_vocab = p + 1 = {cfg.d_vocab}): it was "
                         "trained on [a, b, =]; pass layout='equals' (or None)")
    need_vocab, need_ctx = (p + 1, 3) if layout == "equals" else (p, 2)
    if cfg.d_vocab < need_vocab or cfg.n_ctx < need_ctx:
        raise ValueError(
            f"layout {layout!r} needs d_vocab >= {need_vocab} and n_ctx >= {need_ctx}; "
            f"the model has d_vocab={cfg.d_vocab}, n_ctx={cfg.n_ctx}"
        )
    _check_p(p, prime=False, name="the model's d_vocab_out (p)")
    return p, layout


# ---------------------------------------------------------------------------
# Model presets
# ---------------------------------------------------------------------------
def canonical_config(p: int = 113, seed: int = 0, layout: str = "equals", **overrides) -> TransformerConfig:
    """The grokking model of Nanda et al.: one layer, d_model 128, 4 heads of 32, d_mlp 512.

    ReLU, no LayerNorm, learned positions, no biases in attention or unembed
    (the MLP keeps its biases), initialisation ``N(0, 1/d_model)`` for every
    weight including ``W_pos`` (``W_U``: ``1/d_vocab_out``). ``overrides`` go to
    :class:`TransformerConfig`.

    >>> cfg = canonical_config()
    >>> cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx, cfg.d_mlp
    (114, 113, 3, 512)

    Used in chapter 4.
    """
    p = _check_p(p, prime=False)
    _check_layout(layout)
    kwargs = dict(
        n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512,
        d_vocab=p + 1 if layout == "equals" else p, d_vocab_out=p, n_ctx=3 if layout == "equals" else 2,
        act_fn="relu", normalization=None, attn_only=False, attention_mode="normal",
        positional_embedding="learned", attn_bias=False, mlp_bias=True, unembed_bias=False, seed=_check_seed(seed),
    )
    kwargs.update(overrides)
    return TransformerConfig(**kwargs)


def clock_pizza_config(attention: str = "normal", p: int = 59, seed: int = 0, layout: str = "pair",
                       **overrides) -> TransformerConfig:
    """The model family of Zhong et al.: like :func:`canonical_config`, p = 59, tokens ``[a, b]``.

    ``attention="normal"`` is their attention rate 1 (softmax attention, which
    tends to give a clock); ``"constant"`` is rate 0 (uniform attention, no
    ``W_Q``/``W_K``, which gives a pizza). Their code adds the two value vectors
    (``constant_attention="sum"``); ours averages them (the default ``"mean"``).
    Trained from scratch the two are equivalent (halving ``W_V`` converts one
    into the other exactly at the read position), but weights trained under one
    convention are read wrong under the other (see :func:`model_from_weights`).

    >>> clock_pizza_config("constant").attention_mode
    'constant'

    Used in chapter 4.
    """
    if attention not in ("normal", "constant"):
        raise ValueError(f"attention must be 'normal' or 'constant', got {attention!r}")
    return canonical_config(p=p, seed=seed, layout=layout, attention_mode=attention, **overrides)


_TL_BUFFERS = ("IGNORE", "mask")


def model_from_weights(weights: dict, *, layout: str | None = None, **overrides) -> HookedTransformer:
    """Build a model from TransformerLens-named arrays trained elsewhere.

    The config is inferred from the shapes: ``W_E [d_vocab, d_model]``,
    ``W_pos [n_ctx, d_model]``, ``blocks.{l}.attn.W_V [n_heads, d_model,
    d_head]``, ``blocks.{l}.mlp.W_in [d_model, d_mlp]``, ``W_U [d_model,
    d_vocab_out]``; biases and norms from which names are present; constant
    attention when there is no ``W_Q``. TransformerLens buffers (``IGNORE``,
    ``mask``) are dropped. ``overrides`` (e.g. ``act_fn="gelu"``) set what
    shapes cannot tell. A name or shape that does not fit is reported with the
    full list of mismatches. Note that Nanda et al.'s original grokking code
    stores ``W_E`` as ``[d_model, d_vocab]``: transpose it first.

    Constant attention (the pizza of Zhong et al.): their code keeps ``W_Q``
    and ``W_K`` even when attention is constant (weight decay drives them to
    ~0), and *adds* the value vectors. Pass ``attention_mode="constant",
    constant_attention="sum"``: the ``W_Q``/``W_K`` (and ``b_Q``/``b_K``)
    entries are then dropped (with a warning if they are not ~0, since the
    model that made them ignored them). Without the override, ~0 ``W_Q`` and
    ``W_K`` give uniform softmax attention, i.e. the *mean* convention, and a
    warning says so: a sum-trained pizza read this way is read wrong.

    Parameters
    ----------
    weights : dict of str -> array
        Numpy arrays or tensors; short aliases ``W_E, W_pos, W_U, b_U`` allowed.
    layout : {"equals", "pair"} or None
        Checked against the shapes (inferred when None).

    >>> src = HookedTransformer(canonical_config(p=7, seed=3))
    >>> arrays = {k: v.numpy() for k, v in src.state_dict().items()}
    >>> copy_ = model_from_weights(arrays)
    >>> bool(torch.equal(copy_.W_E, src.W_E)), task_of(copy_)
    (True, (7, 'equals'))

    Used in chapter 4 (the constant-attention trap).
    """
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict of name -> array, got {type(weights).__name__}")
    alias = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U", "b_U": "unembed.b_U"}
    w = {alias.get(k, k): v for k, v in weights.items() if k.split(".")[-1] not in _TL_BUFFERS}

    def shape(name):
        return tuple(getattr(w[name], "shape", ())) if name in w else None

    for need in ("embed.W_E", "unembed.W_U", "blocks.0.attn.W_V"):
        if need not in w:
            raise ValueError(f"weights lack {need!r}; given names: {sorted(w)[:12]}{' ...' if len(w) > 12 else ''}")
    d_vocab, d_model = shape("embed.W_E")
    n_heads, _, d_head = shape("blocks.0.attn.W_V")
    layers = {int(k.split(".")[1]) for k in w if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    attn_only = "blocks.0.mlp.W_in" not in w
    norm = None
    if "blocks.0.ln1.w" in w:
        norm = "LN" if "blocks.0.ln1.b" in w else "RMS"
    final_norm = None
    if "ln_final.w" in w:
        final_norm = "LN" if "ln_final.b" in w else "RMS"
    kwargs = dict(
        n_layers=max(layers) + 1, d_model=d_model, n_heads=n_heads, d_head=d_head,
        d_mlp=0 if attn_only else shape("blocks.0.mlp.W_in")[1], d_vocab=d_vocab,
        d_vocab_out=shape("unembed.W_U")[1],
        n_ctx=shape("pos_embed.W_pos")[0] if "pos_embed.W_pos" in w else (3 if layout != "pair" else 2),
        act_fn="relu", normalization=norm, final_normalization=final_norm, attn_only=attn_only,
        attention_mode="normal" if "blocks.0.attn.W_Q" in w else "constant",
        positional_embedding="learned" if "pos_embed.W_pos" in w else "none",
        attn_bias="blocks.0.attn.b_V" in w, mlp_bias="blocks.0.mlp.b_in" in w, unembed_bias="unembed.b_U" in w,
    )
    kwargs.update(overrides)
    cfg = TransformerConfig(**kwargs)
    task_of(cfg, layout)
    w = _constant_attention_qk(w, cfg, "attention_mode" in overrides)
    return HookedTransformer.from_weights(cfg, w)


# ---------------------------------------------------------------------------
# Forward passes over every input
# ---------------------------------------------------------------------------
def _all_tokens(model, layout=None) -> tuple[int, torch.Tensor]:
    p, layout = task_of(model, layout)
    tokens, _ = all_pairs(p, layout)
    return p, tokens.to(model.device)


@torch.no_grad()
def logit_tensor(model, layout: str | None = None, center: bool = False) -> np.ndarray:
    """The model's logits on every input at the read position, ``[a, b, c]``.

    Parameters
    ----------
    model : HookedTransformer
        A modular-addition model (``p = d_vocab_out``).
    layout : str, optional
        Inferred from the config when None.
    center : bool
        Subtract the mean over ``c`` (softmax ignores it).

    Returns
    -------
    numpy float64 array [p, p, p]

    Used in chapter 4.
    """
    p, tokens = _all_tokens(model, layout)
    with eval_mode(model):
        logits = model(tokens, read_positions=[-1])[:, 0]
    out = logits.double().cpu().numpy().reshape(p, p, p)
    return out - out.mean(-1, keepdims=True) if center else out


@torch.no_grad()
def neuron_activations(model, layout: str | None = None, layer: int = 0, hook: str = "post") -> np.ndarray:
    """MLP activations at the read position for every input, ``[a, b, d_mlp]`` (numpy float64).

    ``hook`` is ``"post"`` (after the ReLU) or ``"pre"``.

    Used in chapter 4.
    """
    if hook not in ("pre", "post"):
        raise ValueError(f"hook must be 'pre' or 'post', got {hook!r}")
    if model.cfg.attn_only:
        raise ValueError("this model has no MLP (attn_only=True)")
    p, tokens = _all_tokens(model, layout)
    name = act_name(hook, layer)
    _, cache = model.run_with_cache(tokens, names_filter=name, read_positions=[-1])
    return cache[name][:, 0].double().cpu().numpy().reshape(p, p, -1)


# ---------------------------------------------------------------------------
# Fourier basis and spectra
# ---------------------------------------------------------------------------
def fourier_basis(p: int) -> torch.Tensor:
    """The real Fourier basis of functions on ``Z_p``: an orthonormal ``[p, p]`` matrix.

    Row 0 is the constant ``1/sqrt(p)``; rows ``2k-1`` and ``2k`` are
    ``cos(w_k x)`` and ``sin(w_k x)`` scaled to unit norm, ``w_k = 2 pi k / p``,
    ``k = 1 .. (p-1)/2``; for even ``p`` the last row is ``cos(pi x)``. Apply it
    as ``fourier_basis(p) @ f`` to get a function's coefficients.

    >>> B = fourier_basis(5)
    >>> torch.allclose(B @ B.T, torch.eye(5, dtype=torch.float64))
    True
    >>> fourier_basis_names(5)
    ['const', 'cos 1', 'sin 1', 'cos 2', 'sin 2']

    Used in chapter 4.
    """
    p = check_int(p, "p", 2)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * x))
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True)


def fourier_basis_names(p: int) -> list[str]:
    """Labels of the rows of :func:`fourier_basis`.

    Used in chapter 4.
    """
    names = ["const"] + [f"{t} {k}" for k in range(1, (p - 1) // 2 + 1) for t in ("cos", "sin")]
    return names + (["cos nyquist"] if p % 2 == 0 else [])


def _as_numpy(x) -> np.ndarray:
    return to_numpy(x, np.float64)


def _basis_np(p: int) -> np.ndarray:
    return fourier_basis(p).numpy()


def fourier_norms(x, p: int | None = None, axis: int = 0) -> np.ndarray:
    """Norm of each frequency of ``x`` along ``axis``, cos and sin combined.

    Parameters
    ----------
    x : array [..., p, ...]
        A function of ``Z_p`` along ``axis`` (other axes are flattened into the norm).
    p : int, optional
        Use the first ``p`` entries along ``axis`` (e.g. drop the ``=`` row of ``W_E``).

    Returns
    -------
    numpy array [(p-1)//2 + 1]
        Index 0 is the constant, index ``k`` the norm of ``(cos k, sin k)``.

    >>> x = np.cos(2 * np.pi * 3 * np.arange(11) / 11)
    >>> int(np.argmax(fourier_norms(x)))
    3

    Chapter 4 uses it through :func:`key_frequencies`.
    """
    if p is not None:
        _check_p(p, prime=False)
    x = np.moveaxis(_as_numpy(x), axis, 0)
    if p is not None:
        if x.shape[0] < p:
            raise ValueError(f"x has {x.shape[0]} entries along axis {axis}, fewer than p={p}")
        x = x[:p]
    p = x.shape[0]
    _check_p(p, prime=False, name="the length along axis")
    coef = np.tensordot(_basis_np(p), x, axes=(1, 0)).reshape(p, -1)
    sq = (coef ** 2).sum(1)
    out = np.empty((p - 1) // 2 + 1)
    out[0] = sq[0]
    out[1:] = sq[1::2] + sq[2::2]
    return np.sqrt(out)


def embedding_spectrum(model_or_W_E, p: int | None = None) -> np.ndarray:
    """Norm of each frequency in the token embedding ``W_E[:p]`` (the paper's Fig. 3).

    Parameters
    ----------
    model_or_W_E : HookedTransformer or array [d_vocab, d_model]
    p : int, optional
        Defaults to the model's ``d_vocab_out`` (or all rows of a bare array).

    Returns
    -------
    numpy array [(p-1)//2 + 1], index = frequency (0 = constant).

    Chapter 4 uses it through :func:`plot_embedding_spectrum`.
    """
    if p is not None:
        _check_p(p, prime=False)
    if isinstance(model_or_W_E, HookedTransformer):
        p = p or task_of(model_or_W_E)[0]
        W_E = model_or_W_E.W_E
    else:
        W_E = model_or_W_E
    return fourier_norms(W_E, p=p, axis=0)


def fourier_2d(x) -> np.ndarray:
    """2-D Fourier coefficients over ``(a, b)``: ``B x B^T`` on the first two axes.

    x: [p, p, ...] -> [p, p, ...], rows and columns indexed as in :func:`fourier_basis`.

    >>> p = 7; a = np.arange(p)[:, None]; b = np.arange(p)[None, :]
    >>> C = fourier_2d(np.cos(2 * np.pi * 2 * (a + b) / p))
    >>> sorted(zip(*np.nonzero(np.abs(C) > 1e-9)))
    [(np.int64(3), np.int64(3)), (np.int64(4), np.int64(4))]

    Chapter 4 uses it through :func:`fourier_2d_freq_norms`.
    """
    x = _as_numpy(x)
    if x.ndim < 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"x must have shape [p, p, ...], got {x.shape}")
    p = x.shape[0]
    rest = x.shape[2:]
    B = fourier_basis(p)
    t = torch.from_numpy(np.ascontiguousarray(x)).reshape(p, p, -1)
    y = (B @ t.reshape(p, -1)).reshape(p, p, -1)                        # [i, b, n]
    y = (B @ y.transpose(0, 1).reshape(p, -1)).reshape(p, p, -1)        # [j, i, n]
    return y.transpose(0, 1).reshape((p, p) + rest).numpy()


def fourier_2d_freq_norms(x) -> np.ndarray:
    """2-D Fourier coefficients over ``(a, b)`` gathered by frequency pair ``(k_a, k_b)``.

    Entry ``[k_a, k_b]`` is the norm of the (up to four) coefficients built from
    ``{cos, sin} w_{k_a} a`` and ``{cos, sin} w_{k_b} b`` (index 0 = the
    constant). A neuron tuned to frequency ``k`` lights up ``[k, 0]``,
    ``[0, k]`` and ``[k, k]`` only: a compact picture of :func:`fourier_2d`.

    x: [p, p, ...] -> [(p-1)//2 + 1, (p-1)//2 + 1, ...] (p odd).

    >>> p = 11; a = np.arange(p)[:, None]; b = np.arange(p)[None, :]
    >>> N = fourier_2d_freq_norms(np.cos(2 * np.pi * 3 * a / p) * np.sin(2 * np.pi * 3 * b / p))
    >>> [tuple(int(i) for i in ij) for ij in zip(*np.nonzero(N > 1e-9))]
    [(3, 3)]

    Used in chapter 4.
    """
    C2 = fourier_2d(x) ** 2
    p = C2.shape[0]
    _check_p(p, prime=False, name="x.shape[0]")
    groups = [[0]] + [[2 * k - 1, 2 * k] for k in range(1, (p - 1) // 2 + 1)]
    rows = np.stack([C2[g].sum(0) for g in groups])                 # [n_freq, p, ...]
    return np.sqrt(np.stack([rows[:, g].sum(1) for g in groups], 1))


def neuron_frequency_fve(acts) -> np.ndarray:
    """Share of each neuron's variance over ``(a, b)`` explained by each frequency.

    For frequency ``k`` the explained part is every 2-D Fourier term built from
    ``k`` alone: ``cos/sin w_k a``, ``cos/sin w_k b`` and their four products.
    The constant term is removed first (variance, not second moment).

    Parameters
    ----------
    acts : array [p, p, d_mlp] (or [p, p])

    Returns
    -------
    numpy array [d_mlp, (p-1)//2 + 1]
        Column 0 is unused (0); a neuron with zero variance gets all zeros.

    >>> p = 11; a = np.arange(p)[:, None]; b = np.arange(p)[None, :]
    >>> acts = np.maximum(0, np.cos(2 * np.pi * 4 * a / p) + np.cos(2 * np.pi * 4 * b / p))
    >>> fve = neuron_frequency_fve(acts)
    >>> int(fve[0].argmax()), bool(fve[0, 4] > 0.85)
    (4, True)

    Chapter 4 uses it through :func:`neuron_clusters`.
    """
    x = _as_numpy(acts)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"acts must be [p, p, d_mlp] or [p, p], got shape {x.shape}")
    p = x.shape[0]
    _check_p(p, prime=False, name="acts.shape[0]")
    check_finite(x, "acts")
    C2 = fourier_2d(x) ** 2  # [p, p, n]
    total = C2.sum((0, 1)) - C2[0, 0]
    n_freq = (p - 1) // 2 + 1
    out = np.zeros((x.shape[2], n_freq))
    for k in range(1, n_freq):
        idx = [2 * k - 1, 2 * k]
        part = C2[idx, 0].sum(0) + C2[0, idx].sum(0) + C2[np.ix_(idx, idx)].sum((0, 1))
        out[:, k] = np.divide(part, total, out=np.zeros_like(part), where=total > 1e-12 * max(total.max(), 1e-300))
    return out


@dataclass
class NeuronClusters:
    """Neurons grouped by their best frequency (see :func:`neuron_clusters`).

    Attributes
    ----------
    freq : int array [d_mlp]
        Best frequency of each neuron; ``-1`` for a dead neuron (no variance).
    fve : float array [d_mlp]
        Share of the neuron's variance explained by that frequency.
    clusters : dict[int, list[int]]
        Frequency -> neurons whose ``fve >= threshold`` (largest cluster first).
    threshold : float
    share_explained : float
        Share of all neurons with ``fve >= threshold``.
    n_dead : int

    Chapter 4 uses it through :func:`neuron_clusters`.
    """

    freq: np.ndarray
    fve: np.ndarray
    clusters: dict
    threshold: float
    share_explained: float
    n_dead: int


def neuron_clusters(model_or_acts, threshold: float = 0.85, layout: str | None = None) -> NeuronClusters:
    """Cluster MLP neurons by the frequency that explains most of their variance.

    The paper reports about 85% of neurons with over 85% of their variance
    explained by a single frequency.

    Parameters
    ----------
    model_or_acts : HookedTransformer or array [p, p, d_mlp]
    threshold : float in (0, 1)

    Used in chapter 4.
    """
    threshold = _check_fraction(threshold, "threshold")
    acts = neuron_activations(model_or_acts, layout) if isinstance(model_or_acts, HookedTransformer) else model_or_acts
    acts = _as_numpy(acts)
    fve = neuron_frequency_fve(acts)
    variance = acts.reshape(-1, acts.shape[-1]).var(0)
    dead = variance <= 1e-12 * max(variance.max(), 1e-300)
    freq = np.where(dead, -1, fve.argmax(1))
    best = np.where(dead, 0.0, fve.max(1))
    clusters: dict[int, list[int]] = {}
    for n in np.nonzero(best >= threshold)[0]:
        clusters.setdefault(int(freq[n]), []).append(int(n))
    clusters = dict(sorted(clusters.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    return NeuronClusters(freq, best, clusters, threshold, float((best >= threshold).mean()), int(dead.sum()))


def _gap_select(norms: np.ndarray, max_keys: int | None, threshold: float | None) -> list[int]:
    """Frequencies (1-based index into norms[1:]) above a relative threshold or before the largest gap."""
    v = np.asarray(norms[1:], dtype=np.float64)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
            raise TypeError(f"threshold must be a number in (0, 1] or None, got {threshold!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        return sorted(int(k) + 1 for k in np.nonzero(v >= threshold * v.max())[0])
    order = np.argsort(-v, kind="stable")
    s = v[order]
    m = len(s) - 1 if max_keys is None else min(check_int(max_keys, "max_keys", 1), len(s) - 1)
    if m < 1:
        return [int(order[0]) + 1]
    ratios = s[:m] / np.maximum(s[1:m + 1], 1e-300)
    n_keys = int(np.argmax(ratios)) + 1
    return sorted(int(k) + 1 for k in order[:n_keys])


def key_freqs_embedding(model_or_W_E, p: int | None = None, max_keys: int | None = 12,
                        threshold: float | None = None) -> list[int]:
    """Key frequencies, rule 1 ("embedding"): large Fourier norms of ``W_E``.

    Sort the per-frequency norms of :func:`embedding_spectrum` and cut at the
    largest ratio between consecutive norms among the top ``max_keys + 1``; or,
    with ``threshold``, keep every frequency whose norm is at least
    ``threshold`` times the largest.

    >>> B = fourier_basis(13).numpy()          # rows 3, 4 = cos/sin 2; rows 9, 10 = cos/sin 5
    >>> W_E = B[[3, 4, 9, 10]].T @ np.random.default_rng(0).normal(size=(4, 8))   # [13, 8]
    >>> key_freqs_embedding(W_E + 1e-3 * np.random.default_rng(1).normal(size=(13, 8)))
    [2, 5]

    Chapter 4 uses it through :func:`key_frequencies`.
    """
    if p is not None:
        _check_p(p, prime=False)
    return _gap_select(embedding_spectrum(model_or_W_E, p), max_keys, threshold)


def key_freqs_logit_map(model, max_keys: int | None = 12, threshold: float | None = None, layer: int = 0) -> list[int]:
    """Key frequencies, rule 2 ("neuron-logit map"): Fourier norms of ``W_L = W_out W_U``.

    ``W_L [d_mlp, p]`` maps neuron activations to logits; its Fourier
    transform along the output ``c`` concentrates on the key frequencies. Cut
    as in :func:`key_freqs_embedding`.

    Chapter 4 uses it through :func:`key_frequencies`.
    """
    check_int(layer, "layer")
    p, _ = task_of(model)
    W_L = (model.W_out[layer] @ model.W_U).detach()
    return _gap_select(fourier_norms(W_L, axis=1), max_keys, threshold)


def key_freqs_neurons(model_or_acts, threshold: float = 0.85, min_neurons: int | None = None,
                      layout: str | None = None) -> list[int]:
    """Key frequencies, rule 3 ("neurons"): best frequencies of well-explained neurons.

    A frequency is key when at least ``min_neurons`` neurons (default 1% of
    ``d_mlp``, at least 1) have it as their best frequency with a variance
    explained of at least ``threshold`` (see :func:`neuron_clusters`).

    Chapter 4 uses it through :func:`key_frequencies`.
    """
    nc = neuron_clusters(model_or_acts, threshold, layout)
    if min_neurons is None:
        min_neurons = max(1, int(round(0.01 * len(nc.freq))))
    check_int(min_neurons, "min_neurons", 1)
    return sorted(k for k, ns in nc.clusters.items() if len(ns) >= min_neurons)


def key_frequencies(model, rule: str = "embedding", **kwargs) -> list[int]:
    """Key frequencies by a named rule: ``"embedding"``, ``"logit_map"`` or ``"neurons"``.

    The three rules in use in the literature can disagree on a model that is
    not fully trained; figures in chapter 4 say which one they use.

    Used in chapter 4.
    """
    rules = {"embedding": key_freqs_embedding, "logit_map": key_freqs_logit_map, "neurons": key_freqs_neurons}
    if rule not in rules:
        raise ValueError(f"rule must be one of {list(rules)}, got {rule!r}")
    return rules[rule](model, **kwargs)


def gini(x) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, near 1 = one value dominates.

    >>> gini([1, 1, 1, 1]), round(gini([0, 0, 0, 1]), 2)
    (0.0, 0.75)

    Chapter 4 reads it from the training history that :func:`train_modular` logs.
    """
    v = np.sort(_as_numpy(x).ravel())
    if v.size == 0 or (v < 0).any() or not np.isfinite(v).all():
        raise ValueError("gini needs a non-empty array of finite non-negative values")
    if v.sum() == 0:
        return 0.0
    n = v.size
    return float(((2 * np.arange(1, n + 1) - n - 1) * v).sum() / (n * v.sum()))


def sum_of_squared_weights(model) -> float:
    """Sum of the squares of every parameter (the paper's weight-norm progress measure).

    Chapter 4 reads it from the training history that :func:`train_modular` logs.
    """
    return float(sum(p.detach().double().pow(2).sum() for p in model.parameters()))


# ---------------------------------------------------------------------------
# Restricted and excluded loss
# ---------------------------------------------------------------------------
def _sum_projection(x: np.ndarray, freqs: Sequence[int], constant: bool) -> np.ndarray:
    """Project ``x [p, p, ...]`` over (a, b) onto span{cos/sin w_k(a+b)} (+ constant)."""
    p = x.shape[0]
    s = (np.arange(p)[:, None] + np.arange(p)[None, :]) % p
    # M[s] = mean of x over the p pairs with a+b = s: projection onto functions of a+b
    M = np.zeros((p,) + x.shape[2:])
    np.add.at(M, s.ravel(), x.reshape(p * p, *x.shape[2:]))
    M /= p
    B = _basis_np(p)
    rows = ([0] if constant else []) + [r for k in freqs for r in (2 * k - 1, 2 * k)]
    if not rows:
        return np.zeros_like(x)
    Bk = B[rows]  # [r, p]
    g = Bk.T @ np.tensordot(Bk, M, axes=(1, 0))  # [p(s), ...]
    return g[s]


def _resolve_logits(model_or_logits, layout):
    if isinstance(model_or_logits, HookedTransformer):
        return logit_tensor(model_or_logits, layout)
    x = _as_numpy(model_or_logits)
    if x.ndim != 3 or not (x.shape[0] == x.shape[1] == x.shape[2]):
        raise ValueError(f"logits must be a [p, p, p] array indexed [a, b, c], got shape {x.shape}")
    _check_p(x.shape[0], prime=False, name="logits.shape[0] (p)")
    return x


def _ce_subset(logits: np.ndarray, subset) -> float:
    p = logits.shape[0]
    flat = torch.from_numpy(logits.reshape(p * p, p))
    labels = torch.from_numpy(((np.arange(p)[:, None] + np.arange(p)[None, :]) % p).ravel())
    if subset is not None:
        idx = torch.from_numpy(_check_subset(subset, p))
        flat, labels = flat[idx], labels[idx]
    return float(cross_entropy(flat, labels))


def _check_subset(subset, p: int) -> np.ndarray:
    """``subset`` as a 1-D int64 index array into the ``p*p`` pairs (no bool masks, floats, negatives, empties)."""
    a = to_numpy(subset)
    if a.size == 0:
        raise ValueError("subset must be a non-empty 1-D index array: the mean loss of no pairs is undefined")
    if a.dtype == bool:
        raise TypeError("subset must be indices into the p*p pairs, got a boolean mask; pass np.flatnonzero(mask)")
    if a.dtype.kind not in "iu":
        raise TypeError(f"subset must be integer indices into the p*p pairs, got dtype {a.dtype}")
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"subset must be a non-empty 1-D index array, got shape {a.shape}")
    if a.min() < 0 or a.max() >= p * p:
        raise ValueError(f"subset indices must lie in [0, p*p = {p * p}), got [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def _mlp_parts(model, layout):
    """Logits split into the MLP-neuron part and the rest, at the read position."""
    p, tokens = _all_tokens(model, layout)
    L = len(model.blocks) - 1
    names = [act_name("post", L)]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=names, read_positions=[-1])
    post = cache[names[0]][:, 0].double()
    W_LU = (model.W_out[L].double() @ model.W_U.double()).detach()  # [d_mlp, p]
    from_neurons = post @ W_LU
    rest = logits[:, 0].double().detach() - from_neurons
    return p, post.cpu().numpy().reshape(p, p, -1), W_LU.cpu().numpy(), rest.cpu().numpy().reshape(p, p, p)


def restricted_loss(model_or_logits, key_freqs: Sequence[int], subset=None, *, definition: str = "logits",
                    layout: str | None = None) -> float:
    """Loss when only the key-frequency directions ``cos/sin w_k(a+b)`` are kept.

    Definitions (say which one a figure uses):

    * ``"logits"`` (Nanda et al.'s): for every output ``c``, project the logit
      function ``(a, b) -> logit_c`` onto ``span{1, cos w_k(a+b), sin
      w_k(a+b) : k in key_freqs}`` (the constant keeps each output's mean).
      Computed from the cached ``[p, p, p]`` logits by averaging over the
      ``p`` pairs with the same ``a+b`` and a 1-D Fourier projection, so it
      costs ``O(p^3)``, no forward pass.
    * ``"mlp"``: project the MLP neuron activations the same way, then map them
      through ``W_out W_U``; the rest of the logits (direct and attention paths,
      biases) is kept unchanged. Needs a model.

    Parameters
    ----------
    model_or_logits : HookedTransformer or array [p, p, p]
    key_freqs : sequence of int
    subset : index array into the ``p*p`` rows (``a * p + b``), optional
        Pairs the loss is averaged over; default all ``p^2`` (``train_modular``
        logs it on all pairs).

    >>> p = 11; a, b, c = np.ogrid[:p, :p, :p]
    >>> L = 200 * np.cos(2 * np.pi * 3 * (a + b - c) / p) + np.sin(a * b * c)   # key freq 3 + noise
    >>> restricted_loss(L, [3]) < 1e-4 < excluded_loss(L, [3])
    True

    Chapter 4 reads it from the training history that :func:`train_modular` logs.
    """
    return _ablated_loss(model_or_logits, key_freqs, subset, definition, layout, keep=True)


def excluded_loss(model_or_logits, key_freqs: Sequence[int], subset=None, *, definition: str = "logits",
                  layout: str | None = None) -> float:
    """Loss when the key-frequency directions ``cos/sin w_k(a+b)`` are removed.

    The complement of :func:`restricted_loss` (same two definitions), without
    touching the constant. Nanda et al. evaluate it on the *training* pairs
    (pass ``subset=data.train_idx``, as :func:`train_modular` does): it rises
    during circuit formation while the training loss stays low, showing that
    the model's fit to its training set relies more and more on the key
    frequencies.

    Chapter 4 reads it from the training history that :func:`train_modular` logs.
    """
    return _ablated_loss(model_or_logits, key_freqs, subset, definition, layout, keep=False)


def _ablated_loss(model_or_logits, key_freqs, subset, definition, layout, keep):
    if definition not in ("logits", "mlp"):
        raise ValueError(f"definition must be 'logits' (project the logits) or 'mlp' (project the neurons), "
                         f"got {definition!r}")
    if definition == "logits":
        L = _resolve_logits(model_or_logits, layout)
        freqs = _check_freqs(key_freqs, L.shape[0])
        proj = _sum_projection(L, freqs, constant=keep)
        return _ce_subset(proj if keep else L - proj, subset)
    if not isinstance(model_or_logits, HookedTransformer):
        raise TypeError("definition='mlp' needs a model, not cached logits")
    p, post, W_LU, rest = _mlp_parts(model_or_logits, layout)
    freqs = _check_freqs(key_freqs, p)
    proj = _sum_projection(post, freqs, constant=keep)
    post_new = proj if keep else post - proj
    return _ce_subset(rest + post_new @ W_LU, subset)


def progress_measures(model_or_logits, key_freqs: Sequence[int], data: ModularData) -> dict:
    """Train/test loss, restricted loss (all pairs) and excluded loss (train pairs) from one set of logits.

    Both ablations use the ``"logits"`` definition.

    Not used by a page; a library helper.
    """
    if not isinstance(data, ModularData):
        raise TypeError(f"data must be a ModularData (from modular_data), got {type(data).__name__}")
    L = _resolve_logits(model_or_logits, data.layout if isinstance(model_or_logits, HookedTransformer) else None)
    if L.shape[0] != data.p:
        raise ValueError(f"the logits are for p = {L.shape[0]} but data is for p = {data.p}")
    return {
        "train_loss": _ce_subset(L, data.train_idx),
        "test_loss": _ce_subset(L, data.test_idx),
        "restricted_loss": restricted_loss(L, key_freqs),
        "excluded_loss": excluded_loss(L, key_freqs, data.train_idx),
    }


def cos_logit_fit(model_or_logits, key_freqs: Sequence[int], layout: str | None = None) -> tuple[np.ndarray, float]:
    """Fit the centred logits as ``sum_k alpha_k cos(w_k (a + b - c))``.

    Returns ``(alpha [len(key_freqs)], fve)``: least-squares coefficients and the
    share of the centred logits' variance they explain.

    >>> L = ideal_logits(13, [2, 5], [3.0, 1.0])
    >>> alpha, fve = cos_logit_fit(L, [2, 5])
    >>> np.round(alpha, 6).tolist(), round(fve, 6)
    ([3.0, 1.0], 1.0)

    Used in chapter 4.
    """
    L = _resolve_logits(model_or_logits, layout)
    p = L.shape[0]
    freqs = _check_freqs(key_freqs, p)
    Lc = L - L.mean(-1, keepdims=True)
    a, b, c = np.ogrid[:p, :p, :p]
    X = np.stack([np.cos(2 * np.pi * k * (a + b - c) / p).ravel() for k in freqs], 1)
    alpha, *_ = np.linalg.lstsq(X, Lc.ravel(), rcond=None)
    resid = Lc.ravel() - X @ alpha
    fve = 1 - float((resid ** 2).sum() / max((Lc ** 2).sum(), 1e-300))
    return alpha, fve


def ideal_logits(p: int, key_freqs: Sequence[int], weights: Sequence[float] | None = None) -> np.ndarray:
    """The algorithm as a formula: ``L[a, b, c] = sum_k weights_k cos(w_k (a + b - c))``, shape [p, p, p].

    Used in chapter 4.
    """
    p = _check_p(p, prime=False)
    freqs = _check_freqs(key_freqs, p)
    weights = np.ones(len(freqs)) if weights is None else _as_numpy(weights)
    if weights.shape != (len(freqs),):
        raise ValueError(f"weights must have one entry per key frequency ({len(freqs)}), got shape {weights.shape}")
    a, b, c = np.ogrid[:p, :p, :p]
    return sum(w * np.cos(2 * np.pi * k * (a + b - c) / p) for k, w in zip(freqs, weights))


# ---------------------------------------------------------------------------
# Training with progress measures
# ---------------------------------------------------------------------------
CANONICAL_TRAINING = dict(lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98), warmup_steps=10, frac_train=0.3)
"""Nanda et al.'s optimiser settings for the p = 113 model (full batch AdamW)."""

CLOCK_PIZZA_TRAINING = dict(lr=1e-3, weight_decay=2.0, betas=(0.9, 0.98), warmup_steps=10, frac_train=0.8)
"""Zhong et al.'s settings for the p = 59 models."""


def train_modular(model: HookedTransformer, data: ModularData, *, steps: int, lr: float = 1e-3,
                  weight_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.98), warmup_steps: int = 10,
                  log_every: int = 100, n_snapshots: int = 6, stop_test_loss: float | None = None,
                  key_freq_rule: str = "logit_map", clock_pizza_metrics: bool = False, seed: int = 0,
                  progress: bool | None = None, description: str = "modular addition",
                  threads: int | None = 1) -> TrainResult:
    """Full-batch AdamW on the training pairs, logging the progress measures.

    Every ``log_every`` steps the history gets ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc`` (one forward pass over all ``p^2`` pairs at the
    read position), ``gini_embed`` (Gini coefficient of the per-frequency
    Fourier norms of ``W_E``, :func:`embedding_spectrum`, frequencies 1..(p-1)/2),
    ``sum_sq_weights`` and, for models with an MLP, ``neuron_share`` (share of
    neurons with at least 85% of their variance explained by one frequency,
    :func:`neuron_clusters`); with ``clock_pizza_metrics``, also
    ``distance_irrelevance``. The weights at each logged step are kept in
    memory (about 1 MB each); after training, ``restricted_loss`` (all pairs)
    and ``excluded_loss`` (training pairs) are added for every logged step,
    with the key frequencies of the *final* model by ``key_freq_rule`` (as in
    the paper; :func:`key_frequencies` gives the same set from the saved model;
    attention-only models use the ``"embedding"`` rule),
    and, with ``clock_pizza_metrics``, ``grad_symmetricity`` at the last step.
    ``n_snapshots`` of the logged weights are returned as snapshots, at the
    grokking phase boundaries where they exist and log-spaced otherwise.

    Parameters
    ----------
    model : HookedTransformer
        Trained in place.
    data : ModularData
        Must match the model's ``p`` and layout.
    steps : int
        Maximum number of steps (= epochs: the batch is the full training set).
    stop_test_loss : float, optional
        Stop at the first logged step whose test loss is below this (with 100%
        training accuracy). This peeks at the test set, which is fine for a
        demonstration of grokking but not for model selection.
    seed : int
        Seeds :func:`helpers.training.train` (full batch, so only the global RNG).

    Used in chapter 4.
    """
    p, layout = task_of(model)
    if not isinstance(data, ModularData):
        raise TypeError(f"data must be a ModularData (see make_data), got {type(data).__name__}")
    if (data.p, data.layout) != (p, layout):
        raise ValueError(f"data is p={data.p}, layout {data.layout!r} but the model is p={p}, layout {layout!r}")
    check_int(n_snapshots, "n_snapshots", 0)
    if key_freq_rule not in ("embedding", "logit_map", "neurons"):
        raise ValueError(f"key_freq_rule must be 'embedding', 'logit_map' or 'neurons', got {key_freq_rule!r}")
    log_neurons = not model.cfg.attn_only
    device = model.device
    tokens, labels = data.tokens.to(device), data.labels.to(device)
    tr, te = data.train_idx.to(device), data.test_idx.to(device)
    stash: dict[int, dict[str, torch.Tensor]] = {}

    def metrics(m):
        logits = m(tokens, read_positions=[-1])[:, 0]
        row = {
            "train_acc": accuracy(logits[tr], labels[tr]),
            "test_loss": cross_entropy(logits[te], labels[te]).item(),
            "test_acc": accuracy(logits[te], labels[te]),
            "gini_embed": gini(embedding_spectrum(m, p)[1:]),
            "sum_sq_weights": sum_of_squared_weights(m),
        }
        if log_neurons:
            acts = neuron_activations(m)
            row["neuron_share"] = neuron_clusters(acts).share_explained
        if clock_pizza_metrics:
            row["distance_irrelevance"] = distance_irrelevance(logits.double().cpu().numpy().reshape(p, p, p))
        stash[len(stash)] = {k: v.detach().clone() for k, v in m.state_dict().items()}
        return row

    def stop(row):
        return stop_test_loss is not None and row["test_loss"] < stop_test_loss and row["train_acc"] == 1.0

    result = train(
        model, (tokens[tr], labels[tr]), last_position_loss, steps=steps, lr=lr, weight_decay=weight_decay,
        betas=tuple(betas), warmup_steps=warmup_steps, seed=seed, log_every=log_every, metrics_fn=metrics,
        stop_when=stop, progress=progress, description=description, threads=threads,
    )
    history = result.history
    logged = history["step"]
    snaps = [stash[i] for i in range(len(stash))]
    # post-pass: restricted / excluded loss with the final key frequencies
    rule = "embedding" if model.cfg.attn_only else key_freq_rule
    keys = key_frequencies(model, rule)
    probe = copy.deepcopy(model)
    restricted, excluded = [], []
    with torch.no_grad():
        for sd in snaps:
            probe.load_state_dict(sd)
            L = logit_tensor(probe)
            restricted.append(restricted_loss(L, keys))
            excluded.append(excluded_loss(L, keys, data.train_idx))
    history["restricted_loss"] = restricted
    history["excluded_loss"] = excluded
    if clock_pizza_metrics:
        gs = [math.nan] * len(logged)
        gs[-1] = gradient_symmetricity(model)
        history["grad_symmetricity"] = gs
    chosen = _pick_snapshot_steps(history, n_snapshots)
    result.snapshots = {logged[i]: {k: v.cpu() for k, v in snaps[i].items()} for i in chosen}
    return result


def _pick_snapshot_steps(history: dict, n: int) -> list[int]:
    """Indices into the logged rows: first, last, the phase boundaries, then the rows farthest in log-step."""
    steps = history["step"]
    n = min(n, len(steps))
    if n <= 0:
        return []
    idx = [0, len(steps) - 1][:n]
    phases = grokking_phases(history)
    for key in ("memorized", "generalized", "circuits", "test_loss_low"):
        s = phases.get(key)
        if s is not None and len(set(idx)) < n:
            idx.append(steps.index(s))
    idx = set(idx)
    logs = np.log1p(np.asarray(steps, dtype=float))
    while len(idx) < n:
        chosen = np.array(sorted(idx))
        dist = np.abs(logs[:, None] - logs[chosen][None, :]).min(1)
        dist[chosen] = -1
        idx.add(int(np.argmax(dist)))
    return sorted(idx)


def grokking_phases(history: dict, train_acc: float = 0.99, test_acc: float = 0.5,
                    test_loss: float = 0.01, weight_tol: float = 0.02) -> dict:
    """Steps that mark the phases of grokking, read off a logged history.

    Returns a dict with (``None`` where the event never happens):

    * ``memorized``: first step with training accuracy >= ``train_acc``
      (end of memorisation);
    * ``circuits``: the last step before ``generalized`` at which the test loss
      is at its maximum after memorisation (circuit formation starts while the
      test loss is still high; we mark where it peaks);
    * ``generalized``: first step with test accuracy >= ``test_acc`` (the
      cleanup phase is under way: test loss falls steeply);
    * ``test_loss_low``: first step with test loss <= ``test_loss``;
    * ``cleaned_up``: first step from ``generalized`` on at which the sum of
      squared weights is within ``weight_tol`` (relative) of its final value:
      weight decay has finished removing the memorising weights (``None``
      when the history has no ``sum_sq_weights``);
    * ``ratio``: ``generalized / memorized`` (grokking is visible when this is
      well above 1).

    Nanda et al.'s phases for their main run: memorisation 0-1.4k,
    circuit formation 1.4k-9.4k, cleanup 9.4k-14k epochs.

    >>> h = {"step": [0, 10, 20, 30, 40], "train_acc": [0, 1, 1, 1, 1], "test_acc": [0, 0, 0.1, 0.9, 1],
    ...      "test_loss": [5, 9, 8, 1, 0.001]}
    >>> grokking_phases(h)["generalized"], grokking_phases(h)["ratio"], grokking_phases(h)["cleaned_up"]
    (30, 3.0, None)

    Used in chapter 4.
    """
    for key in ("step", "train_acc", "test_acc", "test_loss"):
        if key not in history:
            raise ValueError(f"history needs {key!r}; it has {sorted(history)}")
    steps = history["step"]

    def first(key, ok):
        for s, v in zip(steps, history[key]):
            if v is not None and not (isinstance(v, float) and math.isnan(v)) and ok(v):
                return s
        return None

    mem = first("train_acc", lambda v: v >= train_acc)
    gen = first("test_acc", lambda v: v >= test_acc)
    low = first("test_loss", lambda v: v <= test_loss)
    clean = None
    if gen is not None and "sum_sq_weights" in history:
        final_w = history["sum_sq_weights"][-1]
        for s_, w in zip(steps, history["sum_sq_weights"]):
            if s_ >= gen and abs(w - final_w) <= weight_tol * abs(final_w):
                clean = s_
                break
    circ = None
    if mem is not None:
        window = [(v, s) for s, v in zip(steps, history["test_loss"]) if s >= mem and (gen is None or s < gen)]
        if window:
            circ = max(window)[1]
    ratio = gen / mem if mem and gen is not None else None
    return {"memorized": mem, "circuits": circ, "generalized": gen, "test_loss_low": low, "cleaned_up": clean,
            "ratio": ratio}


# ---------------------------------------------------------------------------
# Clock and pizza
# ---------------------------------------------------------------------------
def gradient_symmetricity(model, n_triples: int | None = None, seed: int = 0, layout: str | None = None,
                          embeddings=None) -> float:
    """Mean cosine similarity between ``d logit_c / d E(a)`` and ``d logit_c / d E(b)``.

    ``E(a)``, ``E(b)`` are the token-embedding vectors at the positions of ``a``
    and ``b`` (the output of ``hook_embed``), ``logit_c`` the logit of output
    ``c`` at the read position. A pizza's logits depend on ``E(a) + E(b)``, so
    the two gradients coincide (symmetricity 1); a clock multiplies the two
    angles: for an ideal one-frequency clock the cosine is ``cos w(a-b)``,
    whose mean is 0. Zhong et al. report 0.99 (pizza) and 0.33 (clock),
    averaging 100 sampled triples.

    Parameters
    ----------
    model : HookedTransformer or callable
        A callable ``f(x_a [n, d], x_b [n, d]) -> logits [n, p]`` stands for a
        hand-built logit function of the two embedding vectors; then pass
        ``embeddings [p, d]``.
    n_triples : int or None
        ``None``: the exact mean over all ``p^3`` triples ``(a, b, c)``;
        otherwise that many triples sampled uniformly with ``seed``.

    >>> p = 7; w = 2 * np.pi / p
    >>> E = torch.tensor([[np.cos(w * a), np.sin(w * a)] for a in range(p)])
    >>> pizza = lambda xa, xb: torch.tanh(xa + xb) @ E.T           # a function of E(a) + E(b)
    >>> round(gradient_symmetricity(pizza, embeddings=E), 6)
    1.0

    Used in chapter 4.
    """
    if isinstance(model, HookedTransformer):
        p, tokens = _all_tokens(model, layout)
        E = None
    elif callable(model):
        if embeddings is None:
            raise ValueError("a logit function needs embeddings=[p, d_model] (the vectors E(a))")
        E = embeddings if isinstance(embeddings, torch.Tensor) else torch.as_tensor(np.asarray(embeddings))
        if E.ndim != 2:
            raise ValueError(f"embeddings must be [p, d_model], got shape {tuple(E.shape)}")
        E = E.detach().double()
        p = E.shape[0]
    else:
        raise TypeError(f"model must be a HookedTransformer or a callable (x_a, x_b) -> logits, got {type(model).__name__}")
    check_positive_int(n_triples, "n_triples", allow_none=True)
    _check_seed(seed)
    if n_triples is None:
        pair_idx = torch.arange(p * p).repeat_interleave(p)
        outs = torch.arange(p).repeat(p * p)
    else:
        gen = torch.Generator().manual_seed(_check_seed(seed))
        pair_idx = torch.randint(0, p * p, (n_triples,), generator=gen)
        outs = torch.randint(0, p, (n_triples,), generator=gen)
    total = 0.0
    with eval_mode(model) if E is None else contextlib.nullcontext():
        for c in torch.unique(outs).tolist():
            rows = torch.unique(pair_idx[outs == c])
            counts = torch.bincount(pair_idx[outs == c], minlength=p * p)[rows].double()
            if E is None:
                emb = {}

                def grab(x, hook):
                    x = x.detach().requires_grad_(True)
                    emb["x"] = x
                    return x

                with model.hooks([("hook_embed", grab)]):
                    logits = model(tokens[rows.to(tokens.device)], read_positions=[-1])[:, 0, c]
                (g,) = torch.autograd.grad(logits.sum(), emb["x"])
                ga, gb = g[:, 0], g[:, 1]
            else:
                xa = E[rows // p].clone().requires_grad_(True)
                xb = E[rows % p].clone().requires_grad_(True)
                out = model(xa, xb)
                if out.ndim != 2 or out.shape[0] != len(rows) or out.shape[1] <= c:
                    raise ValueError(f"the logit function must return [n, p] logits, got shape {tuple(out.shape)}")
                ga, gb = torch.autograd.grad(out[:, c].sum(), (xa, xb))
            sim = F.cosine_similarity(ga.double(), gb.double(), dim=-1, eps=1e-30)
            total += float((sim.cpu() * counts).sum())
    return total / len(outs)


def correct_logit_by_sum_diff(model_or_logits, layout: str | None = None) -> np.ndarray:
    """The correct-answer logit arranged by ``(a + b mod p, a - b mod p)``: ``[p, p]``.

    Entry ``[s, d]`` is ``logit_{s}(a, b)`` for the unique ``(a, b)`` with
    ``a + b = s`` and ``a - b = d`` (p odd). A pizza's pattern varies with
    ``a - b`` (bands along ``s``); a clock's varies too, but not with ``a - b``:
    along each band it changes as much as over the whole square
    (:func:`distance_irrelevance` measures this).

    Used in chapter 4.
    """
    L = _resolve_logits(model_or_logits, layout)
    p = L.shape[0]
    _check_p(p, prime=False)
    s, d = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    half = pow(2, -1, p)
    a, b = ((s + d) * half) % p, ((s - d) * half) % p
    return L[a, b, s]


def distance_irrelevance(model_or_logits, layout: str | None = None) -> float:
    """How little the correct logit depends on ``a - b`` (Zhong et al.).

    With ``D[s, d]`` the correct-answer logit by ``(a+b, a-b)``
    (:func:`correct_logit_by_sum_diff`): the mean over ``d`` of the standard
    deviation over ``s``, divided by the standard deviation of all entries
    (population standard deviations). Near 1: the logit ignores ``a - b``
    (clock, paper 0.85); small: it is a function of ``a - b`` (pizza, paper 0.17).
    Computed on the *correct* logit (one public script uses the top wrong
    logit instead).

    >>> p = 13; a, b, c = np.ogrid[:p, :p, :p]
    >>> clock = np.cos(2 * np.pi * 3 * (a + b - c) / p) + 0 * a
    >>> pizza = np.abs(np.cos(np.pi * 3 * (a - b) / p)) * np.cos(2 * np.pi * 3 * (a + b - c) / p)
    >>> round(distance_irrelevance(pizza), 3), distance_irrelevance(clock + np.sin(a * b + c)) > 0.6
    (0.0, True)

    Used in chapter 4.
    """
    D = correct_logit_by_sum_diff(model_or_logits, layout)
    total = D.std()
    if total == 0:
        raise ValueError("the correct logit is constant over all inputs; distance irrelevance is undefined")
    return float(D.std(axis=0).mean() / total)


def plot_logit_pattern(model_or_logits, ax=None, title: str | None = None, layout: str | None = None,
                       colorbar: bool = True):
    """Heat map of the correct logit by ``(a + b, a - b)``; returns the Axes.

    Used in chapter 4.
    """
    import matplotlib.pyplot as plt

    D = correct_logit_by_sum_diff(model_or_logits, layout)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2))
    im = ax.imshow(D.T, origin="lower", cmap="viridis", aspect="auto")
    ax.grid(False)
    ax.set_xlabel("a + b  (mod p)")
    ax.set_ylabel("a − b  (mod p)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="correct logit")
    return ax


def plot_embedding_spectrum(model_or_W_E, ax=None, key_freqs: Iterable[int] = (), title: str | None = None,
                            p: int | None = None):
    """Bar chart of :func:`embedding_spectrum` (frequencies 1..(p-1)/2), key frequencies highlighted.

    Used in chapter 4.
    """
    if isinstance(key_freqs, (str, bytes)) or not hasattr(key_freqs, "__iter__"):
        raise TypeError(f"key_freqs must be a sequence of ints, got {key_freqs!r}")
    key_freqs = [check_int(k, "key_freqs entry", 1) for k in key_freqs]
    import matplotlib.pyplot as plt

    norms = embedding_spectrum(model_or_W_E, p)[1:]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    keys = set(int(k) for k in key_freqs)
    k = np.arange(1, len(norms) + 1)
    ax.bar(k, norms, color=["C3" if i in keys else "C0" for i in k], width=0.8)
    for i in sorted(keys):
        ax.annotate(str(i), (i, norms[i - 1]), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("frequency k")
    ax.set_ylabel("‖Fourier component of W_E‖")
    if title:
        ax.set_title(title)
    return ax


def plot_grokking(history: dict, ax=None, phases: bool = True, title: str | None = None):
    """Train and test loss on log-log axes with the phase boundaries of :func:`grokking_phases`.

    Used in chapter 4.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    steps = np.maximum(np.asarray(history["step"], dtype=float), 1)
    ax.plot(steps, history["train_loss"], label="train loss")
    ax.plot(steps, history["test_loss"], label="test loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step (= epoch, full batch)")
    ax.set_ylabel("cross-entropy")
    if phases:
        ph = grokking_phases(history)
        for key, style in (("memorized", ":"), ("circuits", "--"), ("generalized", "-."), ("cleaned_up", "-")):
            if ph[key] is not None:
                ax.axvline(max(ph[key], 1), color="0.4", ls=style, lw=1, label=f"{key} ({ph[key]})")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def _model_at(cfg: TransformerConfig, state: dict) -> HookedTransformer:
    m = HookedTransformer(cfg)
    m.load_state_dict(state)
    m.eval()
    return m


def snapshot_explorer(cfg: TransformerConfig, snapshots: dict, neuron: int = 0):
    """A slider over training snapshots showing ``W_E``'s spectrum and one neuron (an interactive figure).

    ``snapshots`` is ``{step: state_dict}`` (``store.load(..., snapshots=True)``).
    Returns a :class:`helpers.widgets.InteractiveFigure` whose static twin (what
    the HTML book shows) has every snapshot side by side.

    Used in chapter 4.
    """
    from helpers.widgets import interactive_figure

    if not snapshots:
        raise ValueError("snapshots is empty")
    import ipywidgets as W

    steps = sorted(snapshots)
    models: dict = {}

    def draw(fig, step, neuron):
        if step not in models:
            models[step] = _model_at(cfg, snapshots[step])
        m = models[step]
        ax_spec, ax_neuron = fig.subplots(2, 1)
        plot_embedding_spectrum(m, ax=ax_spec, title=f"step {step}")
        ax_neuron.imshow(neuron_activations(m)[:, :, neuron], cmap="magma", origin="lower")
        ax_neuron.grid(False)
        ax_neuron.set_xlabel("b")
        ax_neuron.set_ylabel("a")
        ax_neuron.set_title(f"neuron {neuron}", fontsize=9)

    controls = {"step": W.SelectionSlider(options=steps, value=steps[-1], description="step"),
                "neuron": W.BoundedIntText(value=neuron, min=0, max=cfg.d_mlp - 1, description="neuron")}
    return interactive_figure(draw, controls, static_values=[{"step": t} for t in steps], figsize=(3.0, 5.2),
                              ncols=min(3, len(steps)),  # rows of three: legible on a phone
                              caption=f"W_E's spectrum (top) and neuron {neuron} over (a, b) (bottom) at every saved "
                                      "step. Run this page in Jupyter to pick a step and any neuron.")


def snapshot_explorer_static(cfg: TransformerConfig, snapshots: dict, neuron: int = 0):
    """Static twin of :func:`snapshot_explorer`: every snapshot side by side; returns the figure.

    Not named on chapter 4's page (the page's snapshot explorer shows it as its static copy).
    """
    return snapshot_explorer(cfg, snapshots, neuron).static_figure()


# ---------------------------------------------------------------------------
# Recipes: the shipped models
# ---------------------------------------------------------------------------
def train_canonical(seed: int = 0, p: int = 113, steps: int = 12000, stop_test_loss: float | None = None,
                    log_every: int = 100, n_snapshots: int = 6, progress: bool | None = False):
    """Train the canonical grokking model (Nanda et al.'s settings); returns ``(model, TrainResult)``.

    With seed 0 the model memorises by step 200, passes 50% test accuracy
    near step 5,400 and reaches a test loss below 0.01 near step 6,200; the
    cleanup (neurons becoming single-frequency, weight norm falling) goes on
    for several thousand steps more, hence the fixed 12,000 steps.

    Used in chapter 4.
    """
    t = CANONICAL_TRAINING
    model = HookedTransformer(canonical_config(p=p, seed=seed))
    data = make_data(p, t["frac_train"], seed=seed, layout="equals")
    result = train_modular(
        model, data, steps=steps, lr=t["lr"], weight_decay=t["weight_decay"], betas=t["betas"],
        warmup_steps=t["warmup_steps"], log_every=log_every, n_snapshots=n_snapshots,
        stop_test_loss=stop_test_loss, seed=seed, progress=progress, description=f"grokking p={p}",
    )
    return model, result


recipe("modadd_p113", "canonical grokking model: p=113, [a, b, =], 30% train, AdamW wd 1 (Nanda et al.)")(
    train_canonical)


def train_clock_pizza(attention: str = "normal", seed: int = 0, p: int = 59, steps: int = 3000,
                      stop_test_loss: float | None = None, log_every: int = 100, n_snapshots: int = 0,
                      init: str = "zhong", progress: bool | None = False):
    """Train one model of Zhong et al.'s family (p = 59, 80% train, wd 2); returns ``(model, TrainResult)``.

    The history also logs distance irrelevance and, at the last step, gradient
    symmetricity (exact, all ``p^3`` triples). Training runs a fixed number of
    steps, not until the test loss is low: these models generalise within a
    few hundred steps, but whether they end up a clock or a pizza is settled
    only later (distance irrelevance keeps drifting for a thousand steps or
    more), so ``steps`` defaults to 3,000 (Zhong et al. train 20,000 epochs).

    ``init="zhong"`` draws ``W_in`` with standard deviation ``1/sqrt(d_mlp)``
    as Zhong et al.'s code does (every other weight as in
    :func:`canonical_config`); ``"default"`` keeps ``1/sqrt(d_model)``. With
    the default initialisation one of our five constant-attention seeds ended
    as a mixed solution (distance irrelevance 0.58); with Zhong et al.'s it is
    a pizza.

    Trains chapter 4's clock/pizza checkpoints; the page loads them with ``store.load(clock_pizza_name(...))``.
    """
    if init not in ("zhong", "default"):
        raise ValueError(f"init must be 'zhong' or 'default', got {init!r}")
    t = CLOCK_PIZZA_TRAINING
    model = HookedTransformer(clock_pizza_config(attention, p=p, seed=seed))
    if init == "zhong":
        with torch.no_grad():
            for block in model.blocks:
                block.mlp.W_in.mul_(math.sqrt(model.cfg.d_model / model.cfg.d_mlp))
    data = make_data(p, t["frac_train"], seed=seed, layout="pair")
    result = train_modular(
        model, data, steps=steps, lr=t["lr"], weight_decay=t["weight_decay"], betas=t["betas"],
        warmup_steps=t["warmup_steps"], log_every=log_every, n_snapshots=n_snapshots,
        stop_test_loss=stop_test_loss, clock_pizza_metrics=True, seed=seed, progress=progress,
        description=f"{attention} attention p={p} seed {seed}",
    )
    return model, result


def clock_pizza_name(attention: str, seed: int) -> str:
    """Checkpoint name of a shipped clock/pizza-family model, e.g. ``modadd_p59_constant_s2``.

    Used in chapter 4.
    """
    if attention not in ("normal", "constant"):
        raise ValueError(f"attention must be 'normal' or 'constant', got {attention!r}")
    return f"modadd_p59_{attention}_s{int(seed)}"


CLOCK_PIZZA_SEEDS = tuple(range(5))


def _clock_pizza_recipe(attention: str, s: int):
    def fn(seed: int = s, steps: int = 3000, stop_test_loss: float | None = None, progress: bool | None = False):
        return train_clock_pizza(attention, seed=seed, steps=steps, stop_test_loss=stop_test_loss, progress=progress)

    fn.__doc__ = f"Zhong et al.'s p=59 model with {attention} attention, seed {s}."
    fn.__name__ = fn.__qualname__ = f"train_{clock_pizza_name(attention, s)}"
    return fn


def _register_clock_pizza() -> None:
    for attention in ("normal", "constant"):
        for s in CLOCK_PIZZA_SEEDS:
            fn = _clock_pizza_recipe(attention, s)
            recipe(clock_pizza_name(attention, s), fn.__doc__)(fn)


_register_clock_pizza()


# ---------------------------------------------------------------------------
# Long clock/pizza runs: do the metrics settle?
# ---------------------------------------------------------------------------
LONG_RUN_STAGES = (6000, 9000)
"""Step counts of the shipped long clock/pizza checkpoints, each continuing the one before.

The first stage continues the 3,000-step family run; each later stage
continues the previous stage's checkpoint. Zhong et al. train 20,000 epochs
(full batch, so steps = epochs); 20,000 steps for four runs is about 100
CPU-minutes here, over this book's training budget, so the runs stop at the
last stage."""

LONG_RUN_STEPS = LONG_RUN_STAGES[-1]
"""Total steps of the longest shipped clock/pizza runs."""

LONG_RUN_SEEDS = (0, 1)


def train_clock_pizza_long(attention: str = "normal", seed: int = 0, steps: int = LONG_RUN_STAGES[0],
                           log_every: int = 250, n_triples: int = 2000, base_name: str | None = None,
                           progress: bool | None = False):
    """Train a shipped clock/pizza model on to ``steps`` steps in all.

    Loads ``base_name`` (default ``clock_pizza_name(attention, seed)``, the
    3,000-step run of :func:`train_clock_pizza`; the later stages pass the
    previous stage's ``clock_pizza_long_name``) and continues with the same
    data and optimiser settings; the AdamW moments are not stored with a
    checkpoint, so they restart from zero (with the 10-step warm-up) at the
    start of each continuation. The returned history is the base run's
    followed by the continuation's (every ``log_every`` steps), with
    ``grad_symmetricity`` at every continuation row: estimated from
    ``n_triples`` sampled triples (seed 0), exact (all ``p^3`` triples) at the
    last step. ``restricted_loss`` and ``excluded_loss`` use each part's own
    final key frequencies. No snapshots are kept. Returns ``(model, TrainResult)``.

    Trains chapter 4's long-run checkpoints (``clock_pizza_long_name``).
    """
    from helpers import store

    base = store.load(base_name if base_name is not None else clock_pizza_name(attention, seed))
    start = int(base.manifest["steps"])
    if steps <= start:
        raise ValueError(f"steps must exceed the base run's {start} steps, got {steps}")
    model = base.model
    t = CLOCK_PIZZA_TRAINING
    data = make_data(model.cfg.d_vocab_out, t["frac_train"], seed=seed, layout="pair")
    result = train_modular(
        model, data, steps=steps - start, lr=t["lr"], weight_decay=t["weight_decay"], betas=t["betas"],
        warmup_steps=t["warmup_steps"], log_every=log_every, n_snapshots=10 ** 9, clock_pizza_metrics=True,
        seed=seed, progress=progress, description=f"{attention} attention seed {seed}, steps {start}-{steps}",
    )
    cont = result.history
    probe = copy.deepcopy(model)
    gs = []
    for i, step in enumerate(cont["step"]):
        if i == len(cont["step"]) - 1:
            gs.append(gradient_symmetricity(model))
        else:
            probe.load_state_dict(result.snapshots[step])
            gs.append(gradient_symmetricity(probe, n_triples=n_triples, seed=0))
    cont["grad_symmetricity"] = gs
    merged = {}
    for key in set(base.history) | set(cont):
        old = list(base.history.get(key, [math.nan] * len(base.history["step"])))
        new = list(cont.get(key, [math.nan] * len(cont["step"])))[1:]  # row 0 is the shipped final model
        if key == "step":
            new = [start + int(x) for x in new]
        merged[key] = old + new
    result.history = merged
    result.steps = steps
    result.snapshots = {}
    return model, result


def clock_pizza_long_name(attention: str, seed: int, steps: int = LONG_RUN_STAGES[0]) -> str:
    """Checkpoint name of a long clock/pizza run, e.g. ``modadd_p59_normal_long_s0``.

    ``steps`` is one of :data:`LONG_RUN_STAGES`: the first stage (6,000 steps)
    is ``..._long_s<seed>``, a later one ``..._long<steps>_s<seed>``
    (``modadd_p59_normal_long9000_s0``).

    Used in chapter 4.
    """
    if steps not in LONG_RUN_STAGES:
        raise ValueError(f"steps must be one of {LONG_RUN_STAGES}, got {steps!r}")
    tag = "_long" if steps == LONG_RUN_STAGES[0] else f"_long{int(steps)}"
    return clock_pizza_name(attention, seed).replace(f"_s{int(seed)}", f"{tag}_s{int(seed)}")


def _clock_pizza_long_recipe(attention: str, s: int, stage: int):
    total = LONG_RUN_STAGES[stage]
    base = None if stage == 0 else clock_pizza_long_name(attention, s, LONG_RUN_STAGES[stage - 1])

    def fn(seed: int = s, steps: int = total, progress: bool | None = False):
        return train_clock_pizza_long(attention, seed=seed, steps=steps, base_name=base, progress=progress)

    fn.__doc__ = (f"Zhong et al.'s p=59 model with {attention} attention, seed {s}, {total} steps"
                  + (f" (continues {base})." if base else "."))
    fn.__name__ = fn.__qualname__ = f"train_{clock_pizza_long_name(attention, s, total)}"
    return fn


for _stage in range(len(LONG_RUN_STAGES)):
    for _attention in ("normal", "constant"):
        for _s in LONG_RUN_SEEDS:
            _fn = _clock_pizza_long_recipe(_attention, _s, _stage)
            recipe(clock_pizza_long_name(_attention, _s, LONG_RUN_STAGES[_stage]), _fn.__doc__)(_fn)
del _stage, _attention, _s, _fn

__all__ += ["LONG_RUN_STAGES", "LONG_RUN_STEPS", "LONG_RUN_SEEDS", "train_clock_pizza_long", "clock_pizza_long_name"]


# ---------------------------------------------------------------------------
# Constant attention in weights trained elsewhere
# ---------------------------------------------------------------------------
_QK_NAMES = ("W_Q", "W_K", "b_Q", "b_K")


def _negligible_qk(w: dict, layer: int, rtol: float = 1e-6) -> bool:
    """True when layer ``layer``'s W_Q and W_K are ~0 relative to its W_V (largest entries)."""
    def amax(name):
        v = w.get(f"blocks.{layer}.attn.{name}")
        return None if v is None else float(np.abs(_as_numpy(v)).max(initial=0.0))

    q, k, v = amax("W_Q"), amax("W_K"), amax("W_V")
    return q is not None and k is not None and max(q, k) <= rtol * max(v or 0.0, 1e-30)


def _constant_attention_qk(w: dict, cfg: TransformerConfig, mode_given: bool) -> dict:
    """Drop W_Q/W_K for a constant-attention config; warn about ~0 W_Q/W_K read as normal attention."""
    import warnings

    layers = range(cfg.n_layers)
    if cfg.attention_mode == "constant":
        kept = {}
        for name, v in w.items():
            parts = name.split(".")
            if len(parts) == 4 and parts[0] == "blocks" and parts[2] == "attn" and parts[3] in _QK_NAMES:
                continue
            kept[name] = v
        loud = [layer for layer in layers if f"blocks.{layer}.attn.W_Q" in w and not _negligible_qk(w, layer)]
        if loud and mode_given:
            warnings.warn(f"attention_mode='constant': dropping W_Q/W_K of layer(s) {loud}, which are not ~0 "
                          "(the constant-attention model that made them did not use them)", stacklevel=3)
        return kept
    zero = [layer for layer in layers if _negligible_qk(w, layer)]
    if zero:
        warnings.warn(
            f"W_Q and W_K of layer(s) {zero} are ~0, so attention is uniform: these weights are read as "
            "constant attention with the *mean* convention. If they come from a constant-attention model "
            "that adds the value vectors (Zhong et al.'s code), pass attention_mode='constant', "
            "constant_attention='sum'.", stacklevel=3)
    return w


# ---------------------------------------------------------------------------
# Clock or pizza: circularity and the logit-formula fits (Zhong et al.)
# ---------------------------------------------------------------------------
def circularity(model_or_W_E, n_components: int = 4, p: int | None = None) -> np.ndarray:
    """Zhong et al.'s circularity of each leading principal component of ``W_E[:p]``.

    The embedding rows ``0..p-1`` are centred over the tokens; each of the
    ``n_components`` leading principal directions gives a function of the
    token, ``[p]``; its circularity is the largest share of that function's
    squared norm carried by one frequency (cos and sin together). 1: the
    component is a pure wave, so pairs of components draw circles. Zhong et
    al. average the first four (``circularity(...).mean()``); both clocks and
    pizzas are circular, their "non-circular" algorithms are not.

    Returns
    -------
    numpy array [n_components], each in [0, 1].

    >>> p = 11; t = np.arange(p)
    >>> W = np.stack([3 * np.cos(2 * np.pi * 3 * t / p), 2 * np.sin(2 * np.pi * 3 * t / p),
    ...               np.cos(2 * np.pi * 5 * t / p), 0.5 * np.sin(2 * np.pi * 5 * t / p)], 1)
    >>> np.round(circularity(W), 6).tolist()
    [1.0, 1.0, 1.0, 1.0]

    Used in chapter 4.
    """
    if p is not None:
        _check_p(p, prime=False)
    if isinstance(model_or_W_E, HookedTransformer):
        p = p or task_of(model_or_W_E)[0]
        W = _as_numpy(model_or_W_E.W_E)[:p]
    else:
        W = _as_numpy(model_or_W_E)
        W = W[:p] if p is not None else W
    if W.ndim != 2:
        raise ValueError(f"W_E must be [d_vocab, d_model], got shape {W.shape}")
    if isinstance(n_components, bool) or not isinstance(n_components, int) or not 1 <= n_components <= min(W.shape):
        raise ValueError(f"n_components must be an int in 1..{min(W.shape)}, got {n_components!r}")
    W = W - W.mean(0)
    U, _, _ = np.linalg.svd(W, full_matrices=False)
    comps = U[:, :n_components]                                  # [p, n] unit columns, mean 0
    B = _basis_np(W.shape[0])
    coef = B @ comps                                             # [p, n]
    sq = coef ** 2
    per_freq = sq[1::2] + sq[2::2]                               # [(p-1)/2, n]
    return per_freq.max(0) / sq.sum(0)


def _pizza_term(p: int, k: int) -> np.ndarray:
    """``|cos w(a-b)/2| (|cos w(a+b-c)/2| - |sin w(a+b-c)/2|)``, ``[p, p, p]``: one frequency of a pizza."""
    a, b, c = np.ogrid[:p, :p, :p]
    w = 2 * np.pi * k / p
    d = np.abs(np.cos(w * (a - b) / 2))
    s = w * (a + b - c) / 2
    return d * (np.abs(np.cos(s)) - np.abs(np.sin(s)))


def _formula_fve(L: np.ndarray, k: int) -> dict:
    """Share of the variance of ``L [p, p, p]`` (centred over c) explained by one clock or one pizza term."""
    p = L.shape[0]
    a, b, c = np.ogrid[:p, :p, :p]
    y = (L - L.mean(-1, keepdims=True)).ravel()
    total = float(y @ y)
    out = {"variance": total}
    for name, t in (("clock", np.cos(2 * np.pi * k * (a + b - c) / p) + 0.0 * a), ("pizza", _pizza_term(p, k))):
        t = np.broadcast_to(t, (p, p, p))
        x = (t - t.mean(-1, keepdims=True)).ravel()
        out[name] = float((x @ y) ** 2 / (x @ x) / total) if total > 0 else 0.0
    return out


def clock_pizza_logit_fit(model, key_freqs: Sequence[int], layout: str | None = None,
                          freeze_attention: bool = True) -> dict:
    """How well the clock formula and the pizza formula explain each circle's logits (Zhong et al.).

    For each key frequency ``k``, the circle is isolated: the embedding rows
    ``0..p-1`` are projected onto ``span{1, cos w_k x, sin w_k x}`` and the
    model is run on all inputs. Its logits, centred over ``c``, are fitted by
    least squares (one coefficient) with

    * clock: ``cos w_k(a+b-c)``;
    * pizza: ``|cos w_k(a-b)/2| (|cos w_k(a+b-c)/2| - |sin w_k(a+b-c)/2|)``,
      what a pizza computes from ``E(a) + E(b)`` (Zhong et al.'s ``Q_pizza``),
      centred over ``c`` like the logits.

    An ideal pizza circle is explained 100% by the pizza formula and about
    77% by the clock formula (the two overlap), an ideal clock the other
    way round.

    With normal (softmax) attention the attention pattern is itself a
    function of the whole embedding: isolating a circle in ``W_E`` would also
    change *where* the model attends (for the pair layout, every pattern
    computed from one circle's embedding), so the isolated circle would be
    read through an attention the trained model never uses. With
    ``freeze_attention=True`` (the default) each isolated run keeps the full
    model's attention pattern (``hook_pattern`` patched from a clean run on
    the same inputs), so only the values and the residual stream carry the
    one circle: the circle's contribution given the model's own attention,
    the frozen-pattern move of Elhage et al.'s framework. For constant
    attention the pattern does not depend on the input, so both settings
    give the same numbers; ``freeze_attention=False`` is the plain isolation.
    On chapter 4's normal-attention models freezing moves the fits by less
    than 0.02: the pattern is not why the whole-logit fits are low there (see
    the next paragraph).

    Isolating a circle in the embedding does not always isolate it in the
    logits. In our normal-attention models a large share of an isolated
    circle's logit variance sits at *other* output frequencies (a
    cross-frequency term; freezing the attention pattern does not remove it,
    and we have not traced which neurons write it), which neither formula
    has, so both fits are low there whatever the circle computes. Both formulas live
    at the circle's own output frequency and its third harmonic (the pizza
    formula has 99.9% of its variance at ``k`` and ``3k``, the clock formula
    100% at ``k``), so the ``*_own`` entries fit the part of the logits at
    output frequencies ``k`` and ``3k`` (mod ``p``, folded) only; ``"own"`` is
    that part's share of the circle's logit variance. The whole-variance
    fits suit constant attention, where ``own`` is near 1; the own-frequency
    fits say what each circle computes in either kind of model.

    Returns
    -------
    dict with ``"freqs"`` (list), ``"clock"``, ``"pizza"`` (numpy arrays
    [K], share of the isolated circle's logit variance explained),
    ``"own"``, ``"clock_own"``, ``"pizza_own"`` ([K]: the own-frequency share
    and the fits on that part), ``"weight"`` (each circle's share of the
    summed logit variance) and ``"clock_mean"``, ``"pizza_mean"``,
    ``"own_mean"``, ``"clock_own_mean"``, ``"pizza_own_mean"`` (averages with
    those weights).

    Used in chapter 4.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer (circles are isolated in its embedding), "
                        f"got {type(model).__name__}")
    if not isinstance(freeze_attention, bool):
        raise TypeError(f"freeze_attention must be a bool, got {type(freeze_attention).__name__}")
    p, _ = task_of(model, layout)
    freqs = _check_freqs(key_freqs, p)
    B = fourier_basis(p).to(dtype=model.W_E.dtype, device=model.W_E.device)
    W = model.W_E.detach()
    probe = copy.deepcopy(model)
    hooks = []
    if freeze_attention:
        _, tokens = _all_tokens(model, layout)
        names = [act_name("pattern", layer) for layer in range(model.cfg.n_layers)]
        with torch.no_grad(), eval_mode(model):
            _, cache = model.run_with_cache(tokens, names_filter=names, read_positions=[-1])
        frozen = {name: cache[name] for name in names}

        def put_back(pattern, hook):
            return frozen[hook.name]

        hooks = [(name, put_back) for name in names]
    fits = {"clock": [], "pizza": [], "own": [], "clock_own": [], "pizza_own": []}
    var = []
    for k in freqs:
        Bk = B[[0, 2 * k - 1, 2 * k]]
        with torch.no_grad():
            probe.embed.W_E[:p] = Bk.T @ (Bk @ W[:p])
        with probe.hooks(hooks):
            L = logit_tensor(probe, layout)
        one = _formula_fve(L, k)
        var.append(one["variance"])
        L_own = _keep_output_freqs(L, {k, _fold_freq(3 * k, p)})
        own = _formula_fve(L_own, k)
        fits["own"].append(own["variance"] / one["variance"] if one["variance"] > 0 else 0.0)
        for name in ("clock", "pizza"):
            fits[name].append(one[name])
            fits[name + "_own"].append(own[name])
    var = np.array(var)
    weight = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    out = {"freqs": freqs, **{name: np.array(v) for name, v in fits.items()}, "weight": weight}
    for name in fits:
        out[name + "_mean"] = float(weight @ out[name])
    return out


def _fold_freq(j: int, p: int) -> int:
    """Frequency ``j`` mod ``p`` folded into ``0..(p-1)/2`` (cos and sin of ``-j`` are those of ``j``)."""
    j %= p
    return min(j, p - j)


def _keep_output_freqs(L: np.ndarray, freqs) -> np.ndarray:
    """``L [a, b, c]`` centred over ``c`` with only the given frequencies of ``c`` kept."""
    p = L.shape[-1]
    F = np.fft.rfft(L - L.mean(-1, keepdims=True), axis=-1)
    keep = np.zeros(F.shape[-1], dtype=bool)
    keep[sorted(int(f) for f in freqs)] = True
    F[..., ~keep] = 0
    return np.fft.irfft(F, n=p, axis=-1)


# ---------------------------------------------------------------------------
# Where the multiplication happens (Nanda et al., section 4)
# ---------------------------------------------------------------------------
def attention_to_inputs(model, layout: str | None = None, layer: int = 0) -> np.ndarray:
    """Attention pattern of the read position over every input: ``[p, p, n_heads, n_ctx]``.

    Entry ``[a, b, h, j]`` is how much head ``h``, at the position the answer
    is read from (``=`` in the ``"equals"`` layout, ``b`` in ``"pair"``),
    attends to position ``j`` for input ``(a, b)``. Constant attention gives
    the same pattern everywhere.

    Used in chapter 4.
    """
    check_int(layer, "layer")
    p, tokens = _all_tokens(model, layout)
    name = f"blocks.{int(layer)}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[name], read_positions=[-1])
    pat = cache[name][:, :, -1]                                   # [batch, head, key]
    return pat.double().cpu().numpy().reshape(p, p, *pat.shape[1:])


def neuron_term_fve(acts, freqs) -> np.ndarray:
    """Share of each neuron's variance in the *linear* and in the *product* terms of its frequency.

    For neuron ``n`` with frequency ``k = freqs[n]``: the linear terms are
    ``cos/sin w_k a`` and ``cos/sin w_k b``, the product terms the four
    ``{cos, sin} w_k a * {cos, sin} w_k b`` (from which ``cos w_k(a+b)`` is
    built). The mean is removed first. A neuron whose input is a sum of a wave
    in ``a`` and a wave in ``b`` has only linear terms *before* the ReLU; the
    ReLU, being non-linear, turns part of it into products.

    Parameters
    ----------
    acts : array [p, p, d_mlp]
        Pre- or post-activations over all inputs (:func:`neuron_activations`).
    freqs : int array [d_mlp]
        Frequency of each neuron (e.g. ``neuron_clusters(...).freq``); entries
        ``< 1`` give NaN rows.

    Returns
    -------
    numpy array [d_mlp, 2]: columns (linear, product).

    >>> p = 11; a = np.arange(p)[:, None]; b = np.arange(p)[None, :]
    >>> pre = np.cos(2 * np.pi * 3 * a / p) + np.cos(2 * np.pi * 3 * b / p)
    >>> np.round(neuron_term_fve(np.stack([pre, np.maximum(pre, 0)], -1), [3, 3]), 2).tolist()
    [[1.0, 0.0], [0.75, 0.22]]

    Used in chapter 4.
    """
    x = _as_numpy(acts)
    if x.ndim != 3 or x.shape[0] != x.shape[1]:
        raise ValueError(f"acts must be [p, p, d_mlp], got shape {x.shape}")
    f = np.asarray(freqs).astype(int).ravel()
    if f.shape[0] != x.shape[2]:
        raise ValueError(f"freqs must have one entry per neuron ({x.shape[2]}), got {f.shape[0]}")
    p = x.shape[0]
    C2 = fourier_2d(x) ** 2
    total = C2.sum((0, 1)) - C2[0, 0]
    out = np.full((x.shape[2], 2), np.nan)
    for n, k in enumerate(f):
        if k < 1 or k > (p - 1) // 2 or total[n] <= 0:
            continue
        idx = [2 * k - 1, 2 * k]
        out[n, 0] = (C2[idx, 0, n].sum() + C2[0, idx, n].sum()) / total[n]
        out[n, 1] = C2[np.ix_(idx, idx, [n])].sum() / total[n]
    return out


def unembed_fourier_by_cluster(model, clusters: NeuronClusters, layer: int = 0) -> tuple[list[int], np.ndarray]:
    """How each neuron cluster's output map ``W_L = W_out W_U`` spreads over frequencies of ``c``.

    For each cluster (the neurons of one frequency, :func:`neuron_clusters`),
    the rows of ``W_L [d_mlp, p]`` that belong to it are Fourier-transformed
    along ``c`` and the squared norms summed per frequency.

    Returns
    -------
    (cluster frequencies, numpy array [n_clusters, (p-1)//2 + 1])
        Row ``i``: share of cluster ``i``'s squared norm at each frequency of
        ``c`` (index 0 = the constant); rows sum to 1.

    Used in chapter 4.
    """
    p, _ = task_of(model)
    W_L = _as_numpy(model.blocks[layer].mlp.W_out) @ _as_numpy(model.W_U)          # [d_mlp, p]
    freqs = sorted(clusters.clusters)
    rows = []
    for k in freqs:
        coef = W_L[clusters.clusters[k]] @ _basis_np(p).T                            # [n, p]
        sq = (coef ** 2).sum(0)
        per = np.concatenate([[sq[0]], sq[1::2] + sq[2::2]])
        rows.append(per / per.sum())
    return freqs, np.array(rows)


def fourier_ablation_losses(model, key_freqs: Sequence[int], layout: str | None = None) -> dict:
    """Loss over all inputs after keeping only, or removing, the key frequencies at three places.

    * ``"embedding"``: the rows ``0..p-1`` of ``W_E`` projected onto (keep) or
      off (remove) ``span{cos/sin w_k x : k in key_freqs}``; the constant
      direction is kept in both;
    * ``"neurons"``: the MLP activations' directions ``cos/sin w_k(a+b)``
      (:func:`restricted_loss` / :func:`excluded_loss` with ``definition="mlp"``);
    * ``"logits"``: the same on the logits (``definition="logits"``).

    Returns
    -------
    dict: ``"full"`` and ``(place, "keep" | "remove")`` -> cross-entropy over all ``p^2`` pairs.

    Used in chapter 4.
    """
    p, tokens = _all_tokens(model, layout)
    freqs = _check_freqs(key_freqs, p)
    L = logit_tensor(model, layout)
    out = {"full": _ce_subset(L, None)}
    for where, definition in (("neurons", "mlp"), ("logits", "logits")):
        src = model if definition == "mlp" else L
        out[where, "keep"] = restricted_loss(src, freqs, definition=definition, layout=layout)
        out[where, "remove"] = excluded_loss(src, freqs, definition=definition, layout=layout)
    B = fourier_basis(p).to(dtype=model.W_E.dtype, device=model.W_E.device)
    rows = [2 * k - 1 for k in freqs] + [2 * k for k in freqs]
    Bk = B[rows]                                                     # [2K, p]
    probe = copy.deepcopy(model)
    W = model.W_E.detach()
    for mode in ("keep", "remove"):
        proj = Bk.T @ (Bk @ W[:p])
        const = B[:1].T @ (B[:1] @ W[:p])
        new = const + proj if mode == "keep" else W[:p] - proj
        with torch.no_grad():
            probe.embed.W_E[:p] = new
        out["embedding", mode] = _ce_subset(logit_tensor(probe, layout), None)
    return out


def unembedding_spectrum(model_or_W_U) -> np.ndarray:
    """Norm of each frequency of the unembedding ``W_U [d_model, p]`` along the output ``c``.

    The output-side counterpart of :func:`embedding_spectrum`; its Gini
    coefficient is the paper's second sparsity measure.

    Returns
    -------
    numpy array [(p-1)//2 + 1], index = frequency (0 = constant).

    Used in chapter 4.
    """
    W_U = model_or_W_U.W_U if isinstance(model_or_W_U, HookedTransformer) else model_or_W_U
    return fourier_norms(W_U, axis=1)


__all__ += ["circularity", "clock_pizza_logit_fit", "attention_to_inputs", "neuron_term_fve",
            "unembed_fourier_by_cluster", "fourier_ablation_losses", "unembedding_spectrum"]
