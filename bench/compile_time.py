"""Compile time of every example: cold (empty object cache) and warm (cache hit), medians.

    python bench/compile_time.py [--repeats 5] [--integrator NAME]

"compile" is the whole path to a callable native library: `tpc.compile(path)` (parse, IR
generation, the ham passes) plus `Simulation.native` (ham-derive ... LLVM -> machine code, or
the build cache's load on a hit). Cold runs point TPC_CACHE_DIR at a fresh empty directory each
time; warm runs reuse a directory that already holds the library. One untimed compile first
pays the import and LLVM initialization costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tpc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def compile_once(path: Path, integrator: str | None) -> tuple[float, float, bool]:
    t0 = time.perf_counter()
    sim = tpc.compile(str(path), integrator=integrator, fold=False)
    t1 = time.perf_counter()
    _ = sim.native  # the compiled library: lowered and built, or loaded from the cache
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sim.cache_hit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--integrator", default=None,
                    help="override every example's integrator (default: its simulate block)")
    args = ap.parse_args(argv)
    examples = sorted(EXAMPLES.glob("*.ham"))
    saved = os.environ.get("TPC_CACHE_DIR")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as root:
            os.environ["TPC_CACHE_DIR"] = os.path.join(root, "warmup")
            compile_once(examples[0], args.integrator)
            for path in examples:
                cold_front, cold_back, warm_front, warm_back = [], [], [], []
                for r in range(args.repeats):
                    os.environ["TPC_CACHE_DIR"] = os.path.join(root, f"{path.stem}-{r}")
                    f, b, hit = compile_once(path, args.integrator)
                    assert not hit, "a cold compile hit the cache"
                    cold_front.append(f)
                    cold_back.append(b)
                    f, b, hit = compile_once(path, args.integrator)
                    assert hit, "a warm compile missed the cache"
                    warm_front.append(f)
                    warm_back.append(b)
                med = statistics.median
                rows.append((path.stem, med(cold_front), med(cold_back),
                             med(c + d for c, d in zip(cold_front, cold_back)),
                             med(warm_front), med(warm_back),
                             med(c + d for c, d in zip(warm_front, warm_back))))
    finally:
        if saved is None:
            os.environ.pop("TPC_CACHE_DIR", None)
        else:
            os.environ["TPC_CACHE_DIR"] = saved

    ms = 1e3
    print(f"compile time, median of {args.repeats} (ms); front = tpc.compile, "
          "back = native (lowering + LLVM, or the cache load)")
    head = (f"{'example':<15} {'cold front':>10} {'cold back':>10} {'cold total':>10} "
            f"{'warm front':>10} {'warm back':>10} {'warm total':>10} {'speedup':>8}")
    print(head)
    print("-" * len(head))
    for name, cf, cb, ct, wf, wb, wt in rows:
        print(f"{name:<15} {cf * ms:>10.1f} {cb * ms:>10.1f} {ct * ms:>10.1f} "
              f"{wf * ms:>10.1f} {wb * ms:>10.1f} {wt * ms:>10.1f} {ct / wt:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
