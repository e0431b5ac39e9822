"""The book's HookedTransformer against TransformerLens's, at equal work.

    python benchmarks/vs_transformer_lens.py [--threads 1,2] [--repeats 7] [--before REF] [--only NAME]

TransformerLens is an optional benchmark dependency (``pip install
transformer_lens==3.9.0``, best into a separate virtual environment together
with ``pip install -e .``): without it the script says so and exits 0.

For each shipped model shape -- ``modadd_p113`` (chapter 4's canonical model),
``induction_2l`` (chapter 3) and ``smoke`` -- the shipped weights are copied
into a TransformerLens model (``helpers._transformer_lens``, no weight
processing), and three pieces of work are timed on both:

* ``forward``: logits at every position, no gradient (modadd: all 12,769
  inputs; induction: 512 sequences of 48; smoke: 1,024 of 6);
* ``train step``: one full-batch AdamW step, logits at every position, loss
  read at the last position (modadd: its 3,831 training rows; induction: 64
  sequences, its training batch; smoke: 256, its training batch);
* ``run_with_cache``: the forward pass storing every hook point, no gradient.

Numbers are checked equal first (logits, every cached activation both models
have, and every gradient, to float32 rounding), then every variant is timed
interleaved (one call of each in turn, the order rotated every round, after a
warm-up), so a busy neighbour slows all alike; the table gives medians and the
ratio ours / TransformerLens (below 1: ours is faster). ``--before REF`` adds
the ``helpers/transformer.py`` of git revision ``REF`` as a third variant,
timed in the same rounds (a before/after table from one run). The load
average is printed before and after: on a shared machine compare ratios, not
absolute times.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds per row (default 7)")
    p.add_argument("--before", default=None, help="also time helpers/transformer.py from this git revision")
    p.add_argument("--only", default="", help="comma-separated model names (default: all three)")
    p.add_argument("--work", default="forward,train step,run_with_cache",
                   help="comma-separated pieces of work (default: forward,train step,run_with_cache)")
    return p.parse_args()


ARGS = _parse()
THREADS = [int(t) for t in ARGS.threads.split(",") if t]
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(max(THREADS))

import copy  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

try:
    import transformer_lens  # noqa: F401, E402
except ImportError:
    print("skipped: TransformerLens is not installed. It is an optional benchmark dependency: "
          "pip install transformer_lens==3.9.0 (into a separate virtual environment, with this "
          "package installed there by `pip install -e .`), then run this script with that Python.")
    sys.exit(0)

from helpers import modular as M  # noqa: E402
from helpers import store  # noqa: E402
from helpers.training import cross_entropy  # noqa: E402

torch.set_flush_denormal(True)


def load_before(rev: str) -> types.ModuleType:
    """``helpers/transformer.py`` as it was at git revision ``rev``, as a separate module."""
    src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:helpers/transformer.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("_transformer_before")
    mod.__file__ = f"<helpers/transformer.py at {rev}>"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up here
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - our own file, from git
    return mod


def workloads(name: str):
    """(model, forward tokens, training tokens, training labels) for one shipped shape."""
    model = store.load(name).model
    g = torch.Generator().manual_seed(0)
    cfg = model.cfg
    if name == "modadd_p113":
        p = cfg.d_vocab_out
        a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
        fwd = torch.stack([a, b, torch.full_like(a, p)], 1)
        train_tokens, train_labels = M.make_data(p, 0.3, seed=0).train
    else:
        n_fwd, n_train = (512, 64) if name == "induction_2l" else (1024, 256)
        fwd = torch.randint(0, cfg.d_vocab, (n_fwd, cfg.n_ctx), generator=g)
        train_tokens = torch.randint(0, cfg.d_vocab, (n_train, cfg.n_ctx), generator=g)
        train_labels = torch.randint(0, cfg.d_vocab_out, (n_train,), generator=g)
    return model, fwd, train_tokens, train_labels


def make_work(model, fwd, train_tokens, train_labels):
    """The three timed callables for one model (its own optimizer on its own copy)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))

    def forward():
        with torch.no_grad():
            return model(fwd)

    def train_step():
        loss = cross_entropy(model(train_tokens)[:, -1], train_labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def cache():
        with torch.no_grad():
            return model.run_with_cache(fwd)

    return {"forward": forward, "train step": train_step, "run_with_cache": cache}


def check_equal(models: dict, fwd, train_tokens, train_labels) -> str:
    """Logits, common cached activations and gradients of every variant against TransformerLens's."""
    ref = models["TransformerLens"]
    with torch.no_grad():
        ref_logits, ref_cache = ref.run_with_cache(fwd)
    ref_grads = _grads(ref, train_tokens, train_labels)
    scale = ref_logits.abs().max().item()
    out = []
    for label, model in models.items():
        if model is ref:
            continue
        with torch.no_grad():
            logits, cache = model.run_with_cache(fwd)
            d_fwd = (model(fwd) - ref_logits).abs().max().item()
        common = [k for k in cache if k in ref_cache.cache_dict]
        d_cache = max((cache[k] - ref_cache[k]).abs().max().item() for k in common)
        grads = _grads(model, train_tokens, train_labels)
        # relative to the largest gradient entry (a trained model's gradients are small)
        g_scale = max(g.abs().max().item() for g in ref_grads.values())
        d_grad = max((grads[k] - ref_grads[k]).abs().max().item() for k in grads if k in ref_grads) / g_scale
        for what, d in (("logits", d_fwd / max(scale, 1.0)), ("cache", d_cache / max(scale, 1.0)),
                        ("gradients", d_grad)):
            if not d <= 1e-4:
                raise AssertionError(f"{label} differs from TransformerLens in {what} by {d:.2e} (relative)")
        out.append(f"{label}: |logits diff| {d_fwd:.1e}, cache {d_cache:.1e} ({len(common)} hooks), "
                   f"grads {d_grad:.1e} of the largest")
    return f"equal to float rounding (|logits| up to {scale:.1f}); " + "; ".join(out)


def _grads(model, tokens, labels) -> dict:
    model.zero_grad(set_to_none=True)
    cross_entropy(model(tokens)[:, -1], labels).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def time_interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each callable, called in turn (order rotated each round)."""
    for fn in fns.values():  # warm-up
        fn()
    names = list(fns)
    times = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    before = load_before(ARGS.before) if ARGS.before else None
    names = [n for n in ARGS.only.split(",") if n] or ["modadd_p113", "induction_2l", "smoke"]
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, TransformerLens {getattr(transformer_lens, '__version__', '3.x')}, "
          f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} (1 / 5 / 15 min)")
    rows = []
    for name in names:
        ours, fwd, train_tokens, train_labels = workloads(name)
        models = {"ours": ours}
        if before is not None:
            old = before.HookedTransformer(before.TransformerConfig.from_dict(ours.cfg.to_dict()))
            old.load_state_dict(ours.state_dict())
            models[f"before ({ARGS.before})"] = old
        models["TransformerLens"] = ours.to_transformer_lens()
        torch.set_num_threads(1)
        print(f"{name}: {check_equal(models, fwd, train_tokens, train_labels)}", flush=True)
        for threads in THREADS:
            torch.set_num_threads(threads)
            work = {label: make_work(copy.deepcopy(m), fwd, train_tokens, train_labels) for label, m in models.items()}
            for what in [w for w in ARGS.work.split(",") if w]:
                med = time_interleaved({label: w[what] for label, w in work.items()}, ARGS.repeats)
                rows.append((name, what, threads, med))
                tl = med["TransformerLens"]
                ratios = "  ".join(f"{label} / TL {med[label] / tl:.2f}" for label in med if label != "TransformerLens")
                print(f"  {what:15s} {threads} thread(s): " + ", ".join(
                    f"{label} {1000 * t:.1f} ms" for label, t in med.items()) + f"  | {ratios}", flush=True)
    load1 = os.getloadavg()
    print(f"\nload average after: {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}; medians of {ARGS.repeats} "
          "interleaved rounds; ratio < 1: faster than TransformerLens\n")
    labels = [k for k in rows[0][3] if k != "TransformerLens"]
    print("| model | work | threads | " + " | ".join(f"{k} / TL" for k in labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    for name, what, threads, med in rows:
        print(f"| {name} | {what} | {threads} | "
              + " | ".join(f"{med[k] / med['TransformerLens']:.2f}" for k in labels) + " |")


if __name__ == "__main__":
    main()
