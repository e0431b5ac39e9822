"""Chapter 6's decoder: diagnose it, and check that rebuilding it reproduces the page's figures.

Two commands, each adding its section to ``helpers/checkpoints/results/ch6_decoder.json``
(the page glues from that file):

``diagnose [--name NAME] [--root DIR] [--label LABEL]``
    Does a decoder read its condition well? Teacher-forced loss per input
    digit, per site; answer-digit accuracy; share of samples inside the
    epsilon-preimage at several temperatures and noise levels (12 queries per site).

``pilot [--steps N] [--lr LR] [--cond-add 0|1] [--n-train N]``
    A short training run of the decoder recipe's loop; records its final test loss.

``rebuild [--rebuilt-root DIR]``
    Retrains ``inv_decoder_addition`` with the shipped manifest's recipe arguments into
    a scratch store (the shipped checkpoint is not touched), then scores the shipped and
    the rebuilt decoder on the page's queries (:data:`PAGE_PAIRS`, 7 sites x 4 positions)
    with :func:`helpers.inversion.score_decoder`, and records both, their differences
    and the rebuild's wall time. Tolerances (stated on the page): overall precision and
    recall within 5 points, each site's precision within 15 points (48 samples x 12
    queries per site).

Run: ``PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tools/ch6_decoder_check.py rebuild``
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from helpers import inversion as I
from helpers import store

OUT = I.RESULTS["decoder"]
PAGE_PAIRS = [(275, 468), (703, 196), (58, 941)]       # chapter 6's query inputs
TOL = {"precision": 0.05, "recall": 0.05, "site_precision": 0.15}


def _update(section: str, value) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[section] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")


def page_setup(model):
    """The page's pool (queries + the 100,000 held-out pairs), queries and preimages."""
    a_all, b_all = I.make_addition_data(seed=0)
    held_a, held_b = a_all[-100_000:], b_all[-100_000:]
    qa = torch.tensor([p[0] for p in PAGE_PAIRS])
    qb = torch.tensor([p[1] for p in PAGE_PAIRS])
    pool = I.addition_tokens(torch.cat([qa, held_a]), torch.cat([qb, held_b]))
    queries, meta = I.addition_queries(model, PAGE_PAIRS)
    inside = I.min_distances(model, pool, queries, I.ADDITION, batch_size=4096) <= I.EPS
    return pool, queries, meta, inside


def figures(model, dec, pool, queries, meta, inside) -> dict:
    sc = I.score_decoder(model, dec, "addition", queries, [m[1] for m in meta], pool, inside).numpy()
    site = np.array([m[1] for m in meta])
    names = [I.site_name(s) for s in I.SITES["addition"]]
    return {"precision": float(sc[:, 0].mean()), "recall": float(np.nanmean(sc[:, 1])),
            "site_precision": {n: float(sc[site == i, 0].mean()) for i, n in enumerate(names)},
            "site_recall": {n: float(np.nanmean(sc[site == i, 1])) for i, n in enumerate(names)}}


