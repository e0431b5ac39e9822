"""FactoredMatrix and the model's QK/OV views, and the private shared utilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import _util
from helpers.circuits import ov_matrix, qk_matrix
from helpers.decompositions import attention_circuits
from helpers.transformer import FactoredMatrix, HookedTransformer, TransformerConfig, register_weight_transform


def _random(shape_a, shape_b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape_a, generator=g, dtype=torch.float64),
            torch.randn(*shape_b, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("l,m,r", [(12, 3, 12), (9, 4, 7), (3, 5, 4), (6, 2, 2)])
def test_svd_from_the_factors_equals_svd_of_the_product(l, m, r):
    M = FactoredMatrix(*_random((2, l, m), (2, m, r), seed=l + m + r))
    U, S, Vh = M.svd()
    k = min(l, m, r)
    assert U.shape == (2, l, k) and S.shape == (2, k) and Vh.shape == (2, k, r)
    S_full = torch.linalg.svd(M.AB).S
    assert torch.allclose(S, S_full[..., :k], atol=1e-5, rtol=0)
    assert bool((S_full[..., k:].abs() < 1e-5).all())  # rank at most k
    assert torch.allclose(U @ torch.diag_embed(S) @ Vh, M.AB, atol=1e-5)
    eye = torch.eye(k, dtype=torch.float64)
    assert torch.allclose(U.mT @ U, eye, atol=1e-10) and torch.allclose(Vh @ Vh.mT, eye, atol=1e-10)
    assert torch.allclose(M.norm(), torch.linalg.matrix_norm(M.AB), atol=1e-5)


def test_eigenvalues_are_the_nonzero_eigenvalues_of_the_product():
    M = FactoredMatrix(*_random((10, 3), (3, 10), seed=1))
    full = torch.linalg.eigvals(M.AB)
    big = full[full.abs() > 1e-8]
    assert len(big) == 3 and M.eigenvalues.shape == (3,)
    dist = (M.eigenvalues[:, None] - big[None, :]).abs()  # each eigenvalue matches one of the product's
    assert float(dist.min(1).values.max()) < 1e-5 and float(dist.min(0).values.max()) < 1e-5
    with pytest.raises(ValueError, match="square"):
        FactoredMatrix(*_random((5, 2), (2, 4))).eigenvalues


def test_composition_transpose_and_indexing():
    A, B = _random((3, 8, 2), (3, 2, 8), seed=2)
    C, D = _random((8, 4), (4, 6), seed=3)
    M, N = FactoredMatrix(A, B), FactoredMatrix(C, D)
    assert torch.allclose((M @ N).AB, M.AB @ N.AB, atol=1e-10)
    assert (M @ N).mdim == 2  # the hidden dimension stays the small one
    X = _random((8, 5), (1,), seed=4)[0]
    assert torch.allclose((M @ X).AB, M.AB @ X, atol=1e-10)
    assert torch.allclose((X.T @ M).AB, X.T @ M.AB, atol=1e-10)
    assert torch.allclose(M.T.AB, M.AB.mT) and M.T.shape == (3, 8, 8)
    assert torch.allclose(M[1].AB, M.AB[1], atol=1e-12) and M[1:].shape == (2, 8, 8)
    assert M.to(torch.float32).A.dtype == torch.float32
    with pytest.raises(IndexError, match="leading"):
        M[0, 1]
    with pytest.raises(ValueError, match="share m"):
        FactoredMatrix(A, C)
    with pytest.raises(TypeError, match="torch.Tensor"):
        FactoredMatrix(np.ones((2, 2)), B)


def _model(weight_transform="none"):
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, d_mlp=0, d_vocab=7, n_ctx=5,
                            attn_only=True, weight_transform=weight_transform, seed=0)
    return HookedTransformer(cfg)


def test_model_qk_ov_are_the_circuits_of_every_head():
    m = _model()
    assert m.QK.shape == (2, 2, 16, 16) and m.OV.shape == (2, 2, 16, 16)
    l, h = 1, 0
    attn = m.blocks[l].attn
    assert torch.allclose(m.QK[l, h].AB, attn.W_Q[h] @ attn.W_K[h].T)
    assert torch.allclose(m.OV[l, h].AB, attn.W_V[h] @ attn.W_O[h])
    assert torch.allclose(qk_matrix(m, l, h), m.QK[l, h].AB) and torch.allclose(ov_matrix(m, l), m.OV[l].AB)
    # the scores the forward pass computes are x_q W_QK x_k^T / sqrt(d_head)
    _, cache = m.run_with_cache(torch.tensor([[1, 2, 3]]))
    x = cache["resid_pre", l][0]
    scores = x @ m.QK[l, h].AB @ x.T / 2.0
    assert torch.allclose(cache["attn_scores", l][0, h].tril(), scores.tril(), atol=1e-5)


def test_qk_ov_read_weights_through_the_weight_transform():
    register_weight_transform("test_sign", torch.sign)
    m = _model("test_sign").requires_grad_(False)
    attn = m.blocks[0].attn
    qk_sign = torch.sign(attn.W_Q[1]) @ torch.sign(attn.W_K[1]).T
    assert torch.equal(m.QK[0, 1].AB, qk_sign)
    assert not torch.allclose(m.QK[0, 1].AB, attn.W_Q[1] @ attn.W_K[1].T)
    assert torch.equal(m.OV[0, 1].AB, torch.sign(attn.W_V[1]) @ torch.sign(attn.W_O[1]))
    W_QK, W_OV = attention_circuits(m)  # chapter 2's view sees the transformed weights too
    assert W_QK.dtype == np.float64 and np.allclose(W_QK[0, 1], qk_sign.double().numpy())
    assert np.allclose(W_OV, m.OV.AB.detach().double().numpy())


def test_utilities():
    assert _util.check_int(np.int32(4), "n", 1, 4) == 4
    for bad, err in [(True, TypeError), (2.0, TypeError), (0, ValueError), (5, ValueError)]:
        with pytest.raises(err, match="n must be"):
            _util.check_int(bad, "n", 1, 4)
    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        _util.check_positive_int(1.5, "threads", allow_none=True)  # a ValueError as well as a TypeError
    assert _util.to_numpy(torch.ones(2, dtype=torch.bfloat16), np.float64).dtype == np.float64
    assert not _util.is_torch(np.ones(1)) and _util.is_torch(torch.ones(1))
    m = _model()
    m.train()
    with _util.eval_mode(m):
        assert not m.training
    assert m.training
    with pytest.raises(RuntimeError), _util.eval_mode(m):
        raise RuntimeError
    assert m.training
    tokens = torch.tensor([[1, 2, 3, 4]])
    both = _util.attention_patterns(m, tokens)
    assert both.shape == (1, 2, 2, 4, 4) and torch.equal(both[:, 1], _util.attention_patterns(m, tokens, 1))
