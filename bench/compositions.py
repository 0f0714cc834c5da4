"""Synthesized methods against Yoshida's on Kepler e = 0.6 at equal force evaluations.

    python bench/compositions.py [--evals 3000]

Each method runs 20 periods with a step chosen so that all spend the same number of force
evaluations per period (`--evals`; the scheme's force_evals from the ABI table). Reported: max
relative energy error and final position error against the closed orbit (whole periods), and
the ratio to yoshida4's energy error (the goal for compose(V, T, order = 4, stages = 6) is a
ratio <= 0.1).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import tpc

KEPLER = """
system Kepler {
    param mu = 1.0
    state q[3], p[3]
    H = dot(p, p) / 2 - mu / norm(q)
}
"""
METHODS = ("yoshida4", "compose(order = 4, stages = 5)", "compose(V, T, order = 4, stages = 6)",
           "compose(T, V, order = 4, stages = 6)", "yoshida6", "compose(order = 6, stages = 9)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evals", type=int, default=3000, help="force evaluations per period")
    ap.add_argument("--periods", type=int, default=20)
    args = ap.parse_args()
    e = 0.6
    q0, p0 = [1 - e, 0.0, 0.0], [0.0, math.sqrt((1 + e) / (1 - e)), 0.0]
    rows = []
    for name in METHODS:
        sim = tpc.compile(KEPLER, integrator=name, fold=False)
        per_step = sim.native.abi["scheme"]["force_evals"]
        steps_per_period = max(1, round(args.evals / per_step))
        steps = steps_per_period * args.periods
        traj = sim.run(q0, p0, dt=2 * math.pi / steps_per_period, steps=steps,
                       save_every=max(1, steps // 400))
        rows.append((name, per_step, traj.energy_error(),
                     float(np.linalg.norm(traj.q[-1] - q0))))
    base = rows[0][2]
    print(f"{'method':>40} {'evals/step':>10} {'max |dE/E|':>11} {'|q - q0|':>10} {'dE / yoshida4':>14}")
    for name, per, de, dq in rows:
        print(f"{name:>40} {per:>10} {de:>11.3e} {dq:>10.3e} {de / base:>14.3g}")


if __name__ == "__main__":
    main()
