"""Shared pytest set-up: a non-interactive matplotlib backend, one torch thread.

The models under test are small: on a 2-core machine one thread is as fast when
the machine is idle and 6-15x faster when anything else is running.
"""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import torch  # noqa: E402

torch.set_num_threads(1)


# Chapter 3's models, shared by tests/test_circuits.py and tests/test_exercises_ch3.py
# (a module that needs another model under one of these names defines its own fixture).
import pytest  # noqa: E402

from helpers import circuits as _C  # noqa: E402
from helpers import store as _store  # noqa: E402


@pytest.fixture(scope="module")
def hand():
    """The hand-built two-layer induction model (vocabulary 32, context 64)."""
    return _C.induction_head_model(d_vocab=32, n_ctx=64)


@pytest.fixture(scope="module")
def trained():
    """The shipped two-layer attention-only model that learned induction heads."""
    return _store.load("induction_2l").model


@pytest.fixture(scope="module")
def eval_data():
    """1,000 sequences [BOS] r r with |r| = 20 over 48 tokens."""
    return _C.repeated_tokens(1000, 20, 48, seed=123)
