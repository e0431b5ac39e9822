"""Chapter 6 exercises: reference solutions and check functions.

Each ``check_<x>(fn)`` runs the reader's ``fn`` against the reference on
small cases and raises ``AssertionError`` with a specific hint on failure.
"""
from __future__ import annotations

import torch

from helpers import inversion as I
from helpers.patching import patch
from helpers.transformer import HookedTransformer, TransformerConfig, act_name

__all__ = [
    "solution_distance", "check_distance",
    "solution_preimage", "check_preimage",
    "solution_patch_position", "check_patch_position",
]


# --- 1. the distance --------------------------------------------------------
def solution_distance(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """D(z, z_q) = ||z - z_q|| / ||z_q|| over the last axis. z [..., d], z_q [d] -> [...]."""
    return (z - z_q).norm(dim=-1) / z_q.norm(dim=-1)


def check_distance(fn) -> None:
    g = torch.Generator().manual_seed(0)
    z, q = torch.randn(4, 6, 5, generator=g), torch.randn(5, generator=g) * 3
    out = fn(z, q)
    assert isinstance(out, torch.Tensor), "return a tensor"
    assert out.shape == (4, 6), f"expected one distance per activation, shape (4, 6); got {tuple(out.shape)}"
    ref = solution_distance(z, q)
    if torch.allclose(out, (z - q).norm(dim=-1), atol=1e-5):
        raise AssertionError("you returned ||z - z_q||: divide by the norm of the *query* z_q")
    if torch.allclose(out, (z - q).norm(dim=-1) / z.norm(dim=-1), atol=1e-5):
        raise AssertionError("you divided by ||z||: the paper's D is relative to the query, ||z_q||")
    if torch.allclose(out, ref ** 2, atol=1e-5):
        raise AssertionError("you returned the squared distance: take the square root")
    assert torch.allclose(out, ref, atol=1e-5), "D(z, z_q) = ||z - z_q|| / ||z_q|| over the last axis"


# --- 2. a brute-force preimage ------------------------------------------------
def solution_preimage(acts: torch.Tensor, z_q: torch.Tensor, valid: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Which inputs lie in the eps-preimage of z_q.

    acts [batch, pos, d] (every input's activation at the site), valid [batch, pos]
    (positions that count) -> BoolTensor [batch]: some valid position has D <= eps.
    """
    d = I.distance(acts, z_q).masked_fill(~valid, float("inf"))
    return d.min(dim=1).values <= eps


def _preimage_case():
    model = HookedTransformer(I.addition_config(seed=1))
    a, b = I.make_addition_data(3000, seed=3)
    tokens = I.addition_tokens(a, b)
    acts = I.site_activations(model, tokens, [act_name("resid_post", 0)])[0]
    valid = I.valid_positions(tokens, I.ADDITION)
    valid[:, 12:] = False          # pretend the last positions do not count
    return acts, valid


def check_preimage(fn) -> None:
    acts, valid = _preimage_case()
    for q, p in [(0, 5), (1, 8), (2, 12)]:          # position 12 does not count in this case
        z_q = acts[q, p]
        out = fn(acts, z_q, valid, 0.1)
        ref = solution_preimage(acts, z_q, valid, 0.1)
        assert out.shape == ref.shape, f"return one bool per input, shape {tuple(ref.shape)}; got {tuple(out.shape)}"
        out = out.bool()
        if valid[q, p] and not out[q]:
            raise AssertionError("the query's own input must be in its preimage (distance 0 at its own position): "
                                 "an input counts if ANY valid position is within eps")
        any_pos = (I.distance(acts, z_q) <= 0.1).any(1)
        if torch.equal(out, any_pos) and not torch.equal(out, ref):
            raise AssertionError("you searched positions that do not count: mask them with `valid` first")
        assert torch.equal(out, ref), "preimage = inputs with min over valid positions of D(z, z_q) <= eps"


# --- 3. patching one position, by hand -----------------------------------------
def solution_patch_position(model, target_tokens, source_tokens, site: str, pos: int) -> torch.Tensor:
    """Logits of the target run with the activation at (site, pos) taken from the source run."""
    _, cache = model.run_with_cache(source_tokens, names_filter=site)

    def hook(x, hook):
        x = x.clone()
        x[:, pos] = cache[site][:, pos]
        return x

    return model.run_with_hooks(target_tokens, [(site, hook)])


def check_patch_position(fn) -> None:
    model = HookedTransformer(TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=9,
                                                n_ctx=6, normalization="LN", seed=4))
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, 9, (5, 6), generator=g)
    tgt = torch.randint(0, 9, (5, 6), generator=g)
    for site, pos in [(act_name("resid_post", 0), 2), (act_name("attn_out", 1), 5)]:
        with torch.no_grad():
            out = fn(model, tgt, src, site, pos)
            ref = patch(model, tgt, src, site, pos=pos)
        assert out.shape == ref.shape, f"return the logits [batch, pos, d_vocab]; got {tuple(out.shape)}"
        if torch.allclose(out, model(tgt), atol=1e-6):
            raise AssertionError("the output equals the unpatched target run: does your hook return the edited "
                                 "tensor (or edit it in place)?")
        with torch.no_grad():
            every = patch(model, tgt, src, site)
        if torch.allclose(out, every, atol=1e-5) and not torch.allclose(ref, every, atol=1e-5):
            raise AssertionError("you patched every position: copy only x[:, pos]")
        assert torch.allclose(out, ref, atol=1e-5), (
            "copy the source activation at [:, pos] into the target run at the same site and position")
