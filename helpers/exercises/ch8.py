"""Chapter 8's exercises: reference solutions and the checks a reader runs on an attempt.

Each ``check_<x>(fn)`` calls the reader's ``fn`` on small inputs, compares it
with ``solution_<x>`` and raises ``AssertionError`` with a specific hint on the
first difference. The answer keys live here, not in :mod:`helpers.quantized`.
"""
from __future__ import annotations

import torch

from helpers.quantized import quantized_weights
from helpers.transformer import HookedTransformer

__all__ = [
    "solution_ternary", "check_ternary",
    "solution_straight_through", "check_straight_through",
    "solution_zero_share", "check_zero_share",
]


# ---------------------------------------------------------------------------
# 1. The ternary quantizer (a core piece)
# ---------------------------------------------------------------------------
def solution_ternary(w: torch.Tensor) -> torch.Tensor:
    """BitNet b1.58 on centred weights: ``gamma * clamp(round(W'/gamma), -1, 1)``, ``gamma = mean|W'|``."""
    wc = w - w.mean()
    gamma = wc.abs().mean().clamp_min(1e-8)
    return torch.clamp(torch.round(wc / gamma), -1, 1) * gamma


def _cases():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(6, 10, generator=gen, dtype=torch.float64) * 0.1 + 0.05,
            torch.randn(2, 4, 8, generator=gen, dtype=torch.float64) - 1.0]


def check_ternary(fn) -> None:
    """Check a reader's ternary quantizer ``fn(w) -> tensor of w's shape``."""
    for w in _cases():
        out = fn(w.clone())
        assert isinstance(out, torch.Tensor) and out.shape == w.shape, (
            f"return a tensor of the input's shape {tuple(w.shape)}")
        ref = solution_ternary(w)
        gamma = (w - w.mean()).abs().mean().item()
        values = set(torch.round(out / gamma, decimals=6).flatten().tolist())
        if not values <= {-1.0, 0.0, 1.0}:
            if torch.allclose(out, torch.clamp(torch.round(w / w.abs().mean()), -1, 1) * w.abs().mean()):
                raise AssertionError("centre the weights first: W' = W - W.mean(), then gamma = mean |W'|")
            raise AssertionError(f"every entry must be -gamma, 0 or +gamma with gamma = mean |W - mean W| = "
                                 f"{gamma:.4f}; got values/gamma {sorted(values)[:6]}")
        if not torch.allclose(out, ref, atol=1e-9):
            raise AssertionError("right values, wrong entries: an entry is 0 exactly when |W'| < gamma / 2 "
                                 "(round, then clamp to [-1, 1])")


# ---------------------------------------------------------------------------
# 2. The straight-through estimator
# ---------------------------------------------------------------------------
def solution_straight_through(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward value ``q``, gradient of the identity with respect to ``w``."""
    return w + (q - w).detach()


def check_straight_through(fn) -> None:
    """Check ``fn(w, q)``: the output equals ``q`` and d(out)/d(w) is the identity."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    q = solution_ternary(w.detach())
    out = fn(w, q)
    assert isinstance(out, torch.Tensor) and out.shape == w.shape, "return a tensor of w's shape"
    if not torch.allclose(out.detach(), q, atol=1e-12):
        raise AssertionError("the forward value must be the quantized weight q, not w")
    if not out.requires_grad:
        raise AssertionError("no gradient reaches w: the output must depend on w (try w + (q - w).detach())")
    upstream = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * upstream).sum(), w, allow_unused=True)
    if grad is None or not torch.allclose(grad, upstream, atol=1e-12):
        raise AssertionError("the gradient must reach w unchanged (the identity); rounding has zero gradient "
                             "almost everywhere, so detach the quantization step")


# ---------------------------------------------------------------------------
# 3. How many ternary weights are zero?
# ---------------------------------------------------------------------------
def solution_zero_share(model: HookedTransformer) -> dict[str, float]:
    """Share of each hidden matrix's forward (quantized) entries that are exactly zero."""
    return {name: (w == 0).double().mean().item() for name, w in quantized_weights(model).items()}


def check_zero_share(fn) -> None:
    """Check ``fn(model) -> {matrix name: share of zero entries}`` on a small ternary model."""
    from helpers.quantized import precision_config

    model = HookedTransformer(precision_config("ternary", seed=1, p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    out = fn(model)
    ref = solution_zero_share(model)
    assert isinstance(out, dict), "return a dict {matrix name: share}"
    assert set(out) == set(ref), f"expected one entry per hidden matrix: {sorted(ref)}"
    for name, share in ref.items():
        got = float(out[name])
        if got == 0.0 and share > 0:
            raise AssertionError("the latent weights are never exactly zero; count zeros in the weights the "
                                 "forward pass uses (model.W_in etc., or quantized_weights(model))")
        if abs(got - share) > 1e-9:
            raise AssertionError(f"{name}: expected a share of {share:.4f}, got {got:.4f} (share = zeros / entries)")
