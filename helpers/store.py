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

Concurrent use. Saves of one name serialise on a lock file ``.lock-<name>`` in
the checkpoint folder (``fcntl.flock`` on Linux and macOS, ``msvcrt.locking``
on Windows; where neither exists, saves are not locked and concurrent saves of
one name are the caller's business). Loads take no lock: a load reads the
manifest once, and if a file it names vanished because a save replaced the
checkpoint meanwhile (the manifest changed), it starts again from the new
manifest; so a load during a save returns the old or the new checkpoint.

Binding. Each data file is named ``<name>.<first 16 hex of its sha256>.<role>``
(any other path, e.g. one outside the folder or a sibling's file, is refused),
and the weights and snapshots files carry in their safetensors metadata the
checkpoint's name, model class and a hash of its config, checked on load: a
manifest whose config was edited (``act_fn`` relu -> gelu) or whose ``files``
point at a sibling is refused. Checkpoints written before this binding existed
(manifest format 1) load only if their weights hash is in the code's list of
shipped legacy checkpoints with the same name and config hash;
``python -m helpers.store rebind`` re-saves such a checkpoint in the bound
format without retraining (the tensors are copied bit for bit).

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from helpers._util import check_int

try:  # the save lock: fcntl on Linux and macOS, msvcrt on Windows
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

__all__ = [
    "CheckpointError",
    "Loaded",
    "CHECKPOINT_DIR",
    "save",
    "load",
    "exists",
    "verify",
    "train_or_load",
    "weights_digest",
    "recipe",
    "recipes",
    "register_model_class",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
FORMAT_VERSION = 2  # 2: data files bound to their manifest (safetensors metadata)
_LEGACY_FORMAT = 1
MAX_NAME_LENGTH = 100
_LOAD_ATTEMPTS = 5
_ROLES = {"weights": "weights.safetensors", "history": "history.json", "snapshots": "snapshots.safetensors"}
# Format-1 checkpoints shipped before the binding: first 32 hex digits of the
# weights file's sha256 -> (name, first 32 hex of the class+config hash). Only
# these load without metadata; `python -m helpers.store rebind` converts others.
_LEGACY_BINDINGS: dict[str, tuple[str, str]] = {
    "aede1be25b7e69c482be1d79c1b5cdf3": ("degeneracy_mlp_s0", "03756038c2d43bccc70d3747c1549e9a"),
    "5a131e8b07c22e7767f0d6ecb2757c46": ("degeneracy_mlp_s1", "d49aa1d6e62aa6ad6b34f44987b10595"),
    "6ec3d6e8b56bf5e8fcbffcf4c68f745a": ("degeneracy_mlp_s2", "234d089fdf35fae6391dc0f4db85bbe1"),
    "36b95685705115b535f6158e6c37c501": ("degeneracy_mlp_s3", "fbd692eac85dbdc9bc01a4595db9d6c3"),
    "8e55f08b8908b809b23dc1c9845dd876": ("degeneracy_mlp_s4", "2684b8ab6cd1fbe022255cfd2a972ad3"),
    "ac32c761573a03d4b9d7c50688a225cc": ("degeneracy_mlp_s5", "821c21dc5c31dd9389f63d0c085a8fb2"),
    "499da24cd2d54dc72e17f5d9bd455643": ("induction_1l", "6faeacc025389c4a127a46c688aad92a"),
    "0e30362cb8a392e08ba26cfa21b871ca": ("induction_1l_fixed", "6faeacc025389c4a127a46c688aad92a"),
    "1332b59a3f759baa6e912f7f73764de3": ("induction_2l", "dfe087e3556264d71fac4c24c562d22f"),
    "0c15f88a21d2096ac20c6cc76ab6ea7d": ("inv_addition", "39cf0d6276528d5efafdd6f076a6d36d"),
    "6ec721d338f12b8c70b4975f28a0f09f": ("inv_decoder_addition", "e21ba0bc2ad69c04e4bbe4556effe776"),
    "c7aafb0b182813ad34b103e49fbe29ca": ("lookup_1l", "22eb833d4799554fcefdd93ea7779a7e"),
    "33c1b6b7186c2ba0e1e27d5161d8159f": ("lookup_1l_nowd", "22eb833d4799554fcefdd93ea7779a7e"),
    "5728882acfafa433171c437546eb441e": ("modadd_p113", "034e96a155b4f44f5f9d21f01b0f9f49"),
    "95a9f08e3c82627bce167a6942f00e01": ("modadd_p113_binary", "86230eab6c04b6f14b91b1f6e58a52f9"),
    "56584a591718188eab2670acee921afa": ("modadd_p113_ternary", "3c75c9149495a4cfc24d5232190014c3"),
    "9f7dd805169218b0d2999097c52fae94": ("modadd_p59_constant_long_s0", "3719156866b93c0b3a57c9192447684d"),
    "7d1cb672670011cd1b20c56e78de55e8": ("modadd_p59_constant_long_s1", "971cbf981e1269bf3647ae93bd9748a3"),
    "7c771da429063f9fe8e9b7b9dea6a0a5": ("modadd_p59_constant_s0", "36f9c859b558da7b736a4adbf70cf280"),
    "1363cdd3832f072e6cea947165c1257b": ("modadd_p59_constant_s1", "994da822dbca021271856c675185c403"),
    "fd2b036c111684e0cd30dbea57ed4b5b": ("modadd_p59_constant_s2", "debc6cea4d80088432970713440298ef"),
    "0ad68a6f6768a949814a6e52774ae64a": ("modadd_p59_constant_s3", "9cf0c563fb66732627e6a5862ba07155"),
    "96037b7d47ddbd17a1baff80cbc7f7f8": ("modadd_p59_constant_s4", "5e4683ccaab85686c5f297fe4ffec9f7"),
    "1f4243f7bb435ae946b27f9fb5ed3fa7": ("modadd_p59_normal_long_s0", "f754142801b68672f6452136a223d51a"),
    "8abbb0f2fb399ccb46bf9f95120f83b8": ("modadd_p59_normal_long_s1", "d2f7c3147f16c0da0492c061444d7b4d"),
    "696a19eb1ae9c2b722b424f2249761e2": ("modadd_p59_normal_s0", "84efdac92dd843f47ed77864982d727b"),
    "f1d37ec422e86f701db144556370eb38": ("modadd_p59_normal_s1", "7ee92f7254f593e26b90af78f340a3fe"),
    "e2b1ecb1de955086cd91e998b874012c": ("modadd_p59_normal_s2", "69c8dccd710a5b98cbd88f5cd26dfb48"),
    "1ffc3d3ef1785aad7f735de2d8eb1555": ("modadd_p59_normal_s3", "ac432ac55fa26204d1b85e20b1f120e5"),
    "021f2d2bc7bd60c22e4b78af0d3c3a8d": ("modadd_p59_normal_s4", "5d12a2733d267e8b89e955f536154fce"),
    "ffbe0dcb2b2c86715b7f061a2af9ee8d": ("smoke", "550d6b453baae4a4d5db38f9fc6a2d1e"),
}
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
        raise CheckpointError(f"{path}: names model class {qualname!r}, which is not a registered helpers class; "
                              f"{_rebuild_hint(path.stem)}")
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
            raise CheckpointError(f"{path}: requires module {module!r}, which is not a helpers module; "
                                  f"{_rebuild_hint(path.stem)}")
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
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"checkpoint name must be at most {MAX_NAME_LENGTH} characters (its files add ~40 more and file "
            f"systems allow 255), got {len(name)}: {name[:40]!r}..."
        )


def _root(root) -> Path:
    return Path(root) if root is not None else CHECKPOINT_DIR


def _rebuild_hint(name: str) -> str:
    return f"rebuild it with `make checkpoints ONLY={name}` (or delete it and call train_or_load)"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_digest(model_or_state: nn.Module | dict) -> str:
    """SHA-256 of a model's tensors (names, dtypes, shapes and values), independent of any file.

    Two checkpoints with the same digest hold bit-identical weights, whatever
    their files' metadata (e.g. after ``python -m helpers.store rebind``). Use it
    to tie a recorded result to the weights it was computed from.

    Used in chapter 6.

    >>> import torch
    >>> weights_digest({"w": torch.zeros(2)}) == weights_digest({"w": torch.zeros(2)})
    True
    >>> weights_digest({"w": torch.zeros(2)}) == weights_digest({"w": torch.ones(2)})
    False
    """
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(f"weights_digest needs a module or a dict of tensors, got {type(model_or_state).__name__}")
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _config_hash(qualname: str, config) -> str:
    """sha256 of the model class and config as canonical JSON: what the data files are bound to."""
    text = json.dumps({"class": qualname, "config": config}, sort_keys=True, separators=(",", ":"))
    return _sha256(text.encode())


def _file_name(name: str, digest: str, role: str) -> str:
    return f"{name}.{digest[:16]}.{_ROLES[role]}"


@contextmanager
def _save_lock(root: Path, name: str) -> Iterator[None]:
    """Hold the exclusive lock that serialises saves of ``name`` in ``root``.

    ``fcntl.flock`` (Linux, macOS) or ``msvcrt.locking`` (Windows); the lock
    file ``.lock-<name>`` is left in place (removing it would race with the next
    writer). Without either module the save runs unlocked.
    """
    fd = os.open(root / f".lock-{name}", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif msvcrt is not None:  # pragma: no cover - Windows only
            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif msvcrt is not None:  # pragma: no cover - Windows only
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)


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


def _binding(name: str, qualname: str, config_hash: str, role: str) -> dict[str, str]:
    return {"helpers.checkpoint": name, "helpers.class": qualname, "helpers.config_sha256": config_hash,
            "helpers.role": role}


def _tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)


def _check_save_args(history, snapshots, seed, steps, final_metrics, recipe_kwargs, seconds) -> None:
    if history is not None:
        if not isinstance(history, dict) or not all(isinstance(k, str) for k in history):
            raise TypeError(f"history must be a dict of str -> list, got {type(history).__name__}")
        bad = sorted(k for k, v in history.items() if not isinstance(v, (list, tuple)))
        if bad:
            raise TypeError(f"history values must be lists, got {bad[0]!r}: {type(history[bad[0]]).__name__}")
        try:
            json.dumps(history)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"history must be JSON-serialisable ({exc})") from None
    if snapshots is not None:
        if not isinstance(snapshots, dict):
            raise TypeError(f"snapshots must be a dict step -> state dict, got {type(snapshots).__name__}")
        for step, sd in snapshots.items():
            check_int(step, "snapshots step", 0)
            if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
                raise TypeError(f"snapshots[{step}] must be a dict of tensors, got {type(sd).__name__}")
    for arg, value in (("seed", seed), ("steps", steps)):
        if value is not None:
            check_int(value, arg)
    for arg, value in (("final_metrics", final_metrics), ("recipe_kwargs", recipe_kwargs)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{arg} must be a dict or None, got {type(value).__name__}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
        raise TypeError(f"seconds must be a number or None, got {type(seconds).__name__}")


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
    """Save a model, its history and optional snapshots atomically; return the manifest path.

    Concurrent saves of one name (threads or processes) serialise on a lock;
    the last one to take the lock wins, and each leaves a loadable checkpoint.
    """
    _check_name(name)
    _ensure_default_classes()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    qualname = f"{type(model).__module__}.{type(model).__qualname__}"
    if qualname not in _CLASSES:
        raise TypeError(f"{qualname} is not registered; call helpers.store.register_model_class first")
    _check_save_args(history, snapshots, seed, steps, final_metrics, recipe_kwargs, seconds)
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    config = model.config_dict()
    chash = _config_hash(qualname, config)
    payloads: dict[str, bytes] = {
        "weights": _tensor_bytes(model.state_dict(), _binding(name, qualname, chash, "weights")),
        "history": json.dumps(history or {}, indent=None, sort_keys=True).encode(),
    }
    if snapshots:
        flat = {f"{int(step):08d}/{k}": v for step, sd in snapshots.items() for k, v in sd.items()}
        payloads["snapshots"] = _tensor_bytes(flat, _binding(name, qualname, chash, "snapshots"))
    manifest = {
        "format_version": FORMAT_VERSION,
        "requires": _required_modules(model),
        "name": name,
        "class": qualname,
        "config": config,
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "final_metrics": final_metrics or {},
        "recipe_kwargs": recipe_kwargs or {},
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return _commit(root, name, manifest, payloads)


def _commit(root: Path, name: str, manifest: dict, payloads: dict[str, bytes]) -> Path:
    """Write the data files, swap the manifest in, remove files no manifest names (under the save lock)."""
    with _save_lock(root, name):
        files = {}
        for role, data in payloads.items():
            digest = _sha256(data)
            target = root / _file_name(name, digest, role)
            if not (target.exists() and target.stat().st_size == len(data) and _sha256(target.read_bytes()) == digest):
                _atomic_write(target, data)
            files[role] = {"path": target.name, "sha256": digest, "bytes": len(data)}
        manifest = dict(manifest, files=files)
        manifest_path = root / f"{name}.json"
        _atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        # A load that read the previous manifest and now misses one of these files
        # notices that the manifest changed and reads the new one (see load).
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
class _Vanished(CheckpointError):
    """A file the manifest names is not there (perhaps a save just replaced it)."""


def _is_hex(s, n: int) -> bool:
    return isinstance(s, str) and len(s) == n and all(c in "0123456789abcdef" for c in s)


def _parse_manifest(name: str, path: Path, raw: bytes) -> dict:
    """The manifest ``raw`` checked field by field; any defect is a CheckpointError with the rebuild hint."""
    hint = _rebuild_hint(name)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"corrupted checkpoint manifest {path} ({exc}); {hint}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") not in (FORMAT_VERSION, _LEGACY_FORMAT):
        raise CheckpointError(f"{path} is not a format-{FORMAT_VERSION} manifest; {hint}")

    def bad(what: str):
        return CheckpointError(f"corrupted checkpoint manifest {path}: {what}; {hint}")

    for key in ("class", "config", "files"):
        if key not in manifest:
            raise CheckpointError(f"{path} lacks the field {key!r}; {hint}")
    if not isinstance(manifest["class"], str):
        raise bad(f"'class' must be a string, got {manifest['class']!r}")
    if not isinstance(manifest["config"], dict):
        raise bad(f"'config' must be an object, got {type(manifest['config']).__name__}")
    if manifest.get("name", name) != name:
        raise bad(f"it names checkpoint {manifest.get('name')!r}")
    for key in ("final_metrics", "recipe_kwargs"):
        if not isinstance(manifest.get(key, {}), dict):
            raise bad(f"{key!r} must be an object")
    requires = manifest.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(m, str) for m in requires):
        raise bad("'requires' must be a list of module names")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise bad(f"'files' must be an object, got {type(files).__name__}")
    for role in ("weights", "history"):
        if role not in files:
            raise CheckpointError(f"{path} lists no {role} file; {hint}")
    for role, entry in files.items():
        if role not in _ROLES:
            raise bad(f"unknown file role {role!r}")
        if not isinstance(entry, dict):
            raise bad(f"files.{role} must be an object")
        digest, size, fname = entry.get("sha256"), entry.get("bytes"), entry.get("path")
        if not _is_hex(digest, 64):
            raise bad(f"files.{role}.sha256 must be 64 lowercase hex digits, got {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"files.{role}.bytes must be a non-negative integer, got {size!r}")
        if fname != _file_name(name, digest, role):
            raise bad(f"files.{role}.path is {fname!r}, not this checkpoint's own file "
                      f"{_file_name(name, digest, role)!r} (paths outside the folder or of another checkpoint "
                      "are refused)")
    return manifest


def _read_manifest(name: str, root: Path) -> tuple[dict, bytes]:
    path = root / f"{name}.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"missing checkpoint manifest {path}; {_rebuild_hint(name)}") from None
    except OSError as exc:
        raise CheckpointError(f"unreadable checkpoint manifest {path} ({exc}); {_rebuild_hint(name)}") from None
    return _parse_manifest(name, path, raw), raw


def _read_verified(name: str, root: Path, entry: dict) -> bytes:
    path = root / entry["path"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Vanished(f"missing checkpoint file {path}; {_rebuild_hint(name)}") from None
    except OSError as exc:
        raise CheckpointError(f"unreadable checkpoint file {path} ({exc}); {_rebuild_hint(name)}") from None
    if len(data) != entry["bytes"]:
        raise CheckpointError(
            f"truncated or resized checkpoint file {path}: {len(data)} bytes, manifest says {entry['bytes']}; "
            f"{_rebuild_hint(name)}"
        )
    if _sha256(data) != entry["sha256"]:
        raise CheckpointError(f"corrupted checkpoint file {path}: sha256 does not match the manifest; {_rebuild_hint(name)}")
    return data


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's header (an empty dict if it has none)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("__metadata__ is not an object")
    return meta


def _load_tensors(name: str, root: Path, manifest: dict, role: str) -> dict[str, torch.Tensor]:
    """A verified safetensors file of the checkpoint, checked to be bound to this manifest."""
    from safetensors.torch import load as st_load

    entry = manifest["files"][role]
    path = root / entry["path"]
    data = _read_verified(name, root, entry)
    try:
        tensors = st_load(data)
        meta = _safetensors_metadata(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise CheckpointError(f"unreadable safetensors file {path} ({exc}); {_rebuild_hint(name)}") from None
    chash = _config_hash(manifest["class"], manifest["config"])
    if manifest["format_version"] == _LEGACY_FORMAT:
        if role == "weights" and _LEGACY_BINDINGS.get(entry["sha256"][:32]) != (name, chash[:32]):
            raise CheckpointError(
                f"{root / (name + '.json')}: a format-1 checkpoint (written before data files were bound to their "
                f"manifest) that is not one of the shipped ones, or whose manifest was edited; if you trust it, "
                f"re-save it bound with `python -m helpers.store rebind --only {name}`, else {_rebuild_hint(name)}"
            )
        return tensors
    expected = _binding(name, manifest["class"], chash, role)
    got = {k: meta.get(k) for k in expected}
    if got != expected:
        diff = ", ".join(f"{k.removeprefix('helpers.')}: file says {got[k]!r}, manifest {expected[k]!r}"
                         for k in expected if got[k] != expected[k])
        raise CheckpointError(
            f"{path} is not bound to the manifest {root / (name + '.json')} ({diff}): the manifest was edited or "
            f"points at another checkpoint's file; {_rebuild_hint(name)}"
        )
    return tensors


def exists(name: str, root=None) -> bool:
    """True if a manifest for ``name`` exists (it may still fail verification)."""
    _check_name(name)
    return (_root(root) / f"{name}.json").exists()


def load(name: str, *, root=None, snapshots: bool = False, device=None) -> Loaded:
    """Load checkpoint ``name``: verified weights, config, history (and snapshots).

    Safe during a concurrent save of the same name: the result is the old or
    the new checkpoint.

    Raises
    ------
    CheckpointError
        Naming the bad file and how to rebuild it.
    """
    _check_name(name)
    if not isinstance(snapshots, bool):
        raise TypeError(f"snapshots must be a bool, got {snapshots!r}")
    _ensure_default_classes()
    root = _root(root)
    for _ in range(_LOAD_ATTEMPTS):
        manifest, raw = _read_manifest(name, root)
        try:
            return _load_from(name, root, manifest, snapshots, device)
        except _Vanished as exc:
            try:
                now = (root / f"{name}.json").read_bytes()
            except OSError:
                now = None
            if now == raw:  # the manifest did not change: the file is really missing
                raise CheckpointError(str(exc)) from None
    raise CheckpointError(
        f"checkpoint {name!r} in {root} was replaced {_LOAD_ATTEMPTS} times while being read; try again"
    )


def _load_from(name: str, root: Path, manifest: dict, snapshots: bool, device) -> Loaded:
    mpath = root / f"{name}.json"
    hint = _rebuild_hint(name)
    weights = _load_tensors(name, root, manifest, "weights")
    try:
        history = json.loads(_read_verified(name, root, manifest["files"]["history"]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"unreadable history file {root / manifest['files']['history']['path']} ({exc}); "
                              f"{hint}") from None
    if not isinstance(history, dict):
        raise CheckpointError(f"history file {root / manifest['files']['history']['path']} is not an object; {hint}")
    cls = _model_class(manifest["class"], mpath)
    _import_required(manifest, mpath)
    try:
        model = cls.from_config_dict(manifest["config"])
    except Exception as exc:  # noqa: BLE001 - any failure to build is a bad config
        raise CheckpointError(f"{mpath}: its config does not build a model ({exc}); {hint}") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    wrong = [k for k in set(own) & set(weights) if own[k].shape != weights[k].shape or own[k].dtype != weights[k].dtype]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{root / manifest['files']['weights']['path']} does not match its config "
            f"(missing {missing}, unexpected {unexpected}, wrong shape or dtype {sorted(wrong)}); {hint}"
        )
    model.load_state_dict(weights)
    if device is not None:
        model.to(device)
    model.eval()
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    if snapshots and "snapshots" in manifest["files"]:
        for key, value in _load_tensors(name, root, manifest, "snapshots").items():
            step, _, param = key.partition("/")
            if not (step.isdigit() and param):
                raise CheckpointError(f"snapshots file of {name!r} has a malformed key {key!r}; {hint}")
            snaps.setdefault(int(step), {})[param] = value
    return Loaded(model=model, history=history, manifest=manifest, snapshots=dict(sorted(snaps.items())))


def _stored_names(root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Names with a manifest in ``root``, and names that have data files but no manifest."""
    names = sorted(p.stem for p in root.glob("*.json") if p.name.count(".") == 1)
    orphans: dict[str, list[str]] = {}
    for p in sorted(root.iterdir()):
        parts = p.name.split(".")
        if (len(parts) == 4 and _is_hex(parts[1], 16) and ".".join(parts[2:]) in _ROLES.values()
                and parts[0] not in names):
            orphans.setdefault(parts[0], []).append(p.name)
    return names, orphans


def verify(root=None) -> dict[str, str]:
    """Check every checkpoint in ``root``: name -> "ok" or the error message.

    Data files whose manifest is missing are reported under their name. A
    folder that does not exist raises ``FileNotFoundError`` (an empty result
    would read as "all ok").
    """
    root = _root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint folder {root} does not exist")
    names, orphans = _stored_names(root)
    out = {}
    for name, fnames in orphans.items():
        out[name] = (f"missing checkpoint manifest {root / (name + '.json')} (data files {fnames} have none); "
                     f"{_rebuild_hint(name)}")
    for name in names:
        try:
            load(name, root=root, snapshots=True)
            out[name] = "ok"
        except CheckpointError as exc:
            out[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a report must cover every checkpoint, whatever is wrong
            out[name] = f"{type(exc).__name__}: {exc}; {_rebuild_hint(name)}"
    return dict(sorted(out.items()))


def rebind(name: str, *, root=None) -> Path:
    """Re-save a format-1 checkpoint in the bound format, without retraining.

    The data files must match the manifest's sha256s; the tensors and the
    history are copied unchanged (bit for bit), the manifest keeps its seed,
    steps, metrics, recipe arguments, versions and creation time. An explicit
    act of trust in the manifest: run it only on a checkpoint you made.
    """
    _check_name(name)
    root = _root(root)
    manifest, _ = _read_manifest(name, root)
    if manifest["format_version"] != _LEGACY_FORMAT:
        return root / f"{name}.json"
    from safetensors.torch import load as st_load

    chash = _config_hash(manifest["class"], manifest["config"])
    payloads = {}
    for role in manifest["files"]:
        data = _read_verified(name, root, manifest["files"][role])
        if role == "history":
            payloads[role] = data
        else:
            payloads[role] = _tensor_bytes(st_load(data), _binding(name, manifest["class"], chash, role))
    kept = {k: v for k, v in manifest.items() if k not in ("files", "format_version")}
    return _commit(root, name, dict(kept, format_version=FORMAT_VERSION), payloads)


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
# Command line: python -m helpers.store {list,verify,rebuild,rebind}
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
    bd = sub.add_parser("rebind", help="re-save format-1 checkpoints bound to their manifests (no retraining)")
    bd.add_argument("--only", default="", help="comma-separated checkpoint names (default: every format-1 one)")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        status = 0
        names, orphans = _stored_names(CHECKPOINT_DIR)
        for name in names:
            try:
                m, _ = _read_manifest(name, CHECKPOINT_DIR)
            except (CheckpointError, ValueError) as exc:
                print(f"{name:28s} UNREADABLE: {exc}")
                status = 1
                continue
            size = sum(f["bytes"] for f in m["files"].values())
            print(f"{name:28s} {size / 1024:8.1f} KiB  steps={m.get('steps')}  {m.get('final_metrics')}")
        for name in orphans:
            print(f"{name:28s} MISSING MANIFEST: data files without {name}.json; {_rebuild_hint(name)}")
            status = 1
        return status
    if args.cmd == "verify":
        results = verify()
        for k, v in results.items():
            print(f"{k}: {v}")
        return 1 if any(v != "ok" for v in results.values()) else 0
    if args.cmd == "rebind":
        names = [n for n in args.only.split(",") if n] or _stored_names(CHECKPOINT_DIR)[0]
        for n in names:
            try:
                before = _read_manifest(n, CHECKPOINT_DIR)[0]["format_version"]
                rebind(n)
            except (CheckpointError, ValueError) as exc:
                print(f"{n}: {exc}", file=sys.stderr)
                return 1
            print(f"{n}: {'rebound' if before == _LEGACY_FORMAT else 'already bound'}")
        return 0
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
