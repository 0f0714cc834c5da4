"""`tpc run`: compile, bind the simulate block and flags, run, write the .npz, summarize."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from tpc import api, compiler
from tpc.diagnostics import TpcError
from tpc.output import check_writable, write_file
from tpc.simulate import OUTPUT_INPUT_PREFIX, OUTPUT_MARK, RunConfig, load_run_config


def output_path(args) -> str:
    """The .npz the run writes: -o (with .npz added, as numpy would), else FILE.npz."""
    if args.output is None:
        return str(Path(args.file).with_suffix(".npz"))
    if Path(args.output).is_dir():
        raise TpcError(f"cannot write '{args.output}': it is a directory")
    return args.output if args.output.endswith(".npz") else args.output + ".npz"


def trajectory_arrays(traj: api.Trajectory, sim: api.Simulation, cfg: RunConfig) -> dict:
    """The snapshots plus what produced them, so that the file describes itself and a later
    `tpc run --init` can continue from its last snapshot. The carried run state at the end
    (with kahan: the compensations kahan_q, kahan_p, shaped like one row of q) goes in under
    its own names: a restart that passes them back continues the run bitwise."""
    arrays = {"t": traj.t, "q": traj.q, "p": traj.p, "H": traj.H, **traj.carry}
    arrays |= {f"{OUTPUT_INPUT_PREFIX}{k}": v for k, v in cfg.inputs.items()}
    arrays |= {f"param_{k}": np.float64(v) for k, v in cfg.params.items()}
    arrays |= {
        OUTPUT_MARK: np.str_(api.VERSION),
        "system": np.str_(sim.info.name),
        "source_sha256": np.str_(hashlib.sha256(sim.source.encode()).hexdigest()),
        "integrator": np.str_("folded" if traj.folded else sim.options.integrator),
        "precision": np.str_(sim.options.precision),
        "kahan": np.bool_(sim.options.kahan),
        "dt": np.float64(cfg.dt),
        "save_every": np.int64(cfg.save_every),
        "steps_done": np.int64(traj.steps_done),
        "t_final": np.float64(traj.t[-1] if len(traj.t) else 0.0),
    }
    return arrays


def write_npz(path: str, arrays: dict) -> None:
    write_file(path, lambda f: np.savez(f, **arrays))


def main(args) -> int:
    out = output_path(args)
    check_writable(out)
    options = compiler.options_from_args(args)
    sim = api.compile(args.file, integrator=options.integrator, fold=options.fold,
                      precision=options.precision, newton3=options.newton3,
                      kahan=options.kahan)
    if args.remarks:
        for line in sim_remarks(sim):
            print(line, file=sys.stderr)
    cfg = load_run_config(sim.program, sim.system, steps=args.steps, dt=args.dt,
                          save_every=args.save_every, sets=args.set, init=args.init)
    if args.device == "cuda":
        from tpc.runtime.cuda import require_cuda

        require_cuda()
    try:
        traj = sim.run(cfg.q0, cfg.p0, dt=cfg.dt, steps=cfg.steps, save_every=cfg.save_every,
                       params=cfg.params, progress=not args.quiet, device=args.device,
                       **cfg.inputs)
    except api.PartialRun as e:
        write_npz(out, trajectory_arrays(e.trajectory, sim, cfg))
        raise TpcError(f"{e.message}; wrote {out}") from None
    write_npz(out, trajectory_arrays(traj, sim, cfg))
    if not args.quiet:
        rate = traj.steps_done / traj.wall_time if traj.wall_time > 0 else float("inf")
        how = "folded into matrix powers" if traj.folded else sim.options.integrator
        print(f"{sim.info.name}: {traj.steps_done} steps ({how}), dt = {cfg.dt:g}, "
              f"{len(traj.t)} snapshots -> {out}")
        print(f"  compile {sim.compile_time * 1e3:.1f} ms{' (cache hit)' if sim.cache_hit else ''}"
              f", run {traj.wall_time:.3f} s, {rate:.3g} steps/s")
        print(f"  max relative energy error {traj.energy_error():.3e}")
        if traj.note:
            print(f"  note: {traj.note}")
    return 0


def sim_remarks(sim: api.Simulation) -> list[str]:
    how = "remark: " if sim.folded else "remark: not folded: "
    method = [f"remark: {c}" for c in sim.native.abi["scheme"].get("coefficients") or ()]
    out = compiler.ham_remarks(sim.module) + method + [how + sim.fold_reason]
    if sim.native.carry:
        from tpc.passes.sym_kahan import METHOD

        out.append(f"remark: state updates compensated ({METHOD}), carried in "
                   f"{', '.join(sim.native.carry)}")
    return out
