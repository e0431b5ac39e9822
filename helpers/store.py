"""Trained-model registry: train once, ship small checkpoints, load them safely.

A checkpoint called ``name`` is a manifest ``checkpoints/<name>.json`` plus
data files named after their content hash::

    <name>.json                            manifest: class, config, seed, steps,
                                           final metrics, library versions,
                                           sha256 and size of every data file
    <name>.<sha>.weights.safetensors       the weights
    <name>.<sha>.history.json              the logged training curves
    <name>.<sha>.snapshots.safetensors     optional weight snapshots by step

Weights are safetensors, so loading never unpickles code. A save writes the
new data files first (new names, each through a temp file + ``os.replace``),
then swaps the manifest in one ``os.replace``, then deletes the old files: a
writer killed at any moment leaves the previous checkpoint loadable. Every load
checks each file's size and sha256; a missing, truncated, corrupted or
mismatching file is refused with a :class:`CheckpointError` that names the file
and the ``make checkpoints`` target that rebuilds it.

Models are produced by *recipes*: functions registered with :func:`recipe` in
the chapter modules. ``make checkpoints`` runs every registered recipe
(``python -m helpers.store rebuild``).

>>> import tempfile, torch
>>> from helpers.transformer import TransformerConfig, HookedTransformer
>>> root = tempfile.mkdtemp()
>>> model = HookedTransformer(TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16,
...                                             d_vocab=5, n_ctx=3))
>>> _ = save("demo", model, history={"step": [0, 10], "train_loss": [1.6, 0.2]}, root=root)
>>> loaded = load("demo", root=root)
>>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))
True
>>> loaded.history["train_loss"]
[1.6, 0.2]

Used by every chapter that loads a trained model.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "CheckpointError",
    "Loaded",
    "CHECKPOINT_DIR",
    "save",
    "load",
    "exists",
    "verify",
    "train_or_load",
    "recipe",
    "recipes",
    "register_model_class",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
FORMAT_VERSION = 1
_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: missing, truncated, corrupted or mismatching."""


@dataclass
class Loaded:
    """A loaded checkpoint: the model (in eval mode), its history and manifest."""

    model: nn.Module
    history: dict[str, list]
    manifest: dict
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def config(self):
        return getattr(self.model, "cfg", self.manifest.get("config"))

    @property
    def metrics(self) -> dict:
        return self.manifest.get("final_metrics", {})


# ---------------------------------------------------------------------------
# Model classes a checkpoint may name
# ---------------------------------------------------------------------------
_CLASSES: dict[str, type] = {}


def register_model_class(cls: type) -> type:
    """Allow checkpoints of ``cls`` (which needs ``config_dict()`` and
    ``from_config_dict(d)``). Usable as a decorator."""
    if not (hasattr(cls, "config_dict") and hasattr(cls, "from_config_dict")):
        raise TypeError(f"{cls.__name__} needs config_dict() and from_config_dict() to be stored")
    _CLASSES[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _model_class(qualname: str, path: Path) -> type:
    if qualname not in _CLASSES:
        module = qualname.rpartition(".")[0]
        if module.startswith("helpers.") or module == "helpers":
            try:
                importlib.import_module(module)  # a chapter module registers its classes on import
            except ImportError:
                pass
    if qualname not in _CLASSES:
        raise CheckpointError(f"{path}: names model class {qualname!r}, which is not a registered helpers class")
    return _CLASSES[qualname]


def _required_modules(model: nn.Module) -> list[str]:
    """helpers modules a checkpoint of ``model`` needs imported before it is built.

    Today: the module that registered the config's weight transform (chapter 8's
    quantized models), so ``load`` works in a fresh process.
    """
    name = getattr(getattr(model, "cfg", None), "weight_transform", None)
    if not isinstance(name, str) or name == "none":
        return []
    from helpers.transformer import weight_transform_module

    module = weight_transform_module(name)
    return [module] if module.startswith("helpers.") else []


def _import_required(manifest: dict, path: Path) -> None:
    for module in manifest.get("requires", []):
        if not (isinstance(module, str) and module.startswith("helpers.")):
            raise CheckpointError(f"{path}: requires module {module!r}, which is not a helpers module")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CheckpointError(f"{path}: cannot import {module!r}, which it requires ({exc})") from None


def _ensure_default_classes() -> None:
    # Checked by name, not by "is the registry empty": a chapter module that
    # registers its own class first must not hide the transformer.
    if "helpers.transformer.HookedTransformer" not in _CLASSES:
        from helpers.transformer import HookedTransformer

        register_model_class(HookedTransformer)


# ---------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------
@dataclass
class _Recipe:
    name: str
    fn: Callable[..., tuple]
    description: str
    module: str


_RECIPES: dict[str, _Recipe] = {}
# Recipe arguments that change how a run is shown, never what it computes.
_NO_EFFECT = frozenset({"progress"})


def recipe(name: str, description: str = ""):
    """Register ``fn(**kwargs) -> (model, TrainResult)`` as the way to build ``name``.

    The recipe must be deterministic given its keyword arguments (which include
    the seed). :func:`train_or_load` and ``make checkpoints`` call it.
    """
    _check_name(name)

    def deco(fn):
        _RECIPES[name] = _Recipe(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0], fn.__module__)
        return fn

    return deco


