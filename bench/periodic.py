"""Short-range pair sums in a periodic box: cell lists against all pairs, as N grows.

    python bench/periodic.py [--sizes 1000,8000,64000] [--steps 20] [--repeats 3]

A Lennard-Jones liquid at reduced density 0.8 (rc = 2.5, energy-shifted) on a jostled simple
cubic lattice. The cell-list code is what `box` + `cutoff` compile to whenever the box holds
3 cells of width rc per axis; the all-pairs column is the same H in a box too small for a
cell list (2 cells per axis: L < 3 rc), scaled up to the same N by its measured N^2 cost,
so the two are timed in the same run on the same machine. Reported: median wall time per
step, ns per particle-step (flat when the cost is O(N)), and the ratio to the smallest N.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tpc

LJ = """
system LJ {{
    box L = {box}
    cutoff rc = 2.5, shift = energy
    state q[N, 3], p[N, 3]
    let T = sum(i: dot(p[i], p[i]) / 2)
    let V = sum(i < j: 4 * (norm(q[i] - q[j])^-12 - norm(q[i] - q[j])^-6))
    H = T + V
}}
"""


def liquid(n: int, density: float, seed: int = 0):
    side = round(n ** (1 / 3))
    n = side**3
    box = (n / density) ** (1 / 3)
    a = box / side
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    q = (grid + 0.5) * a + rng.normal(0, 0.02 * a, (n, 3))
    p = rng.normal(0, 1.0, (n, 3))
    return box, q, p - p.mean(axis=0)


def per_step(box, q, p, steps, repeats) -> float:
    sim = tpc.compile(LJ.format(box=repr(box)), fold=False)
    sim.run(q, p, dt=0.001, steps=1, save_every=1)  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim.run(q, p, dt=0.001, steps=steps, save_every=steps)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,8000,64000")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    # all pairs: N = 343 at density 0.8 has L = 7.5 < 3 rc, so no cell list
    box, q, p = liquid(343, 0.8)
    base_n = len(q)
    base = per_step(box, q, p, args.steps, args.repeats)
    print(f"{'N':>8} {'cells s/step':>13} {'ns/particle':>12} {'vs first':>9} "
          f"{'all pairs s/step (N^2 from N=343)':>34} {'speed-up':>9}")
    first = None
    for n in [int(x) for x in args.sizes.split(",")]:
        box, q, p = liquid(n, 0.8)
        t = per_step(box, q, p, args.steps, args.repeats)
        per = t / len(q) * 1e9
        first = first or per
        all_pairs = base * (len(q) / base_n) ** 2
        print(f"{len(q):>8} {t:>13.4g} {per:>12.1f} {per / first:>9.2f} {all_pairs:>34.4g} "
              f"{all_pairs / t:>9.1f}")


if __name__ == "__main__":
    main()
