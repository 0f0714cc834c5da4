"""The driver's side of the GPU: compile a Simulation to PTX and a manifest (on the CPU, with
llvmlite), load it into a CUDA context, run it as a Trajectory. The run-time (tpc.runtime.cuda)
only loads PTX and launches its kernels."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from tpc import lowering, pipeline
from tpc.api import Trajectory
from tpc.diagnostics import RunError, TpcError
from tpc.passes.abi import read_abi
from tpc.runtime.cuda import KERNELS, CudaSimulation, Manifest, require_cuda
from tpc.runtime.ptx import module_to_ptx


def compile_ptx(sim, arch: str = "sm_90") -> tuple[str, Manifest]:
    """(PTX, manifest) for a `tpc.api.Simulation` (needs llvmlite; runs on the CPU)."""
    module = sim.module.clone()
    runner = pipeline.PassRunner()
    lowering.lower(module, "sym", replace(sim.options, fold=False), runner)
    lowering.make_loops(module, runner, precision=sim.options.precision, gpu=True)
    carry = read_abi(module).get("carry") or []
    ptx = module_to_ptx(module, arch=arch)
    kernels = [k for k in KERNELS if f".entry {k}(" in ptx]
    info = sim.info
    man = Manifest(kernels, dict(info.params), list(info.inputs), list(info.sizes),
                   [d if isinstance(d, int) else str(d) for d in info.shape], arch,
                   sim.options.precision, list(carry))
    return ptx, man


def compile_artifact(sim, path: str | os.PathLike[str], arch: str = "sm_90") -> Path:
    """Write PATH.ptx and PATH.json; returns the .ptx path."""
    ptx, man = compile_ptx(sim, arch)
    base = Path(path).with_suffix("")
    base.with_suffix(".ptx").write_text(ptx)
    base.with_suffix(".json").write_text(man.to_json())
    return base.with_suffix(".ptx")


def cuda_simulation(sim, arch: str | None = None) -> CudaSimulation:
    """The Simulation's PTX loaded on device 0 (for its compute capability unless given)."""
    drv = require_cuda()
    if arch is None:
        major, minor = drv.Device(0).compute_capability()
        arch = "sm_90" if (major, minor) >= (9, 0) else f"sm_{major}{minor}"
    ptx, man = compile_ptx(sim, arch)
    return CudaSimulation(ptx, man)


def run_on_cuda(sim, q0, p0, *, dt: float, steps: int, save_every: int = 1,
                params: dict | None = None, batch: int | None = None, carry=None, **inputs):
    """`Simulation.run(..., device="cuda")`: a Trajectory like the CPU's (batched when
    `batch` is given: q is [B, rows, *shape]). The energy at row 0 is computed on the CPU."""
    runner = getattr(sim, "_cuda", None)
    if runner is None:
        runner = cuda_simulation(sim)
        sim._cuda = runner
    single = batch is None
    qb = np.asarray(q0, dtype=float)[None] if single else np.asarray(q0, dtype=float)
    pb = np.asarray(p0, dtype=float)[None] if single else np.asarray(p0, dtype=float)
    if not single and (len(qb) != batch or len(pb) != batch):
        raise TpcError(f"batch={batch} needs q0 and p0 with a leading dimension of {batch}")
    if single and carry:
        carry = {k: np.asarray(v)[None] for k, v in carry.items()}
    for name, value in inputs.items():
        if np.ndim(value) > len(sim.info.inputs.get(name, ())):
            raise TpcError(f"input '{name}' per member is not available on the cuda device "
                           "(its members share the inputs)")
    res = runner.run_ensemble(qb, pb, dt=dt, steps=steps, save_every=save_every,
                              params=params, carry=carry, **inputs)
    for b in range(len(qb)):
        res.H[0, b] = sim.energy(qb[b], pb[b], {k: (v[b] if np.ndim(v) else v)
                                                for k, v in (params or {}).items()}, **inputs)
    bad = [int(b) for b in np.nonzero(res.status != -1)[0]]
    if bad:
        raise RunError(f"GPU run failed for member(s) {bad[:8]} (status {res.status[bad[0]]})")
    if single:
        traj = Trajectory(res.t, res.q[:, 0], res.p[:, 0], res.H[:, 0], steps, res.kernel_time,
                          carry={k: v[0] for k, v in res.carry.items()}, box=sim.info.box)
        # the monitors (P, L, observables) of the snapshots, on the host like H at row 0
        traj.monitors = sim._monitor_values(sim.bind(qb[0], pb[0], params, inputs), traj.q,
                                            traj.p, traj.H)
        return traj
    # batch-first, as on the CPU: [B, rows, ...]
    return Trajectory(res.t, np.swapaxes(res.q, 0, 1), np.swapaxes(res.p, 0, 1), res.H.T,
                      steps, res.kernel_time, carry=res.carry, batch=len(qb),
                      names=(sim.info.q, sim.info.p), box=sim.info.box)
