"""Seeded training loops with a progress bar, logged metrics and weight snapshots.

One function, :func:`train`, serves every chapter: full batch or minibatch,
AdamW with a linear warm-up, a metrics history logged every ``log_every``
steps, optional weight snapshots at chosen steps, and an early stop on any
logged metric. The same seed gives the same weights and losses.

>>> import torch
>>> from helpers.transformer import TransformerConfig, HookedTransformer
>>> cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=5, n_ctx=2)
>>> model = HookedTransformer(cfg)
>>> x = torch.randint(0, 5, (64, 2), generator=torch.Generator().manual_seed(0))
>>> y = (x[:, 0] + x[:, 1]) % 5
>>> loss = lambda m, batch: cross_entropy(m(batch[0], read_positions=[-1])[:, 0], batch[1])
>>> result = train(model, (x, y), loss, steps=50, lr=1e-2, log_every=10, progress=False)
>>> result.history["step"]
[0, 10, 20, 30, 40, 50]
>>> result.history["train_loss"][-1] < result.history["train_loss"][0]
True

Used in every chapter that trains a model (3, 4, 5, 6, 7, 8) and on the
"how to use this book" page.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._util import check_int, check_number, check_positive_int, check_seed, check_token_ids, eval_mode

__all__ = ["TrainResult", "train", "cross_entropy", "accuracy", "last_position_loss", "is_interactive", "torch_threads"]

LossFn = Callable[[nn.Module, tuple], torch.Tensor]
MetricsFn = Callable[[nn.Module], dict]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : dict[str, list]
        ``history["step"]`` and one list per logged metric (``train_loss`` is
        always logged: the loss of the step's batch, before the update), all the
        same length.
    snapshots : dict[int, dict[str, Tensor]]
        Step -> copy of the state dict, for the steps asked for.
    steps : int
        Optimisation steps taken (fewer than asked if stopped early).
    stopped_early : bool
    seconds : float
        Wall time of the loop.
    """

    history: dict[str, list] = field(default_factory=dict)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    def final(self) -> dict[str, float]:
        """The last logged value of every metric."""
        return {k: v[-1] for k, v in self.history.items() if v}


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy computed in float64 (the grokking recipe of chapter 4).

    logits: [batch, d_vocab_out]; targets: [batch] integer classes.

    >>> cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, 2])).item() == math.log(4)
    True
    """
    targets = _check_logits_targets(logits, targets)
    if logits.shape[0] == 0:
        raise ValueError("logits and targets are empty: the mean loss of no examples is undefined")
    logp = F.log_softmax(logits.to(torch.float64), dim=-1)
    return -logp.gather(-1, targets[:, None].long()).mean()


def _check_logits_targets(logits, targets) -> torch.Tensor:
    """Checks shared by :func:`cross_entropy` and :func:`accuracy`; returns the targets as int64."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a tensor [batch, classes], got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, classes], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be real floating point, got dtype {logits.dtype}")
    targets = check_token_ids(targets, "targets", d_vocab=logits.shape[1])
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:1])}, got {tuple(targets.shape)}")
    return targets.to(logits.device)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose argmax is the target. logits [batch, classes], targets [batch].

    Rows with NaN logits count as wrong; empty input raises (an accuracy of nothing is undefined).

    >>> accuracy(torch.eye(3, 4), torch.tensor([0, 1, 2]))
    1.0
    """
    targets = _check_logits_targets(logits, targets)
    if logits.shape[0] == 0:
        raise ValueError("logits and targets are empty: the accuracy of no examples is undefined")
    ok = (logits.argmax(-1) == targets) & ~torch.isnan(logits).any(-1)
    return ok.float().mean().item()


def last_position_loss(model, batch) -> torch.Tensor:
    """Cross-entropy of the logits at the last position only (the read position).

    ``batch`` is ``(tokens [batch, pos], targets [batch])``; the model computes
    its last block at that position only (``read_positions=[-1]``). The loss
    of every task in this book that is read at one position (chapters 0, 4,
    5, 7, 8).
    """
    tokens, targets = batch
    return cross_entropy(model(tokens, read_positions=[-1])[:, 0], targets)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads, then restore the previous count.

    Floating-point reductions split over a different number of threads round
    differently, so a recipe that must reproduce its shipped checkpoint bit for
    bit pins its thread count with this.

    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    check_positive_int(n, "n")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def is_interactive() -> bool:
    """True in a Jupyter kernel or a terminal; False under pytest or a redirected stream."""
    if "pytest" in sys.modules:
        return False
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except Exception:  # noqa: BLE001 - IPython missing or odd shell
        pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _check_data(data) -> tuple[torch.Tensor, ...]:
    if isinstance(data, torch.Tensor):
        data = (data,)
    if not isinstance(data, (tuple, list)) or not data:
        raise TypeError("data must be a tensor or a non-empty tuple of tensors sharing their first dimension")
    n = None
    for i, t in enumerate(data):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"data[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"data[{i}] must have a batch dimension, got a scalar")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ValueError(f"data[{i}] has {t.shape[0]} rows but data[0] has {n}")
    if n == 0:
        raise ValueError("data is empty (0 rows)")
    return tuple(data)


def train(
    model: nn.Module,
    data,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    warmup_steps: int = 0,
    batch_size: int | None = None,
    seed: int = 0,
    log_every: int = 100,
    metrics_fn: MetricsFn | None = None,
    snapshot_steps: Iterable[int] = (),
    stop_when: Callable[[dict], bool] | None = None,
    progress: bool | None = None,
    description: str = "training",
    grad_clip: float | None = None,
    flush_denormal: bool = True,
    threads: int | None = None,
) -> TrainResult:
    """Train ``model`` with AdamW and return its logged history.

    Parameters
    ----------
    model : nn.Module
        Trained in place.
    data : Tensor or tuple of Tensors
        Rows share the first dimension; ``loss_fn`` receives a tuple of row
        subsets (the whole tuple when ``batch_size`` is None: full batch).
    loss_fn : callable ``(model, batch) -> scalar tensor``
    steps : int
        Optimisation steps.
    lr, weight_decay, betas : AdamW settings.
    warmup_steps : int
        Linear warm-up of the learning rate from ``lr/warmup_steps`` to ``lr``.
    batch_size : int or None
        Minibatch size (sampled without replacement, reshuffled each epoch by a
        generator seeded with ``seed``); None = full batch.
    seed : int
        Seeds the batch order and torch's global generator (dropout etc.).
    log_every : int
        Log at step 0, every ``log_every`` steps, and at the end. Each log row
        holds ``train_loss`` (loss of that step's batch) and whatever
        ``metrics_fn(model)`` returns (called in ``eval`` mode under no_grad).
    snapshot_steps : iterable of int
        Steps (0 = before training) at which to keep a copy of the weights.
    stop_when : callable ``(row) -> bool``, optional
        Checked on every log row; True stops training after that row.
    progress : bool or None
        Show a tqdm bar; None = only when interactive (see :func:`is_interactive`).
    grad_clip : float, optional
        Clip the global gradient norm.
    flush_denormal : bool
        Flush subnormal floats to zero during training (late grokking runs slow
        down several-fold on subnormal Adam state otherwise); restored after.
    threads : int or None
        Torch threads while training (restored after); None leaves the
        current setting. Floating-point reductions split over a different
        number of threads round differently, so every recipe of
        :mod:`helpers.store` passes a fixed count (the book's recipes use 1,
        which is also the fastest for models this small). With the same
        seed and thread count, a run is bit-identical on the same machine;
        on another CPU it agrees within rounding (see ``how_to_use``).

    Early stopping returns the model exactly as the last history row
    describes it: when ``stop_when`` fires on the row logged at step ``s``,
    no further optimiser step is taken, ``result.steps == s`` and the
    weights are those that were evaluated in that row.
    """
    data, snapshot_steps = _check_train_args(model, data, loss_fn, steps, lr, warmup_steps, batch_size, log_every,
                                             snapshot_steps, threads)
    check_seed(seed)
    check_number(grad_clip, "grad_clip", positive=True, allow_none=True)  # a negative clip would ascend
    check_number(weight_decay, "weight_decay", minimum=0)
    if metrics_fn is not None and not callable(metrics_fn):
        raise TypeError(f"metrics_fn must be callable (model) -> dict, got {type(metrics_fn).__name__}")
    n = data[0].shape[0]
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    data = tuple(t.to(device) for t in data)
    batches = _Batches(data, batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0
    )
    result = TrainResult(history={"step": [], "train_loss": []})
    if progress is None:
        progress = is_interactive()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=description, leave=True)

    flushed = bool(flush_denormal) and torch.set_flush_denormal(True)
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)

    def log(step: int, loss_value: float) -> bool:
        row = _log_row(result.history, model, step, loss_value, metrics_fn)
        if bar is not None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "step"}, refresh=False)
        return bool(stop_when(row)) if stop_when is not None else False

    t0 = time.perf_counter()
    model.train()
    try:
        step = 0
        if 0 in snapshot_steps:
            result.snapshots[0] = _snapshot(model)
        while step < steps:
            loss = loss_fn(model, batches.next())
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError("loss_fn must return a scalar tensor")
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr or check the data")
            if step % log_every == 0 and log(step, loss.item()):
                # the row just logged describes the current weights: stop before updating them
                result.stopped_early = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            step += 1
            if bar is not None:
                bar.update(1)
            if step in snapshot_steps:
                result.snapshots[step] = _snapshot(model)
        if not result.stopped_early and (not result.history["step"] or result.history["step"][-1] != step):
            with torch.no_grad():
                batch = data if batch_size is None else tuple(t[: min(n, batch_size)] for t in data)
                final_loss = loss_fn(model, batch).item()
            log(step, final_loss)
        result.steps = step
    finally:
        if bar is not None:
            bar.close()
        if flushed:
            torch.set_flush_denormal(False)
        torch.set_num_threads(threads_before)
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result


def _check_train_args(model, data, loss_fn, steps, lr, warmup_steps, batch_size, log_every, snapshot_steps,
                      threads) -> tuple[tuple[torch.Tensor, ...], list[int]]:
    """:func:`train`'s argument checks; returns the data tuple and the sorted snapshot steps."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable (model, batch) -> loss")
    check_int(steps, "steps", 0)
    check_int(log_every, "log_every", 1)
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    check_int(warmup_steps, "warmup_steps", 0)
    data = _check_data(data)
    check_positive_int(batch_size, "batch_size", allow_none=True)
    check_positive_int(threads, "threads", allow_none=True)
    if isinstance(snapshot_steps, (str, bytes)) or not hasattr(snapshot_steps, "__iter__"):
        raise TypeError(f"snapshot_steps must be a list of ints, got {snapshot_steps!r}")
    snapshot_steps = sorted(set(check_int(s, "snapshot_steps entry") for s in snapshot_steps))
    if snapshot_steps and (snapshot_steps[0] < 0 or snapshot_steps[-1] > steps):
        raise ValueError(f"snapshot_steps must lie in [0, steps={steps}], got {snapshot_steps}")
    return data, snapshot_steps


class _Batches:
    """Minibatches without replacement, reshuffled by ``gen`` each epoch (the full data when ``batch_size`` is None)."""

    def __init__(self, data: tuple[torch.Tensor, ...], batch_size: int | None, gen: torch.Generator) -> None:
        self.data, self.batch_size, self.gen = data, batch_size, gen
        self.n = data[0].shape[0]
        self.perm, self.cursor = None, self.n

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.batch_size is None:
            return self.data
        if self.cursor + self.batch_size > self.n:
            self.perm, self.cursor = torch.randperm(self.n, generator=self.gen).to(self.data[0].device), 0
        idx = self.perm[self.cursor: self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return tuple(t[idx] for t in self.data)


def _log_row(history: dict, model: nn.Module, step: int, loss_value: float, metrics_fn) -> dict:
    """Append one row (step, train loss, ``metrics_fn(model)`` in eval mode) to ``history``; return it."""
    row = {"step": step, "train_loss": loss_value}
    if metrics_fn is not None:
        with eval_mode(model), torch.no_grad():
            extra = metrics_fn(model)
        if not isinstance(extra, dict):
            raise TypeError(f"metrics_fn must return a dict, got {type(extra).__name__}")
        clash = sorted(set(extra) & set(row))
        if clash:
            raise ValueError(f"metrics_fn returned {clash}, which train logs itself; rename those metrics")
        row.update({k: float(v) for k, v in extra.items()})
    for k in row:  # a metric first seen now gets NaN for the earlier rows
        history.setdefault(k, [math.nan] * len(history["step"]))
    for k in history:
        history[k].append(row.get(k, math.nan))
    return row


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
