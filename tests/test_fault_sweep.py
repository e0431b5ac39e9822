"""A sweep of malformed arguments over the public callables of ``helpers``.

For every callable in a module's ``__all__`` a valid baseline call is built from a
table of sample values keyed by parameter name (a tiny model, a few tokens, p = 7,
...). When the baseline runs, each parameter in turn is replaced by values that
its annotation rules out (a float for an ``int``, a number for a ``str``, a string
or a ragged list for an array, ``None`` where ``None`` is not allowed, an arbitrary
``object()``). Each call runs in this process under a SIGALRM timeout and is
classified as

* ``clear``: an exception raised by helpers code whose message names the argument;
* ``deep``: any other exception (raised inside torch/numpy/matplotlib, or a message
  that names no argument): a bad message, not a wrong result;
* ``silent``: the call returned, though the argument breaks its declared type;
* ``hang``: the call ran past the timeout.

The test asserts 0 silent returns and 0 hangs (except the few listed in
``ACCEPTED`` with the reason) and prints the counts per module.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import re
import signal
import traceback
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import helpers
from helpers.transformer import HookedTransformer, TransformerConfig

HELPERS_DIR = str(Path(helpers.__file__).resolve().parent)
MODULES = ["transformer", "training", "store", "plotting", "widgets", "circuits", "decompositions", "degeneracy",
           "integration", "inversion", "modular", "patching", "quantized", "toy", "notation"]
# Not swept: they train or write (their arguments are checked by their own tests).
SKIP = {"store.save", "store.train_or_load", "store.rebind", "store.main", "store.recipe",
        "store.register_model_class", "transformer.register_weight_transform", "training.train"}
SKIP_PATTERN = re.compile(r"^(train|fit|sweep|run_|rebuild|recipe)|_recipe$|^make_")
CALL_TIMEOUT = 5.0
BASELINE_TIMEOUT = 3.0


def _model():
    return HookedTransformer(TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=8,
                                               d_vocab_out=7, n_ctx=8, seed=0))


SAMPLES = {
    "model": _model, "model_a": _model, "model_b": _model, "model_or_logits": _model, "model_or_acts": _model,
    "model_or_cfg": _model, "model_or_W_E": _model, "model_or_W_U": _model,
    "cfg": lambda: _model().cfg,
    "tokens": lambda: torch.randint(0, 7, (2, 3), generator=torch.Generator().manual_seed(0)),
    "p": lambda: 7, "n": lambda: 3, "d_vocab": lambda: 8, "n_ctx": lambda: 8, "seq_len": lambda: 3,
    "n_seq": lambda: 4, "seed": lambda: 0, "layer": lambda: 0, "head": lambda: 0, "rank": lambda: 2,
    "ranks": lambda: (2, 2, 2), "shape": lambda: (3, 4, 5), "k": lambda: 1, "steps": lambda: 2,
    "key_freqs": lambda: [1, 2], "freq": lambda: 1, "freqs": lambda: [1, 2],
    "T": lambda: np.random.default_rng(0).standard_normal((3, 4, 5)),
    "M": lambda: np.random.default_rng(0).standard_normal((4, 4)),
    "A": lambda: torch.randn(4, 4, generator=torch.Generator().manual_seed(1)),
    "B": lambda: torch.randn(4, 4, generator=torch.Generator().manual_seed(2)),
    "x": lambda: np.random.default_rng(0).standard_normal((7, 7)),
    "acts": lambda: np.random.default_rng(0).standard_normal((7, 7, 4)),
    "logits": lambda: torch.randn(4, 7, generator=torch.Generator().manual_seed(3)),
    "targets": lambda: torch.tensor([0, 1, 2, 3]),
    "expr": lambda: "ij,jk->ik", "name": lambda: "smoke", "threshold": lambda: 0.5,
}


def _attn_model():
    return HookedTransformer(TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=0, attn_only=True,
                                               d_vocab=8, n_ctx=48, seed=0))


# Per-module samples where the shared ones do not fit the module's models or data.
MODULE_SAMPLES = {
    "circuits": {"model": _attn_model, "seq_len": lambda: 3, "n_ctx": lambda: 48,
                 "logits": lambda: torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(3))},
    "degeneracy": {"acts": lambda: torch.randn(20, 4, generator=torch.Generator().manual_seed(4))},
    "integration": {"p": lambda: 11},
}


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in the code under test swallows it."""


