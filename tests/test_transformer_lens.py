"""Converters to and from TransformerLens 3.9's HookedTransformer.

The first tests need no TransformerLens (config translation, refusals, the
ImportError); the rest run only where ``transformer_lens==3.9.0`` is installed
(an optional test dependency) and compare every hook the two models share.
"""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch

from helpers import _transformer_lens as conv
from helpers import store
from helpers.transformer import HookedTransformer, TransformerConfig, register_weight_transform

# TransformerLens 3.9 warns on every HookedTransformer it builds that 4.x replaces it
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")

ATOL = 1e-5  # float32; every shared hook, and logits relative to their size
SHIPPED = ["smoke", "induction_2l", "modadd_p113"]


def _small(**kw) -> TransformerConfig:
    base = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=11, n_ctx=5, seed=0)
    return TransformerConfig(**{**base, **kw})


def _ln_bias_cfg(**kw) -> TransformerConfig:
    """LayerNorm, every bias, GELU, a smaller output vocabulary and per-head results."""
    base = dict(normalization="LN", attn_bias=True, mlp_bias=True, unembed_bias=True, act_fn="gelu",
                d_vocab_out=7, use_attn_result=True)
    return _small(**{**base, **kw})


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and norm weights too, which initialisation leaves at 0 / 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return model


def _tokens(d_vocab: int, n_ctx: int, batch: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, n_ctx), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------
# Without TransformerLens
# ---------------------------------------------------------------------------
def test_missing_transformer_lens_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformer_lens", None)  # import raises ImportError
    model = HookedTransformer(_small())
    with pytest.raises(ImportError, match=r"pip install transformer_lens==3\.9\.0"):
        model.to_transformer_lens()
    with pytest.raises(ImportError, match=r"pip install transformer_lens==3\.9\.0"):
        HookedTransformer.from_transformer_lens(object())


def test_transformer_lens_4_is_refused_with_the_reason(monkeypatch):
    fake = types.ModuleType("transformer_lens")
    fake.__version__ = "4.0.0"
    fake.TransformerBridge = object
    monkeypatch.setitem(sys.modules, "transformer_lens", fake)
    with pytest.raises(ImportError, match=r"4\.0\.0 has no HookedTransformer.*TransformerBridge.*3\.9\.0"):
        HookedTransformer(_small()).to_transformer_lens()


def test_config_kwargs_keep_numbers_identical():
    kw = conv.tl_config_kwargs(_ln_bias_cfg())
    # no tokenizer, no BOS, no global reseeding, no initialisation to overwrite anyway
    assert kw["default_prepend_bos"] is False and kw["seed"] is None and kw["init_weights"] is False
    assert kw["normalization_type"] == "LN" and kw["positional_embedding_type"] == "standard"
    assert (kw["eps"], kw["act_fn"], kw["d_vocab_out"], kw["use_attn_result"]) == (1e-5, "gelu", 7, True)
    # no folding option is ever passed: the weights are copied, not processed
    assert not {"fold_ln", "center_writing_weights", "center_unembed"} & set(kw)
    attn_only = conv.tl_config_kwargs(_small(attn_only=True))
    assert attn_only["d_mlp"] is None and attn_only["act_fn"] is None and attn_only["normalization_type"] is None


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(attention_mode="constant"), "attention_mode='constant'.*emulate=True"),
        (dict(positional_embedding="none"), "positional_embedding='none'.*emulate=True"),
        (dict(normalization="LN", final_normalization=None), "one normalization_type"),
        (dict(act_fn="identity"), "act_fn='identity'"),
        (dict(weight_transform="tl_test_sign"), "weight_transform='tl_test_sign'"),
    ],
)
def test_what_transformer_lens_cannot_express_is_refused(kw, match):
    register_weight_transform("tl_test_sign", torch.sign)
    model = HookedTransformer(_small(**kw))
    with pytest.raises(ValueError, match=match):
        model.to_transformer_lens()  # refused before TransformerLens is imported


def test_emulate_allows_constant_attention_and_no_positions():
    kw = conv.tl_config_kwargs(_small(attention_mode="constant", positional_embedding="none"), emulate=True)
    assert kw["positional_embedding_type"] == "standard"


def test_wrong_objects_are_type_errors():
    with pytest.raises(TypeError, match="model must be a helpers.transformer.HookedTransformer"):
        conv.to_transformer_lens("not a model")
    with pytest.raises(TypeError, match="cfg must be a TransformerConfig"):
        conv.tl_config_kwargs({"n_layers": 1})


def _tl_cfg(**kw):
    """A stand-in for TransformerLens's config: the attributes the converter reads."""
    base = dict(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, d_vocab_out=5, n_ctx=3,
                act_fn="relu", attn_only=False, normalization_type="LNPre", positional_embedding_type="standard",
                attn_scale=2.0, dtype=torch.float32)
    return SimpleNamespace(**{**base, **kw})


