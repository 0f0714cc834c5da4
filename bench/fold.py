"""Stepped vs folded time loops for a harmonic chain: `python bench/fold.py [--repeats R]`.

For n = 10, 100, 1000 masses: 10^6 and 10^9 leapfrog steps (one snapshot at the end), stepped
(native loop; 10^9 extrapolated from 10^6) against folded (matrix powers), the median of R
repeats, with compilation excluded (warm library). Then 10^9 steps of the 100-mass chain end to
end in a fresh process with an empty TPC_CACHE_DIR: compile + build M + powers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tpc

CHAIN = Path(__file__).resolve().parents[1] / "examples" / "harmonic_chain.ham"
DT = 0.05


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    q0 = np.zeros(n)
    q0[0], q0[-1] = 0.5, -0.5
    return q0, np.zeros(n)


def timed(sim, n: int, steps: int, repeats: int) -> float:
    q0, p0 = data(n)
    sim.run(q0, p0, dt=DT, steps=1, save_every=1)  # load the library first
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim.run(q0, p0, dt=DT, steps=steps, save_every=steps)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


END_TO_END = """
import time, numpy as np
t0 = time.perf_counter()
import tpc
n = 100
q0 = np.zeros(n); q0[0], q0[-1] = 0.5, -0.5
sim = tpc.compile({path!r})
tr = sim.run(q0, np.zeros(n), dt=0.05, steps=10**9, save_every=10**7)
print(time.perf_counter() - t0, sim.compile_time, tr.folded, len(tr.t))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="10,100,1000")
    args = ap.parse_args()
    stepped = tpc.compile(CHAIN, fold=False)
    folded = tpc.compile(CHAIN, fold=True)
    print(f"{'n':>5} {'steps':>6} {'stepped s':>11} {'folded s':>10} {'ratio':>10}")
    for n in map(int, args.sizes.split(",")):
        s6 = timed(stepped, n, 10**6, args.repeats)
        for steps in (10**6, 10**9):
            f = timed(folded, n, steps, args.repeats)
            s = s6 * steps / 10**6
            mark = "*" if steps > 10**6 else " "
            print(f"{n:>5} {f'1e{round(np.log10(steps))}':>6} {s:>10.4g}{mark} {f:>10.4g} "
                  f"{s / f:>10.3g}")
    print("* extrapolated from 10^6 steps")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TPC_CACHE_DIR=cache)
        r = subprocess.run([sys.executable, "-c", END_TO_END.format(path=str(CHAIN))],
                           env=env, capture_output=True, text=True, check=True)
        total, compile_s, was_folded, rows = r.stdout.split()
        print(f"end to end, 100 masses, 10^9 steps, fresh cache: {float(total):.3f} s "
              f"(python start + import + compile {float(compile_s):.3f} s; folded={was_folded}, "
              f"{rows} rows)")


if __name__ == "__main__":
    main()
