"""Chapter 8's checks accept the reference solutions and reject plausible wrong attempts."""
from __future__ import annotations

import pytest
import torch

from helpers.exercises import ch8
from helpers.quantized import quantized_weights


def test_check_ternary():
    ch8.check_ternary(ch8.solution_ternary)
    no_centre = lambda w: torch.clamp(torch.round(w / w.abs().mean()), -1, 1) * w.abs().mean()  # noqa: E731
    with pytest.raises(AssertionError, match="centre"):
        ch8.check_ternary(no_centre)

    def max_scale(w):
        wc = w - w.mean()
        g = wc.abs().max()
        return torch.clamp(torch.round(wc / g), -1, 1) * g

    with pytest.raises(AssertionError):
        ch8.check_ternary(max_scale)


def test_check_straight_through():
    ch8.check_straight_through(ch8.solution_straight_through)
    with pytest.raises(AssertionError, match="no gradient"):
        ch8.check_straight_through(lambda w, q: q)
    with pytest.raises(AssertionError, match="forward value"):
        ch8.check_straight_through(lambda w, q: w)
    with pytest.raises(AssertionError, match="unchanged"):
        ch8.check_straight_through(lambda w, q: w * 0 + q)


def test_check_zero_share():
    ch8.check_zero_share(ch8.solution_zero_share)
    latent = lambda m: {k: 0.0 for k in quantized_weights(m)}  # noqa: E731
    with pytest.raises(AssertionError, match="latent"):
        ch8.check_zero_share(latent)
    with pytest.raises(AssertionError, match="share"):
        ch8.check_zero_share(lambda m: {k: (w == 0).sum().item() for k, w in quantized_weights(m).items()})
