"""`tpc run`: compile, bind the simulate block and flags, run, write the .npz, summarize."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from tpc import api, compiler, invariants, resume
from tpc.diagnostics import TpcError
from tpc.output import check_writable, write_file
from tpc.resume import RESUME_CARRY_PREFIX
from tpc.simulate import OUTPUT_INPUT_PREFIX, OUTPUT_MARK, RunConfig, load_run_config


def output_path(args) -> str:
    """The .npz the run writes: -o (with .npz added, as numpy would), else the file resumed
    from (it is replaced, atomically, by the longer run), else FILE.npz."""
    if args.output is None:
        if getattr(args, "resume", None) is not None:
            return args.resume
        return str(Path(args.file).with_suffix(".npz"))
    if Path(args.output).is_dir():
        raise TpcError(f"cannot write '{args.output}': it is a directory")
    return args.output if args.output.endswith(".npz") else args.output + ".npz"


def trajectory_arrays(traj: api.Trajectory, sim: api.Simulation, cfg: RunConfig,
                      device: str = "cpu") -> dict:
    """The snapshots plus what produced them, so that the file describes itself, a later
    `tpc run --init` can start from its last snapshot and `tpc run --resume` can continue the
    run bitwise (tpc.resume reads these back). The carried run state at the end (with kahan:
    the compensations kahan_q, kahan_p, shaped like one row of q) goes in under its own names,
    and the same at the last row on the snapshot grid, where a resumed run restarts, under
    `resume_<name>`."""
    arrays = {"t": traj.t, "q": traj.q, "p": traj.p, "H": traj.H, **traj.carry}
    # The monitored quantities (P_x, L_z, the user's observables) under their own names.
    arrays |= {k: v for k, v in traj.monitors.items() if k not in arrays}
    arrays |= {f"{RESUME_CARRY_PREFIX}{k}": v for k, v in traj.grid_carry.items()}
    arrays |= {f"{OUTPUT_INPUT_PREFIX}{k}": v for k, v in cfg.inputs.items()}
    arrays |= {f"param_{k}": np.float64(v) for k, v in cfg.params.items()}
    arrays |= {
        OUTPUT_MARK: np.str_(api.VERSION),
        "compiler": np.str_(api.compiler_fingerprint()),
        "system": np.str_(sim.info.name),
        "source_sha256": np.str_(hashlib.sha256(sim.source.encode()).hexdigest()),
        "integrator": np.str_(sim.options.integrator),
        "precision": np.str_(sim.options.precision),
        "fold_enabled": np.bool_(sim.options.fold),
        "newton3": np.bool_(sim.options.newton3),
        "kahan": np.bool_(sim.options.kahan),
        "device": np.str_(device),
        "dt": np.float64(cfg.dt),
        "save_every": np.int64(cfg.save_every),
        "steps_total": np.int64(cfg.steps),
        "steps_done": np.int64(traj.steps_done),
        "t_final": np.float64(traj.t[-1] if len(traj.t) else 0.0),
        "folded": np.bool_(traj.folded),
        "fold_method": np.str_(traj.fold_method),
    }
    if traj.fold_carry is not None:
        arrays["fold_carry"] = np.asarray(traj.fold_carry.data, dtype=np.float64)
        arrays["fold_carry_step"] = np.int64(traj.fold_carry.step)
    return arrays


def write_npz(path: str, arrays: dict) -> None:
    write_file(path, lambda f: np.savez(f, **arrays))


def main(args) -> int:
    if args.resume is not None and getattr(args, "check_invariants", None) is not None:
        raise TpcError("--check-invariants is not supported with --resume (the drift is "
                       "measured from the run's first snapshot, which a resumed run does not "
                       "watch)")
    resumed = resume.read(args.resume) if args.resume is not None else None
    out = output_path(args)
    check_writable(out)
    device = args.device or "cpu"
    if resumed is not None:
        sim = api.compile(args.file, **resume.compile_options(resumed, args))
        resume.check_source(resumed, sim, args.file)
    else:
        options = compiler.options_from_args(args)
        sim = api.compile(args.file, integrator=options.integrator, fold=options.fold,
                          precision=options.precision, newton3=options.newton3,
                          kahan=options.kahan, shadow=options.shadow)
    if args.remarks:
        for line in sim_remarks(sim):
            print(line, file=sys.stderr)
    if resumed is not None:
        cfg, _ = resume.run_config(resumed, sim, args)
        prev = resume.trajectory(resumed, sim.dtype, sim.native.carry)
        if note := resume.build_note(resumed):
            print(f"note: {note}", file=sys.stderr)
    else:
        cfg = load_run_config(sim.program, sim.system, steps=args.steps, dt=args.dt,
                              save_every=args.save_every, sets=args.set, init=args.init)
    if device == "cuda":
        from tpc.runtime.cuda import require_cuda

        require_cuda()
    try:
        if resumed is not None:
            traj = sim.resume(prev, dt=cfg.dt, steps=cfg.steps - prev.steps_done,
                              save_every=cfg.save_every, params=cfg.params,
                              progress=not args.quiet, **cfg.inputs)
        else:
            traj = sim.run(cfg.q0, cfg.p0, dt=cfg.dt, steps=cfg.steps,
                           save_every=cfg.save_every, params=cfg.params,
                           progress=not args.quiet, device=device,
                           check_invariants=getattr(args, "check_invariants", None), **cfg.inputs)
    except api.InvariantDrift as e:
        write_npz(out, trajectory_arrays(e.trajectory, sim, cfg, device))
        print(f"error: {e.message}; wrote {out}", file=sys.stderr)
        return e.exit_code
    except api.PartialRun as e:
        write_npz(out, trajectory_arrays(e.trajectory, sim, cfg, device))
        if args.remarks:
            print(run_remark(sim, e.trajectory, device), file=sys.stderr)
        if e.interrupted:
            # Ctrl-C: the conventional status, one line, and the rows computed are on disk.
            print(f"error: {e.message}; wrote {out} (continue with --resume {out})",
                  file=sys.stderr)
            return 130
        raise TpcError(f"{e.message}; wrote {out}") from None
    write_npz(out, trajectory_arrays(traj, sim, cfg, device))
    if args.remarks:
        print(run_remark(sim, traj, device), file=sys.stderr)
    if not args.quiet:
        start = 0 if resumed is None else prev.steps_done
        how = how_run(sim, traj) + (f", resumed at step {start}" if resumed is not None else "")
        print(f"{sim.info.name}: {traj.steps_done} steps ({how}), "
              f"dt = {cfg.dt:g}, {len(traj.t)} snapshots -> {out}")
        print(f"  compile {sim.compile_time * 1e3:.1f} ms{' (cache hit)' if sim.cache_hit else ''}"
              f", run {traj.wall_time:.3f} s{work_done(traj, traj.steps_done - start)}")
        print(f"  max relative energy error {traj.energy_error():.3e}")
        for line in invariants.summary(sim, traj, cfg.dt):
            print(line)
        if traj.note:
            print(f"  note: {traj.note}")
    return 0


def how_run(sim: api.Simulation, traj: api.Trajectory) -> str:
    if not traj.folded:
        return sim.options.integrator
    if traj.fold_method == "exact":
        return "exact flow, evaluated at each snapshot"
    return f"{sim.options.integrator}, folded into matrix powers"


def work_done(traj: api.Trajectory, steps: int) -> str:
    """What the run time bought (`steps` of this run): steps per second when stepped; a folded
    run has no per-step cost (its time is the map and one evaluation per snapshot), so it says
    that instead."""
    if traj.folded:
        return f", the map evaluated at {max(len(traj.t) - 1, 0)} snapshot(s)"
    rate = steps / traj.wall_time if traj.wall_time > 0 else float("inf")
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


def sim_remarks(sim: api.Simulation) -> list[str]:
    """What is known before the run: H's facts, the integrator's coefficients, compensation
    (the folding remark follows the run: `run_remark`)."""
    method = [f"remark: {c}" for c in sim.native.abi["scheme"].get("coefficients") or ()]
    out = compiler.ham_remarks(sim.module) + method
    if sim.native.carry:
        from tpc.passes.sym_kahan import METHOD

        out.append(f"remark: state updates compensated ({METHOD}), carried in "
                   f"{', '.join(sim.native.carry)}")
    return out