def test_config_from_tl_maps_folded_norms_and_lists_every_problem():
    cfg = conv.config_from_tl(_tl_cfg())
    assert (cfg.normalization, cfg.final_normalization, cfg.positional_embedding) == ("LN", "LN", "learned")
    assert conv.config_from_tl(_tl_cfg(normalization_type="RMSPre", dtype=torch.float64)).dtype == "float64"
    with pytest.raises(ValueError) as err:
        conv.config_from_tl(_tl_cfg(positional_embedding_type="rotary", gated_mlp=True, attn_scale=1.0,
                                    act_fn="gelu_new", n_key_value_heads=1, attention_dir="bidirectional"))
    text = str(err.value)
    for name in ("positional_embedding_type='rotary'", "gated_mlp=True", "attn_scale=1.0", "act_fn='gelu_new'",
                 "n_key_value_heads=1", "attention_dir='bidirectional'"):
        assert name in text


# ---------------------------------------------------------------------------
# Against TransformerLens 3.9
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tl():
    tl = pytest.importorskip("transformer_lens", reason="optional: pip install transformer_lens==3.9.0")
    if not hasattr(tl, "HookedTransformer"):
        pytest.skip("transformer_lens 4.x has no HookedTransformer; the converters target 3.9.0")
    return tl


def hook_differences(ours: HookedTransformer, theirs, tokens: torch.Tensor) -> dict[str, float]:
    """Max |ours - theirs| on every hook both models cache, plus ``"logits/scale"`` (relative).

    Also asserts that every hook of ours exists in TransformerLens with the
    same shape and the same masked (-inf) entries.
    """
    with torch.no_grad():
        lo, co = ours.run_with_cache(tokens)
        lt, ct = theirs.run_with_cache(tokens)
    assert set(co) <= set(ct), f"hooks TransformerLens lacks: {sorted(set(co) - set(ct))}"
    out = {}
    for name in co:
        a, b = co[name], ct[name]
        assert a.shape == b.shape, (name, a.shape, b.shape)
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b)), f"{name}: masks differ"
        out[name] = (a[finite] - b[finite]).abs().max().item()
    out["logits/scale"] = ((lo - lt).abs().max() / lo.abs().max().clamp(min=1)).item()
    return out


def _assert_agree(diffs: dict[str, float], atol: float = ATOL) -> None:
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    assert not bad, f"hooks differing by more than {atol}: {bad}"


def _same_config(a: TransformerConfig, b: TransformerConfig, ignore=("seed", "init_std")) -> None:
    da, db = a.to_dict(), b.to_dict()
    for k in ignore:
        da.pop(k), db.pop(k)
    assert da == db


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_agree_on_every_hook_and_round_trip(tl, name):
    model = store.load(name).model
    theirs = model.to_transformer_lens()
    assert isinstance(theirs, tl.HookedTransformer) and not theirs.training  # store.load gives eval mode
    # parameter names: ours are TransformerLens's; what it has beyond ours are zero biases
    ours_p, tl_p = dict(model.named_parameters()), dict(theirs.named_parameters())
    assert set(ours_p) <= set(tl_p)
    extra = set(tl_p) - set(ours_p)
    assert all(".b_" in n or n == "unembed.b_U" for n in extra), extra
    assert all(torch.equal(tl_p[n], torch.zeros_like(tl_p[n])) for n in extra)
    c = model.cfg
    diffs = hook_differences(model, theirs, _tokens(c.d_vocab, c.n_ctx))
    assert len(diffs) >= 10
    _assert_agree(diffs)
    back = HookedTransformer.from_transformer_lens(theirs)
    _same_config(back.cfg, model.cfg)
    assert back.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(p, model.state_dict()[k]) for k, p in back.state_dict().items())


def test_constant_attention_is_emulated_exactly(tl):
    model = store.load("modadd_p59_constant_s0").model
    with pytest.raises(ValueError, match="constant"):
        model.to_transformer_lens()
    theirs = model.to_transformer_lens(emulate=True)
    diffs = hook_differences(model, theirs, _tokens(model.cfg.d_vocab, model.cfg.n_ctx))
    assert "blocks.0.attn.hook_pattern" in diffs and diffs["blocks.0.attn.hook_pattern"] == 0.0
    _assert_agree(diffs)
    # coming back it is an ordinary model whose W_Q = W_K = 0: same numbers, attention_mode "normal"
    back = HookedTransformer.from_transformer_lens(theirs)
    assert back.cfg.attention_mode == "normal" and not back.W_Q.any() and not back.W_K.any()
    tokens = _tokens(model.cfg.d_vocab, model.cfg.n_ctx)
    with torch.no_grad():
        assert torch.allclose(back(tokens), model(tokens), atol=ATOL, rtol=0)


def test_no_positional_embedding_is_emulated_exactly(tl):
    model = HookedTransformer(_small(positional_embedding="none"))  # the initialisation: activations of order 1
    theirs = model.to_transformer_lens(emulate=True)
    assert not theirs.pos_embed.W_pos.any()
    diffs = hook_differences(model, theirs, _tokens(11, 5))
    assert "hook_pos_embed" not in diffs and "blocks.1.hook_resid_pre" in diffs
    _assert_agree(diffs)


