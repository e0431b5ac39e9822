"""Tests of helpers.store: bit-identical round trip, refusal of damaged files,
crash safety under a real SIGKILL, no unpickling, recipes and train_or_load."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import helpers.toy  # noqa: F401 - registers the "smoke" recipe
from helpers import store
from helpers.store import CheckpointError
from helpers.transformer import HookedTransformer, TransformerConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny(seed=0, d_model=8):
    return HookedTransformer(TransformerConfig(n_layers=1, d_model=d_model, n_heads=2, d_head=4, d_mlp=16,
                                               d_vocab=5, n_ctx=3, seed=seed))


def listing(root: Path) -> list[str]:
    """The checkpoint folder's files, without the save locks (``.lock-<name>``, left in place by design)."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock-"))


def files_of(root: Path, name: str) -> dict[str, Path]:
    manifest = json.loads((root / f"{name}.json").read_text())
    return {role: root / f["path"] for role, f in manifest["files"].items()}


def test_round_trip_is_bit_identical(tmp_path):
    model = tiny(3)
    snaps = {0: {k: v * 0 for k, v in model.state_dict().items()}, 7: model.state_dict()}
    hist = {"step": [0, 7], "train_loss": [2.0, float("nan")]}
    store.save("m", model, history=hist, snapshots=snaps, seed=3, steps=7, final_metrics={"acc": 1.0}, root=tmp_path)
    loaded = store.load("m", root=tmp_path, snapshots=True)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    assert loaded.model.cfg == model.cfg and loaded.config == model.cfg
    assert loaded.history["step"] == [0, 7] and loaded.history["train_loss"][0] == 2.0
    assert sorted(loaded.snapshots) == [0, 7]
    assert torch.equal(loaded.snapshots[7]["embed.W_E"], model.W_E)
    m = loaded.manifest
    assert m["seed"] == 3 and m["steps"] == 7 and loaded.metrics == {"acc": 1.0}
    assert {"torch", "numpy", "python", "helpers"} <= set(m["versions"])
    for role, f in m["files"].items():
        assert len(f["sha256"]) == 64 and (tmp_path / f["path"]).stat().st_size == f["bytes"]
    assert not loaded.model.training
    assert store.verify(tmp_path) == {"m": "ok"}


def test_resave_replaces_files_and_removes_old_ones(tmp_path):
    store.save("m", tiny(0), root=tmp_path)
    old = set(listing(tmp_path))
    store.save("m", tiny(1), root=tmp_path)
    new = set(listing(tmp_path))
    assert "m.json" in new and len(new) == len(old) == 3
    assert old & new == {"m.json", *[n for n in old if n.endswith("history.json")]}
    assert torch.equal(store.load("m", root=tmp_path).model.W_E, tiny(1).W_E)


def test_truncated_file_is_refused_with_a_clear_message(tmp_path):
    store.save("m", tiny(), root=tmp_path)
    w = files_of(tmp_path, "m")["weights"]
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as err:
        store.load("m", root=tmp_path)
    msg = str(err.value)
    assert "truncated" in msg and str(w) in msg and "make checkpoints ONLY=m" in msg


def test_wrong_checksum_is_refused(tmp_path):
    store.save("m", tiny(), root=tmp_path)
    w = files_of(tmp_path, "m")["weights"]
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF  # same size, one flipped byte inside a weight
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupted checkpoint file .*sha256.*make checkpoints ONLY=m"):
        store.load("m", root=tmp_path)
    assert store.verify(tmp_path)["m"].startswith("corrupted")


