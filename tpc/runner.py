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
    `tpc run --init` can continue from its last snapshot."""
    arrays = {"t": traj.t, "q": traj.q, "p": traj.p, "H": traj.H}
    arrays |= {f"{OUTPUT_INPUT_PREFIX}{k}": v for k, v in cfg.inputs.items()}
    arrays |= {f"param_{k}": np.float64(v) for k, v in cfg.params.items()}
    arrays |= {
        OUTPUT_MARK: np.str_(api.VERSION),
        "system": np.str_(sim.info.name),
        "source_sha256": np.str_(hashlib.sha256(sim.source.encode()).hexdigest()),
        "integrator": np.str_("folded" if traj.folded else sim.options.integrator),
        "precision": np.str_(sim.options.precision),
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
                      precision=options.precision, newton3=options.newton3)
    if args.remarks:
        for line in compiler.ham_remarks(sim.module):
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
        if args.remarks:
            print(run_remark(sim, e.trajectory, args.device), file=sys.stderr)
        raise TpcError(f"{e.message}; wrote {out}") from None
    write_npz(out, trajectory_arrays(traj, sim, cfg))
    if args.remarks:
        print(run_remark(sim, traj, args.device), file=sys.stderr)
    if not args.quiet:
        print(f"{sim.info.name}: {traj.steps_done} steps ({how_run(sim, traj)}), "
              f"dt = {cfg.dt:g}, {len(traj.t)} snapshots -> {out}")
        print(f"  compile {sim.compile_time * 1e3:.1f} ms{' (cache hit)' if sim.cache_hit else ''}"
              f", run {traj.wall_time:.3f} s{work_done(traj)}")
        print(f"  max relative energy error {traj.energy_error():.3e}")
        if traj.note:
            print(f"  note: {traj.note}")
    return 0


def how_run(sim: api.Simulation, traj: api.Trajectory) -> str:
    if not traj.folded:
        return sim.options.integrator
    if traj.fold_method == "exact":
        return "exact flow, evaluated at each snapshot"
    return f"{sim.options.integrator}, folded into matrix powers"


def work_done(traj: api.Trajectory) -> str:
    """What the run time bought: steps per second when stepped; a folded run has no per-step
    cost (its time is the map and one evaluation per snapshot), so it says that instead."""
    if traj.folded:
        return f", the map evaluated at {max(len(traj.t) - 1, 0)} snapshot(s)"
    rate = traj.steps_done / traj.wall_time if traj.wall_time > 0 else float("inf")
    return f", {rate:.3g} steps/s"


def run_remark(sim: api.Simulation, traj: api.Trajectory, device: str = "cpu") -> str:
    """The folding remark of this run, from the decision the run itself took (the compile-time
    one of sym-fold-linear can be overruled at run time by the cost of folding)."""
    if traj.folded:
        text = f"remark: {sim.fold_reason}; {traj.fold_how}"
        if sim.options.precision == "f32":
            text += ("; float32 run: the map built and powered in float64 from the float32 "
                     "data, the state rounded to float32 once per snapshot")
        return text
    if traj.note:
        return f"remark: not folded: {traj.note}"
    if sim.folded and device != "cpu":
        return f"remark: not folded: the time loop runs stepped on the {device} device"
    return f"remark: not folded: {sim.fold_reason}"
