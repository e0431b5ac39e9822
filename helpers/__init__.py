"""helpers: the tested library behind *Reading the Algorithms Inside Neural Networks*.

Each chapter of the book imports one module of this package; the shared modules
(:mod:`helpers.transformer`, :mod:`helpers.training`, :mod:`helpers.store`,
:mod:`helpers.plotting`, :mod:`helpers.widgets`) serve all of them.

Submodules are imported lazily, so ``import helpers`` is cheap and
``helpers.notation`` (say) loads only what chapter 1 needs:

>>> import helpers
>>> helpers.__version__
'0.1.0'
>>> sorted(m for m in helpers.__all__ if m in ("store", "transformer"))
['store', 'transformer']
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = [
    "transformer",
    "training",
    "store",
    "plotting",
    "widgets",
    "notation",
    "decompositions",
    "circuits",
    "modular",
    "integration",
    "inversion",
    "degeneracy",
    "quantized",
    "patching",
    "exercises",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
