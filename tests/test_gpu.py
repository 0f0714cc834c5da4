"""GPU agreement tests: the `ensemble_run` kernel against the CPU JIT (run with `pytest -m gpu`).

Skipped cleanly where PyCUDA or an NVIDIA GPU is missing. Where llvmlite is missing too (the GPU
machine), precompiled artifacts from TPC_GPU_ARTIFACTS (written by scripts/gpu-check.sh on the
development machine: NAME.ptx + NAME.json + NAME.npz holding the CPU reference) are used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))
STEPS, SAVE = 200, 50
RTOL = 1e-12


def _cuda():
    try:
        from tpc.runtime.cuda import cuda_available
    except ImportError as e:  # tpc itself unavailable (no xdsl on the GPU machine)
        pytest.skip(f"tpc runtime not importable: {e}")
    if not cuda_available():
        pytest.skip("no PyCUDA or no NVIDIA GPU/driver")


def _artifacts() -> Path | None:
    d = os.environ.get("TPC_GPU_ARTIFACTS")
    return Path(d) if d else None


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = np.maximum(np.abs(b), 1e-300)
    err = np.max(np.abs(a - b) / np.maximum(scale, np.max(np.abs(b))))
    return err


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_cpu_gpu_agree(name):
    _cuda()
    from tpc.runtime.cuda import CudaSimulation

    art = _artifacts()
    if art is None or not (art / f"{name}.npz").exists():
        pytest.skip("no precompiled artifact (run scripts/gpu-check.sh prepare)")
    ref = np.load(art / f"{name}.npz")
    gpu = CudaSimulation.from_artifact(art / f"{name}.ptx")
    inputs = json.loads(str(ref["inputs"]))
    res = gpu.run_ensemble(ref["q0"][None], ref["p0"][None], dt=float(ref["dt"]),
                           steps=int(ref["steps"]), save_every=int(ref["save_every"]),
                           **{k: np.asarray(v) for k, v in inputs.items()})
    assert res.status[0] == -1
    assert _close(res.q[:, 0], ref["q"]) < RTOL
    assert _close(res.p[:, 0], ref["p"]) < RTOL
    assert _close(res.H[1:, 0], ref["H"][1:]) < RTOL


def test_kepler_ensemble():
    """Many Kepler orbits at once, each checked against its own CPU run."""
    _cuda()
    from tpc.runtime.cuda import CudaSimulation

    art = _artifacts()
    if art is None or not (art / "kepler_ensemble.npz").exists():
        pytest.skip("no precompiled artifact (run scripts/gpu-check.sh prepare)")
    ref = np.load(art / "kepler_ensemble.npz")
    gpu = CudaSimulation.from_artifact(art / "kepler.ptx")
    res = gpu.run_ensemble(ref["q0"], ref["p0"], dt=float(ref["dt"]), steps=int(ref["steps"]),
                           save_every=int(ref["save_every"]), params={"mu": ref["mu"]})
    assert (res.status == -1).all()
    assert _close(res.q, ref["q"]) < RTOL
    assert _close(res.p, ref["p"]) < RTOL
    assert _close(res.H[1:], ref["H"][1:]) < RTOL


def _nbody_gpu(npz: str):
    _cuda()
    from tpc.runtime.cuda import CudaSimulation

    art = _artifacts()
    if art is None or not (art / npz).exists():
        pytest.skip("no precompiled artifact (run scripts/gpu-check.sh prepare)")
    gpu = CudaSimulation.from_artifact(art / "nbody.ptx")
    if "pair_forces" not in gpu.kernels:
        pytest.fail("nbody.ptx has no pair_forces kernel")
    return gpu, np.load(art / npz)


@pytest.mark.parametrize("block", [128, 256])
def test_pair_forces_matches_cpu_gradient(block):
    """pair_forces (gather form, shared-memory tiles) against the CPU's scatter-form grad_q,
    at an N that is not a multiple of the block (partial last tile, idle threads)."""
    gpu, ref = _nbody_gpu("nbody_forces.npz")
    g = gpu.pair_forces(ref["q"], ref["p"], block=block, m=ref["m"])
    assert _close(g, ref["g"]) < RTOL


def test_block_run_matches_cpu_runs():
    """block_run (one small N-body system per thread block, the whole time loop in one
    launch) against each member's CPU run, with per-member G."""
    gpu, ref = _nbody_gpu("nbody_blocks.npz")
    if "block_run" not in gpu.kernels:
        pytest.fail("nbody.ptx has no block_run kernel")
    res = gpu.run_blocks(ref["q0"], ref["p0"], dt=float(ref["dt"]), steps=int(ref["steps"]),
                         save_every=int(ref["save_every"]), params={"G": ref["G"]}, m=ref["m"])
    assert (res.status == -1).all()
    assert _close(res.q, ref["q"]) < RTOL
    assert _close(res.p, ref["p"]) < RTOL


def _kahan_gpu(name: str):
    _cuda()
    from tpc.runtime.cuda import CudaSimulation

    art = _artifacts()
    if art is None or not (art / f"{name}_kahan.npz").exists():
        pytest.skip("no precompiled artifact (run scripts/gpu-check.sh prepare)")
    return (CudaSimulation.from_artifact(art / f"{name}_kahan.ptx"),
            np.load(art / f"{name}_kahan.npz"))


def _in_two_launches(run, ref, **kw):
    """The run as two calls, the second continuing from the first's state and carry."""
    first = int(ref["split"])
    a = run(ref["q0"], ref["p0"], dt=float(ref["dt"]), steps=first,
            save_every=int(ref["save_every"]), **kw)
    b = run(a.q[-1], a.p[-1], dt=float(ref["dt"]), steps=int(ref["steps"]) - first,
            save_every=int(ref["save_every"]), carry=a.carry, **kw)
    return a, b


def test_f32_kahan_ensemble_matches_cpu_bitwise():
    """ensemble_run in f32 with compensated updates runs the very `run` code of the CPU (same
    operations, same order, correctly rounded sqrt and division, no contraction): every
    member's state and compensation equal its CPU run bit for bit, the run split in two
    launches with the compensation carried on the device's output."""
    gpu, ref = _kahan_gpu("kepler")
    assert gpu.manifest.carry == ["kahan_q", "kahan_p"] and gpu.dtype == np.float32
    a, b = _in_two_launches(gpu.run_ensemble, ref, params={"mu": ref["mu"]})
    assert (a.status == -1).all() and (b.status == -1).all()
    assert np.array_equal(b.q[-1], ref["q"]) and np.array_equal(b.p[-1], ref["p"])
    assert np.array_equal(b.carry["kahan_q"], ref["kahan_q"])
    assert np.array_equal(b.carry["kahan_p"], ref["kahan_p"])
    assert _close(b.H[-1], ref["H"]) < 1e-15  # f64 energy of the same f32 state


def test_f32_kahan_block_run_matches_cpu_bitwise():
    """block_run in f32 with compensated updates against the CPU run with gather-form forces
    (--no-newton3): the tiles visit j in the CPU loop's order, so the sums match bitwise."""
    gpu, ref = _kahan_gpu("nbody")
    if "block_run" not in gpu.kernels:
        pytest.fail("nbody_kahan.ptx has no block_run kernel")
    _, b = _in_two_launches(gpu.run_blocks, ref, params={"G": ref["G"]}, m=ref["m"])
    assert (b.status == -1).all()
    assert np.array_equal(b.q[-1], ref["q"]) and np.array_equal(b.p[-1], ref["p"])
    assert np.array_equal(b.carry["kahan_p"], ref["kahan_p"])