@torch.no_grad()
def diagnose(model, dec) -> dict:
    sites = I.SITES["addition"]
    tok = I.task_inputs("addition", 6000, seed=777)
    tok, z, site, _ = I.decoder_training_batch(model, "addition", tok, sites, seed=5)
    lg = dec(tok[:, :-1], z, site)
    ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tok[:, 1:].reshape(-1), reduction="none").reshape(len(tok), -1)
    digits = [0, 1, 2, 4, 5, 6]                      # targets a2 a1 a0 b2 b1 b0
    out = {"digit_loss": float(ce[:, digits].mean()),
           "digit_loss_by_site": {I.site_name(s): float(ce[site == i][:, digits].mean()) for i, s in enumerate(sites)},
           "answer_digit_acc": float((lg.argmax(-1)[:, 8:12] == tok[:, 9:13]).float().mean())}
    queries, meta = I.addition_queries(model, PAGE_PAIRS)
    prec = {}
    for temps, noise in [((0.3,), 0.0), ((0.5,), 0.0), ((1.0,), 0.0), ((0.5, 1.0), 0.02), ((0.5,), 0.05)]:
        shares = []
        for k, ((s, zq), (_, si, _)) in enumerate(zip(queries, meta)):
            smp = I.sample_inputs(dec, "addition", zq, si, 32, temperatures=temps, noise=noise, seed=k)
            shares.append(float((I.min_distances(model, smp, [(s, zq)], I.ADDITION)[0] <= I.EPS).float().mean()))
        prec[f"T={'/'.join(map(str, temps))} noise={noise}"] = float(np.mean(shares))
    out["precision_by_sampling"] = prec
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["diagnose", "rebuild", "pilot"])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--cond-add", type=int, default=1)
    ap.add_argument("--name", default="inv_decoder_addition")
    ap.add_argument("--root", default=None)
    ap.add_argument("--label", default="shipped")
    ap.add_argument("--rebuilt-root", default=None,
                    help="rebuild: score a rebuild already trained into this store (same recipe arguments) "
                         "instead of training one now")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = store.load("inv_addition").model
    if args.cmd == "diagnose":
        ck = store.load(args.name, root=args.root)
        res = diagnose(model, ck.model)
        h = ck.history
        res.update(recipe_kwargs=ck.manifest["recipe_kwargs"], final_metrics=ck.manifest["final_metrics"],
                   seconds=ck.manifest["seconds"],
                   history_tail={"step": h["step"][-3:], "test_loss": h["test_loss"][-3:]})
        print(json.dumps(res, indent=1))
        _update(f"diagnose_{args.label}", res)
        return
    if args.cmd == "pilot":
        t0 = time.perf_counter()
        _, r = I._train_decoder("addition", args.n_train, args.steps, 128, args.lr, 96, 2, bool(args.cond_add), 0)
        res = {"steps": args.steps, "lr": args.lr, "n_train": args.n_train, "cond_add": bool(args.cond_add),
               "final_test_loss": r.history["test_loss"][-1], "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(res))
        data = json.loads(OUT.read_text()) if OUT.exists() else {}
        _update("pilots", [p for p in data.get("pilots", []) if p["cond_add"] != res["cond_add"]
                           or p["steps"] != res["steps"] or p["lr"] != res["lr"]] + [res])
        return
    shipped = store.load("inv_decoder_addition")
    kwargs = {k: v for k, v in shipped.manifest["recipe_kwargs"].items() if k != "progress"}
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.perf_counter()
        if args.rebuilt_root:
            rebuilt = store.load("inv_decoder_addition", root=args.rebuilt_root)
            theirs = {k: v for k, v in rebuilt.manifest["recipe_kwargs"].items() if k != "progress"}
            if theirs != kwargs:
                raise SystemExit(f"the rebuild in {args.rebuilt_root} used {theirs}, the shipped decoder {kwargs}")
            seconds = float(rebuilt.manifest["seconds"])
        else:
            rebuilt = store.train_or_load("inv_decoder_addition", root=scratch, retrain=True, **kwargs)
            seconds = time.perf_counter() - t0
        pool, queries, meta, inside = page_setup(model)
        fig_s = figures(model, shipped.model, pool, queries, meta, inside)
        fig_r = figures(model, rebuilt.model, pool, queries, meta, inside)
        wdiff = max((a - b).abs().max().item() for a, b in zip(shipped.model.state_dict().values(),
                                                               rebuilt.model.state_dict().values()))
    diff = {"precision": fig_r["precision"] - fig_s["precision"], "recall": fig_r["recall"] - fig_s["recall"],
            "site_precision_max": max(abs(fig_r["site_precision"][n] - fig_s["site_precision"][n])
                                      for n in fig_s["site_precision"])}
    ok = (abs(diff["precision"]) <= TOL["precision"] and abs(diff["recall"]) <= TOL["recall"]
          and diff["site_precision_max"] <= TOL["site_precision"])
    res = {"pairs": PAGE_PAIRS, "shipped_weights_digest": store.weights_digest(shipped.model),
           "shipped": fig_s, "rebuilt": fig_r, "difference": diff, "tolerance": TOL, "within_tolerance": ok,
           "max_weight_difference": wdiff, "rebuild_seconds": round(seconds, 1),
           "rebuilt_final_metrics": rebuilt.manifest["final_metrics"],
           "shipped_final_metrics": shipped.manifest["final_metrics"], "recipe_kwargs": kwargs}
    print(json.dumps(res, indent=1))
    _update("rebuild", res)
    if not ok:
        raise SystemExit("rebuilt decoder is outside the stated tolerances")


if __name__ == "__main__":
    main()
