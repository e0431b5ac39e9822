"""Regressions for issue 18's "silently wrong" list: each call used to return a
wrong result (or hang, or overwrite half a model); each must now raise a clear
error naming the argument, or propagate NaN, and valid calls keep their values."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from helpers import circuits as C
from helpers import decompositions as D
from helpers import modular as M
from helpers import notation as N
from helpers.training import accuracy, cross_entropy, train
from helpers.transformer import HookedTransformer, TransformerConfig, register_weight_transform


def tiny(seed=0, **kw):
    cfg = dict(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, n_ctx=3, seed=seed)
    return HookedTransformer(TransformerConfig(**{**cfg, **kw}))


def test_load_weights_is_all_or_nothing_and_refuses_complex():
    model, other = tiny(0), tiny(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = {k: v.clone() for k, v in other.named_parameters()}
    weights["unembed.W_U"][0, 0] = float("nan")  # the last tensor in order: every other one was assigned before
    with pytest.raises(ValueError, match=r"weights\['unembed.W_U'\] contains NaN"):
        model.load_weights(weights)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    weights = {k: v.clone() for k, v in other.named_parameters()}
    weights["embed.W_E"] = weights["embed.W_E"].to(torch.complex64)
    with pytest.raises(TypeError, match=r"weights\['embed.W_E'\] must be real"):
        model.load_weights(weights)
    model.load_weights({k: v.clone() for k, v in other.named_parameters()})
    assert torch.equal(model.W_E, other.W_E)


def test_train_refuses_ascent_and_metric_collisions():
    model = tiny()
    x = torch.randint(0, 5, (16, 3), generator=torch.Generator().manual_seed(0))
    y = x[:, 0]

    def loss(m, batch):
        return cross_entropy(m(batch[0])[:, -1], batch[1])

    for clip in (-1.0, 0.0, float("inf"), "1"):
        with pytest.raises((TypeError, ValueError), match="grad_clip"):
            train(model, (x, y), loss, steps=2, grad_clip=clip)
    for key in ("step", "train_loss"):
        with pytest.raises(ValueError, match=f"metrics_fn returned \\['{key}'\\]"):
            train(model, (x, y), loss, steps=2, metrics_fn=lambda m, key=key: {key: 0.0})
    for seed in ("abc", 1.5, None, 2**70, -1):
        with pytest.raises((TypeError, ValueError), match="seed"):
            train(model, (x, y), loss, steps=2, seed=seed)


def test_accuracy_and_cross_entropy_check_their_inputs():
    assert accuracy(torch.eye(3, 4), torch.tensor([0, 1, 2])) == 1.0
    for logits, targets, pattern in [
        (torch.eye(3, 4), [[0], [1], [2]], r"targets must have shape \(3,\)"),  # used to broadcast to 0.333
        (torch.zeros(3), [0, 1, 2], r"logits must be \[batch, classes\]"),
        (torch.eye(3, 4), [0, 1, 4], "targets must be < "),
        (torch.eye(3, 4), [0, -1, 2], "targets must be >= 0"),
        (torch.eye(3, 4), torch.tensor([0.0, 1.0, 2.0]), "integer"),
        (torch.eye(3, 4).to(torch.complex64), [0, 1, 2], "real floating point"),
        (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), "empty"),
    ]:
        for fn in (accuracy, cross_entropy):
            with pytest.raises((TypeError, ValueError), match=pattern):
                fn(logits, targets)
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(torch.eye(3, 4), torch.tensor([0.5, 1.0, 2.0]))  # used to truncate to class 0
    nan = torch.eye(3, 4)
    nan[1] = float("nan")
    assert accuracy(nan, torch.tensor([0, 1, 2])) == pytest.approx(2 / 3)  # a NaN row is not a right answer
    assert math.isnan(float(cross_entropy(nan, torch.tensor([0, 1, 2]))))  # and the loss propagates it


def test_restricted_and_excluded_loss_subsets():
    p = 7
    a, b, c = np.ogrid[:p, :p, :p]
    L = 5 * np.cos(2 * np.pi * 2 * (a + b - c) / p) + np.sin(a * b * c)
    mask = np.zeros(p * p, dtype=bool)
    mask[::3] = True
    assert M.excluded_loss(L, [2], np.flatnonzero(mask)) != M.excluded_loss(L, [2], [0, 1])
    for subset, pattern in [(mask, "boolean mask"), ([-1], r"subset indices must lie in \[0, p\*p"),
                            ([p * p], "subset indices"), ([0.5], "integer indices"), ([], "non-empty"),
                            (np.zeros((2, 2), dtype=int), "1-D")]:
        for fn in (M.restricted_loss, M.excluded_loss):
            with pytest.raises((TypeError, ValueError), match=pattern):
                fn(L, [2], subset)
    with pytest.raises(ValueError, match="odd"):
        M.restricted_loss(np.zeros((8, 8, 8)), [1])
    data = M.make_data(7) if hasattr(M, "make_data") else M.modular_data(7)
    L11 = np.zeros((11, 11, 11))
    with pytest.raises(ValueError, match=r"p = 11 but data is for p = 7"):
        M.progress_measures(L11, [1], data)


def test_pair_layout_on_an_equals_model_is_refused():
    model = HookedTransformer(M.canonical_config(p=7, d_model=8, n_heads=2, d_head=4, d_mlp=16))
    assert M.task_of(model) == (7, "equals")
    with pytest.raises(ValueError, match="layout='pair' on a model with an '=' token"):
        M.task_of(model, "pair")
    with pytest.raises(ValueError, match="layout='pair'"):
        M.logit_tensor(model, "pair")
    weights = {k: v.detach() for k, v in model.named_parameters()}
    with pytest.raises(ValueError, match="layout='pair'"):
        M.model_from_weights(weights, layout="pair")


def test_nan_is_refused_not_hidden():
    nan = torch.full((4, 4), float("nan"))
    with pytest.raises(ValueError, match="A contains NaN"):
        C.composition_score(nan, torch.eye(4))
    with pytest.raises(ValueError, match="M contains NaN"):
        C.copying_score(nan)
    inf = torch.eye(4)
    inf[0, 1] = float("inf")
    with pytest.raises(ValueError, match="M contains NaN or inf"):
        C.copying_score(inf)
    acts = np.full((7, 7, 3), np.nan)
    with pytest.raises(ValueError, match="acts contains NaN"):
        M.neuron_frequency_fve(acts)
    with pytest.raises(ValueError, match="acts contains NaN"):
        M.neuron_clusters(acts)
    T = D.random_cp_tensor((3, 4, 5), 2)
    with pytest.raises(ValueError, match="overflows"):
        D.cp_als(T * 1e200, 2)


def test_floats_are_not_truncated_to_ints():
    with pytest.raises(TypeError, match=r"shape\[0\]"):
        D.random_cp_tensor((2.5, 3, 4), 2)
    T = np.arange(24.0).reshape(2, 3, 4)
    with pytest.raises(TypeError, match=r"shape\[1\]"):
        D.fold(D.unfold(T, 0), 0, (2, 3.5, 4))
    logits = torch.zeros(1, 3, 4)
    with pytest.raises(TypeError, match="tokens must hold integer"):
        C.per_position_loss(logits, torch.tensor([[0.0, 1.5, 2.0]]))
    with pytest.raises(TypeError, match="key_freqs entry"):
        M.restricted_loss(np.zeros((7, 7, 7)), [1.5])
    for kw in (dict(seq_len=2.5), dict(n_seq=2.5)):
        with pytest.raises((TypeError, ValueError), match=next(iter(kw))):
            C.repeated_tokens(**{**dict(n_seq=2, seq_len=3, d_vocab=10), **kw})


def test_other_silent_acceptances():
    with pytest.raises(ValueError, match="init_std"):
        TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, n_ctx=3,
                          init_std=float("inf"))
    with pytest.raises(ValueError, match="'none' is the identity"):
        register_weight_transform("none", lambda w: 2 * w)
    assert torch.equal(tiny().W_Q, tiny().W_Q)  # the identity still in place
    for fn, args in [(D.svd_n_params, ((10, 5), -1)), (D.cp_n_params, ((3, 4, 5), -1)),
                     (D.tucker_n_params, ((3, 4, 5), (-1, 2, 2))), (D.tt_n_params, ((3, 4, 5), -1))]:
        with pytest.raises(ValueError, match="rank"):
            fn(*args)
    assert D.cp_n_params((10, 20, 30), 4) == 244 and D.tt_n_params((2,) * 10, 4) == 272


def test_random_expression_and_matmul_tensor_are_bounded():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="n_ops must be <= 8"):
        N.random_expression(0, n_ops=50)  # used to loop forever
    for n in range(1, 9):
        expr, shapes = N.random_expression(n, n_ops=n)
        assert len(expr.split("->")[0].split(",")) == n == len(shapes)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match=r"n must be <= 12.*GiB"):
        D.matmul_tensor(100)  # used to try to allocate 7.28 TiB
    assert D.matmul_tensor(2).shape == (4, 4, 4)


def test_token_dtypes_and_hook_lists_at_the_model_boundary():
    model = tiny()
    t = torch.tensor([[1, 2, 3]])
    for dtype in (torch.uint8, torch.int16, torch.int32):
        assert torch.equal(model(t.to(dtype)), model(t))
    for hooks in (None, "abc", [("blocks.0.hook_resid_pre",)], [("blocks.0.hook_resid_pre", 3)]):
        with pytest.raises(TypeError, match="fwd_hooks"):
            model.run_with_hooks(t, fwd_hooks=hooks)
        with pytest.raises(TypeError, match="fwd_hooks"):
            model.run_with_cache(t, fwd_hooks=hooks)
