"""`tpc run`: compile, bind the simulate block and flags, run, write the .npz, summarize."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tpc import api, compiler
from tpc.diagnostics import TpcError
from tpc.simulate import load_run_config


def write_npz(path: str, traj: api.Trajectory, info: api.SystemInfo) -> None:
    np.savez(path, t=traj.t, q=traj.q, p=traj.p, H=traj.H)


def main(args) -> int:
    options = compiler.options_from_args(args)
    sim = api.compile(args.file, integrator=options.integrator, fold=options.fold,
                      precision=options.precision, newton3=options.newton3)
    if args.remarks:
        for line in sim_remarks(sim):
            print(line, file=sys.stderr)
    cfg = load_run_config(sim.program, sim.system, steps=args.steps, dt=args.dt,
                          save_every=args.save_every, sets=args.set, init=args.init)
    out = args.output or str(Path(args.file).with_suffix(".npz"))
    if args.device == "cuda":
        from tpc.runtime.cuda import require_cuda

        require_cuda()
    try:
        traj = sim.run(cfg.q0, cfg.p0, dt=cfg.dt, steps=cfg.steps, save_every=cfg.save_every,
                       params=cfg.params, progress=not args.quiet, device=args.device,
                       **cfg.inputs)
    except api.PartialRun as e:
        write_npz(out, e.trajectory, sim.info)
        raise TpcError(f"{e.message}; wrote {out}") from None
    write_npz(out, traj, sim.info)
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
    return compiler.ham_remarks(sim.module) + [how + sim.fold_reason]
