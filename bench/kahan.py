"""Compensated updates (--kahan): what they cost per step and what they buy in float32.

    python bench/kahan.py [--repeats 7] [--copies 32] [--max-steps 1e7] [--skip-accuracy]

Cost: the time per step of f32+Kahan against plain f32 (and f64, f64+Kahan) on Kepler and on
N-body (N = 256, 1024), medians over repeats of a whole run, the variants interleaved in each
repeat so that they see the same machine; the ratio column is the variant's time / plain f32's.

Accuracy (Kepler, e = 0.5, dt = 2 pi / 1000, `--copies` orbits rotated to random
orientations and rounded to f32): the round-off part of the energy error, per copy
|<H>(run) - <H>(twin)| / |H0| with <H> the mean energy over the last orbit (every step) and
the twin a run of higher precision from the same start (f64 for f32 runs, f64+Kahan for f64
runs), so that leapfrog's own O(dt^2) oscillation cancels; median and RMS over the copies.
Brouwer's law: the exponent of RMS ~ n^a fitted over n = 1e4 ... --max-steps. A C loop adds
the part of the f32 error that comes from the f32 forces, which Kahan cannot compensate:
float64 state and updates with the force evaluated in float32.

Chain: the harmonic chain of examples/harmonic_chain.ham (N = 16, random start), 10^6 steps,
max |z - z_exact| / max |z_exact| against the exact leapfrog map (the one-step matrix raised
to the power in float64), plain f32 and f32+Kahan, at several dt.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tpc

ROOT = Path(__file__).resolve().parents[1]
KEPLER = ROOT / "examples" / "kepler.ham"
NBODY = ROOT / "examples" / "nbody.ham"
CHAIN = ROOT / "examples" / "harmonic_chain.ham"
VARIANTS = {"f32": ("f32", False), "f32+kahan": ("f32", True), "f64": ("f64", False),
            "f64+kahan": ("f64", True)}
ECC, ORBIT = 0.5, 1000
DT = float(np.float32(2 * np.pi / ORBIT))


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


# ------------------------------------------------------------------------------- cost


def cost(repeats: int) -> None:
    cases = []
    q = f32([1 - ECC, 0, 0])
    p = f32([0, np.sqrt((1 + ECC) / (1 - ECC)), 0])
    cases.append(("Kepler", KEPLER, q, p, {}, 2_000_000))
    for n in (256, 1024):
        rng = np.random.default_rng(n)
        qn = rng.normal(size=(n, 3)) * (1.0 + 0.1 * n) ** (1 / 3)
        m = rng.uniform(0.5, 1.5, n) / n
        pn = rng.normal(size=(n, 3)) * m[:, None] * 0.1
        cases.append((f"N-body N={n}", NBODY, f32(qn), f32(pn), {"m": f32(m)},
                      max(4, int(3e7 / (n * n / 2)))))
    print("time per step (median of", repeats, "interleaved repeats); ratio = variant / f32")
    print(f"{'case':<16} {'steps':>8} " + " ".join(f"{v:>10}" for v in VARIANTS)
          + "  " + " ".join(f"{v + '/f32':>14}" for v in VARIANTS if v != "f32"))
    for name, path, q0, p0, inputs, steps in cases:
        sims = {v: tpc.compile(path, precision=pr, kahan=ka, fold=False)
                for v, (pr, ka) in VARIANTS.items()}
        for sim in sims.values():
            sim.run(q0, p0, dt=1e-3, steps=2, **inputs)  # compile outside the timings
        times: dict[str, list[float]] = {v: [] for v in sims}
        for _ in range(repeats):
            for v, sim in sims.items():
                t0 = time.perf_counter()
                sim.run(q0, p0, dt=1e-3, steps=steps, save_every=steps, **inputs)
                times[v].append((time.perf_counter() - t0) / steps)
        med = {v: statistics.median(t) for v, t in times.items()}
        unit, scale = ("ns", 1e9) if med["f32"] < 1e-5 else ("us", 1e6)
        print(f"{name:<16} {steps:>8} "
              + " ".join(f"{med[v] * scale:>7.1f} {unit}" for v in sims) + "  "
              + " ".join(f"{med[v] / med['f32']:>14.3f}" for v in sims if v != "f32"))
        sys.stdout.flush()


# --------------------------------------------------------------------------- accuracy


def copies(count: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    q = np.array([1 - ECC, 0.0, 0.0])
    p = np.array([0.0, np.sqrt((1 + ECC) / (1 - ECC)), 0.0])
    out = []
    for _ in range(count):
        a, b = rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        out.append((f32(rx @ rz @ q), f32(rx @ rz @ p)))
    return out


def kepler_h(q, p) -> np.ndarray:
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    return 0.5 * np.sum(p * p, -1) - 1.0 / np.linalg.norm(q, axis=-1)


def last_orbit_energy(sim, q0, p0, steps: int) -> float:
    a = sim.run(q0, p0, dt=DT, steps=steps - ORBIT, save_every=steps - ORBIT)
    b = sim.run(a.q[-1], a.p[-1], dt=DT, steps=ORBIT, save_every=1, carry=a.carry)
    return float(np.mean(kepler_h(b.q[1:], b.p[1:])))


C_SOURCE = r"""
#include <math.h>
/* Kepler KDK leapfrog (FSAL), float64 state and updates, the force in float32; the mean
   energy (float64) over the last `orbit` steps. */
