"""GPU N-body throughput: pair interactions per second, fraction of peak, ratio vs JAX jit.

    python bench/gpu_nbody.py [--sizes 1024,4096,...] [--ptx-dir .gpu-carry/artifacts]

Measures, on the same GPU, one gravitational N-body force evaluation (all N^2 - N pair
interactions, f64, and f32 where the code exists) for
  * tpc's `pair_forces` kernel (gather form, shared-memory tiles of `--block` rows, f64 only:
    the f32 rows read n/a for tpc) from the precompiled nbody.ptx, timed with CUDA events
    around the kernel alone (the best of a few launches; one launch above 65536 bodies);
  * a JAX jit reference (the usual all-pairs broadcast formulation; skipped above 32768
    bodies, where its N^2 * 3 intermediates do not fit).
Flop accounting: 20 flops per pair interaction (the conventional N-body figure; tpc's kernel
does one sqrt and one division per pair, each worth several flops, so the % of peak is the
conventional figure, not the issued-instruction rate). tpc/jax: tpc's pairs/s over JAX's
(> 1: tpc is faster), both f64, same GPU, same run.
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
    """A CudaSimulation with the pair_forces kernel from the precompiled nbody PTX, else
    (None, why)."""
    if ptx_dir is None or not (ptx_dir / "nbody.ptx").exists():
        return None, "no precompiled nbody.ptx (run scripts/gpu-check.sh prepare)"
    if ".entry pair_forces(" not in (ptx_dir / "nbody.ptx").read_text():
        return None, "nbody.ptx has no pair_forces kernel (recompile it)"
    try:
        from tpc.runtime.cuda import CudaSimulation

        return CudaSimulation.from_artifact(ptx_dir / "nbody.ptx"), ""
    except Exception as e:  # tpc runtime not importable, module load failure
        return None, f"cannot load nbody.ptx: {e}"


def tpc_bench(gpu, n: int, block: int) -> float:
    """Seconds for one pair_forces launch over n bodies (kernel only)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((n, 3))
    m = rng.random(n) + 0.5
    reps = 1 if n > 65536 else 3
    return min(gpu.pair_forces(q, block=block, return_time=True, m=m)[1] for _ in range(reps))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024,4096,16384,65536,262144")
    ap.add_argument("--ptx-dir", default=".gpu-carry/artifacts")
    ap.add_argument("--block", type=int, default=128, help="pair_forces block (128 or 256)")
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
    gpu, why = tpc_pair_forces(Path(args.ptx_dir))
    if gpu is None:
        print(f"tpc pair_forces: n/a ({why})")
    else:
        print(f"tpc pair_forces: block {args.block}, f64")
    print(f"{'N':>8} {'dtype':>6} {'jax s':>10} {'jax pairs/s':>12} {'jax %peak':>9} "
          f"{'tpc s':>10} {'tpc pairs/s':>12} {'tpc %peak':>9} {'tpc/jax':>8}")

    def pct(rate: float, k: int) -> str:
        return f"{rate * FLOPS_PER_PAIR / (peaks[k] * 1e12) * 100:>8.2f}%" if peaks else \
            f"{'?':>9}"

    for n in (int(s) for s in args.sizes.split(",")):
        for dtype, label, k in ((np.float64, "f64", 1), (np.float32, "f32", 0)):
            pairs = n * (n - 1)
            t = jax_bench(n, dtype)
            tt = tpc_bench(gpu, n, args.block) if gpu is not None and label == "f64" else None
            jax_cols = (f"{t:>10.3e} {pairs / t:>12.3e} {pct(pairs / t, k)}" if t
                        else f"{'n/a':>10} {'n/a':>12} {'n/a':>9}")
            tpc_cols = (f"{tt:>10.3e} {pairs / tt:>12.3e} {pct(pairs / tt, k)}" if tt
                        else f"{'n/a':>10} {'n/a':>12} {'n/a':>9}")
            ratio = f"{t / tt:>8.2f}" if t and tt else f"{'n/a':>8}"
            print(f"{n:>8} {label:>6} {jax_cols} {tpc_cols} {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
