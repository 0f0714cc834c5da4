"""Start-up time: fresh processes, medians of several runs.

    python bench/startup.py [--repeats 9] [--file examples/kepler.ham]

Three rows, each the time of a whole subprocess (interpreter start included), wall and CPU
(user + system: on a loaded machine the wall time waits for cores, the CPU time much less):
`import tpc`; `tpc run FILE` with a warm compile cache (one untimed run fills it first); and
`tpc run FILE` cold, each run with its own empty TPC_CACHE_DIR. The runs write their output
to a temporary directory and pass --quiet. Python's own start (`python -c pass`) and numpy's
import, which every run needs, are printed as the floor. Bytecode is written (PYTHONDONTWRITEBYTECODE unset) so that only the first,
untimed, run compiles the sources.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--file", default="examples/kepler.ham")
    args = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.npz")
        run = [py, "-m", "tpc.cli", "run", args.file, "-o", out, "--quiet"]
        warm_env = env | {"TPC_CACHE_DIR": str(Path(tmp) / "warm")}
        wall(run, warm_env)  # fills the cache (and writes bytecode)

        def cold() -> tuple[float, float]:
            with tempfile.TemporaryDirectory(dir=tmp) as empty:
                return wall(run, env | {"TPC_CACHE_DIR": empty})

        rows = [
            ("python -c pass", lambda: wall([py, "-c", "pass"], env)),
            ("python -c 'import numpy'", lambda: wall([py, "-c", "import numpy"], env)),
            ("import tpc", lambda: wall([py, "-c", "import tpc"], env)),
            (f"tpc run {args.file} (warm cache)", lambda: wall(run, warm_env)),
            (f"tpc run {args.file} (cold cache)", cold),
        ]
        width = max(len(name) for name, _ in rows)
        print(f"{'':<{width}}  wall: median     min   cpu: median     min  (of {args.repeats})")
        for name, fn in rows:
            runs = [fn() for _ in range(args.repeats)]
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            print(f"{name:<{width}}  {statistics.median(walls):10.3f} s {min(walls):6.3f} s"
                  f"  {statistics.median(cpus):10.3f} s {min(cpus):6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
