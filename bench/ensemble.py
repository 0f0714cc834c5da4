"""Ensembles: how to call B members of one compiled `run`, measured.

    python bench/ensemble.py [--members 4096] [--steps 1000 10000] [--repeats 5]

Kepler members with per-member mu (the README's orbit, each with its own mu and speed). Four
ways to call the same compiled `run` on the same member buffers, medians over repeats of the
whole ensemble, the variants interleaved in each repeat so they see the same machine:

- python-1: one ctypes call per member from Python (what an ensemble was before);
- python-2: the same calls from 2 Python threads (ctypes drops the GIL during each call, but
  builds its arguments under it);
- native-1: one native loop over an argument table (tpc.runtime.members), 1 thread;
- native-2: the same table split over 2 threads (what `sim.run(..., batch=B)` does).

Ratios are against python-1 and, for the speed-up from a second core, native-1 / native-2.
Also `sim.run(batch=B)` end to end (binding and start checks included) against B single
`sim.run` calls.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from tpc.runtime.members import call_rows

import tpc
from tpc.ensemble import bind_members, member_buffers, member_table

ROOT = Path(__file__).resolve().parents[1]
KEPLER = ROOT / "examples" / "kepler.ham"


def members(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.5, 2.0, count)
    q0 = np.tile([0.4, 0.0, 0.0], (count, 1))
    p0 = np.zeros((count, 3))
    p0[:, 1] = np.sqrt(mu / 0.4) * rng.uniform(0.8, 1.2, count)
    return q0, p0, mu


def variants(sim, count: int, steps: int):
    """Zero-argument callables, one per way of calling, each running every member `steps`
    steps from the start (one snapshot at the end)."""
    q0, p0, mu = members(count)
    m = bind_members(sim, q0, p0, {"mu": mu}, {}, count)
    native, n, dt = sim.native, 3, 0.01
    bufs, carried = member_buffers(native, m, dt, None, (3,))
    out_q = np.empty((count, 1, n))
    out_p = np.empty((count, 1, n))
    out_h = np.empty((count, 1))
    named = bufs | carried | {"dt": dt, "nsnap": 1, "stride": steps, "step0": 0,
                              "out_q": out_q, "out_p": out_p, "out_H": out_h}
    start_q, start_p = m.q.copy(), m.p.copy()
    calls = [native.prepare("run", m.env(b), **{k: (v[b] if isinstance(v, np.ndarray) else v)
                                                  for k, v in named.items()})
             for b in range(count)]
    table = member_table(native, "run", m, named)

    def reset():
        m.q[:], m.p[:] = start_q, start_p

    def python(threads: int):
        def run():
            reset()
            cuts = np.linspace(0, count, threads + 1).astype(int)

            def part(lo, hi):
                for c in calls[lo:hi]:
                    c()

            ts = [threading.Thread(target=part, args=(lo, hi)) for lo, hi in
                  zip(cuts[:-1], cuts[1:])]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        return run

    def native_loop(threads: int):
        def run():
            reset()
            call_rows(native, "run", table, threads)
        return run

    return {"python-1": python(1), "python-2": python(2), "native-1": native_loop(1),
            "native-2": native_loop(2)}, lambda: out_q.copy()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=4096)
    ap.add_argument("--steps", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    sim = tpc.compile(KEPLER)
    for steps in args.steps:
        ways, result = variants(sim, args.members, steps)
        outputs = {}
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(args.repeats):
            for name, fn in ways.items():
                times[name].append(timed(fn))
                outputs[name] = result()
        same = all(np.array_equal(outputs[k], outputs["python-1"]) for k in outputs)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{args.members} Kepler members x {steps} steps (all variants bitwise equal: "
              f"{same})")
        for k, v in med.items():
            per = v / (args.members * steps) * 1e9
            print(f"  {k:9s} {v * 1e3:9.2f} ms  {per:6.2f} ns/member-step  "
                  f"python-1/this {med['python-1'] / v:5.2f}")
        print(f"  2 cores vs 1 (native loop): {med['native-1'] / med['native-2']:.2f}x")
    q0, p0, mu = members(args.members)
    steps = args.steps[0]
    batch, single = [], []
    for _ in range(max(1, args.repeats // 2)):
        batch.append(timed(lambda: sim.run(q0, p0, dt=0.01, steps=steps, save_every=steps,
                                           params={"mu": mu}, batch=args.members)))
        single.append(timed(lambda: [sim.run(q0[b], p0[b], dt=0.01, steps=steps,
                                             save_every=steps, params={"mu": mu[b]})
                                     for b in range(args.members)]))
    b, s = statistics.median(batch), statistics.median(single)
    print(f"sim.run(batch={args.members}) {b * 1e3:.1f} ms against {args.members} single runs "
          f"{s * 1e3:.1f} ms: {s / b:.1f}x")


if __name__ == "__main__":
    main()
