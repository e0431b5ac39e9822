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
