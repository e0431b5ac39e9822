"""Chapter 3 exercises: reference solutions and check functions.

Each ``check_<x>(fn, ...)`` calls the reader's ``fn`` on cases with known
answers and raises ``AssertionError`` with a hint when it is wrong (it returns
True otherwise); ``solution_<x>`` is the reference answer (tested in
``tests/test_exercises_ch3.py``).

Used in chapter 3.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from helpers import circuits as C
from helpers.transformer import HookedTransformer

__all__ = [
    "solution_path_expansion", "check_path_expansion",
    "solution_composition_scores", "check_composition_scores",
    "solution_eigen_copying", "check_eigen_copying",
    "solution_find_induction_by_weights", "check_find_induction_by_weights",
    "solution_ablation_table", "check_ablation_table",
]


def _check_plain_attn_only(model) -> None:
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a helpers.transformer.HookedTransformer, got {type(model).__name__}")
    c = model.cfg
    if not c.attn_only or c.normalization or c.final_normalization or c.attn_bias or c.unembed_bias:
        raise ValueError("the path expansion here needs an attention-only model without normalization or biases")
    if c.positional_embedding != "learned" or c.attention_mode != "normal":
        raise ValueError("the path expansion here needs learned positions and normal attention")


# ---------------------------------------------------------------------------
# 1. The path expansion (implement)
# ---------------------------------------------------------------------------
@torch.no_grad()
def solution_path_expansion(model: HookedTransformer, tokens) -> dict[str, torch.Tensor]:
    """Exercise ch3-ex-paths: split the logits of an attention-only model into its paths.

    With the attention patterns ``A^h`` frozen at their values on ``tokens``,
    the logits of an attention-only transformer without normalization are a
    sum over paths. With ``x0 = W_E[tokens] + W_pos`` (``[pos, d_model]``
    per sequence)::

        logits = x0 W_U                                      "direct"
               + sum_h  A^h x0 W_OV^h W_U                    "L{l}H{h}"   (one head)
               + sum_{h<h'} A^{h'} A^h x0 W_OV^h W_OV^{h'} W_U  "L0H1>L1H2" (virtual head)
               + ...                                         (longer chains in deeper models)

    Every term is one path: a chain of heads in increasing layers.

    Parameters
    ----------
    model : HookedTransformer
        Attention-only, no normalization, no biases.
    tokens : Tensor ``[batch, pos]`` (or a ``RepeatData``)

    Returns
    -------
    dict path name -> Tensor ``[batch, pos, d_vocab_out]``, summing to the logits.

    Used in chapter 3.

    >>> m = C.induction_head_model(d_vocab=6, n_ctx=7)
    >>> t = torch.tensor([[0, 1, 2, 3, 1, 2, 3]])
    >>> paths = solution_path_expansion(m, t)
    >>> list(paths)
    ['direct', 'L0H0', 'L1H0', 'L0H0>L1H0']
    >>> torch.allclose(sum(paths.values()), m(t).double(), atol=1e-4)
    True
    """
    _check_plain_attn_only(model)
    tokens = tokens.tokens if isinstance(tokens, C.RepeatData) else torch.as_tensor(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    patterns = C.attention_patterns(model, tokens).double()  # [b, L, H, q, k]
    n_pos = tokens.shape[1]
    x0 = (model.W_E[tokens] + model.W_pos[:n_pos]).double()  # [b, p, d]
    W_U = model.W_U.double()
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ov = torch.stack([C.ov_matrix(model, l) for l in range(L)]).double()  # [L, H, d, d]
    out = {"direct": x0 @ W_U}
    for length in range(1, L + 1):
        for layers in itertools.combinations(range(L), length):
            for heads in itertools.product(range(H), repeat=length):
                x = x0
                for l, h in zip(layers, heads):
                    x = patterns[:, l, h] @ x @ ov[l, h]
                out[">".join(f"L{l}H{h}" for l, h in zip(layers, heads))] = x @ W_U
    return out


def check_path_expansion(fn: Callable, model: HookedTransformer | None = None, tokens=None) -> bool:
    """Check a reader's path expansion ``fn(model, tokens) -> dict of path logits``.

    Compares the sum of the returned paths with the model's logits, and each
    path with the reference solution.

    Used in chapter 3.
    """
    if model is None:  # the hand-built circuit, then a random model in which every path is nonzero
        hand = C.induction_head_model(d_vocab=8, n_ctx=9, basis="random", seed=1, dtype="float64")
        check_path_expansion(fn, hand, tokens)
        model = HookedTransformer(C.induction_config(2, d_vocab=10, n_ctx=9, d_model=8, n_heads=2, seed=2))
        tokens = None
    if tokens is None:
        tokens = C.repeated_tokens(4, 4, model.cfg.d_vocab, seed=3).tokens
    got = fn(model, tokens)
    if not isinstance(got, dict):
        raise AssertionError(f"return a dict of path name -> logits, got {type(got).__name__}")
    ref = solution_path_expansion(model, tokens)
    total = sum(torch.as_tensor(v, dtype=torch.float64) for v in got.values())
    logits = model(tokens).double()
    if total.shape != logits.shape or not torch.allclose(total, logits, atol=1e-4):
        raise AssertionError("your paths do not sum to the model's logits: is a path missing or counted twice? "
                             "(x0 = W_E[tokens] + W_pos; a head's path is pattern @ x @ W_OV)")
    missing = sorted(set(ref) - set(got))
    if missing:
        raise AssertionError(f"your paths sum correctly but these reference paths are missing: {missing}")
    for k in ref:
        if not torch.allclose(torch.as_tensor(got[k], dtype=torch.float64), ref[k], atol=1e-4):
            raise AssertionError(f"path {k!r} differs from the reference")
    return True


# ---------------------------------------------------------------------------
# 2. Composition scores by hand (implement)
# ---------------------------------------------------------------------------
@torch.no_grad()
def solution_composition_scores(model: HookedTransformer, kind: str) -> torch.Tensor:
    """Exercise ch3-ex-comp: Q-, K- or V-composition of every layer-0 head with every layer-1 head.

    ``||A B||_F / (||A||_F ||B||_F)`` with ``A = W_OV`` of the layer-0 head and
    ``B`` = ``W_QK`` (Q), ``W_QK^T`` (K) or ``W_OV`` (V) of the layer-1 head.

    Returns
    -------
    Tensor ``[n_heads (layer 0), n_heads (layer 1)]``

    Used in chapter 3.
    """
    H = model.cfg.n_heads
    out = torch.zeros(H, H, dtype=torch.float64)
    for h0, h1 in itertools.product(range(H), range(H)):
        A = (model.W_V[0, h0] @ model.W_O[0, h0]).double()
        qk = (model.W_Q[1, h1] @ model.W_K[1, h1].T).double()
        B = {"Q": qk, "K": qk.T, "V": (model.W_V[1, h1] @ model.W_O[1, h1]).double()}[kind]
        out[h0, h1] = torch.linalg.matrix_norm(A @ B) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B))
    return out


def check_composition_scores(fn: Callable, model: HookedTransformer | None = None) -> bool:
    """Check a reader's ``fn(model, kind) -> [n_heads, n_heads]`` against ``C.composition_scores``.

    Used in chapter 3.
    """
    if model is None:
        model = HookedTransformer(C.induction_config(2, d_vocab=20, n_ctx=12, d_model=16, n_heads=4, seed=4))
    refs = {k: C.composition_scores(model, k).double() for k in "QKV"}
    for kind in "QKV":
        got = torch.as_tensor(fn(model, kind), dtype=torch.float64)
        if got.shape != refs[kind].shape:
            raise AssertionError(f"{kind}: expected a table [n_heads of layer 0, n_heads of layer 1] = "
                                 f"{tuple(refs[kind].shape)}, got {tuple(got.shape)}")
        if torch.allclose(got, refs[kind], atol=1e-6):
            continue
        other = [k for k in "QKV" if k != kind and torch.allclose(got, refs[k], atol=1e-6)]
        if other:
            raise AssertionError(f"your {kind}-composition equals the reference {other[0]}-composition: Q reads "
                                 "through W_QK, K through W_QK transposed (the keys are on the right), V through W_OV")
        if torch.allclose(got.T, refs[kind], atol=1e-6):
            raise AssertionError(f"{kind}: your table is transposed; rows are layer-0 heads, columns layer-1 heads")
        raise AssertionError(f"{kind}: values differ from the reference; the score is ||A B||_F / (||A||_F ||B||_F) "
                             "with A = W_V W_O of the layer-0 head (it writes, so it comes first)")
    return True


# ---------------------------------------------------------------------------
# 3. Copying scores from a small matrix
# ---------------------------------------------------------------------------
@torch.no_grad()
def solution_eigen_copying(model: HookedTransformer, layer: int, head: int) -> tuple[float, float]:
    """Exercise ch3-ex-eigen: the eigenvalue copying score from a ``d_vocab`` or a ``d_model`` matrix.

    ``W_E W_OV W_U`` is ``d_vocab x d_vocab`` but has rank at most
    ``d_head``. Because ``AB`` and ``BA`` share their nonzero eigenvalues,
    it has the same nonzero eigenvalues as ``W_OV W_U W_E``
    (``d_model x d_model``) -- cycle ``W_E`` from the front to the back.

    Returns
    -------
    (score from the d_vocab matrix, score from the d_model matrix)

    Used in chapter 3.
    """
    big = C.full_ov_circuit(model, layer, head)
    small = C.ov_matrix(model, layer, head) @ model.W_U @ model.W_E
    return C.eigenvalue_copying_score(big), C.eigenvalue_copying_score(small)


def check_eigen_copying(fn: Callable, model: HookedTransformer | None = None) -> bool:
    """Check ``fn(model, layer, head) -> (score_vocab, score_model)`` against the reference.

    Used in chapter 3.
    """
    if model is None:
        model = HookedTransformer(C.induction_config(2, d_vocab=40, n_ctx=16, d_model=16, n_heads=2, seed=5))
    for l, h in itertools.product(range(model.cfg.n_layers), range(model.cfg.n_heads)):
        got = fn(model, l, h)
        ref = solution_eigen_copying(model, l, h)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise AssertionError(f"return a pair (score from W_E W_OV W_U, score from W_OV W_U W_E), got {got!r}")
        if abs(float(got[0]) - ref[0]) > 1e-4:
            raise AssertionError(f"head L{l}H{h}: the score of W_E W_OV W_U should be {ref[0]:.6f}, got "
                                 f"{float(got[0]):.6f}; use C.eigenvalue_copying_score on C.full_ov_circuit")
        if abs(float(got[1]) - ref[1]) > 1e-4:
            raise AssertionError(f"head L{l}H{h}: the small matrix should give the same score {ref[1]:.6f}, got "
                                 f"{float(got[1]):.6f}; move W_E from the front to the BACK: W_OV W_U W_E")
    return True


# ---------------------------------------------------------------------------
# 4. The circuit from the weights alone
# ---------------------------------------------------------------------------
@torch.no_grad()
def solution_find_induction_by_weights(model: HookedTransformer) -> tuple[tuple[int, int], tuple[int, int]]:
    """Exercise ch3-ex-weights: find the previous-token/induction pair from the weights alone.

    Without running the model, take the pair (layer-0 head, layer-1 head) with
    the largest K-composition score.

    Returns
    -------
    ((0, h0), (1, h1))

    Used in chapter 3.

    >>> solution_find_induction_by_weights(C.induction_head_model(d_vocab=6, n_ctx=5))
    ((0, 0), (1, 0))
    """
    k = C.composition_scores(model, "K")
    h0, h1 = divmod(int(k.argmax()), k.shape[1])
    return (0, h0), (1, h1)


def check_find_induction_by_weights(fn: Callable, model: HookedTransformer) -> bool:
    """Check ``fn(model) -> ((0, h0), (1, h1))`` against the reference.

    Used in chapter 3.
    """
    got = fn(model)
    ref = solution_find_induction_by_weights(model)
    try:
        same = tuple(map(tuple, got)) == ref
    except TypeError:
        same = False
    if not same:
        raise AssertionError(f"expected {ref}, got {got!r}: did you use K-composition (W_OV^0 against W_QK^1 "
                             "transposed), and return ((0, h0), (1, h1))?")
    return True


# ---------------------------------------------------------------------------
# 5. Which heads matter?
# ---------------------------------------------------------------------------
@torch.no_grad()
def solution_ablation_table(model: HookedTransformer, data, kind: str = "mean") -> torch.Tensor:
    """Exercise ch3-ex-ablate: how much does each head matter for the repeated half?

    Ablates every head in turn (mean ablation over ``data`` by default) and
    returns the increase of the mean loss on the second copy.

    Returns
    -------
    Tensor ``[n_layers, n_heads]``: ablated minus clean ``second_loss`` (nats).

    Used in chapter 3.
    """
    clean = C.repeat_metrics(model, data)["second_loss"]
    L, H = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(L, H, dtype=torch.float64)
    for l, h in itertools.product(range(L), range(H)):
        hooks = C.ablation_hooks(model, (l, h), kind, reference=data)
        out[l, h] = C.repeat_metrics(model, data, hooks)["second_loss"] - clean
    return out


def check_ablation_table(fn: Callable, model: HookedTransformer, data, kind: str = "mean",
                         atol: float = 1e-3) -> bool:
    """Check ``fn(model, data) -> [n_layers, n_heads]`` loss increases against the reference.

    Used in chapter 3.
    """
    got = torch.as_tensor(fn(model, data), dtype=torch.float64)
    ref = solution_ablation_table(model, data, kind)
    if got.shape != ref.shape:
        raise AssertionError(f"expected a table of shape {tuple(ref.shape)} [n_layers, n_heads], got {tuple(got.shape)}")
    if torch.allclose(got, -ref, atol=atol) and ref.abs().max() > atol:
        raise AssertionError("your table has the opposite sign: report ablated loss MINUS clean loss")
    if not torch.allclose(got, ref, atol=atol):
        worst = tuple(int(i) for i in divmod(int((got - ref).abs().argmax()), ref.shape[1]))
        raise AssertionError(f"largest difference at head L{worst[0]}H{worst[1]}: expected {ref[worst]:.4f}, "
                             f"got {got[worst]:.4f} (did you use {kind} ablation and the second-copy loss?)")
    return True
