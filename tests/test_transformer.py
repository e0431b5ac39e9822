"""Tests of helpers.transformer: shapes of every hook, cache = recomputation,
patching, constant attention, determinism, position-restricted logits, bad input."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers.transformer import (
    ActivationCache,
    HookedTransformer,
    TransformerConfig,
    register_weight_transform,
    weight_transforms,
)

B, P = 3, 5


def small(**kw) -> TransformerConfig:
    base = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=24, d_vocab=11, n_ctx=6, seed=1)
    base.update(kw)
    return TransformerConfig(**base)


VARIANTS = {
    "default": small(),
    "ln_biases": small(normalization="LN", attn_bias=True, unembed_bias=True),
    "rms_gelu": small(normalization="RMS", act_fn="gelu"),
    "attn_only": small(attn_only=True, d_mlp=0),
    "constant": small(attention_mode="constant"),
    "no_pos": small(positional_embedding="none", n_layers=1),
    "float64": small(dtype="float64", d_vocab_out=7),
}


def tokens_for(cfg, seed=0, batch=B, pos=P):
    return torch.randint(0, cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def expected_shapes(cfg: TransformerConfig, batch: int, pos: int) -> dict[str, tuple]:
    H, E, D, M = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.d_mlp
    shapes = {"hook_embed": (batch, pos, D)}
    if cfg.positional_embedding == "learned":
        shapes["hook_pos_embed"] = (batch, pos, D)  # TransformerLens caches it with a batch axis
    for l in range(cfg.n_layers):
        p = f"blocks.{l}."
        shapes.update({
            p + "hook_resid_pre": (batch, pos, D),
            p + "attn.hook_v": (batch, pos, H, E),
            p + "attn.hook_pattern": (batch, H, pos, pos),
            p + "attn.hook_z": (batch, pos, H, E),
            p + "hook_attn_out": (batch, pos, D),
            p + "hook_resid_post": (batch, pos, D),
        })
        if cfg.attention_mode == "normal":
            shapes.update({p + "attn.hook_q": (batch, pos, H, E), p + "attn.hook_k": (batch, pos, H, E),
                           p + "attn.hook_attn_scores": (batch, H, pos, pos)})
        if not cfg.attn_only:
            shapes.update({p + "hook_resid_mid": (batch, pos, D), p + "mlp.hook_pre": (batch, pos, M),
                           p + "mlp.hook_post": (batch, pos, M), p + "hook_mlp_out": (batch, pos, D)})
        if cfg.normalization:
            shapes[p + "ln1.hook_normalized"] = (batch, pos, D)
            if not cfg.attn_only:
                shapes[p + "ln2.hook_normalized"] = (batch, pos, D)
    if cfg.final_normalization:
        shapes["ln_final.hook_normalized"] = (batch, pos, D)
    return shapes


@pytest.mark.parametrize("name", VARIANTS)
def test_every_hook_has_the_documented_shape(name):
    cfg = VARIANTS[name]
    model = HookedTransformer(cfg)
    logits, cache = model.run_with_cache(tokens_for(cfg))
    assert logits.shape == (B, P, cfg.d_vocab_out)
    want = expected_shapes(cfg, B, P)
    assert set(cache) == set(want) == set(model.hook_dict)
    for k, shape in want.items():
        assert tuple(cache[k].shape) == shape, k


@pytest.mark.parametrize("name", VARIANTS)
def test_cache_equals_recomputation(name):
    """Rebuild the forward pass from the parameters by hand and compare every stage."""
    cfg = VARIANTS[name]
    model = HookedTransformer(cfg)
    toks = tokens_for(cfg)
    logits, cache = model.run_with_cache(toks)

    def norm(x, mod):
        if mod.kind == "LN":
            x = x - x.mean(-1, keepdim=True)
        x = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + mod.eps)
        return x * mod.w + (mod.b if mod.kind == "LN" else 0)

    resid = model.W_E[toks]
    if cfg.positional_embedding == "learned":
        resid = resid + model.W_pos[:P]
    torch.testing.assert_close(cache["hook_embed"], model.W_E[toks])
    mask = torch.triu(torch.ones(P, P, dtype=torch.bool), 1)
    for l, blk in enumerate(model.blocks):
        torch.testing.assert_close(cache["resid_pre", l], resid)
        x = norm(resid, blk.ln1) if cfg.normalization else resid
        a = blk.attn
        v = torch.einsum("bpd,hde->bphe", x, a.W_V) + (a.b_V if cfg.attn_bias else 0)
        if cfg.attention_mode == "normal":
            q = torch.einsum("bpd,hde->bphe", x, a.W_Q) + (a.b_Q if cfg.attn_bias else 0)
            k = torch.einsum("bpd,hde->bphe", x, a.W_K) + (a.b_K if cfg.attn_bias else 0)
            s = torch.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(cfg.d_head)
            pattern = torch.softmax(s.masked_fill(mask, -torch.inf), -1)
        else:
            pattern = (~mask).to(x.dtype) / torch.arange(1, P + 1, dtype=x.dtype)[:, None]
            pattern = pattern.expand(B, cfg.n_heads, P, P)
        torch.testing.assert_close(cache["pattern", l], pattern)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        attn_out = torch.einsum("bqhe,hed->bqd", z, a.W_O) + (a.b_O if cfg.attn_bias else 0)
        torch.testing.assert_close(cache["attn_out", l], attn_out)
        resid = resid + attn_out
        if not cfg.attn_only:
            x = norm(resid, blk.ln2) if cfg.normalization else resid
            pre = x @ blk.mlp.W_in + blk.mlp.b_in
            torch.testing.assert_close(cache["pre", l], pre)
            post = blk.mlp.act(pre)
            resid = resid + post @ blk.mlp.W_out + blk.mlp.b_out
        torch.testing.assert_close(cache["resid_post", l], resid)
    if cfg.final_normalization:
        resid = norm(resid, model.ln_final)
    out = resid @ model.W_U + (model.unembed.b_U if cfg.unembed_bias else 0)
    torch.testing.assert_close(logits, out)


def test_patching_a_hook_changes_the_output_as_expected():
    cfg = small(n_layers=1)
    model = HookedTransformer(cfg)
    clean, corrupt = tokens_for(cfg, 0), tokens_for(cfg, 1)
    # Patch the whole residual stream after the block with the corrupt run's: logits become the corrupt ones.
    _, corrupt_cache = model.run_with_cache(corrupt)
    name = "blocks.0.hook_resid_post"
    patched = model.run_with_hooks(clean, [(name, lambda x, hook: corrupt_cache[name])])
    torch.testing.assert_close(patched, model(corrupt))
    # Zero-ablate head 1 through hook_z: attention output equals head 0's contribution only.
    def zero_head1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z
    _, cache = model.run_with_cache(clean, fwd_hooks=[("blocks.0.attn.hook_z", zero_head1)])
    z = cache["z", 0]
    assert torch.all(z[:, :, 1] == 0)
    torch.testing.assert_close(cache["attn_out", 0], z[:, :, 0] @ model.blocks[0].attn.W_O[0])
    # Patching a late position leaves earlier positions untouched (causality).
    def patch_last(x, hook):
        x = x.clone()
        x[:, -1] = 0
        return x
    out = model.run_with_hooks(clean, [("hook_embed", patch_last)])
    torch.testing.assert_close(out[:, :-1], model(clean)[:, :-1])
    assert not torch.allclose(out[:, -1], model(clean)[:, -1])
    # hooks are removed afterwards
    assert all(not h._fns for h in model.hook_dict.values())


def test_hook_filters_and_bad_hooks():
    model = HookedTransformer(small())
    _, cache = model.run_with_cache(tokens_for(model.cfg), names_filter=lambda n: n.endswith("hook_pattern"))
    assert sorted(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    _, cache = model.run_with_cache(tokens_for(model.cfg), names_filter=["hook_embed"])
    assert list(cache) == ["hook_embed"]
    with pytest.raises(ValueError, match="unknown hook point 'blocks.0.attn.hook_patern'"):
        model.run_with_hooks(tokens_for(model.cfg), [("blocks.0.attn.hook_patern", lambda x, hook: None)])
    with pytest.raises(ValueError, match="must return None or a tensor of shape"):
        model.run_with_hooks(tokens_for(model.cfg), [("hook_embed", lambda x, hook: x[:, :1])])
    with pytest.raises(KeyError, match="no activation"):
        ActivationCache()["pattern", 0]
    assert all(not h._fns for h in model.hook_dict.values())


def test_constant_attention_is_exactly_uniform():
    cfg = small(attention_mode="constant")
    model = HookedTransformer(cfg)
    _, cache = model.run_with_cache(tokens_for(cfg))
    for l in range(cfg.n_layers):
        pat = cache["pattern", l]
        for i in range(P):
            assert torch.all(pat[:, :, i, : i + 1] == 1.0 / (i + 1))
            assert torch.all(pat[:, :, i, i + 1:] == 0)
    assert not hasattr(model.blocks[0].attn, "W_Q")
    with pytest.raises(ValueError, match="constant attention"):
        model.W_Q


def test_constant_attention_sum_convention_adds_the_values():
    mean = HookedTransformer(small(attention_mode="constant"))
    summed = HookedTransformer(small(attention_mode="constant", constant_attention="sum"))
    summed.load_state_dict(mean.state_dict())
    toks = tokens_for(mean.cfg)
    _, cm = mean.run_with_cache(toks)
    _, cs = summed.run_with_cache(toks)
    pat = cs["pattern", 0]
    for i in range(P):
        assert torch.all(pat[:, :, i, : i + 1] == 1.0) and torch.all(pat[:, :, i, i + 1:] == 0)
    # layer 0 sees the same input, so its z is (i + 1) times the mean convention's
    scale = torch.arange(1, P + 1, dtype=torch.float32)[None, :, None, None]
    assert torch.allclose(cs["z", 0], cm["z", 0] * scale, atol=1e-5)
    # the default is "mean", and it is validated
    assert small(attention_mode="constant").constant_attention == "mean"
    with pytest.raises(ValueError, match="constant_attention"):
        small(attention_mode="constant", constant_attention="average")
    cfg = small(attention_mode="constant", constant_attention="sum")
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg


def test_same_seed_same_weights_and_losses():
    from helpers.training import cross_entropy, train

    def run():
        cfg = small(seed=7)
        model = HookedTransformer(cfg)
        toks = tokens_for(cfg, 3, batch=64)
        res = train(model, (toks, toks[:, 0]), lambda m, b: cross_entropy(m(b[0], read_positions=-1)[:, 0], b[1]),
                    steps=15, lr=1e-2, batch_size=16, seed=5, log_every=5, progress=False)
        return model, res

    (m1, r1), (m2, r2) = run(), run()
    assert r1.history == r2.history
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    m3 = HookedTransformer(small(seed=8))
    assert not torch.equal(m3.W_E, HookedTransformer(small(seed=7)).W_E)


@pytest.mark.parametrize("name", ["default", "attn_only", "constant", "ln_biases", "no_pos"])
@pytest.mark.parametrize("positions", [[-1], [0, 2], [4, 1, 3], 2])
def test_position_restricted_logits_equal_full_logits(name, positions):
    cfg = VARIANTS[name]
    model = HookedTransformer(cfg)
    toks = tokens_for(cfg)
    full = model(toks)
    idx = [positions] if isinstance(positions, int) else positions
    torch.testing.assert_close(model(toks, read_positions=positions), full[:, idx], atol=1e-6, rtol=1e-5)
    _, cache = model.run_with_cache(toks, read_positions=positions)
    assert cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"].shape[1] == len(idx)


def test_zero_layer_model_is_a_bigram_table():
    cfg = small(n_layers=0, positional_embedding="none")
    model = HookedTransformer(cfg)
    toks = tokens_for(cfg)
    torch.testing.assert_close(model(toks), model.W_E[toks] @ model.W_U)
    torch.testing.assert_close(model(toks, read_positions=[-1]), (model.W_E @ model.W_U)[toks[:, [-1]]])


def test_weights_round_trip_and_mismatch_report():
    cfg = small(n_layers=1)
    a = HookedTransformer(cfg)
    named = {k: v.detach().numpy() for k, v in a.state_dict().items()}
    named["W_E"] = named.pop("embed.W_E")  # short alias accepted
    b = HookedTransformer.from_weights(dataclasses.replace(cfg, seed=99), named)
    toks = tokens_for(cfg)
    torch.testing.assert_close(a(toks), b(toks))
    bad = dict(named)
    bad.pop("blocks.0.attn.W_Q")
    bad["blocks.0.attn.W_K"] = np.zeros((1, 2, 3))
    bad["blocks.0.attn.W_X"] = np.zeros(3)
    with pytest.raises(ValueError) as err:
        b.load_weights(bad)
    msg = str(err.value)
    assert "missing ['blocks.0.attn.W_Q']" in msg and "unexpected ['blocks.0.attn.W_X']" in msg
    assert "blocks.0.attn.W_K: expected (2, 16, 8), got (1, 2, 3)" in msg
    nan = dict(named)
    nan["unembed.W_U"] = np.full((16, 11), np.nan)
    with pytest.raises(ValueError, match="unembed.W_U.*NaN"):
        b.load_weights(nan)
    with pytest.raises(TypeError):
        b.load_weights([1, 2])


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        (dict(d_model=0), ValueError, "d_model"),
        (dict(n_layers=-1), ValueError, "n_layers"),
        (dict(n_heads=-2), ValueError, "n_heads"),
        (dict(n_ctx=2.5), TypeError, "n_ctx"),
        (dict(act_fn="swish"), ValueError, "act_fn"),
        (dict(attention_mode="sparse"), ValueError, "attention_mode"),
        (dict(normalization="batch"), ValueError, "normalization"),
        (dict(positional_embedding="rotary"), ValueError, "positional_embedding"),
        (dict(weight_transform="binary9"), ValueError, "weight_transform"),
        (dict(dtype="float16"), ValueError, "dtype"),
        (dict(attn_only=1), TypeError, "attn_only"),
        (dict(init_std=-1.0), ValueError, "init_std"),
        (dict(d_mlp=0), ValueError, "d_mlp"),
    ],
)
def test_inconsistent_config_names_the_field(kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        small(**kwargs)


def test_config_dict_round_trip_and_unknown_fields():
    cfg = small(normalization="RMS")
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown TransformerConfig fields: \['d_modle'\]"):
        TransformerConfig.from_dict({**cfg.to_dict(), "d_modle": 3})
    with pytest.raises(TypeError, match="cfg must be a TransformerConfig"):
        HookedTransformer(cfg.to_dict())


@pytest.mark.parametrize(
    "tokens, exc, needle",
    [
        (torch.tensor([[0, 1, 11]]), ValueError, "token id 11 out of range"),
        (torch.tensor([[-1, 1]]), ValueError, "token id -1 out of range"),
        (torch.zeros(1, 7, dtype=torch.long), ValueError, "7 positions but n_ctx is 6"),
        (torch.zeros(2, 2, 2, dtype=torch.long), ValueError, r"shape \[batch, pos\]"),
        (torch.zeros(1, 3), TypeError, "integer tensor"),
        (torch.zeros(0, 3, dtype=torch.long), ValueError, "non-empty"),
        ("abc", TypeError, "integer tensor"),
    ],
)
def test_bad_tokens_get_clear_errors(tokens, exc, needle):
    model = HookedTransformer(small())
    with pytest.raises(exc, match=needle):
        model(tokens)


def test_bad_read_positions_and_return_type():
    model = HookedTransformer(small())
    toks = tokens_for(model.cfg)
    with pytest.raises(ValueError, match="read_positions"):
        model(toks, read_positions=[7])
    with pytest.raises(ValueError, match="read_positions"):
        model(toks, read_positions=[])
    with pytest.raises(ValueError, match="return_type"):
        model(toks, return_type="probs")
    assert model(toks, return_type="resid").shape == (B, P, 16)
    assert model(toks[0]).shape == (1, P, 11)  # a single sequence is a batch of one


def test_weight_transform_seam_is_used_everywhere_but_embeddings():
    register_weight_transform("zero_for_test", lambda w: w * 0)
    assert "zero_for_test" in weight_transforms()
    cfg = small(n_layers=1, weight_transform="zero_for_test")
    model = HookedTransformer(cfg)
    toks = tokens_for(cfg)
    # all hidden linear maps are zero -> only embed (+pos) -> unembed remains, plus MLP bias (zero at init)
    torch.testing.assert_close(model(toks), (model.W_E[toks] + model.W_pos[:P]) @ model.W_U)
    assert torch.all(model.W_V == 0)
    with pytest.raises(TypeError):
        register_weight_transform("", lambda w: w)
    with pytest.raises(TypeError):
        register_weight_transform("x", 3)


def test_repr_and_views():
    model = HookedTransformer(small())
    assert "2 layer(s)" in repr(model) and "params" in repr(model)
    assert model.W_Q.shape == (2, 2, 16, 8) and model.W_O.shape == (2, 2, 8, 16)
    assert model.W_in.shape == (2, 16, 24) and model.W_out.shape == (2, 24, 16)
    assert model.n_params == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="no positional embedding"):
        HookedTransformer(small(positional_embedding="none")).W_pos


def test_act_name_matches_every_hook_point_and_refuses_bad_names():
    from helpers.transformer import act_name

    cfg = TransformerConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, n_ctx=3)
    model = HookedTransformer(cfg)
    shorts = ["q", "k", "v", "z", "pattern", "attn_scores", "pre", "post", "resid_pre", "resid_mid",
              "resid_post", "attn_out", "mlp_out"]
    names = {act_name(s, layer) for s in shorts for layer in range(2)} | {act_name("embed"), act_name("pos_embed")}
    assert names == set(model.hook_dict)
    _, cache = model.run_with_cache([[0, 1, 2]])
    assert torch.equal(cache["post", 1], cache[act_name("post", 1)])
    for bad, layer, msg in [("patern", 0, "unknown activation name"), ("pattern", None, "needs a layer"),
                            ("embed", 0, "not per layer"), ("pattern", -1, "needs a layer")]:
        with pytest.raises(ValueError, match=msg):
            act_name(bad, layer)
    with pytest.raises(TypeError):
        act_name(3)
    with pytest.raises(KeyError, match="unknown activation name"):
        cache["patern", 0]


def test_hooks_behave_as_in_transformer_lens():
    """add_hook returns a handle, hooks get ``hook=``, backward hooks see gradients, per-head results add up."""
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=7, n_ctx=5,
                            use_attn_result=True)
    model = HookedTransformer(cfg)
    tokens = tokens_for(cfg)
    clean, cache = model.run_with_cache(tokens)
    # per-head outputs sum to the attention output
    assert cache["result", 0].shape == (tokens.shape[0], 5, 2, 16)
    assert torch.allclose(cache["result", 0].sum(2), cache["attn_out", 0], atol=1e-6)
    # a persistent hook and its handle
    seen = []
    handle = model.add_hook("blocks.0.hook_resid_post", lambda x, hook: seen.append(hook.name))
    model(tokens)
    handle.remove()
    model(tokens)
    assert seen == ["blocks.0.hook_resid_post"]
    handles = model.add_hook(lambda n: n.endswith("hook_pattern"), lambda x, hook: seen.append(hook.name))
    assert len(handles) == 2
    model.reset_hooks()
    model(tokens)
    assert len(seen) == 1
    # a hook written for TransformerLens's [batch, pos, d_model] pos-embed edits position 1, not a model dimension
    def zero_pos1(x, hook):
        x = x.clone()
        x[:, 1] = 0
        return x

    _, patched = model.run_with_cache(tokens, fwd_hooks=[("hook_pos_embed", zero_pos1)], names_filter="hook_pos_embed")
    assert torch.all(patched["hook_pos_embed"][:, 1] == 0) and torch.all(patched["hook_pos_embed"][:, 2] != 0)
    # backward hooks: the gradient of the loss with respect to an activation
    grads = {}
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: grads.setdefault("act", x))],
                     bwd_hooks=[("blocks.1.hook_resid_pre", lambda g, hook: grads.setdefault("grad", g))]):
        model(tokens)[:, -1, 0].sum().backward()
    assert grads["grad"].shape == grads["act"].shape and grads["grad"].abs().sum() > 0
    model.zero_grad()
    model(tokens)[:, -1, 0].sum().backward()  # the backward hook is gone
    assert len(grads) == 2
    with pytest.raises(ValueError, match="dir must be"):
        model.add_hook("hook_embed", lambda x, hook: None, dir="up")


def test_config_takes_transformer_lens_names_and_has_no_chapter_defaults():
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_vocab=5, n_ctx=3, normalization_type="LN",
                            positional_embedding_type="standard")
    assert cfg.normalization == "LN" == cfg.normalization_type and cfg.positional_embedding == "learned"
    assert cfg.d_head == 4 and cfg.d_mlp == 32  # TransformerLens's derived defaults
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="needs"):
        TransformerConfig(d_model=8)
    with pytest.raises(ValueError, match="positional_embedding_type"):
        TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_vocab=5, n_ctx=3, positional_embedding_type="rotary")


@pytest.mark.parametrize("normalization", [None, "LN"])
def test_attached_hooks_and_batch_slicing_never_change_the_numbers(normalization):
    """A run with no hook, with a no-op hook on every point, with a cache, and a no-gradient run
    computed in slices of the batch agree bit for bit (activation patching relies on it), and the
    in-place shortcuts taken when no hook is attached leave the same gradients."""
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=10, n_ctx=5,
                            normalization=normalization, seed=0)
    model = HookedTransformer(cfg)
    tokens = torch.randint(0, 10, (300, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(tokens)
        model._CHUNK_ELEMENTS = 5 * 48 * 7  # slices of 7 rows
        assert model._chunk_rows(tokens) == 7
        sliced = model(tokens)
        read = model(tokens, read_positions=[1, -1])
    logits, cache = model.run_with_cache(tokens)
    noop = model.run_with_hooks(tokens, [(lambda name: True, lambda x, hook: None)])
    assert torch.equal(plain, sliced) and torch.equal(plain, logits) and torch.equal(plain, noop)
    assert torch.equal(read, model.run_with_hooks(tokens, [(lambda name: True, lambda x, hook: None)],
                                                  read_positions=[1, -1]))
    assert torch.equal(cache["resid_post", 1], model(tokens, return_type="resid") if not normalization
                       else cache["resid_post", 1])

    def grads(hooked: bool):
        model.zero_grad(set_to_none=True)
        with model.hooks([(lambda name: True, lambda x, hook: None)] if hooked else []):
            model(tokens)[:, -1].logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(grads(False), grads(True)))