def discover_recipes() -> list[str]:
    """Import every module of ``helpers`` that registers a recipe; return their names.

    A module is imported when its source calls ``recipe(``: this is how
    ``make checkpoints`` finds every chapter's models without a hand-kept list.
    """
    import helpers

    found = []
    pkg_dir = Path(helpers.__file__).resolve().parent
    for path in sorted(pkg_dir.rglob("*.py")):
        rel = path.relative_to(pkg_dir.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module.endswith("__init__") or module == __name__:
            continue
        if "recipe(" in path.read_text(encoding="utf-8"):
            importlib.import_module(module)
            found.append(module)
    return found


def recipes() -> dict[str, str]:
    """Registered recipe names -> one-line descriptions."""
    return {k: r.description for k, r in sorted(_RECIPES.items())}


# ---------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or not set(name) <= _NAME_OK or name[0] in "-_":
        raise ValueError(f"checkpoint name must be lowercase letters, digits, '_' or '-', got {name!r}")


def _root(root) -> Path:
    return Path(root) if root is not None else CHECKPOINT_DIR


def _rebuild_hint(name: str) -> str:
    return f"rebuild it with `make checkpoints ONLY={name}` (or delete it and call train_or_load)"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _versions() -> dict[str, str]:
    import numpy

    import helpers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "helpers": helpers.__version__,
    }


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def save(
    name: str,
    model: nn.Module,
    history: dict | None = None,
    snapshots: dict[int, dict[str, torch.Tensor]] | None = None,
    *,
    seed: int | None = None,
    steps: int | None = None,
    final_metrics: dict | None = None,
    recipe_kwargs: dict | None = None,
    seconds: float | None = None,
    root=None,
) -> Path:
    """Save a model, its history and optional snapshots atomically; return the manifest path."""
    _check_name(name)
    _ensure_default_classes()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    qualname = f"{type(model).__module__}.{type(model).__qualname__}"
    if qualname not in _CLASSES:
        raise TypeError(f"{qualname} is not registered; call helpers.store.register_model_class first")
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    history = history or {}
    payloads: dict[str, tuple[str, bytes]] = {
        "weights": ("weights.safetensors", _tensor_bytes(model.state_dict())),
        "history": ("history.json", json.dumps(history, indent=None, sort_keys=True).encode()),
    }
    if snapshots:
        flat = {f"{int(step):08d}/{k}": v for step, sd in snapshots.items() for k, v in sd.items()}
        payloads["snapshots"] = ("snapshots.safetensors", _tensor_bytes(flat))
    files = {}
    for role, (suffix, data) in payloads.items():
        digest = _sha256(data)
        fname = f"{name}.{digest[:16]}.{suffix}"
        target = root / fname
        if not (target.exists() and target.stat().st_size == len(data) and _sha256(target.read_bytes()) == digest):
            _atomic_write(target, data)
        files[role] = {"path": fname, "sha256": digest, "bytes": len(data)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "requires": _required_modules(model),
        "name": name,
        "class": qualname,
        "config": model.config_dict(),
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "final_metrics": final_metrics or {},
        "recipe_kwargs": recipe_kwargs or {},
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
    }
    manifest_path = root / f"{name}.json"
    _atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    keep = {f["path"] for f in files.values()}
    for old in root.glob(f"{name}.*.*"):
        if old.name not in keep and old.name.split(".")[0] == name and old.suffix in (".safetensors", ".json"):
            old.unlink(missing_ok=True)
    for stale in root.glob(f".tmp-{name}.*"):  # left by a writer that was killed mid-save
        stale.unlink(missing_ok=True)
    return manifest_path


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------
def _read_manifest(name: str, root: Path) -> dict:
    path = root / f"{name}.json"
    if not path.exists():
        raise CheckpointError(f"missing checkpoint manifest {path}; {_rebuild_hint(name)}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"corrupted checkpoint manifest {path} ({exc}); {_rebuild_hint(name)}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a format-{FORMAT_VERSION} manifest; {_rebuild_hint(name)}")
    for key in ("class", "config", "files"):
        if key not in manifest:
            raise CheckpointError(f"{path} lacks the field {key!r}; {_rebuild_hint(name)}")
    return manifest


def _read_verified(name: str, root: Path, entry: dict) -> bytes:
    path = root / entry["path"]
    if not path.exists():
        raise CheckpointError(f"missing checkpoint file {path}; {_rebuild_hint(name)}")
    data = path.read_bytes()
    if len(data) != entry["bytes"]:
        raise CheckpointError(
            f"truncated or resized checkpoint file {path}: {len(data)} bytes, manifest says {entry['bytes']}; "
            f"{_rebuild_hint(name)}"
        )
    if _sha256(data) != entry["sha256"]:
        raise CheckpointError(f"corrupted checkpoint file {path}: sha256 does not match the manifest; {_rebuild_hint(name)}")
    return data


def _load_tensors(name: str, root: Path, entry: dict) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as st_load

    data = _read_verified(name, root, entry)
    try:
        return st_load(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise CheckpointError(f"unreadable safetensors file {root / entry['path']} ({exc}); {_rebuild_hint(name)}") from None


def exists(name: str, root=None) -> bool:
    """True if a manifest for ``name`` exists (it may still fail verification)."""
    _check_name(name)
    return (_root(root) / f"{name}.json").exists()


def load(name: str, *, root=None, snapshots: bool = False, device=None) -> Loaded:
    """Load checkpoint ``name``: verified weights, config, history (and snapshots).

    Raises
    ------
    CheckpointError
        Naming the bad file and how to rebuild it.
    """
    _check_name(name)
    _ensure_default_classes()
    root = _root(root)
    manifest = _read_manifest(name, root)
    mpath = root / f"{name}.json"
    for role in ("weights", "history"):
        if role not in manifest["files"]:
            raise CheckpointError(f"{mpath} lists no {role} file; {_rebuild_hint(name)}")
    weights = _load_tensors(name, root, manifest["files"]["weights"])
    history = json.loads(_read_verified(name, root, manifest["files"]["history"]))
    cls = _model_class(manifest["class"], mpath)
    _import_required(manifest, mpath)
    try:
        model = cls.from_config_dict(manifest["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{mpath}: its config does not build a model ({exc}); {_rebuild_hint(name)}") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    wrong = [k for k in set(own) & set(weights) if own[k].shape != weights[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{root / manifest['files']['weights']['path']} does not match its config "
            f"(missing {missing}, unexpected {unexpected}, wrong shape {sorted(wrong)}); {_rebuild_hint(name)}"
        )
    model.load_state_dict(weights)
    if device is not None:
        model.to(device)
    model.eval()
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    if snapshots and "snapshots" in manifest["files"]:
        for key, value in _load_tensors(name, root, manifest["files"]["snapshots"]).items():
            step, _, param = key.partition("/")
            snaps.setdefault(int(step), {})[param] = value
    return Loaded(model=model, history=history, manifest=manifest, snapshots=dict(sorted(snaps.items())))


def verify(root=None) -> dict[str, str]:
    """Check every checkpoint in ``root``: name -> "ok" or the error message."""
    root = _root(root)
    out = {}
    for path in sorted(root.glob("*.json")):
        if path.name.count(".") != 1:
            continue
        name = path.stem
        try:
            load(name, root=root, snapshots=True)
            out[name] = "ok"
        except CheckpointError as exc:
            out[name] = str(exc)
    return out


def train_or_load(name: str, *, root=None, retrain: bool = False, snapshots: bool = False, **kwargs) -> Loaded:
    """Load ``name`` if its checkpoint exists, else run its recipe, save and return it.

    ``kwargs`` go to the recipe; a stored checkpoint made with different
    recipe arguments is refused (a :class:`CheckpointError` saying which
    differ) rather than silently returned. ``retrain=True`` always retrains.
    A checkpoint that exists but fails verification is never overwritten
    silently: the error is raised (use ``retrain=True`` or ``make checkpoints``).
    """
    _check_name(name)
    rec = _RECIPES.get(name)
    full_kwargs = None
    if rec is not None:
        try:
            bound = inspect.signature(rec.fn).bind(**kwargs)
        except TypeError as exc:
            raise TypeError(f"recipe {name!r}: {exc}") from None
        bound.apply_defaults()
        full_kwargs = json.loads(json.dumps(dict(bound.arguments)))
    if not retrain and exists(name, root):
        loaded = load(name, root=root, snapshots=snapshots)
        stored = loaded.manifest.get("recipe_kwargs", {})
        # Compare every argument the recipe would run with, defaults included, so
        # a checkpoint made before a recipe's default changed is not returned as
        # if it were current. Arguments that cannot change the result are skipped.
        asked = full_kwargs if full_kwargs is not None else json.loads(json.dumps(kwargs))
        diff = sorted(k for k in set(asked) | set(stored) if k not in _NO_EFFECT and stored.get(k) != asked.get(k))
        if diff:
            detail = ", ".join(f"{k}: stored {stored.get(k, '(absent)')!r}, now {asked.get(k, '(absent)')!r}"
                               for k in diff)
            raise CheckpointError(
                f"checkpoint {name!r} was trained with other recipe arguments ({detail}); "
                f"pass retrain=True, use another name, or rebuild it with `make checkpoints ONLY={name}`"
            )
        return loaded
    if rec is None:
        raise CheckpointError(
            f"no recipe registered for {name!r} (known: {sorted(_RECIPES)}); import the chapter module that defines it"
        )
    fn = rec.fn
    model, result = fn(**kwargs)
    save(
        name,
        model,
        history=result.history,
        snapshots=result.snapshots,
        seed=full_kwargs.get("seed", getattr(getattr(model, "cfg", None), "seed", None)),
        steps=result.steps,
        final_metrics=result.final(),
        recipe_kwargs=full_kwargs,
        seconds=round(result.seconds, 2),
        root=root,
    )
    return load(name, root=root, snapshots=snapshots)


# ---------------------------------------------------------------------------
# Command line: python -m helpers.store {list,verify,rebuild}
# ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.store", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list stored checkpoints")
    sub.add_parser("verify", help="verify every stored checkpoint's files")
    rb = sub.add_parser("rebuild", help="retrain registered recipes and save them")
    rb.add_argument("--module", action="append", default=[],
                    help="module whose recipes to run (repeatable; default: every helpers module with a recipe)")
    rb.add_argument("--only", default="", help="comma-separated recipe names (default: all)")
    rb.add_argument("--jobs", type=int, default=1,
                    help="parallel processes (default 1); each runs one module's recipes in order, so a recipe "
                         "that loads another of its module's checkpoints still runs after it")
    rb.add_argument("--root", default=None, help="write checkpoints here instead of helpers/checkpoints")
    rb.add_argument("--estimate", action="store_true", help="print the plan and its estimated time; train nothing")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for path in sorted(CHECKPOINT_DIR.glob("*.json")):
            if path.name.count(".") == 1:
                m = json.loads(path.read_text())
                size = sum(f["bytes"] for f in m["files"].values())
                print(f"{path.stem:28s} {size / 1024:8.1f} KiB  steps={m.get('steps')}  {m.get('final_metrics')}")
        return 0
    if args.cmd == "verify":
        results = verify()
        for k, v in results.items():
            print(f"{k}: {v}")
        return 1 if any(v != "ok" for v in results.values()) else 0
    for module in args.module:
        importlib.import_module(module)
    if not args.module:
        discover_recipes()
    # registration order within a module (a module registers a checkpoint before one that loads it)
    names = [n for n in args.only.split(",") if n] or list(_RECIPES)
    unknown = sorted(set(names) - set(_RECIPES))
    if unknown:
        print(f"unknown recipes {unknown}; registered: {sorted(_RECIPES)}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"--jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    return _rebuild(names, args.jobs, args.root, args.module, estimate_only=args.estimate)


def _recorded_seconds(name: str, root) -> float | None:
    """The training time recorded in ``name``'s manifest (in ``root``, else the shipped one), if any."""
    for r in (_root(root), CHECKPOINT_DIR):
        try:
            return float(json.loads((r / f"{name}.json").read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _schedule(groups: list[list[str]], seconds: dict, jobs: int) -> float:
    """Wall time of running ``groups`` (each in order) on ``jobs`` workers, longest group first."""
    workers = [0.0] * jobs
    for g in sorted(groups, key=lambda g: -sum(seconds[n] for n in g)):
        workers[workers.index(min(workers))] += sum(seconds[n] for n in g)
    return max(workers)


def _rebuild(names: list[str], jobs: int, root, modules: list[str], estimate_only: bool = False) -> int:
    """Retrain ``names``: print an estimate, each recipe's time as it finishes, and the total."""
    recorded = {n: _recorded_seconds(n, root) for n in names}
    known = {n: s for n, s in recorded.items() if s is not None}
    fill = sorted(known.values())[len(known) // 2] if known else 60.0  # unknown: the median recorded time
    seconds = {n: recorded[n] if recorded[n] is not None else fill for n in names}
    by_module: dict[str, list[str]] = {}
    for n in names:
        by_module.setdefault(_RECIPES[n].module, []).append(n)
    groups = list(by_module.values())
    jobs = min(jobs, len(groups))
    missing = sorted(set(names) - set(known))
    child = os.environ.get("_HELPERS_STORE_CHILD") == "1"  # one group of a parallel rebuild: no header/total
    if not child:
        print(f"rebuilding {len(names)} recipe(s) from {len(groups)} module(s) on {jobs} process(es); estimate "
              f"{_schedule(groups, seconds, jobs) / 60:.1f} min from the recorded times (sum "
              f"{sum(seconds.values()) / 60:.1f} min)" + (f"; no recorded time for {missing}" if missing else ""),
              flush=True)
    if estimate_only:
        for g in sorted(groups, key=lambda g: -sum(seconds[n] for n in g)):
            print(f"  {_RECIPES[g[0]].module}: {sum(seconds[n] for n in g) / 60:.1f} min: "
                  + ", ".join(f"{n} {_fmt(recorded[n])}" for n in g))
        return 0
    t0 = time.perf_counter()
    if jobs == 1:
        for n in names:
            t1 = time.perf_counter()
            loaded = train_or_load(n, retrain=True, root=root)
            print(f"{n}: {time.perf_counter() - t1:.1f} s (recorded {_fmt(recorded[n])}), "
                  f"steps={loaded.manifest['steps']}, {loaded.metrics}", flush=True)
        code = 0
    else:
        code = _rebuild_parallel(groups, seconds, jobs, root, modules)
    if not child:
        print(f"total: {(time.perf_counter() - t0) / 60:.1f} min wall for {len(names)} recipe(s) on {jobs} process(es)",
              flush=True)
    return code


def _fmt(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds:.1f} s"


def _rebuild_parallel(groups: list[list[str]], seconds: dict, jobs: int, root, modules: list[str]) -> int:
    """Each group in its own ``python -m helpers.store rebuild`` process, ``jobs`` at a time, longest first."""
    import subprocess

    queue = sorted(groups, key=lambda g: -sum(seconds[n] for n in g))
    extra = [a for m in modules for a in ("--module", m)] + (["--root", str(root)] if root is not None else [])
    running: list[subprocess.Popen] = []
    code = 0
    while queue or running:
        while queue and len(running) < jobs:
            group = queue.pop(0)
            cmd = [sys.executable, "-m", "helpers.store", "rebuild", "--only", ",".join(group), *extra]
            running.append(subprocess.Popen(cmd, env=dict(os.environ, _HELPERS_STORE_CHILD="1")))
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            running.remove(proc)
            code = code or proc.returncode
    return code

if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: recipes register
    # themselves in `helpers.store`, whose registry this copy would not see.
    from helpers import store as _store

    sys.exit(_store.main())
