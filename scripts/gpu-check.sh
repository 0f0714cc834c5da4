#!/usr/bin/env bash
# GPU check for tpc: PTX compiled HERE (llvmlite + libdevice), run THERE (numpy + PyCUDA).
#
# 1. On the development machine (venv active), once:
#        scripts/gpu-check.sh prepare
#    fills .gpu-carry/ (keep it git-ignored: the script adds it to .git/info/exclude) with
#      wheels/     ../shared/wheels/cp312/*.whl (PyCUDA 2026.1 for cp312 + its deps, xdsl, lark)
#                  (numpy, pytest, JAX are in the GPU image; other deps would be added with
#                  `pip download --only-binary=:all: --python-version 3.12 --platform
#                  manylinux2014_x86_64`; llvmlite is NOT carried: ~60 MB, over the 64 MiB carry)
#      artifacts/  NAME.ptx + NAME.json (manifest) + NAME.npz (CPU reference trajectory) for
#                  every example, kepler_ensemble.npz (many Kepler orbits, CPU reference),
#                  nbody_forces.npz / nbody_leapfrog.npz (CPU references for the pair_forces
#                  kernel and the device leapfrog; nbody.ptx holds pair_forces),
#                  nbody_blocks.npz (64 small N-body members for block_run, CPU reference),
#                  kepler_kahan.* / nbody_kahan.* (f32 with compensated updates, CPU references
#                  that the GPU must match bitwise)
#    and checks the carry stays under 64 MiB.
# 2. On the GPU machine (device tool: carry [".gpu-carry"], e.g. timeout_s=500):
#        bash scripts/gpu-check.sh
#    installs the wheels into /tmp/site, copies the tpc package into /tmp/site, prints
#    nvidia-smi and versions, runs `pytest -m gpu tests/test_gpu.py` against the precompiled
#    artifacts, then bench/gpu_nbody.py. Logs also go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry

