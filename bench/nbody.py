"""N-body leapfrog: tpc against a plain numpy loop, a gcc -O3 C loop and REBOUND.

    python bench/nbody.py [--sizes 2,8,64,256,1024] [--repeats 5] [--pairs 2e7]

Every contender integrates the same gravitational N-body problem (G = 1, random-ish masses,
positions and momenta from a fixed seed) with the kick-drift-kick leapfrog, one force evaluation
per step (the first-same-as-last fusion tpc does). Timings are medians over repeats of a whole
`steps`-step run, reported in nanoseconds per pair interaction: time / (steps * N (N - 1) / 2).
The ratio columns are baseline time / tpc time (above 1: tpc is faster).

REBOUND (`pip install rebound`) runs its own leapfrog (drift-kick-drift) with `gravity = "basic"`
(the direct O(N^2) sum); its column is skipped when the package is missing.
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

NBODY = """
system NBody {
    param G = 1.0
    input m[N]
    state q[N, 3], p[N, 3]
    let T = sum(i: dot(p[i], p[i]) / (2 * m[i]))
    let V = -sum(i < j: G * m[i] * m[j] / norm(q[i] - q[j]))
    H = T + V
}
"""

C_SOURCE = r"""
#include <math.h>

static void force(long n, const double *q, const double *m, double G, double *f) {
    for (long k = 0; k < 3 * n; k++) f[k] = 0.0;
    for (long i = 0; i < n; i++) {
        for (long j = i + 1; j < n; j++) {
            double dx = q[3*i] - q[3*j], dy = q[3*i+1] - q[3*j+1], dz = q[3*i+2] - q[3*j+2];
            double r2 = dx*dx + dy*dy + dz*dz;
            double r = sqrt(r2);
            double s = G * m[i] * m[j] / (r2 * r);
            f[3*i] -= s * dx; f[3*i+1] -= s * dy; f[3*i+2] -= s * dz;
            f[3*j] += s * dx; f[3*j+1] += s * dy; f[3*j+2] += s * dz;
        }
    }
}

/* Kick-drift-kick leapfrog with the closing and opening half kicks fused: one force per step.
   f is scratch of 3n doubles. */
