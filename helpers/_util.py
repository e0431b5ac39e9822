"""Small shared pieces of the library (private): array conversion, integer checks,
eval mode, attention patterns.

Every chapter module needs a few of these; each is defined here once so that the
same input gives the same error everywhere. Nothing here is part of the public
API: import the public functions from the chapter modules instead.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["NotAnIntegerError", "is_torch", "to_numpy", "check_int", "check_positive_int", "eval_mode",
           "attention_patterns"]


class NotAnIntegerError(TypeError, ValueError):
    """A non-integer where an integer was expected.

    A ``TypeError``; also a ``ValueError``, which is what some of the library's
    checks raised for every bad count before they shared this one.
    """


def is_torch(x: Any) -> bool:
    """True for a torch tensor, without importing torch.

    >>> is_torch(np.zeros(2)), is_torch([1])
    (False, False)
    """
    return type(x).__module__.split(".")[0] == "torch"


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` (a torch tensor on any device, an array, a list) as a numpy array.

    Tensors are detached and moved to the CPU; with ``dtype`` the conversion is
    done in torch first (so bfloat16 tensors, which numpy cannot hold, work).

    >>> to_numpy([1, 2], dtype=np.float64)
    array([1., 2.])
    """
    if is_torch(x):
        t = x.detach()
        if dtype is not None:
            import torch

            t = t.to(getattr(torch, np.dtype(dtype).name))
        return t.cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (Python or numpy integer, not a bool) within ``[minimum, maximum]``.

    Raises :class:`NotAnIntegerError` for a non-integer and ``ValueError``
    for one out of range, both naming ``name``.

    >>> check_int(np.int64(3), "n", 1)
    3
    >>> check_int(0, "n", 1)
    Traceback (most recent call last):
    ...
    ValueError: n must be >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NotAnIntegerError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """``value`` as a positive ``int`` (or ``None`` when ``allow_none``).

    Raises ``ValueError`` ("must be a positive int") for anything else, a
    :class:`NotAnIntegerError` (also a ``ValueError``) for a non-integer.

    >>> check_positive_int(None, "threads", allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    what = "a positive int" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NotAnIntegerError(f"{name} must be {what}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


@contextmanager
def eval_mode(model) -> Iterator[Any]:
    """Put ``model`` in eval mode for a block, then restore its training flag.

    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> with eval_mode(m):
    ...     m.training
    False
    >>> m.training
    True
    """
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def attention_patterns(model, tokens, layer: int | None = None, fwd_hooks: Sequence[tuple] = ()):
    """Attention patterns of ``model`` on ``tokens`` from one cached forward pass.

    Returns
    -------
    Tensor ``[batch, n_heads, query_pos, key_pos]`` for one ``layer``, or
    ``[batch, n_layers, n_heads, query_pos, key_pos]`` when ``layer`` is None.
    """
    import torch

    from helpers.transformer import act_name

    layers = range(model.cfg.n_layers) if layer is None else [layer]
    names = [act_name("pattern", l) for l in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names, fwd_hooks=fwd_hooks)
    if layer is not None:
        return cache[names[0]]
    return torch.stack([cache[n] for n in names], dim=1)
