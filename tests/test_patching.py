"""Tests of helpers.patching: activation patching on HookedTransformer."""
from __future__ import annotations

import pytest
import torch

from helpers.patching import logit_diff, patch, patch_sweep, patching_effect
from helpers.transformer import HookedTransformer, TransformerConfig, act_name


@pytest.fixture(scope="module")
def model():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=9, n_ctx=5,
                            normalization="LN", seed=1)
    return HookedTransformer(cfg)


def _pair():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, 9, (6, 5), generator=g)
    tgt = src.clone()
    tgt[:, 1] = (tgt[:, 1] + 1 + torch.randint(0, 7, (6,), generator=g)) % 9   # differ at position 1 only
    return src, tgt


def test_full_residual_patch_reproduces_source(model):
    src, tgt = _pair()
    for layer in range(2):
        out = patch(model, tgt, src, act_name("resid_pre", layer))
        assert torch.allclose(out, model(src), atol=1e-5)


def test_patch_before_the_difference_changes_nothing(model):
    # Causal masking: the two runs agree at position 0, so patching there is a no-op.
    src, tgt = _pair()
    out = patch(model, tgt, src, act_name("resid_post", 0), pos=0)
    assert torch.allclose(out, model(tgt), atol=1e-6)


def test_every_head_z_equals_attention_output_patch(model):
    # Patching hook_z of all heads at a position equals patching the attention output there
    # (W_O is linear and the bias is shared).
    src, tgt = _pair()
    a = patch(model, tgt, src, act_name("z", 1), pos=3)
    b = patch(model, tgt, src, act_name("attn_out", 1), pos=3)
    assert torch.allclose(a, b, atol=1e-5)
    # one head alone is not the whole output (a real difference for this random model)
    c = patch(model, tgt, src, act_name("z", 1), pos=3, head=0)
    assert not torch.allclose(c, a, atol=1e-4)


def test_heads_add_up_in_the_last_layer_logits(model):
    # Without a final norm, the last layer's heads add linearly into the logits.
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=9, n_ctx=5,
                            attn_only=True, seed=2)
    m = HookedTransformer(cfg)
    src, tgt = _pair()
    base = m(tgt)
    d0 = patch(m, tgt, src, act_name("z", 0), head=0) - base
    d1 = patch(m, tgt, src, act_name("z", 0), head=1) - base
    both = patch(m, tgt, src, act_name("z", 0)) - base
    assert torch.allclose(d0 + d1, both, atol=1e-5)


def test_per_row_positions(model):
    src, tgt = _pair()
    pos = torch.tensor([1, 2, 3, 4, 1, 2])
    out = patch(model, tgt, src, act_name("resid_post", 1), pos=pos)
    full_src = model(src)
    for i, p in enumerate(pos.tolist()):
        assert torch.allclose(out[i, p], full_src[i, p], atol=1e-5)
        assert torch.allclose(out[i, :p], model(tgt)[i, :p], atol=1e-6)


def test_pattern_patch_by_head_and_query(model):
    src, tgt = _pair()
    out = patch(model, tgt, src, act_name("pattern", 0), pos=4, head=1)
    assert out.shape == model(tgt).shape
    assert torch.allclose(out[:, :4], model(tgt)[:, :4], atol=1e-6)


def test_logit_diff_and_recovered_bounds(model):
    src, tgt = _pair()
    ls, lt = model(src), model(tgt)
    good, bad = ls[:, -1].argmax(-1), lt[:, -1].argmax(-1)
    ld = logit_diff(ls, -1 % 5, good, bad)
    assert torch.allclose(ld, ls[torch.arange(6), 4, good] - ls[torch.arange(6), 4, bad])
    full = patching_effect(model, tgt, src, act_name("resid_pre", 0), 4, bad, good)
    assert full["recovered"] == pytest.approx(1.0, abs=1e-5)
    none = patching_effect(model, tgt, src, act_name("resid_pre", 0), 4, bad, good, pos=0)
    assert none["recovered"] == pytest.approx(0.0, abs=1e-5)
    assert 0.0 <= full["flip_rate"] <= 1.0


def test_sweep_shape_and_agreement(model):
    src, tgt = _pair()
    ls, lt = model(src), model(tgt)
    good, bad = ls[:, -1].argmax(-1), lt[:, -1].argmax(-1)
    sites = [act_name("resid_pre", 0), act_name("z", 1)]
    grid = patch_sweep(model, tgt, src, sites, 4, bad, good, positions=[0, 1, 4], heads=[None])
    assert grid.shape == (2, 1, 3)
    assert grid[0, 0, 0].abs() < 1e-5          # position 0 identical in both runs
    single = patching_effect(model, tgt, src, sites[1], 4, bad, good, pos=4)["recovered"]
    assert grid[1, 0, 2].item() == pytest.approx(single, abs=1e-6)


def test_bad_input(model):
    src, tgt = _pair()
    with pytest.raises(ValueError, match="unknown site"):
        patch(model, tgt, src, "blocks.0.hook_nope")
    with pytest.raises(ValueError, match="no head axis"):
        patch(model, tgt, src, act_name("resid_post", 0), head=0)
    with pytest.raises(ValueError, match="head must be"):
        patch(model, tgt, src, act_name("z", 0), head=5)
    with pytest.raises(ValueError, match="out of range"):
        patch(model, tgt, src, act_name("resid_post", 0), pos=9)
    with pytest.raises(ValueError, match="must match"):
        patch(model, tgt, src[:, :3], act_name("resid_post", 0))
    with pytest.raises(TypeError, match="HookedTransformer"):
        patch(torch.nn.Linear(2, 2), tgt, src, act_name("resid_post", 0))
    with pytest.raises(ValueError, match="source_tokens or source_cache"):
        patch(model, tgt, None, act_name("resid_post", 0))
