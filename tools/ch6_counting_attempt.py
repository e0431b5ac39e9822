"""One bounded attempt to train chapter 6's counting model on this CPU, and a step-time measurement.

The authors' own run of the counting model (InversionView repository,
``training_outputs/counting/checkpoint-914100/trainer_state.json``) took 914,100
steps of batch 128 before its loss fell below 0.03. This script measures what
one of our steps costs (batch 128, one thread) and makes one attempt with a
larger learning rate and small fresh batches, capped in wall time, logging
held-out accuracy every ``--log-every`` steps. It writes
``helpers/checkpoints/results/ch6_counting_attempt.json``, which chapter 6 reads.

Run: ``PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tools/ch6_counting_attempt.py --minutes 20``
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from helpers.inversion import RESULTS, answer_accuracy, answer_loss, counting_config, make_counting_data
from helpers.transformer import HookedTransformer

OUT = RESULTS["counting_attempt"]


def step_ms(batch_size: int, n_steps: int = 40, seed: int = 0) -> float:
    """Median wall time (ms) of one AdamW step of the counting model at ``batch_size``."""
    model = HookedTransformer(counting_config(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens, colon, _ = make_counting_data(batch_size * n_steps, seed=seed + 1)
    times = []
    for i in range(n_steps):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        t0 = time.perf_counter()
        loss = answer_loss(model, (tokens[sl], colon[sl, None]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--log-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ms128 = step_ms(128)
    ms_b = step_ms(args.batch_size)
    print(f"step time: batch 128 {ms128:.1f} ms, batch {args.batch_size} {ms_b:.1f} ms", flush=True)

    model = HookedTransformer(counting_config(args.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = 500
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    te_tok, te_colon, _ = make_counting_data(2000, seed=10_000 + args.seed)
    test = (te_tok, te_colon[:, None])
    curve = {"step": [], "test_acc": [], "test_loss": [], "seconds": []}
    t0 = time.perf_counter()
    step, chunk = 0, 100 * args.batch_size
    while True:
        # fresh strings: a new chunk of 100 batches every 100 steps
        tok, colon, _ = make_counting_data(chunk, seed=1_000_000 * (args.seed + 1) + step)
        for j in range(100):
            if step % args.log_every == 0:
                model.eval()
                with torch.no_grad():
                    acc, tl = answer_accuracy(model, *test), answer_loss(model, test).item()
                model.train()
                el = time.perf_counter() - t0
                for k, v in zip(curve, (step, acc, tl, round(el, 1))):
                    curve[k].append(v)
                print(f"step {step:6d}  test_acc {acc:.3f}  test_loss {tl:.3f}  {el:6.0f} s", flush=True)
                if acc >= 0.98 or el > 60 * args.minutes:
                    break
            sl = slice(j * args.batch_size, (j + 1) * args.batch_size)
            loss = answer_loss(model, (tok[sl], colon[sl, None]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
        else:
            continue
        break
    result = {"what": "one bounded attempt to train the counting model on one CPU thread (tools/ch6_counting_attempt.py)",
              "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": warm, "minutes_cap": args.minutes,
              "fresh_strings": True, "step_ms_batch128": round(ms128, 2),
              f"step_ms_batch{args.batch_size}": round(ms_b, 2), "curve": curve,
              "final_step": curve["step"][-1], "final_test_acc": curve["test_acc"][-1],
              "seconds": curve["seconds"][-1], "threads": 1}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