prepare() {
    set -e
    grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude
    rm -rf "$CARRY"; mkdir -p "$CARRY/wheels" "$CARRY/artifacts"
    cp ../shared/wheels/cp312/*.whl "$CARRY/wheels/"
    # The GPU image already has numpy, pytest, JAX and llvmlite (KINDS.md); anything else would
    # be added here with: python -m pip download --no-deps --only-binary=:all: \
    #   --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d "$CARRY/wheels" NAME==VER
    python - "$CARRY/artifacts" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from tpc import api
from tpc.gpu import compile_artifact
from tpc.simulate import load_run_config

out = Path(sys.argv[1])
STEPS, SAVE = 200, 50
# Examples whose own integrator flows parts exactly in ways GPU kernels do not run yet.
GPU_INTEGRATOR = {"outer_solar_system_wh": "leapfrog"}
for ex in sorted(Path("examples").glob("*.ham")):
    sim = api.compile(ex, fold=False, integrator=GPU_INTEGRATOR.get(ex.stem))
    compile_artifact(sim, out / ex.stem)
    cfg = load_run_config(sim.program, sim.system)
    tr = sim.run(cfg.q0, cfg.p0, dt=cfg.dt, steps=STEPS, save_every=SAVE, params=cfg.params,
                 **cfg.inputs)
    inputs = {k: np.asarray(v).tolist() for k, v in cfg.inputs.items()}
    np.savez(out / f"{ex.stem}.npz", q0=np.asarray(cfg.q0, float), p0=np.asarray(cfg.p0, float),
             dt=cfg.dt, steps=STEPS, save_every=SAVE, q=tr.q, p=tr.p, H=tr.H,
             inputs=json.dumps(inputs))
    print("artifact", ex.stem)
# An ensemble of Kepler orbits: eccentricities 0..0.8, per-member mu.
sim = api.compile(Path("examples/kepler.ham"), fold=False)
B, dt, steps, save = 257, 0.01, 400, 100
e = np.linspace(0.0, 0.8, B)
mu = np.linspace(0.5, 1.5, B)
q0 = np.stack([1 - e, 0 * e, 0 * e], 1)
p0 = np.stack([0 * e, np.sqrt(mu * (1 + e) / (1 - e)), 0 * e], 1)
runs = [sim.run(q0[b], p0[b], dt=dt, steps=steps, save_every=save, params={"mu": mu[b]})
        for b in range(B)]
np.savez(out / "kepler_ensemble.npz", q0=q0, p0=p0, mu=mu, dt=dt, steps=steps,
         save_every=save, q=np.stack([r.q for r in runs], 1), p=np.stack([r.p for r in runs], 1),
         H=np.stack([r.H for r in runs], 1))
print("artifact kepler_ensemble")
# pair_forces (nbody.ptx): one gradient at N = 1000 (not a multiple of the block), and a short
# device-leapfrog run at N = 300, both against the CPU.
sim = api.compile(Path("examples/nbody.ham"), fold=False)
rng = np.random.default_rng(7)
n = 1000
q = rng.standard_normal((n, 3)); p = rng.standard_normal((n, 3)); m = rng.random(n) + 0.5
np.savez(out / "nbody_forces.npz", q=q, p=p, m=m, g=sim.gradient(q, p, m=m)[0])
n = 300
q = rng.standard_normal((n, 3)) * 3; p = rng.standard_normal((n, 3)) * 0.1; m = rng.random(n) + 0.5
tr = sim.run(q, p, dt=1e-3, steps=20, save_every=10, m=m)
np.savez(out / "nbody_leapfrog.npz", q0=q, p0=p, m=m, dt=1e-3, steps=20, save_every=10,
         q=tr.q, p=tr.p)
print("artifact nbody_forces, nbody_leapfrog")
# block_run (nbody.ptx): 64 small systems of 20 bodies, one per block, per-member G.
B, n = 64, 20
q = rng.standard_normal((B, n, 3)) * 3; p = rng.standard_normal((B, n, 3)) * 0.1
m = rng.random(n) + 0.5; G = np.linspace(0.5, 1.5, B)
runs = [sim.run(q[b], p[b], dt=1e-3, steps=50, save_every=10, params={"G": G[b]}, m=m)
        for b in range(B)]
np.savez(out / "nbody_blocks.npz", q0=q, p0=p, m=m, G=G, dt=1e-3, steps=50, save_every=10,
         q=np.stack([r.q for r in runs], 1), p=np.stack([r.p for r in runs], 1))
print("artifact nbody_blocks")
# f32 with compensated updates: Kepler ensembles (ensemble_run) and small N-body systems
# (block_run, CPU reference with gather-form forces, the GPU's order). Each reference is the
# unsplit CPU run; the GPU test runs it in two launches, carrying the compensation.
sim = api.compile(Path("examples/kepler.ham"), precision="f32", kahan=True)
compile_artifact(sim, out / "kepler_kahan")
B, dt, steps, split, save = 64, float(np.float32(0.01)), 3000, 1200, 600
e = np.linspace(0.1, 0.7, B)
mu = np.linspace(0.5, 1.5, B).astype(np.float32).astype(float)
q0 = np.stack([1 - e, 0 * e, 0 * e], 1).astype(np.float32).astype(float)
p0 = np.stack([0 * e, np.sqrt(mu * (1 + e) / (1 - e)), 0 * e], 1).astype(np.float32).astype(float)
runs = [sim.run(q0[b], p0[b], dt=dt, steps=steps, save_every=save, params={"mu": mu[b]})
        for b in range(B)]
np.savez(out / "kepler_kahan.npz", q0=q0, p0=p0, mu=mu, dt=dt, steps=steps, split=split,
         save_every=save, q=np.stack([r.q[-1] for r in runs]), p=np.stack([r.p[-1] for r in runs]),
         H=np.array([r.H[-1] for r in runs]),
         kahan_q=np.stack([r.carry["kahan_q"] for r in runs]),
         kahan_p=np.stack([r.carry["kahan_p"] for r in runs]))
sim = api.compile(Path("examples/nbody.ham"), precision="f32", kahan=True, newton3=False)
compile_artifact(sim, out / "nbody_kahan")
B, n = 16, 20
q = rng.standard_normal((B, n, 3)) * 3; p = rng.standard_normal((B, n, 3)) * 0.1
m = (rng.random(n) + 0.5).astype(np.float32).astype(float)
G = np.linspace(0.5, 1.5, B).astype(np.float32).astype(float)
q, p = q.astype(np.float32).astype(float), p.astype(np.float32).astype(float)
runs = [sim.run(q[b], p[b], dt=1e-3, steps=60, save_every=10, params={"G": G[b]}, m=m)
        for b in range(B)]
np.savez(out / "nbody_kahan.npz", q0=q, p0=p, m=m, G=G, dt=1e-3, steps=60, split=20,
         save_every=10, q=np.stack([r.q[-1] for r in runs]), p=np.stack([r.p[-1] for r in runs]),
         kahan_p=np.stack([r.carry["kahan_p"] for r in runs]))
print("artifact kepler_kahan, nbody_kahan")
PY
    size=$(du -sm "$CARRY" | cut -f1)
    echo "carry: ${size} MiB in $CARRY"
    [ "$size" -lt 60 ] || { echo "error: carry too big for a device run"; exit 1; }
}

gpu() {
    LOG=${OUT:-/tmp}/gpu-check.log
    exec > >(tee "$LOG") 2>&1
    export PYTHONUNBUFFERED=1
    [ -d "$CARRY/wheels" ] || { echo "no $CARRY/wheels: run 'scripts/gpu-check.sh prepare' here first"; exit 1; }
    nvidia-smi || echo "nvidia-smi failed"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$CARRY"/wheels/*.whl || exit 1
    # tpc's package layout maps tpc.passes -> passes/ etc.: assemble it in /tmp/site.
    rm -rf /tmp/site/tpc && cp -r tpc /tmp/site/tpc
    for d in dialects passes runtime; do cp -r "$d" "/tmp/site/tpc/$d"; done
    export PYTHONPATH=/tmp/site TPC_GPU_ARTIFACTS=$PWD/$CARRY/artifacts
    python3 - <<'PY'
import sys, numpy
print("python", sys.version.split()[0], "numpy", numpy.__version__)
for mod in ("pycuda", "llvmlite", "jax", "xdsl"):
    try:
        m = __import__(mod); print(mod, getattr(m, "__version__", getattr(m, "VERSION", "?")))
    except Exception as e:
        print(mod, "unavailable:", e)
import pycuda.driver as drv
drv.init(); d = drv.Device(0)
print("device", d.name(), "cc", d.compute_capability())
PY
    python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts=""
    status=$?
    timeout 240 python3 bench/gpu_nbody.py --ptx-dir "$CARRY/artifacts" --sizes 1024,4096,16384,65536,262144
    exit $status
}

case "${1:-gpu}" in
    prepare) prepare ;;
    gpu) gpu ;;
    *) echo "usage: $0 [prepare|gpu]"; exit 2 ;;
esac