def test_missing_files_and_bad_manifests(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing checkpoint manifest .*nope.json.*make checkpoints ONLY=nope"):
        store.load("nope", root=tmp_path)
    store.save("m", tiny(), root=tmp_path)
    h = files_of(tmp_path, "m")["history"]
    h.unlink()
    with pytest.raises(CheckpointError, match=f"missing checkpoint file .*{h.name}"):
        store.load("m", root=tmp_path)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupted checkpoint manifest"):
        store.load("m", root=tmp_path)
    (tmp_path / "m.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="not a format-2 manifest"):
        store.load("m", root=tmp_path)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    store.save("m", tiny(d_model=8), root=tmp_path)
    original = json.loads((tmp_path / "m.json").read_text())
    for key, value in [("d_model", 12), ("act_fn", "gelu"), ("act_fn", "swish")]:
        manifest = json.loads(json.dumps(original))
        manifest["config"][key] = value  # the manifest now promises another model
        (tmp_path / "m.json").write_text(json.dumps(manifest))
        with pytest.raises(CheckpointError, match=r"is not bound to the manifest .*config_sha256.*ONLY=m"):
            store.load("m", root=tmp_path)
    manifest = json.loads(json.dumps(original))
    manifest["class"] = "os.system"
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"(not bound|not a registered helpers class).*ONLY=m"):
        store.load("m", root=tmp_path)
    # a weights file forged with the right binding but other shapes is still checked against the config
    manifest = json.loads(json.dumps(original))
    manifest["config"]["d_model"] = 12
    chash = store._config_hash(manifest["class"], manifest["config"])
    data = store._tensor_bytes(tiny(d_model=8).state_dict(), store._binding("m", manifest["class"], chash, "weights"))
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / store._file_name("m", digest, "weights")).write_bytes(data)
    manifest["files"]["weights"] = {"path": store._file_name("m", digest, "weights"), "sha256": digest,
                                    "bytes": len(data)}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match its config"):
        store.load("m", root=tmp_path)
    manifest["config"]["act_fn"] = "swish"
    chash = store._config_hash(manifest["class"], manifest["config"])
    data = store._tensor_bytes(tiny(d_model=8).state_dict(), store._binding("m", manifest["class"], chash, "weights"))
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / store._file_name("m", digest, "weights")).write_bytes(data)
    manifest["files"]["weights"] = {"path": store._file_name("m", digest, "weights"), "sha256": digest,
                                    "bytes": len(data)}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="its config does not build a model"):
        store.load("m", root=tmp_path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    store.save("m", tiny(), root=tmp_path)
    import pickle

    def boom(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    store.load("m", root=tmp_path, snapshots=True)
    # a pickle disguised as a weights file is refused (checksum first, then safetensors parsing)
    evil = pickle.dumps({"x": 1})
    manifest = json.loads((tmp_path / "m.json").read_text())
    import hashlib

    digest = hashlib.sha256(evil).hexdigest()
    (tmp_path / store._file_name("m", digest, "weights")).write_bytes(evil)
    manifest["files"]["weights"].update(bytes=len(evil), sha256=digest, path=store._file_name("m", digest, "weights"))
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        store.load("m", root=tmp_path)


# The writer runs in a subprocess; the test (not the library) stops it at a
# chosen point: "manifest" pauses just before the manifest is swapped in (every
# new data file already written), "mid-write" pauses after half of the first data
# file has reached its temporary file. It announces the pause on stdout, and the
# test kills it there with a real SIGKILL.
WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    from helpers import store
    from helpers.transformer import HookedTransformer, TransformerConfig

    root, seed, pause_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    if pause_at == "manifest":
        real_atomic_write = store._atomic_write

        def atomic_write(path, data):
            if path.name == "victim.json":
                print("paused", flush=True)
                time.sleep(60)
            real_atomic_write(path, data)

        store._atomic_write = atomic_write
    elif pause_at == "mid-write":
        class HalfThenPause:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                self.f.__enter__()
                return self

            def __exit__(self, *exc):
                return self.f.__exit__(*exc)

            def __getattr__(self, name):
                return getattr(self.f, name)

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                print("paused", flush=True)
                time.sleep(60)
                return self.f.write(data[len(data) // 2:])

        class OsWithPausingFdopen:
            def __getattr__(self, name):
                return getattr(os, name)

            def fdopen(self, fd, *args, **kwargs):
                return HalfThenPause(os.fdopen(fd, *args, **kwargs))

        store.os = OsWithPausingFdopen()  # only the store's own writes are slowed down

    cfg = TransformerConfig(n_layers=1, d_model=64, n_heads=2, d_head=32, d_mlp=128, d_vocab=50, n_ctx=4, seed=seed)
    store.save("victim", HookedTransformer(cfg), root=root)
    print("saved", flush=True)
    """
)


def _writer(root, seed, pause_at: str = "nowhere"):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(seed), pause_at], env=env,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("pause_at", ["manifest", "mid-write"])
def test_writer_killed_mid_save_leaves_previous_checkpoint_loadable(tmp_path, pause_at):
    first = _writer(tmp_path, 1)
    assert first.wait(120) == 0
    before = {k: v.clone() for k, v in store.load("victim", root=tmp_path).model.state_dict().items()}
    proc = _writer(tmp_path, 2, pause_at)
    for line in proc.stdout:  # the writer announces that it has reached the pause point
        if line.strip() == "paused":
            break
    else:
        pytest.fail(f"writer never reached the pause point {pause_at!r}")
    proc.send_signal(signal.SIGKILL)  # a real kill, mid-save
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = listing(tmp_path)
    assert len(leftovers) > 3, f"the kill left no trace of the interrupted save: {leftovers}"
    half_written = [n for n in leftovers if n.startswith(".tmp-victim.")]
    if pause_at == "mid-write":  # killed inside the first data file's temporary file
        assert len(half_written) == 1 and "weights" in half_written[0], leftovers
    else:  # killed with the new weights in place (the history is unchanged) and the old manifest
        assert not half_written and sum(n.endswith(".weights.safetensors") for n in leftovers) == 2, leftovers
    after = store.load("victim", root=tmp_path)
    for k, v in before.items():
        assert torch.equal(v, after.model.state_dict()[k]), k
    assert store.verify(tmp_path) == {"victim": "ok"}
    # the next complete save succeeds and cleans up what the killed writer left behind
    assert _writer(tmp_path, 3).wait(120) == 0
    assert len(listing(tmp_path)) == 3
    reloaded = store.load("victim", root=tmp_path).model
    assert reloaded.cfg.seed == 3 and torch.equal(reloaded.W_E, HookedTransformer(reloaded.cfg).W_E)


def test_train_or_load_trains_once_then_loads(tmp_path):
    calls = []

    @store.recipe("unit_test_recipe", "a test recipe")
    def make(seed: int = 0, steps: int = 3):
        calls.append(seed)
        from helpers.training import TrainResult

        model = tiny(seed)
        return model, TrainResult(history={"step": [0, steps], "train_loss": [1.0, 0.5]}, steps=steps)

    a = store.train_or_load("unit_test_recipe", root=tmp_path, seed=4)
    b = store.train_or_load("unit_test_recipe", root=tmp_path, seed=4)
    assert calls == [4]
    assert torch.equal(a.model.W_E, b.model.W_E)
    assert b.manifest["recipe_kwargs"] == {"seed": 4, "steps": 3} and b.manifest["seed"] == 4
    assert store.recipes()["unit_test_recipe"] == "a test recipe"
    with pytest.raises(CheckpointError, match=r"other recipe arguments \(seed: stored 4, now 5\)"):
        store.train_or_load("unit_test_recipe", root=tmp_path, seed=5)
    c = store.train_or_load("unit_test_recipe", root=tmp_path, retrain=True, seed=5)
    assert calls == [4, 5] and not torch.equal(c.model.W_E, a.model.W_E)
    with pytest.raises(CheckpointError, match="no recipe registered for 'nothing_here'"):
        store.train_or_load("nothing_here", root=tmp_path)
    with pytest.raises(TypeError, match="recipe 'unit_test_recipe'"):
        store.train_or_load("unit_test_recipe", root=tmp_path, retrain=True, bogus=1)


def test_a_changed_recipe_default_is_not_loaded_silently(tmp_path):
    """The manifest is compared with every argument the recipe would run with, defaults included."""
    from helpers.training import TrainResult

    def make(seed: int = 0, width: int = 8, progress: bool = False):
        return tiny(seed, d_model=width), TrainResult(history={"step": [0], "train_loss": [1.0]}, steps=0)

    store.recipe("unit_test_defaults")(make)
    first = store.train_or_load("unit_test_defaults", root=tmp_path)
    assert first.manifest["recipe_kwargs"] == {"seed": 0, "width": 8, "progress": False}
    # progress changes nothing that is computed: loading with it is fine
    assert store.train_or_load("unit_test_defaults", root=tmp_path, progress=True).model.cfg.d_model == 8

    def make_wider(seed: int = 0, width: int = 16, progress: bool = False):  # the default changed
        return make(seed, width, progress)

    store.recipe("unit_test_defaults")(make_wider)
    with pytest.raises(CheckpointError, match=r"width: stored 8, now 16"):
        store.train_or_load("unit_test_defaults", root=tmp_path)
    assert store.train_or_load("unit_test_defaults", root=tmp_path, width=8).model.cfg.d_model == 8
    assert store.train_or_load("unit_test_defaults", root=tmp_path, retrain=True).model.cfg.d_model == 16


def test_corrupted_checkpoint_is_not_silently_retrained(tmp_path):
    store.train_or_load("smoke", root=tmp_path, steps=5)
    w = files_of(tmp_path, "smoke")["weights"]
    w.write_bytes(w.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        store.train_or_load("smoke", root=tmp_path, steps=5)


def test_bad_names_and_arguments(tmp_path):
    for bad in ["", "Bad", "a/b", "../x", "_x", 3]:
        with pytest.raises(ValueError, match="checkpoint name"):
            store.save(bad, tiny(), root=tmp_path)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        store.save("m", "not a model", root=tmp_path)
    with pytest.raises(TypeError, match="is not registered"):
        store.save("m", torch.nn.Linear(2, 2), root=tmp_path)
    with pytest.raises(TypeError, match="config_dict"):
        store.register_model_class(torch.nn.Linear)


def test_shipped_checkpoints_verify():
    """Every checkpoint in helpers/checkpoints matches its manifest."""
    results = store.verify()
    assert results, "no shipped checkpoints found"
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert not bad, bad


def test_command_line_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
    assert store.main(["rebuild", "--module", "helpers.toy", "--only", "smoke"]) == 0
    assert "smoke:" in capsys.readouterr().out
    assert store.main(["list"]) == 0 and "smoke" in capsys.readouterr().out
    assert store.main(["verify"]) == 0 and "smoke: ok" in capsys.readouterr().out
    # the rebuilt model is the shipped one, within rounding (bits differ between CPUs)
    monkeypatch.undo()
    rebuilt, shipped = store.load("smoke", root=tmp_path).model, store.load("smoke").model
    for (k, a), b in zip(rebuilt.state_dict().items(), shipped.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), k
    monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
    w = files_of(tmp_path, "smoke")["weights"]
    w.write_bytes(b"")
    assert store.main(["verify"]) == 1 and "truncated" in capsys.readouterr().out
    assert store.main(["rebuild", "--only", "zzz"]) == 2


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "helpers.store", "verify"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "smoke: ok" in out.stdout
    out = subprocess.run([sys.executable, "-m", "helpers.store", "list"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "smoke" in out.stdout
    out = subprocess.run([sys.executable, "-m", "helpers.store", "rebuild", "--module", "helpers.toy", "--only", "zzz"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "unknown recipes ['zzz']" in out.stderr


def test_recipes_are_discovered_without_a_hand_kept_list():
    modules = store.discover_recipes()
    assert {"helpers.toy", "helpers.modular", "helpers.circuits"} <= set(modules)
    assert {"smoke", "induction_2l", "modadd_p113"} <= set(store.recipes())


def test_rebuild_estimate_trains_nothing(tmp_path, capsys):
    """The plan lists each module's recipes with their recorded times and an estimate; nothing is written."""
    assert store.main(["rebuild", "--module", "helpers.toy", "--only", "smoke", "--root", str(tmp_path),
                       "--estimate", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    recorded = store.load("smoke").manifest["seconds"]
    assert "1 process(es)" in out and "estimate" in out and f"smoke {recorded:.1f} s" in out
    assert not list(tmp_path.iterdir())
    assert store.main(["rebuild", "--only", "smoke", "--jobs", "0"]) == 2


def test_schedule_puts_longest_groups_first():
    seconds = {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}
    assert store._schedule([["a"], ["b"], ["c"]], seconds, 2) == 4.0
    assert store._schedule([["a", "d"], ["b"], ["c"]], seconds, 2) == 4.0
    assert store._schedule([["a"], ["b"], ["c"]], seconds, 1) == 7.0


@pytest.mark.slow
def test_parallel_rebuild_into_a_scratch_root(tmp_path):
    """JOBS=2: two modules' recipes in two processes, each time printed, then the total; the shipped files untouched."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    shipped = sorted(p.name for p in store.CHECKPOINT_DIR.iterdir())
    out = subprocess.run([sys.executable, "-m", "helpers.store", "rebuild", "--only", "smoke,lookup_1l", "--jobs", "2",
                          "--root", str(tmp_path)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "2 process(es)" in out.stdout and "smoke:" in out.stdout and "lookup_1l:" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("total:")
    assert store.verify(tmp_path) == {"lookup_1l": "ok", "smoke": "ok"}
    assert sorted(p.name for p in store.CHECKPOINT_DIR.iterdir()) == shipped