@contextlib.contextmanager
def _deadline(seconds: float):
    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _tokens(annotation) -> set[str]:
    return set(re.findall(r"\w+", annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")))


INTS = {"int"}
ARRAYS = {"Tensor", "ndarray", "ArrayLike"}


def bad_values(param: inspect.Parameter) -> list[tuple[str, object]]:
    """Values that ``param``'s annotation rules out (none for an unannotated or catch-all parameter)."""
    if param.annotation is inspect.Parameter.empty:
        return []
    tok = _tokens(param.annotation) - {"torch", "np", "numpy", "typing"}
    if not tok or tok & {"Any", "object", "bool"}:
        return []
    out: list[tuple[str, object]] = [("object()", object())]
    if "None" not in tok and param.default is not None:
        out.append(("None", None))
    rest = tok - {"None"}
    if rest == INTS:
        out += [("float 2.5", 2.5), ("str '3'", "3")]
        if param.name == "seed" or param.name.endswith("_seed"):
            out += [("int 2**70", 2**70), ("int -1", -1)]  # no generator takes these
    elif rest <= {"float", "int"} and "float" in rest:
        out += [("str 'abc'", "abc"), ("nan", math.nan)]
    elif rest == {"str"}:
        out += [("int 3", 3)]
    elif rest and rest <= ARRAYS:
        out += [("str 'abc'", "abc"), ("ragged list", [[1, 2], [3]])]
    return out


def _public(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name, None)
        if not callable(obj) or (isinstance(obj, type) and issubclass(obj, BaseException)):
            continue
        if dataclasses.is_dataclass(obj) and not hasattr(obj, "__post_init__"):
            continue  # a plain record (a result type): it checks nothing by design
        qual = f"{module.__name__.split('.')[-1]}.{name}"
        if qual in SKIP or SKIP_PATTERN.search(name):
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        yield qual, obj, sig


def _classify(exc: BaseException, param: str) -> str:
    if isinstance(exc, _Timeout):
        return "hang"
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-1].filename if frames else ""
    named = param in str(exc) or param.strip("_") in str(exc)
    return "clear" if inner.startswith(HELPERS_DIR) and named else "deep"


def sweep(module_name: str) -> tuple[Counter, list[str], int, int]:
    module = importlib.import_module(f"helpers.{module_name}")
    counts: Counter = Counter()
    findings: list[str] = []
    covered = skipped = 0
    samples = {**SAMPLES, **MODULE_SAMPLES.get(module_name, {})}
    for qual, fn, sig in _public(module):
        params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        required = [p.name for p in params if p.default is p.empty]
        if any(r not in samples for r in required):
            skipped += 1
            continue
        try:
            with _deadline(BASELINE_TIMEOUT):
                fn(**{r: samples[r]() for r in required})
        except BaseException:  # noqa: BLE001 - a baseline that fails only means this callable is not covered
            skipped += 1
            plt.close("all")
            continue
        covered += 1
        for param in params:
            for label, value in bad_values(param):
                kwargs = {r: samples[r]() for r in required}
                kwargs[param.name] = value
                try:
                    with _deadline(CALL_TIMEOUT):
                        out = fn(**kwargs)
                        if isinstance(out, contextlib.AbstractContextManager):
                            with out:  # a context manager checks its arguments on entry
                                pass
                    outcome = "silent"
                except BaseException as exc:  # noqa: BLE001 - classified
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    outcome = _classify(exc, param.name)
                finally:
                    plt.close("all")
                if outcome == "silent" and (qual, param.name, label) in ACCEPTED:
                    outcome = "accepted"
                counts[outcome] += 1
                if outcome in ("silent", "hang"):
                    findings.append(f"{outcome}: {qual}({param.name}={label})")
    return counts, findings, covered, skipped


# (callable, parameter, value label) -> why a normal return is right there.
ACCEPTED: dict[tuple[str, str, str], str] = {
    **{("modular.is_prime", "n", label): "a predicate: a non-integer is not a prime (tests/test_modular.py)"
       for label in ("object()", "None", "float 2.5", "str '3'")},
    **{(f"modular.{fn}", "title", label): "a title is shown as str(title), as matplotlib does"
       for fn in ("plot_logit_pattern", "plot_embedding_spectrum") for label in ("object()", "int 3")},
}

SUMMARY: dict[str, tuple] = {}


@pytest.mark.parametrize("module_name", MODULES)
def test_malformed_arguments_never_pass_silently_or_hang(module_name, capsys):
    counts, findings, covered, skipped = sweep(module_name)
    SUMMARY[module_name] = (counts, covered, skipped)
    with capsys.disabled():
        total = sum(counts.values())
        print(f"\n  sweep {module_name:15s} callables {covered:3d} swept, {skipped:3d} without a baseline; "
              f"{total:4d} calls: " + ", ".join(f"{k} {counts[k]}" for k in ("clear", "deep", "silent", "hang", "accepted")))
    assert not findings, f"{len(findings)} findings:\n" + "\n".join(findings)