@pytest.mark.parametrize("norm, act", [("LN", "gelu"), ("RMS", "silu")])
def test_norms_and_biases_agree_both_ways(tl, norm, act):
    model = _randomize(HookedTransformer(_ln_bias_cfg(normalization=norm, act_fn=act)))
    theirs = model.to_transformer_lens()
    diffs = hook_differences(model, theirs, _tokens(11, 5))
    assert {"blocks.1.ln2.hook_normalized", "ln_final.hook_normalized", "blocks.0.attn.hook_result"} <= set(diffs)
    _assert_agree(diffs)
    back = HookedTransformer.from_transformer_lens(theirs)
    _same_config(back.cfg, model.cfg)
    assert all(torch.equal(p, model.state_dict()[k]) for k, p in back.state_dict().items())


def test_float64_agreement_is_rounding_only(tl):
    model = _randomize(HookedTransformer(_ln_bias_cfg(dtype="float64")))
    theirs = model.to_transformer_lens()
    assert theirs.cfg.dtype == torch.float64
    _assert_agree(hook_differences(model, theirs, _tokens(11, 5)), atol=1e-12)


def test_from_transformer_lens_model_both_ways(tl):
    """A model born in TransformerLens: LayerNorm, biases, GELU; ours matches it and converts back."""
    tc = tl.HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=5, d_head=4, n_heads=4, d_mlp=64, d_vocab=9,
                                    act_fn="gelu", normalization_type="LN", seed=None, default_prepend_bos=False)
    theirs = _randomize(tl.HookedTransformer(tc), seed=3)
    ours = HookedTransformer.from_transformer_lens(theirs)
    c = ours.cfg
    assert (c.normalization, c.attn_bias, c.mlp_bias, c.unembed_bias, c.act_fn) == ("LN", True, True, True, "gelu")
    _assert_agree(hook_differences(ours, theirs, _tokens(9, 5)))
    again = ours.to_transformer_lens()
    p0, p1 = dict(theirs.named_parameters()), dict(again.named_parameters())
    assert p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0)


def test_folded_layer_norm_converts_with_unit_weights(tl):
    tc = tl.HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=5, d_head=8, n_heads=2, d_mlp=32, d_vocab=9,
                                    act_fn="relu", normalization_type="LN", seed=None, default_prepend_bos=False)
    theirs = _randomize(tl.HookedTransformer(tc), seed=4)
    tokens = _tokens(9, 5)
    with torch.no_grad():
        before = theirs(tokens)
    # fold_ln keeps every hook; the centring options would move the residual stream and logits
    theirs.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    assert theirs.cfg.normalization_type == "LNPre"
    ours = HookedTransformer.from_transformer_lens(theirs)
    assert ours.cfg.normalization == "LN" and torch.equal(ours.blocks[0].ln1.w, torch.ones(16))
    _assert_agree(hook_differences(ours, theirs, tokens))
    with torch.no_grad():
        assert torch.allclose(ours(tokens), before, atol=ATOL, rtol=0)


def test_bias_groups_are_detected_and_checked(tl):
    model = _randomize(HookedTransformer(_small()))
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.b_in.zero_(), block.mlp.b_out.zero_()
    theirs = model.to_transformer_lens()
    back = HookedTransformer.from_transformer_lens(theirs)
    assert (back.cfg.attn_bias, back.cfg.mlp_bias, back.cfg.unembed_bias) == (False, False, False)
    kept = HookedTransformer.from_transformer_lens(theirs, mlp_bias=True)
    _same_config(kept.cfg, model.cfg)
    with torch.no_grad():
        theirs.blocks[0].attn.b_V[0, 0] = 1.0
    with pytest.raises(ValueError, match="attn_bias=False but tl_model's b_Q/b_K/b_V/b_O are not all zero"):
        HookedTransformer.from_transformer_lens(theirs, attn_bias=False)
    with pytest.raises(TypeError, match="attn_bias must be True, False or None"):
        HookedTransformer.from_transformer_lens(theirs, attn_bias="yes")


def test_bad_transformer_lens_input(tl):
    with pytest.raises(TypeError, match="tl_model must be a transformer_lens.HookedTransformer, got HookedTransformer"):
        HookedTransformer.from_transformer_lens(HookedTransformer(_small()))  # ours, not theirs
    with pytest.raises(TypeError, match="got str"):
        HookedTransformer.from_transformer_lens("gpt2")
    tc = tl.HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=5, d_head=8, n_heads=2, d_mlp=32, d_vocab=9,
                                    act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
                                    gated_mlp=True, seed=None)
    with pytest.raises(ValueError, match=r"positional_embedding_type='rotary'.*gated_mlp=True"):
        HookedTransformer.from_transformer_lens(tl.HookedTransformer(tc))
