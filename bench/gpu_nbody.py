"""GPU N-body throughput: pair interactions per second, fraction of peak, ratio vs JAX jit.

    python bench/gpu_nbody.py [--sizes 1024,4096,...] [--ptx-dir .gpu-carry/artifacts]

Measures, on the same GPU, one gravitational N-body force evaluation (all N^2 - N pair
interactions, f64, and f32 where the code exists) for
  * tpc's `pair_forces` kernel (gather form, shared-memory tiles) when the compiled PTX
    holds one -- the sym-gpu-kernels pass does not generate it yet, so this column reads
    "n/a" and says why;
  * a JAX jit reference (the usual all-pairs broadcast formulation).
Flop accounting: 20 flops per pair interaction (the conventional N-body figure).
Exits 0 with a message when there is no GPU, no PyCUDA or no JAX.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

FLOPS_PER_PAIR = 20
# Vector (non-tensor-core) peaks in TFLOP/s: (fp32, fp64).
PEAKS = {"H100 SXM": (67.0, 34.0), "H100 PCIe": (51.0, 26.0), "H200": (67.0, 34.0),
         "A100": (19.5, 9.7)}


def peak_for(name: str) -> tuple[float, float] | None:
    for key, val in PEAKS.items():
        if all(part in name for part in key.split()):
            return val
    if "H100" in name:
        return PEAKS["H100 SXM"]
    return None


def jax_bench(n: int, dtype, reps: int = 5) -> float | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    if not any(d.platform == "gpu" for d in jax.devices()):
        return None

    @jax.jit
    def forces(q, m):
        d = q[None, :, :] - q[:, None, :]
        r2 = jnp.sum(d * d, axis=-1) + jnp.eye(n, dtype=q.dtype)
        inv = m[None, :] / (r2 * jnp.sqrt(r2))
        inv = inv * (1 - jnp.eye(n, dtype=q.dtype))
        return jnp.sum(d * inv[..., None], axis=1)

    if n > 32768:  # the broadcast form needs N^2 * 3 values: skip where it cannot fit
        return None
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((n, 3)), dtype=dtype)
    m = jnp.asarray(rng.random(n) + 0.5, dtype=dtype)
    forces(q, m).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = forces(q, m)
    out.block_until_ready()
    return (time.perf_counter() - t0) / reps


def tpc_pair_forces(ptx_dir: Path | None):
    """The pair_forces kernel if the precompiled nbody PTX has one, else (None, why)."""
    if ptx_dir is None or not (ptx_dir / "nbody.ptx").exists():
        return None, "no precompiled nbody.ptx (run scripts/gpu-check.sh prepare)"
    if ".entry pair_forces(" not in (ptx_dir / "nbody.ptx").read_text():
        return None, "sym-gpu-kernels does not generate pair_forces yet"
    return (ptx_dir / "nbody.ptx"), ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,4096,16384,65536,262144")
    ap.add_argument("--ptx-dir", default=".gpu-carry/artifacts")
    args = ap.parse_args(argv)
    try:
        import pycuda.driver as drv

        drv.init()
        name = drv.Device(0).name()
    except Exception as e:  # no PyCUDA, no driver, no GPU
        print(f"gpu_nbody: skipped: no usable GPU ({e})")
        return 0
    peaks = peak_for(name)
    print(f"device: {name}; vector peaks (fp32, fp64) TFLOP/s: {peaks}")
    kernel, why = tpc_pair_forces(Path(args.ptx_dir))
    if kernel is None:
        print(f"tpc pair_forces: n/a ({why})")
    print(f"{'N':>8} {'dtype':>6} {'jax s':>10} {'jax pairs/s':>12} {'jax %peak':>9} "
          f"{'tpc pairs/s':>12} {'tpc/jax':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        for dtype, label, k in ((np.float64, "f64", 1), (np.float32, "f32", 0)):
            t = jax_bench(n, dtype)
            pairs = n * (n - 1)
            if t is None:
                print(f"{n:>8} {label:>6} {'n/a':>10}")
                continue
            rate = pairs / t
            frac = (rate * FLOPS_PER_PAIR / (peaks[k] * 1e12) * 100) if peaks else float("nan")
            print(f"{n:>8} {label:>6} {t:>10.3e} {rate:>12.3e} {frac:>8.1f}% {'n/a':>12} "
                  f"{'n/a':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
