"""The outer solar system by the Wisdom-Holman map: tpc's leapfrog(Hkep, Hjump, Hint) against
REBOUND's WHFast in democratic heliocentric coordinates (the same map and ordering).

    python bench/wisdom_holman.py [--steps 1000000] [--repeats 3]

Both run `steps` steps of 10 days from examples/outer_solar_system_wh.ham's initial data, with
output only at the end. Reported: median wall time per step over repeats, the maximum relative
energy error (both evaluated by tpc's H in democratic heliocentric coordinates at 100
snapshots), and the ratios tpc / REBOUND (time: above 1 means REBOUND is faster; error: the
goal is <= 1.1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import tpc
from tpc.coordinates import from_democratic_heliocentric, to_democratic_heliocentric

EXAMPLE = Path(__file__).parent.parent / "examples" / "outer_solar_system_wh.ham"
G, M0, DT = 2.95912208286e-4, 1.00000597682, 10.0


def rebound_run(m, q, p, steps: int, snaps: int):
    import rebound

    x, v = from_democratic_heliocentric(M0, m, q, p)
    sim = rebound.Simulation()
    sim.G = G
    masses = np.concatenate([[M0], m])
    for mi, xi, vi in zip(masses, x, v):
        sim.add(m=mi, x=xi[0], y=xi[1], z=xi[2], vx=vi[0], vy=vi[1], vz=vi[2])
    sim.integrator = "whfast"
    sim.integrator.coordinates = "democraticheliocentric"
    sim.dt = DT
    states = []
    t0 = time.perf_counter()
    for k in range(1, snaps + 1):
        sim.integrate(k * steps // snaps * DT, exact_finish_time=0)
        xs = np.array([[b.x, b.y, b.z] for b in sim.particles])
        vs = np.array([[b.vx, b.vy, b.vz] for b in sim.particles])
        states.append(to_democratic_heliocentric(masses, xs, vs))
    return time.perf_counter() - t0, states


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10**6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = json.loads(EXAMPLE.with_suffix(".json").read_text())
    m, q, p = (np.array(data[k]) for k in ("m", "q", "p"))
    source = EXAMPLE.read_text().split("simulate")[0]
    sim = tpc.compile(source, integrator="leapfrog(Hkep, Hjump, Hint)", fold=False)
    snaps = 100
    save = args.steps // snaps
    ours, theirs = [], []
    for _ in range(args.repeats):
        traj = sim.run(q, p, dt=DT, steps=args.steps, save_every=save, m=m)
        ours.append(traj.wall_time)
        t, states = rebound_run(m, q, p, args.steps, snaps)
        theirs.append(t)
    h0 = sim.energy(q, p, m=m)
    e_ours = traj.energy_error()
    e_theirs = max(abs(sim.energy(qq, pp, m=m) - h0) / abs(h0) for qq, pp in states)
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"{'':>10} {'ns/step':>10} {'max |dE/E|':>12}")
    print(f"{'tpc':>10} {t_ours / args.steps * 1e9:>10.1f} {e_ours:>12.3e}")
    print(f"{'REBOUND':>10} {t_theirs / args.steps * 1e9:>10.1f} {e_theirs:>12.3e}")
    print(f"ratios tpc/REBOUND: time {t_ours / t_theirs:.3g}, energy error "
          f"{e_ours / e_theirs:.3g}")


if __name__ == "__main__":
    main()