void leapfrog(long n, double *q, double *p, const double *m, double G, double dt, long steps,
              double *f) {
    force(n, q, m, G, f);
    for (long s = 0; s < steps; s++) {
        double c = (s == 0) ? 0.5 * dt : dt;
        for (long k = 0; k < 3 * n; k++) p[k] += c * f[k];
        for (long i = 0; i < n; i++)
            for (long d = 0; d < 3; d++) q[3*i+d] += dt * p[3*i+d] / m[i];
        force(n, q, m, G, f);
    }
    for (long k = 0; k < 3 * n; k++) p[k] += 0.5 * dt * f[k];
}
"""


def initial_state(n: int, seed: int = 0):
    """A cluster: positions in a unit ball scaled with N, small random momenta, masses ~1/N."""
    rng = np.random.default_rng(seed + n)
    q = rng.normal(size=(n, 3)) * (1.0 + 0.1 * n) ** (1 / 3)
    m = rng.uniform(0.5, 1.5, n) / n
    p = rng.normal(size=(n, 3)) * m[:, None] * 0.1
    return q, p, m


# ------------------------------------------------------------------------- contenders


def numpy_leapfrog(q, p, m, dt, steps, G=1.0):
    q, p = q.copy(), p.copy()
    mm = G * m[:, None] * m[None, :]

    def force(q):
        d = q[:, None, :] - q[None, :, :]
        r2 = np.einsum("ijk,ijk->ij", d, d)
        np.fill_diagonal(r2, 1.0)
        s = mm / (r2 * np.sqrt(r2))
        np.fill_diagonal(s, 0.0)
        return -np.einsum("ij,ijk->ik", s, d)

    f = force(q)
    for k in range(steps):
        p += (0.5 * dt if k == 0 else dt) * f
        q += dt * p / m[:, None]
        f = force(q)
    p += 0.5 * dt * f
    return q, p


class CLoop:
    def __init__(self, workdir: Path):
        src = workdir / "nbody.c"
        lib = workdir / "libnbody.so"
        src.write_text(C_SOURCE)
        subprocess.run(["gcc", "-O3", "-march=native", "-shared", "-fPIC", "-o", str(lib),
                        str(src), "-lm"], check=True)
        self.lib = ctypes.CDLL(str(lib))
        fn = self.lib.leapfrog
        ptr = ctypes.c_void_p
        fn.argtypes = [ctypes.c_long, ptr, ptr, ptr, ctypes.c_double, ctypes.c_double,
                       ctypes.c_long, ptr]
        fn.restype = None
        self.fn = fn

    def run(self, q, p, m, dt, steps):
        q, p = np.ascontiguousarray(q).copy(), np.ascontiguousarray(p).copy()
        m = np.ascontiguousarray(m)
        f = np.empty_like(q)
        self.fn(len(m), q.ctypes.data, p.ctypes.data, m.ctypes.data, 1.0, dt, steps,
                f.ctypes.data)
        return q, p


def rebound_runner():
    try:
        import rebound
    except ImportError:
        return None

    def run(q, p, m, dt, steps):
        sim = rebound.Simulation()
        sim.G = 1.0
        sim.integrator = "leapfrog"
        sim.gravity = "basic"
        sim.dt = dt
        v = p / m[:, None]
        for i in range(len(m)):
            sim.add(m=m[i], x=q[i, 0], y=q[i, 1], z=q[i, 2], vx=v[i, 0], vy=v[i, 1], vz=v[i, 2])
        t0 = time.perf_counter()
        sim.steps(steps)
        elapsed = time.perf_counter() - t0
        out_q = np.array([[pt.x, pt.y, pt.z] for pt in sim.particles])
        out_p = np.array([[pt.vx, pt.vy, pt.vz] for pt in sim.particles]) * m[:, None]
        return out_q, out_p, elapsed

    return run


# ------------------------------------------------------------------------------ timing


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        # a contender may report its own (setup-free) time as the last element
        if isinstance(out, tuple) and len(out) == 3:
            elapsed = out[2]
        times.append(elapsed)
    return statistics.median(times)


def steps_for(n: int, pair_budget: float, cap: int) -> int:
    pairs = n * (n - 1) / 2
    return int(max(2, min(cap, pair_budget / pairs)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,8,64,256,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=float, default=2e7,
                    help="pair interactions per timed run of the compiled contenders")
    ap.add_argument("--dt", type=float, default=1e-3)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    sim = tpc.compile(NBODY, integrator="leapfrog", fold=False)
    t0 = time.perf_counter()
    q, p, m = initial_state(4)
    sim.run(q, p, dt=args.dt, steps=1, m=m)  # JIT (or cache hit) outside the timings
    print(f"tpc compile + load: {time.perf_counter() - t0:.2f} s "
          f"({'cache hit' if sim.cache_hit else 'cold'})")

    rebound_run = rebound_runner()
    if rebound_run is None:
        print("rebound not installed: its column is skipped (pip install rebound)")
    with tempfile.TemporaryDirectory() as tmp:
        c = CLoop(Path(tmp))
        rows = []
        for n in sizes:
            q, p, m = initial_state(n)
            steps = steps_for(n, args.pairs, 200_000)
            np_steps = steps_for(n, args.pairs / 20, 2_000)
            pairs = n * (n - 1) / 2

            def tpc_run(q=q, p=p, m=m, steps=steps):
                return sim.run(q, p, dt=args.dt, steps=steps, save_every=steps, m=m)

            # correctness: all contenders agree on a short run
            short = min(steps, 50)
            ref_q, ref_p = numpy_leapfrog(q, p, m, args.dt, short)
            tr = sim.run(q, p, dt=args.dt, steps=short, save_every=short, m=m)
            c_q, _ = c.run(q, p, m, args.dt, short)
            scale = np.abs(ref_q).max()
            agree = max(np.abs(tr.q[-1] - ref_q).max(), np.abs(c_q - ref_q).max()) / scale

            t_tpc = median_time(tpc_run, args.repeats) / (steps * pairs)
            t_c = median_time(lambda q=q, p=p, m=m, s=steps: c.run(q, p, m, args.dt, s),
                              args.repeats) / (steps * pairs)
            t_np = median_time(lambda q=q, p=p, m=m, s=np_steps: numpy_leapfrog(q, p, m, args.dt, s),
                               max(1, args.repeats // 2)) / (np_steps * pairs)
            t_rb = None
            if rebound_run is not None:
                t_rb = median_time(lambda q=q, p=p, m=m, s=steps: rebound_run(q, p, m, args.dt, s),
                                   args.repeats) / (steps * pairs)
                rb_q, _, _ = rebound_run(q, p, m, args.dt, short)
                # REBOUND is drift-kick-drift: a different (also 2nd-order) leapfrog
                rb_diff = np.abs(rb_q - ref_q).max() / scale
            else:
                rb_diff = float("nan")
            rows.append((n, steps, t_tpc, t_c, t_np, t_rb, agree, rb_diff))
            sys.stdout.flush()

    ns = 1e9
    has_rb = rebound_run is not None
    head = (f"{'N':>5} {'steps':>7} {'tpc':>8} {'gcc -O3':>8} {'numpy':>9}"
            + (f" {'rebound':>8}" if has_rb else "")
            + f" | {'C/tpc':>6} {'np/tpc':>7}" + (f" {'rb/tpc':>7}" if has_rb else "")
            + f" | {'|tpc,C - np|':>12}" + (f" {'|rb - np|':>9}" if has_rb else ""))
    print("\nns per pair interaction (median); ratios = baseline time / tpc time")
    print(head)
    print("-" * len(head))
    for n, steps, t_tpc, t_c, t_np, t_rb, agree, rb_diff in rows:
        line = f"{n:>5} {steps:>7} {t_tpc * ns:>8.2f} {t_c * ns:>8.2f} {t_np * ns:>9.1f}"
        if has_rb:
            line += f" {t_rb * ns:>8.2f}"
        line += f" | {t_c / t_tpc:>6.2f} {t_np / t_tpc:>7.1f}"
        if has_rb:
            line += f" {t_rb / t_tpc:>7.2f}"
        line += f" | {agree:>12.1e}"
        if has_rb:
            line += f" {rb_diff:>9.1e}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
