"""Chapter 5: the quadrature bound's cost against the brute-force maximum, as p grows.

    .venv/bin/python benchmarks/integration_bound.py [--ps 31 59 113 227] [--d-mlp 512] [--repeats 3]

For each p an *ideal* pizza MLP of the real shapes (``d_mlp`` neurons, 5 key
frequencies, random phases; :func:`helpers.integration.synthetic_factored`:
synthetic weights, not trained models) is analysed two ways in the same run:

* ``bound``: FFT fits of each neuron's input and output rows (``O(d_mlp p log p)``)
  and :func:`helpers.integration.quadrature_bound` (``O(d_mlp n_grid)``);
* ``brute``: the finite and the integral logits on all ``p^3`` triples and the
  largest difference (``O(p^3 d_mlp)``).

Also one real row: chapter 4's pizza ``modadd_p59_constant_s0``. Prints median
times, the ratio brute / bound, and each cost relative to the smallest p (so a
busy neighbour, which slows both, cancels). One thread.
"""
from __future__ import annotations

import argparse
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import torch  # noqa: E402

from helpers import integration as I  # noqa: E402
from helpers import modular as M  # noqa: E402
from helpers import store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ps", type=int, nargs="+", default=[31, 59, 113, 227])
    ap.add_argument("--d-mlp", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [I.time_bound_and_brute(I.synthetic_factored(p, args.d_mlp), repeats=args.repeats) for p in args.ps]
    real = I.time_bound_and_brute(I.factor_mlp(store.load(M.clock_pizza_name("constant", 0)).model),
                                  repeats=args.repeats)
    b0, f0 = rows[0]["bound_s"], rows[0]["brute_s"]
    print(f"{'p':>5} {'bound':>9} {'brute max':>9} {'bound s':>9} {'brute s':>9} {'brute/bound':>11} "
          f"{'bound x':>8} {'brute x':>8} {'(p/p0)^3':>8}")
    for r in rows:
        print(f"{r['p']:>5} {r['bound']:>9.3f} {r['brute']:>9.3f} {r['bound_s']:>9.4f} {r['brute_s']:>9.4f} "
              f"{r['ratio']:>11.1f} {r['bound_s'] / b0:>8.2f} {r['brute_s'] / f0:>8.1f} "
              f"{(r['p'] / rows[0]['p']) ** 3:>8.1f}")
    print(f"real pizza p=59 seed 0: bound {real['bound']:.3f} >= brute {real['brute']:.3f}; "
          f"bound {real['bound_s']:.4f} s, brute {real['brute_s']:.4f} s, brute/bound {real['ratio']:.1f}")


if __name__ == "__main__":
    main()
