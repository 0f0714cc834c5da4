"""NVE molten salt: 512 ions, Ewald electrostatics plus a short-range Born-Mayer-like
repulsion, leapfrog; energy drift and total momentum over the run.

    python bench/molten_salt.py [--steps 2000] [--dt 0.002] [--tolerance 1e-6]

Reduced units (charges +-1, nearest-neighbour distance 1 at the start, masses 1). The
energy drift is reported per 1000 steps as a fraction of |H| (a linear fit of H(t)), and per
"ns-equivalent": with NaCl's scales (r_nn = 2.82 A, e^2 / (4 pi eps0 r_nn) = 5.1 eV,
m = 29 u, so one reduced time unit is t0 = sqrt(m r_nn^2 / E0) = 6.7 fs), 1 ns is 1.5e5
reduced units. The momentum column is the largest |sum p| over the run (zero at the start).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

import tpc

SALT = """
system MoltenSalt {{
    box L = {box}
    cutoff rc = {rc}, shift = energy
    ewald tolerance = {tol}
    input Q[N]
    state q[N, 3], p[N, 3]
    let T = sum(i: dot(p[i], p[i]) / 2)
    let Vc = sum(i < j: Q[i] * Q[j] / norm(q[i] - q[j]))
    let Vrep = sum(i < j: 0.1 * norm(q[i] - q[j])^-8)
    H = T + Vc + Vrep
}}
"""
T0_FS = 6.7  # reduced time unit in femtoseconds (NaCl scales, see the docstring)


def crystal(cells: int, seed: int = 4):
    unit = [(0, 0, 0, 1), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1),
            (1, 0, 0, -1), (0, 1, 0, -1), (0, 0, 1, -1), (1, 1, 1, -1)]
    rows = [(x + 2 * a, y + 2 * b, z + 2 * c, s)
            for a, b, c in itertools.product(range(cells), repeat=3) for x, y, z, s in unit]
    data = np.array(rows, float)
    rng = np.random.default_rng(seed)
    q = data[:, :3] + 0.5 + rng.normal(0, 0.08, (len(data), 3))
    p = rng.normal(0, 0.6, q.shape)  # hot: the lattice melts
    return 2.0 * cells, q, p - p.mean(axis=0), data[:, 3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--dt", type=float, default=0.002)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--cells", type=int, default=4)  # 4^3 cells of 8 ions: 512
    args = ap.parse_args()
    box, q, p, charges = crystal(args.cells)
    sim = tpc.compile(SALT.format(box=box, rc=min(3.5, box / 2), tol=args.tolerance),
                      fold=False)
    t0 = time.perf_counter()
    traj = sim.run(q, p, dt=args.dt, steps=args.steps, save_every=max(1, args.steps // 50),
                   Q=charges)
    wall = time.perf_counter() - t0
    slope = np.polyfit(traj.t, traj.H, 1)[0]
    per_unit = slope / abs(traj.H[0])
    ns_units = 1e6 / T0_FS
    momentum = np.abs(traj.p.reshape(len(traj.t), -1, 3).sum(axis=1)).max()
    print(f"N = {len(q)}, box {box:g}, {args.steps} steps of dt = {args.dt:g}: "
          f"{wall / args.steps * 1e3:.1f} ms/step")
    print(f"  max relative energy error {traj.energy_error():.3e}")
    print(f"  drift {per_unit * 1000 * args.dt:.3e} |H| per 1000 steps, "
          f"{per_unit * ns_units:.3e} |H| per ns-equivalent (linear fit)")
    print(f"  max |total momentum| {momentum:.3e}")
    print(f"  {math.isfinite(traj.H[-1]) and 'finite' or 'NOT finite'} at the end")


if __name__ == "__main__":
    main()
