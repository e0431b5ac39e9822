"""Chapter 6 exercises: each check passes the reference solution and fails plausible wrong attempts."""
from __future__ import annotations

import pytest

from helpers import inversion as I
from helpers.exercises import ch6 as E


def test_distance_check():
    E.check_distance(E.solution_distance)
    with pytest.raises(AssertionError, match="norm of the \\*query\\*"):
        E.check_distance(lambda z, q: (z - q).norm(dim=-1))
    with pytest.raises(AssertionError, match="divided by"):
        E.check_distance(lambda z, q: (z - q).norm(dim=-1) / z.norm(dim=-1))


def test_preimage_check():
    E.check_preimage(E.solution_preimage)
    with pytest.raises(AssertionError, match="ANY valid position"):   # every position instead of any
        E.check_preimage(lambda acts, zq, valid, eps: (I.distance(acts, zq) <= eps).all(1))
    with pytest.raises(AssertionError, match="do not count"):          # the valid mask ignored
        E.check_preimage(lambda acts, zq, valid, eps: (I.distance(acts, zq) <= eps).any(1))


def test_patch_position_check():
    E.check_patch_position(E.solution_patch_position)

    def every_position(model, tgt, src, site, pos):
        _, cache = model.run_with_cache(src, names_filter=site)
        return model.run_with_hooks(tgt, [(site, lambda x, hook: cache[site])])

    with pytest.raises(AssertionError, match="every position"):
        E.check_patch_position(every_position)

    def forgot_return(model, tgt, src, site, pos):
        _, cache = model.run_with_cache(src, names_filter=site)

        def hook(x, hook):
            y = x.clone()
            y[:, pos] = cache[site][:, pos]

        return model.run_with_hooks(tgt, [(site, hook)])

    with pytest.raises(AssertionError, match="unpatched"):
        E.check_patch_position(forgot_return)
