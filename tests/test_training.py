"""Tests of helpers.training: learning, determinism, logging, snapshots, early stop, bad input."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from helpers.training import TrainResult, accuracy, cross_entropy, is_interactive, train


def linear_problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) > 0).long()
    return x, y


def ce_loss(model, batch):
    return cross_entropy(model(batch[0]), batch[1])


def fresh(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(4, 2)


def test_full_batch_training_learns_and_logs():
    x, y = linear_problem()
    model = fresh()
    res = train(model, (x, y), ce_loss, steps=200, lr=0.05, log_every=50, progress=False,
                metrics_fn=lambda m: {"acc": accuracy(m(x), y)})
    assert isinstance(res, TrainResult) and res.steps == 200 and not res.stopped_early
    assert res.history["step"] == [0, 50, 100, 150, 200]
    assert len(res.history["acc"]) == len(res.history["train_loss"]) == 5
    assert res.history["acc"][-1] > 0.95 > res.history["acc"][0] - 0.5
    assert res.history["train_loss"][-1] < 0.5 * res.history["train_loss"][0]
    assert res.final()["step"] == 200 and res.seconds > 0
    assert not model.training  # returned in eval mode


def test_minibatches_are_seeded_and_cover_the_data():
    x, y = linear_problem(100)
    seen = []

    def loss(model, batch):
        seen.append(batch[0].shape[0])
        return ce_loss(model, batch)

    a, b = fresh(), fresh()
    ra = train(a, (x, y), loss, steps=30, batch_size=32, seed=3, log_every=10, progress=False)
    rb = train(b, (x, y), ce_loss, steps=30, batch_size=32, seed=3, log_every=10, progress=False)
    assert ra.history == rb.history
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert set(seen[:30]) == {32}
    c = fresh()
    rc = train(c, (x, y), ce_loss, steps=30, batch_size=32, seed=4, log_every=10, progress=False)
    assert rc.history["train_loss"] != ra.history["train_loss"]


def test_warmup_scales_the_first_steps():
    x, y = linear_problem()
    loss = ce_loss
    # with warm-up the first update is 1/warmup of the full-lr update
    m1, m2 = fresh(), fresh()
    w0 = m1.weight.detach().clone()
    train(m1, (x, y), loss, steps=1, lr=0.1, warmup_steps=10, progress=False, log_every=1)
    train(m2, (x, y), loss, steps=1, lr=0.1, warmup_steps=0, progress=False, log_every=1)
    d1 = (m1.weight - w0).norm().item()
    d2 = (m2.weight - w0).norm().item()
    assert d1 == pytest.approx(d2 / 10, rel=1e-3)


def test_snapshots_and_early_stop():
    x, y = linear_problem()
    model = fresh()
    res = train(model, (x, y), ce_loss, steps=500, lr=0.05, log_every=10, progress=False,
                snapshot_steps=[0, 5, 20], metrics_fn=lambda m: {"acc": accuracy(m(x), y)},
                stop_when=lambda row: row["acc"] >= 0.9)
    assert res.stopped_early and res.steps < 500
    assert res.history["acc"][-1] >= 0.9 and all(a < 0.9 for a in res.history["acc"][:-1])
    assert 0 in res.snapshots and 5 in res.snapshots
    assert not torch.equal(res.snapshots[0]["weight"], res.snapshots[5]["weight"])
    # snapshot at step 0 is the initial model: replaying 5 steps from it reproduces snapshot 5
    replay = fresh()
    replay.load_state_dict(res.snapshots[0])
    train(replay, (x, y), ce_loss, steps=5, lr=0.05, log_every=10, progress=False)
    assert torch.allclose(replay.weight, res.snapshots[5]["weight"])


def test_early_stop_returns_the_weights_the_last_row_describes():
    """The row that triggers the stop was computed on the returned weights: no extra step is taken."""
    x, y = linear_problem()
    model = fresh()
    res = train(model, (x, y), ce_loss, steps=500, lr=0.05, log_every=7, progress=False,
                metrics_fn=lambda m: {"acc": accuracy(m(x), y), "loss": ce_loss(m, (x, y)).item()},
                stop_when=lambda row: row["acc"] >= 0.9)
    assert res.stopped_early and res.steps == res.history["step"][-1] and res.steps % 7 == 0
    with torch.no_grad():
        assert accuracy(model(x), y) == res.final()["acc"]
        assert ce_loss(model, (x, y)).item() == res.final()["loss"] == res.final()["train_loss"]
    # and it is the model a plain run of exactly that many steps gives
    plain = fresh()
    train(plain, (x, y), ce_loss, steps=res.steps, lr=0.05, log_every=7, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters()))


def test_threads_are_pinned_while_training_and_restored():
    x, y = linear_problem()
    seen = []

    def loss(model, batch):
        seen.append(torch.get_num_threads())
        return ce_loss(model, batch)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(fresh(), (x, y), loss, steps=3, progress=False, threads=1)
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            train(fresh(), (x, y), ce_loss, steps=1, progress=False, threads=bad)


def test_metric_first_logged_later_is_padded_with_nan():
    x, y = linear_problem()
    calls = {"n": 0}

    def metrics(m):
        calls["n"] += 1
        return {"late": 1.0} if calls["n"] > 1 else {}

    res = train(fresh(), (x, y), ce_loss, steps=20, log_every=10, metrics_fn=metrics, progress=False)
    assert math.isnan(res.history["late"][0]) and res.history["late"][1:] == [1.0, 1.0]


def test_progress_bar_runs():
    x, y = linear_problem()
    res = train(fresh(), (x, y), ce_loss, steps=5, log_every=2, progress=True)
    assert res.steps == 5
    assert is_interactive() is False  # under pytest


def test_cross_entropy_is_float64_and_matches_torch():
    logits = torch.randn(5, 7)
    t = torch.randint(0, 7, (5,))
    ce = cross_entropy(logits, t)
    assert ce.dtype == torch.float64
    assert ce.item() == pytest.approx(nn.functional.cross_entropy(logits.double(), t).item(), rel=1e-12)
    with pytest.raises(ValueError, match="logits must be"):
        cross_entropy(torch.randn(5), t)
    with pytest.raises(ValueError, match="targets must have shape"):
        cross_entropy(logits, t[:3])


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        (dict(steps=-1), ValueError, "steps"),
        (dict(steps=1.5), ValueError, "steps"),
        (dict(steps=5, log_every=0), ValueError, "log_every"),
        (dict(steps=5, lr=0), ValueError, "lr"),
        (dict(steps=5, batch_size=0), ValueError, "batch_size"),
        (dict(steps=5, warmup_steps=-3), ValueError, "warmup_steps"),
        (dict(steps=5, snapshot_steps=[9]), ValueError, "snapshot_steps"),
    ],
)
def test_bad_arguments(kwargs, exc, needle):
    x, y = linear_problem()
    with pytest.raises(exc, match=needle):
        train(fresh(), (x, y), ce_loss, progress=False, **kwargs)


def test_bad_data_and_loss():
    x, y = linear_problem()
    with pytest.raises(ValueError, match=r"data\[1\] has 10 rows"):
        train(fresh(), (x, y[:10]), ce_loss, steps=1, progress=False)
    with pytest.raises(TypeError, match=r"data\[0\] must be a torch.Tensor"):
        train(fresh(), ([1, 2], y), ce_loss, steps=1, progress=False)
    with pytest.raises(TypeError, match="model must be"):
        train("model", (x, y), ce_loss, steps=1, progress=False)
    with pytest.raises(TypeError, match="scalar"):
        train(fresh(), (x, y), lambda m, b: m(b[0]), steps=1, progress=False)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(fresh(), (x, y), lambda m, b: ce_loss(m, b) * float("nan"), steps=1, progress=False)
    with pytest.raises(TypeError, match="metrics_fn must return a dict"):
        train(fresh(), (x, y), ce_loss, steps=1, progress=False, metrics_fn=lambda m: 3)
