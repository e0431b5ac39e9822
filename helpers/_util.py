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

__all__ = ["NotAnIntegerError", "is_torch", "to_numpy", "check_int", "check_positive_int", "check_seed",
           "check_number", "check_finite", "check_token_ids", "check_hooks", "eval_mode", "attention_patterns"]

SEED_MAX = 2**63 - 1


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


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an ``int`` in ``[0, 2**63 - 1]`` (what both ``torch.manual_seed`` and numpy accept).

    >>> check_seed(np.int64(7))
    7
    >>> check_seed(2**70)
    Traceback (most recent call last):
    ...
    ValueError: seed must be <= 9223372036854775807, got 1180591620717411303424
    """
    return check_int(seed, name, 0, SEED_MAX)


def check_number(value: Any, name: str, *, minimum: float | None = None, positive: bool = False,
                 allow_none: bool = False) -> float | None:
    """``value`` as a finite ``float`` (not a bool), optionally ``>= minimum`` or ``> 0``.

    >>> check_number(0.5, "lr", positive=True)
    0.5
    >>> check_number(-1.0, "grad_clip", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: grad_clip must be >= 0, got -1.0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{' or None' if allow_none else ''}, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_finite(x: Any, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if the array or tensor ``x`` holds NaN or inf.

    >>> check_finite(np.array([1.0, np.nan]), "A")
    Traceback (most recent call last):
    ...
    ValueError: A contains NaN or inf (1 of 2 entries)
    """
    if is_torch(x):
        import torch

        if x.is_floating_point() or x.is_complex():
            bad = int((~torch.isfinite(x)).sum())
        else:
            bad = 0
        size = x.numel()
    else:
        a = np.asarray(x)
        bad = int((~np.isfinite(a)).sum()) if a.dtype.kind in "fc" else 0
        size = a.size
    if bad:
        raise ValueError(f"{name} contains NaN or inf ({bad} of {size} entries)")


def check_token_ids(tokens: Any, name: str = "tokens", d_vocab: int | None = None):
    """``tokens`` as an int64 tensor of token ids (any integer dtype accepted and widened).

    Floats, bools and complex numbers are refused (a float id would be truncated),
    as are negative ids and, with ``d_vocab``, ids ``>= d_vocab``.

    >>> check_token_ids(np.array([1, 2], dtype=np.uint8)).dtype
    torch.int64
    """
    import torch

    if not isinstance(tokens, torch.Tensor):
        if isinstance(tokens, (list, tuple, np.ndarray)) or isinstance(tokens, numbers.Integral):
            try:
                tokens = torch.as_tensor(np.asarray(tokens))
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"{name} must be integer token ids, got {type(tokens).__name__} ({exc})") from None
        else:
            raise TypeError(f"{name} must be a tensor of integer token ids, got {type(tokens).__name__}")
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    tokens = tokens.long()
    if tokens.numel() and int(tokens.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(tokens.min())}")
    if d_vocab is not None and tokens.numel() and int(tokens.max()) >= d_vocab:
        raise ValueError(f"{name} must be < d_vocab={d_vocab}, got {int(tokens.max())}")
    return tokens


def check_hooks(fwd_hooks: Any, name: str = "fwd_hooks") -> list[tuple]:
    """``fwd_hooks`` as a list of ``(hook name or filter, fn)`` pairs.

    >>> check_hooks(None)
    Traceback (most recent call last):
    ...
    TypeError: fwd_hooks must be a list of (name, fn) pairs, got None
    """
    if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, (list, tuple)):
        raise TypeError(f"{name} must be a list of (name, fn) pairs, got {fwd_hooks!r}")
    out = []
    for i, pair in enumerate(fwd_hooks):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"{name}[{i}] must be a (name, fn) pair, got {pair!r}")
        hook_name, fn = pair
        if not (isinstance(hook_name, str) or callable(hook_name)):
            raise TypeError(f"{name}[{i}][0] must be a hook name or a name filter, got {hook_name!r}")
        if not callable(fn):
            raise TypeError(f"{name}[{i}][1] must be callable fn(tensor, hook), got {fn!r}")
        out.append((hook_name, fn))
    return out


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

    fwd_hooks = check_hooks(fwd_hooks)
    if not is_torch(tokens):
        raise TypeError(f"tokens must be a tensor [batch, pos] of token ids, got {type(tokens).__name__}")
    if layer is not None:
        check_int(layer, "layer")
    layers = range(model.cfg.n_layers) if layer is None else [layer]
    names = [act_name("pattern", l) for l in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names, fwd_hooks=fwd_hooks)
    if layer is not None:
        return cache[names[0]]
    return torch.stack([cache[n] for n in names], dim=1)
