"""Derivatives of the flow: what a tangent run and a reverse-mode gradient cost, and the memory
a gradient through many steps needs.

    python bench/derivatives.py [--repeats 5] [--skip-memory]

Cost: medians over repeats of a whole run, the variants interleaved in each repeat, as ratios
to the plain forward run of the same system, steps and dt measured in the same repeat:
  forward    sim.run to the end (one snapshot)
  tangent    sim.run(..., tangent=dz0): the state and one tangent
  vjp        sim.vjp: the forward run plus the backward tangent run with -dt, and the
             checkpoints where the rebuilt start drifts past rtol
  reversal   the same, forced to trust the reversal (rtol = 1): the cost of the method alone
on Kepler (leapfrog), N-body N = 8 (yoshida4, masses as an input: the gradient covers them)
and N = 64.

Memory: the peak resident set size of a process that compiles once and takes one vjp of
10^3 steps, against one of 10^6 steps (Kepler), each in a fresh interpreter; the reversal
keeps O(state) memory, so the two should be within a few percent.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tpc

ROOT = Path(__file__).resolve().parents[1]
KEPLER = ROOT / "examples" / "kepler.ham"
NBODY = ROOT / "examples" / "nbody.ham"


def cases():
    q, p = np.array([0.4, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    yield "Kepler", tpc.compile(KEPLER, integrator="leapfrog"), q, p, {}, 0.001, 200_000
    sim = tpc.compile(NBODY, integrator="yoshida4")
    for n, steps in ((8, 20_000), (64, 1_000)):
        rng = np.random.default_rng(n)
        q, p = rng.normal(size=(n, 3)) * 3, rng.normal(size=(n, 3)) * 0.1
        yield f"N-body N={n}", sim, q, p, {"m": rng.uniform(0.5, 1.5, n)}, 1e-3, steps


def cost(repeats: int) -> None:
    print(f"{'system':<14} {'steps':>8} {'forward s':>10} {'tangent':>8} {'vjp':>8} "
          f"{'reversal':>9}")
    for name, sim, q, p, inputs, dt, steps in cases():
        cot = (np.ones_like(q), np.ones_like(p))
        dz = np.concatenate([np.ones(q.size), np.zeros(p.size)])
        # warm: compile both builds before timing
        sim.run(q, p, dt=dt, steps=2, save_every=2, **inputs)
        sim.vjp(q, p, dt=dt, steps=2, cotangent=cot, **inputs)
        times = {"forward": [], "tangent": [], "vjp": [], "reversal": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            sim.run(q, p, dt=dt, steps=steps, save_every=steps, **inputs)
            t1 = time.perf_counter()
            sim.run(q, p, dt=dt, steps=steps, save_every=steps, tangent=dz, **inputs)
            t2 = time.perf_counter()
            v = sim.vjp(q, p, dt=dt, steps=steps, cotangent=cot, **inputs)
            t3 = time.perf_counter()
            sim.vjp(q, p, dt=dt, steps=steps, cotangent=cot, rtol=1.0, **inputs)
            times["reversal"].append(time.perf_counter() - t3)
            times["forward"].append(t1 - t0)
            times["tangent"].append(t2 - t1)
            times["vjp"].append(t3 - t2)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:<14} {steps:>8} {med['forward']:>10.4f} "
              f"{med['tangent'] / med['forward']:>7.2f}x {med['vjp'] / med['forward']:>7.2f}x"
              f" {med['reversal'] / med['forward']:>8.2f}x   ({v.method}, reconstruction error {v.reconstruction_error:.1e})")


CHILD = """
import resource, sys, numpy as np, tpc
sim = tpc.compile(sys.argv[1], integrator="leapfrog")
q, p = np.array([0.4, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
sim.vjp(q, p, dt=1e-4, steps=10, cotangent=(np.ones(3), np.ones(3)))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
v = sim.vjp(q, p, dt=1e-4, steps=int(sys.argv[2]), cotangent=(np.ones(3), np.ones(3)))
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, v.method)
"""


def memory() -> None:
    print(f"\n{'vjp steps':>10} {'peak RSS MiB':>13} {'growth over warm-up MiB':>24}")
    peaks = {}
    for steps in (1_000, 1_000_000):
        out = subprocess.run([sys.executable, "-c", CHILD, str(KEPLER), str(steps)],
                             capture_output=True, text=True, check=True).stdout.split()
        base, peak = int(out[0]) / 1024, int(out[1]) / 1024
        peaks[steps] = peak
        print(f"{steps:>10} {peak:>13.1f} {peak - base:>24.2f}   ({out[2]})")
    print(f"ratio 10^6 / 10^3 steps: {peaks[1_000_000] / peaks[1_000]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    cost(args.repeats)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()
