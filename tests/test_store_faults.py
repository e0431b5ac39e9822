"""Faults in the store with real processes: concurrent savers, loads during
saves, edited manifests, corrupted manifests in verify/list, legacy (format-1)
checkpoints and their explicit rebind, capped names, bad save arguments."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from helpers import store
from helpers.store import CheckpointError
from helpers.transformer import HookedTransformer, TransformerConfig

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def tiny(seed=0):
    return HookedTransformer(TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5,
                                               n_ctx=3, seed=seed))


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock-"))


# A saver process: saves `name` with seeds seed0, ..., seed0+n-1 once each (or, with
# a duration, cycles through them until the time is up or a file "stop" appears in
# the folder); prints "errors=<k> saves=<m>".
SAVER = textwrap.dedent(
    """
    import os, sys, time, torch
    torch.set_num_threads(1)
    from helpers import store
    from helpers.transformer import HookedTransformer, TransformerConfig
    root, name, seed0, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    cfg = dict(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, n_ctx=3)
    models = [HookedTransformer(TransformerConfig(**cfg, seed=seed0 + i)) for i in range(n)]
    errors, done, t0 = 0, 0, time.perf_counter()
    print("ready", flush=True)
    while True:
        for i, m in enumerate(models):
            try:
                store.save(name, m, history={"step": [done], "seed": [seed0 + i]}, root=root)
            except Exception as exc:
                errors += 1
                print(repr(exc), file=sys.stderr)
            done += 1
            if seconds > 0:
                time.sleep(0.002)  # a steady stream of saves that leaves the loader some CPU
        if seconds <= 0 or time.perf_counter() - t0 > seconds or os.path.exists(os.path.join(root, "stop")):
            break
    print(f"errors={errors} saves={done}", flush=True)
    """
)


def _saver(root, name, seed0, n, seconds=0.0):
    return subprocess.Popen([sys.executable, "-c", SAVER, str(root), name, str(seed0), str(n), str(seconds)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120) -> tuple[int, int]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    last = out.strip().splitlines()[-1]
    errors, saves = (int(part.split("=")[1]) for part in last.split())
    return errors, saves


@pytest.mark.slow
def test_concurrent_savers_serialise(tmp_path):
    """Three processes save one name 20 times each at once: 0 errors, a loadable result, no orphans."""
    procs = [_saver(tmp_path, "c", 100 * k, 20) for k in range(3)]
    results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0, 0], results
    assert sum(r[1] for r in results) == 60
    final = store.load("c", root=tmp_path)
    seed = final.history["seed"][0]  # the last writer's model, whole: weights and history agree
    assert final.model.cfg.seed == seed and torch.equal(final.model.W_E, tiny(seed).W_E)
    assert store.verify(tmp_path) == {"c": "ok"}
    store.save("c", tiny(7), root=tmp_path)  # the next save leaves exactly its own three files
    assert listing(tmp_path) == sorted(["c.json", *(f["path"] for f in
                                                     json.loads((tmp_path / "c.json").read_text())["files"].values())])


@pytest.mark.slow
def test_loads_during_saves_see_old_or_new(tmp_path):
    """>= 5,000 loads while another process keeps replacing the checkpoint: 0 errors, always a whole model."""
    store.save("c", tiny(1), history={"step": [0], "seed": [1]}, root=tmp_path)
    expected = {s: tiny(s).W_E for s in (1, 2)}
    writer = _saver(tmp_path, "c", 1, 2, seconds=600)
    assert writer.stdout.readline().strip() == "ready"
    loads, errors, seen, t0 = 0, [], set(), time.perf_counter()
    try:
        while loads < 5000 and time.perf_counter() - t0 < 150:  # ~30 s on an idle core
            try:
                got = store.load("c", root=tmp_path)
                seed = got.history["seed"][0]
                assert torch.equal(got.model.W_E, expected[seed]) and got.model.cfg.seed == seed
                seen.add(seed)
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                errors.append(repr(exc))
            loads += 1
    finally:
        (tmp_path / "stop").touch()
        save_errors, saves = _finish(writer)
    print(f"{loads} loads in {time.perf_counter() - t0:.1f} s during {saves} saves: {len(errors)} load errors, "
          f"{save_errors} save errors")
    assert not errors and save_errors == 0, errors[:3]
    assert loads >= 5000 and seen == {1, 2}


def _save_two(root):
    store.save("a", tiny(1), root=root)
    store.save("b", tiny(2), root=root)
    return json.loads((root / "a.json").read_text()), json.loads((root / "b.json").read_text())


def test_manifest_pointing_elsewhere_is_refused(tmp_path):
    a, b = _save_two(tmp_path)
    for role in ("weights", "history"):
        edited = json.loads(json.dumps(a))
        edited["files"][role] = b["files"][role]  # the sibling's file, sha and size all consistent
        (tmp_path / "a.json").write_text(json.dumps(edited))
        with pytest.raises(CheckpointError, match=r"not this checkpoint's own file.*ONLY=a"):
            store.load("a", root=tmp_path)
    # the sibling's weights copied under a's name (the path check passes) are refused by the binding
    data = (tmp_path / b["files"]["weights"]["path"]).read_bytes()
    copy = store._file_name("a", b["files"]["weights"]["sha256"], "weights")
    (tmp_path / copy).write_bytes(data)
    edited = json.loads(json.dumps(a))
    edited["files"]["weights"] = dict(b["files"]["weights"], path=copy)
    (tmp_path / "a.json").write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match=r"not bound to the manifest .*checkpoint: file says 'b'"):
        store.load("a", root=tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    for path in ["../outside/x.safetensors", str(outside / "x.safetensors"), "sub/" + a["files"]["weights"]["path"]]:
        edited = json.loads(json.dumps(a))
        edited["files"]["weights"]["path"] = path
        (tmp_path / "a.json").write_text(json.dumps(edited))
        with pytest.raises(CheckpointError, match="paths outside the folder"):
            store.load("a", root=tmp_path)


def _corruptions(m: dict):
    """(label, edit) pairs that each damage a manifest dict in place."""
    def setp(*path_value):
        *path, value = path_value

        def edit(d):
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        return edit

    def delete(key):
        return lambda d: d.pop(key)

    return [
        ("files list", setp("files", [])), ("files str", setp("files", "x")),
        ("weights entry str", setp("files", "weights", "x")), ("bytes str", setp("files", "weights", "bytes", "12")),
        ("bytes negative", setp("files", "weights", "bytes", -1)), ("sha int", setp("files", "weights", "sha256", 5)),
        ("path none", setp("files", "weights", "path", None)), ("no history", lambda d: d["files"].pop("history")),
        ("unknown role", setp("files", "extra", dict(m["files"]["weights"]))),
        ("class int", setp("class", 3)), ("class other", setp("class", "helpers.toy.Nothing")),
        ("config list", setp("config", [])), ("config field", setp("config", "n_layers", "two")),
        ("config extra", setp("config", "bogus", 1)), ("requires str", setp("requires", "helpers.toy")),
        ("requires other", setp("requires", ["os"])), ("metrics list", setp("final_metrics", [1])),
        ("kwargs str", setp("recipe_kwargs", "x")), ("name other", setp("name", "b")), ("no class", delete("class")),
        ("no config", delete("config")), ("no files", delete("files")), ("format str", setp("format_version", "2")),
    ]


def test_verify_and_list_report_every_manifest_corruption(tmp_path, monkeypatch, capsys):
    a, _ = _save_two(tmp_path)
    for label, edit in _corruptions(a):
        m = json.loads(json.dumps(a))
        edit(m)
        (tmp_path / "a.json").write_text(json.dumps(m))
        with pytest.raises(CheckpointError, match="ONLY=a"):
            store.load("a", root=tmp_path, snapshots=True)
        report = store.verify(tmp_path)
        assert report["b"] == "ok" and "make checkpoints ONLY=a" in report["a"], (label, report)
        assert not report["a"].startswith(("TypeError", "KeyError", "AttributeError")), (label, report)
        monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
        assert store.main(["list"]) in (0, 1) and "b " in capsys.readouterr().out, label
        monkeypatch.undo()
    for raw in [b"\xff\xfe", b"[1, 2]", b'{"format_version": 2, "class": "x"', b"[" * 100000]:
        (tmp_path / "a.json").write_bytes(raw)
        assert "ONLY=a" in store.verify(tmp_path)["a"]
    # a deleted manifest is reported, not forgotten
    (tmp_path / "a.json").unlink()
    report = store.verify(tmp_path)
    assert report["b"] == "ok" and report["a"].startswith("missing checkpoint manifest"), report
    monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
    assert store.main(["verify"]) == 1 and store.main(["list"]) == 1
    assert "MISSING MANIFEST" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.verify(tmp_path / "no_such_folder")


def test_history_replaced_by_a_pickle_is_refused(tmp_path):
    a, _ = _save_two(tmp_path)
    evil = pickle.dumps({"step": [1]})
    digest = hashlib.sha256(evil).hexdigest()
    (tmp_path / store._file_name("a", digest, "history")).write_bytes(evil)
    a["files"]["history"] = {"path": store._file_name("a", digest, "history"), "sha256": digest, "bytes": len(evil)}
    (tmp_path / "a.json").write_text(json.dumps(a))
    with pytest.raises(CheckpointError, match=r"unreadable history file.*ONLY=a"):
        store.load("a", root=tmp_path)


def _as_legacy(root: Path, name: str) -> dict:
    """Rewrite a fresh checkpoint as format 1 (no binding metadata), as shipped before the binding."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    m = json.loads((root / f"{name}.json").read_text())
    old = root / m["files"]["weights"]["path"]
    data = st_save(st_load(old.read_bytes()))
    old.unlink()
    digest = hashlib.sha256(data).hexdigest()
    (root / store._file_name(name, digest, "weights")).write_bytes(data)
    m["files"]["weights"] = {"path": store._file_name(name, digest, "weights"), "sha256": digest, "bytes": len(data)}
    m["format_version"] = 1
    (root / f"{name}.json").write_text(json.dumps(m))
    return m