static void force(const double *q, double *g) {
    float x = (float)q[0], y = (float)q[1], z = (float)q[2];
    float r2 = x * x + y * y + z * z, r = sqrtf(r2), s = 1.0f / (r2 * r);
    g[0] = x * s; g[1] = y * s; g[2] = z * s;
}
double mixed(const double *q0, const double *p0, double dt, long n, long orbit) {
    double q[3], p[3], g[3], acc = 0;
    for (int k = 0; k < 3; k++) { q[k] = q0[k]; p[k] = p0[k]; }
    force(q, g);
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) p[k] -= 0.5 * dt * g[k];
        for (int k = 0; k < 3; k++) q[k] += dt * p[k];
        force(q, g);
        for (int k = 0; k < 3; k++) p[k] -= 0.5 * dt * g[k];
        if (i >= n - orbit)
            acc += 0.5 * (p[0]*p[0] + p[1]*p[1] + p[2]*p[2])
                   - 1.0 / sqrt(q[0]*q[0] + q[1]*q[1] + q[2]*q[2]);
    }
    return acc / orbit;
}
"""


def c_mixed(workdir: Path):
    src, lib = workdir / "mixed.c", workdir / "libmixed.so"
    src.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib),
                    str(src), "-lm"], check=True)
    fn = ctypes.CDLL(str(lib)).mixed
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double, ctypes.c_long,
                   ctypes.c_long]
    fn.restype = ctypes.c_double

    def energy(q0, p0, steps: int) -> float:
        q0, p0 = np.ascontiguousarray(q0, np.float64), np.ascontiguousarray(p0, np.float64)
        return fn(q0.ctypes.data, p0.ctypes.data, DT, steps, ORBIT)

    return energy


def accuracy(count: int, max_steps: int) -> None:
    sims = {v: tpc.compile(KEPLER, precision=pr, kahan=ka) for v, (pr, ka) in VARIANTS.items()}
    twin = {"f32": "f64", "f32+kahan": "f64", "f64": "f64+kahan"}
    orbits = copies(count)
    ns = [n for n in (10**4, 3 * 10**4, 10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7)
          if n <= max_steps]
    with tempfile.TemporaryDirectory() as tmp:
        mixed = c_mixed(Path(tmp))
        print(f"\nKepler e = {ECC}, dt = 2 pi / {ORBIT}: round-off part of the energy error, "
              f"median and RMS over {count} rotated copies")
        cols = [*twin, "f64 state, f32 force (C)"]
        print(f"{'steps':>9} " + " ".join(f"{c:>26}" for c in cols))
        table: dict[str, list[float]] = {c: [] for c in cols}
        for n in ns:
            t0 = time.perf_counter()
            ref = {v: [last_orbit_energy(sims[v], q, p, n) for q, p in orbits]
                   for v in ("f64", "f64+kahan")}
            row = []
            for c in cols:
                if c in twin:
                    got = [last_orbit_energy(sims[c], q, p, n) for q, p in orbits]
                    want = ref[twin[c]]
                else:
                    got = [mixed(q, p, n) for q, p in orbits]
                    want = ref["f64"]
                err = np.array([abs(g - w) / abs(kepler_h(q, p))
                                for g, w, (q, p) in zip(got, want, orbits)])
                table[c].append(float(np.sqrt(np.mean(err**2))))
                row.append(f"{np.median(err):>12.2e} {table[c][-1]:>12.2e} ")
            print(f"{n:>9} " + " ".join(row) + f"  ({time.perf_counter() - t0:.0f} s)")
            sys.stdout.flush()
    if len(ns) >= 2:
        print("Brouwer exponent a (RMS ~ n^a, least squares over "
              f"{ns[0]:.0e} .. {ns[-1]:.0e} steps): " + ", ".join(
                  f"{c} {np.polyfit(np.log(ns), np.log(table[c]), 1)[0]:.2f}" for c in cols))


def chain(steps: int = 10**6) -> None:
    n = 16
    rng = np.random.default_rng(0)
    q0, p0 = f32(rng.standard_normal(n) / 2), f32(rng.standard_normal(n) / 2)
    k = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    sims = {ka: tpc.compile(CHAIN, precision="f32", kahan=ka, fold=False) for ka in (False, True)}
    print(f"\nharmonic chain N = {n}, {steps} steps: max |z - z_exact| / max |z_exact|")
    print(f"{'dt':>7} {'f32':>10} {'f32+kahan':>10} {'ratio':>7}")
    for dt in (0.01, 0.02, 0.03, 0.04, 0.05, 0.1):
        dt = float(np.float32(dt))
        eye, zero = np.eye(n), np.zeros((n, n))
        step = (np.block([[eye, zero], [-dt / 2 * k, eye]]) @ np.block([[eye, dt * eye],
                                                                        [zero, eye]])
                @ np.block([[eye, zero], [-dt / 2 * k, eye]]))
        exact = np.linalg.matrix_power(step, steps) @ np.concatenate([q0, p0])
        err = []
        for sim in sims.values():
            tr = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps)
            z = np.concatenate([tr.q[-1], tr.p[-1]]).astype(np.float64)
            err.append(np.max(np.abs(z - exact)) / np.max(np.abs(exact)))
        print(f"{dt:>7.3f} {err[0]:>10.2e} {err[1]:>10.2e} {err[0] / err[1]:>7.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--copies", type=int, default=32)
    ap.add_argument("--max-steps", type=float, default=1e7)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args(argv)
    cost(args.repeats)
    if not args.skip_accuracy:
        accuracy(args.copies, int(args.max_steps))
        chain()
    return 0


if __name__ == "__main__":
    sys.exit(main())
