"""Parsing einsum expressions and checking operands against them (private)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def parse_einsum(expr: str) -> tuple[tuple[str, ...], str]:
    """Split an einsum expression into input subscripts and the output.

    Parameters
    ----------
    expr : str
        An expression such as ``"ij,jk->ik"``.  Spaces are ignored.  Without
        ``->`` (implicit mode) the output is every index that appears exactly
        once, sorted, as in ``numpy.einsum``.

    Returns
    -------
    inputs : tuple of str
        One subscript per operand.
    output : str
        The output subscript.

    Raises
    ------
    ValueError
        For ellipses, more than one ``->``, characters that are not letters,
        an output index that appears in no input, or a repeated output index;
        the message names the offending index.

    Chapter 1 uses it through :func:`einsum_explorer`.

    >>> parse_einsum("ij,jk->ik")
    (('ij', 'jk'), 'ik')
    >>> parse_einsum("ba,cb")          # implicit: indices seen once, sorted
    (('ba', 'cb'), 'ac')
    >>> parse_einsum("ij->iz")
    Traceback (most recent call last):
    ...
    ValueError: output index 'z' appears in no input of 'ij->iz'
    """
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a str such as 'ij,jk->ik', got {type(expr).__name__}")
    s = "".join(expr.split())
    if "." in s:
        raise ValueError(
            f"ellipsis '...' in {expr!r} is not supported: write every index explicitly"
        )
    if s.count("->") > 1 or (s.count(">") != s.count("->")) or s.count("-") != s.count("->"):
        raise ValueError(f"expression {expr!r} must contain at most one '->' (and no other '-' or '>')")
    if "->" in s:
        lhs, output = s.split("->")
        explicit = True
    else:
        lhs, output = s, ""
        explicit = False
    inputs = tuple(lhs.split(","))
    for k, sub in enumerate(inputs):
        for ch in sub:
            if not ch.isalpha():
                raise ValueError(
                    f"subscript {sub!r} of operand {k} in {expr!r} contains {ch!r}: "
                    "indices must be letters"
                )
    for ch in output:
        if ch == ",":
            raise ValueError(f"the output of {expr!r} must be a single subscript (found ',')")
        if not ch.isalpha():
            raise ValueError(f"output of {expr!r} contains {ch!r}: indices must be letters")
    if not explicit:
        counts: dict[str, int] = {}
        for ch in lhs.replace(",", ""):
            counts[ch] = counts.get(ch, 0) + 1
        output = "".join(sorted(ch for ch, n in counts.items() if n == 1))
    seen = set()
    all_in = set(lhs.replace(",", ""))
    for ch in output:
        if ch in seen:
            raise ValueError(
                f"output index {ch!r} appears twice in the output {output!r} of {expr!r}; "
                "an output leg can only be drawn once"
            )
        seen.add(ch)
        if ch not in all_in:
            raise ValueError(f"output index {ch!r} appears in no input of {expr!r}")
    return inputs, output


def _shape_of(op: Any, k: int, label: str) -> Shape:
    """Shape of an operand given as an array or as a shape tuple."""
    if hasattr(op, "shape") and not isinstance(op, (tuple, list)):
        shape = tuple(int(n) for n in op.shape)
    elif isinstance(op, (tuple, list)) and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in op
    ):
        shape = tuple(int(n) for n in op)
    else:
        raise TypeError(
            f"operand {k} ({label}) must be an array (numpy/torch) or a shape tuple of ints, "
            f"got {type(op).__name__}"
        )
    for ax, n in enumerate(shape):
        if n < 1:
            raise ValueError(f"operand {k} ({label}) has size {n} on axis {ax}; sizes must be >= 1")
    return shape


def _operand_label(k: int, names: Sequence[str] | None) -> str:
    return f"{names[k]!r}" if names is not None else f"#{k}"


def _check(
    expr: str, operands: Sequence[Any], names: Sequence[str] | None = None, allow_none: bool = False
) -> tuple[tuple[str, ...], str, list[Shape | None], dict[str, int | None]]:
    """Parse ``expr`` and check the operands against it.

    Returns inputs, output, shapes (None when no operands were given and
    ``allow_none``), and the size of every index (None if unknown).
    """
    inputs, output = parse_einsum(expr)
    n = len(inputs)
    if names is not None:
        if isinstance(names, str) or len(names) != n:
            raise ValueError(
                f"names must be a list of {n} strings, one per operand of {expr!r}, got {names!r}"
            )
    if allow_none and len(operands) == 0:
        return inputs, output, [None] * n, {ch: None for sub in inputs for ch in sub}
    if len(operands) != n:
        raise ValueError(
            f"expression {expr!r} has {n} operand subscript{'s' * (n != 1)} "
            f"but {len(operands)} operand{'s' * (len(operands) != 1)} were given"
        )
    shapes: list[Shape | None] = []
    dims: dict[str, int | None] = {}
    where: dict[str, tuple[int, int]] = {}
    for k, (sub, op) in enumerate(zip(inputs, operands)):
        label = _operand_label(k, names)
        shape = _shape_of(op, k, label)
        if len(shape) != len(sub):
            raise ValueError(
                f"operand {k} ({label}) has {len(shape)} axes (shape {shape}) but its subscript "
                f"{sub!r} names {len(sub)} ind{'ices' if len(sub) != 1 else 'ex'}"
            )
        for ax, ch in enumerate(sub):
            if ch in dims and dims[ch] != shape[ax]:
                k0, ax0 = where[ch]
                raise ValueError(
                    f"index {ch!r} has size {dims[ch]} in operand {k0} ({_operand_label(k0, names)}, "
                    f"axis {ax0}) but size {shape[ax]} in operand {k} ({label}, axis {ax})"
                )
            if ch not in dims:
                dims[ch] = shape[ax]
                where[ch] = (k, ax)
        shapes.append(shape)
    return inputs, output, shapes, dims