def test_legacy_checkpoints_load_only_through_the_allow_list_or_rebind(tmp_path, monkeypatch, capsys):
    model = tiny(5)
    store.save("old", model, history={"step": [0, 1]}, seed=5, steps=1, root=tmp_path)
    m = _as_legacy(tmp_path, "old")
    with pytest.raises(CheckpointError, match=r"format-1 checkpoint.*rebind --only old"):
        store.load("old", root=tmp_path)
    chash = store._config_hash(m["class"], m["config"])
    monkeypatch.setitem(store._LEGACY_BINDINGS, m["files"]["weights"]["sha256"][:32], ("old", chash[:32]))
    assert torch.equal(store.load("old", root=tmp_path).model.W_E, model.W_E)  # on the list: accepted
    m["config"]["act_fn"] = "gelu"  # an edited legacy manifest no longer matches its entry
    (tmp_path / "old.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format-1 checkpoint"):
        store.load("old", root=tmp_path)
    monkeypatch.undo()
    m["config"]["act_fn"] = "relu"
    (tmp_path / "old.json").write_text(json.dumps(m))
    monkeypatch.setattr(store, "CHECKPOINT_DIR", tmp_path)
    assert store.main(["rebind"]) == 0 and "old: rebound" in capsys.readouterr().out
    assert store.main(["rebind", "--only", "old"]) == 0 and "already bound" in capsys.readouterr().out
    monkeypatch.undo()
    new = json.loads((tmp_path / "old.json").read_text())
    assert new["format_version"] == store.FORMAT_VERSION and new["seed"] == 5 and new["created"] == m["created"]
    loaded = store.load("old", root=tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k  # bit for bit
    assert loaded.history == {"step": [0, 1]} and listing(tmp_path) == sorted(
        ["old.json", *(f["path"] for f in new["files"].values())])


def test_shipped_legacy_checkpoint_refuses_an_edited_act_fn(tmp_path):
    for p in store.CHECKPOINT_DIR.glob("smoke*"):
        shutil.copy(p, tmp_path / p.name)
    assert store.verify(tmp_path) == {"smoke": "ok"}
    m = json.loads((tmp_path / "smoke.json").read_text())
    m["config"]["act_fn"] = "gelu"
    (tmp_path / "smoke.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format-1 checkpoint|not bound"):
        store.load("smoke", root=tmp_path)


def test_shipped_checkpoints_are_all_on_the_legacy_list_or_bound():
    for path in sorted(store.CHECKPOINT_DIR.glob("*.json")):
        if path.name.count(".") != 1:
            continue
        m = json.loads(path.read_text())
        if m["format_version"] == 1:
            entry = store._LEGACY_BINDINGS.get(m["files"]["weights"]["sha256"][:32])
            assert entry == (path.stem, store._config_hash(m["class"], m["config"])[:32]), path.stem


def test_names_are_capped_and_save_arguments_checked(tmp_path):
    with pytest.raises(ValueError, match=r"at most 100 characters"):
        store.save("a" * 300, tiny(), root=tmp_path)
    store.save("a" * 100, tiny(), root=tmp_path)  # the longest allowed name fits the file system
    assert store.verify(tmp_path) == {"a" * 100: "ok"}
    for kwargs, pattern in [({"history": "abc"}, "history must be a dict"), ({"history": {"x": 1}}, "lists"),
                            ({"history": {"x": [object()]}}, "JSON"), ({"snapshots": [1]}, "snapshots must be"),
                            ({"snapshots": {-1: {}}}, "snapshots step"), ({"seed": "x"}, "seed"),
                            ({"steps": 1.5}, "steps"), ({"final_metrics": [1]}, "final_metrics"),
                            ({"seconds": "1"}, "seconds")]:
        with pytest.raises((TypeError, ValueError), match=pattern):
            store.save("m", tiny(), root=tmp_path, **kwargs)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_rebuild_without_module_discovers_recipes(tmp_path):
    """`python -m helpers.store rebuild --only smoke` (no --module) finds the recipe in a fresh process."""
    code = ("import sys; from pathlib import Path; from helpers import store; "
            f"store.CHECKPOINT_DIR = Path({str(tmp_path)!r}); "
            "sys.argv = ['x', 'rebuild', '--only', 'smoke']; sys.exit(store.main())")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "smoke:" in out.stdout and store.verify(tmp_path) == {"smoke": "ok"}, time.perf_counter() - t0
