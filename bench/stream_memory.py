"""Peak memory of a streamed run against its length: `tpc run -o FILE.h5` holds a window of
snapshots, so a run 100 times longer should need about the same memory.

    python bench/stream_memory.py [--rows 10000 100000 1000000] [--n 64] [--tree DIR]

Each run is `tpc run chain.ham --steps ROWS --save-every 1 -o out.h5` in a fresh process (an
anharmonic chain of n oscillators, 16 n bytes of state per snapshot, every step saved), its
peak resident memory read from the kernel (ru_maxrss of the finished child). The compiled code
is in the cache before the first measured run, so compiling is not measured. `--npz` measures
the same runs written to .npz, which hold the whole trajectory in memory by design; `--tree`
runs the package from another checkout (e.g. an older commit unpacked with `git archive`),
to compare with what it did.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chain(n: int) -> str:
    q = ", ".join(f"{0.1 * ((7 * i) % 11 - 5):.1f}" for i in range(n))
    return ("system Chain {\n    state q[N], p[N]\n"
            "    H = sum(i: p[i]^2 / 2) + sum(i: q[i]^2 / 2 + q[i]^4 / 4)\n}\n"
            "simulate {\n    integrator = leapfrog\n    dt = 0.01\n    steps = 10\n"
            f"    save_every = 1\n    q = [{q}]\n    p = [{', '.join(['0.0'] * n)}]\n}}\n")


def peak(tree: Path, src: Path, rows: int, out: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one `tpc run` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "tpc.cli", "run", str(src), "--steps",
                              str(rows), "--save-every", "1", "--quiet", "-o", str(out)],
                             env=env, cwd=tree)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"tpc run failed (status {status})")
    return usage.ru_maxrss / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose tpc runs")
    ap.add_argument("--npz", action="store_true", help="write .npz instead (in memory)")
    args = ap.parse_args()
    suffix = ".npz" if args.npz else ".h5"
    with tempfile.TemporaryDirectory(prefix="tpc-stream-") as tmp:
        src = Path(tmp) / "chain.ham"
        src.write_text(chain(args.n))
        out = Path(tmp) / f"out{suffix}"
        peak(args.tree, src, 10, out)  # compiles into the cache
        print(f"{args.tree}, n = {args.n}, {suffix}")
        print(f"{'snapshots':>10} {'trajectory MiB':>15} {'peak RSS MiB':>13} {'wall s':>7}")
        for rows in args.rows:
            rss, wall = peak(args.tree, src, rows, out)
            size = (rows + 1) * (16 * args.n + 16) / 2**20
            print(f"{rows + 1:>10} {size:>15.1f} {rss:>13.1f} {wall:>7.2f}")


if __name__ == "__main__":
    main()
