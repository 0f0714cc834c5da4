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
from tpc.simulate import (
    OUTPUT_INPUT_PREFIX,
    OUTPUT_MARK,
    OUTPUT_STATE_NAMES,
    RunConfig,
    load_run_config,
)

# The output formats by suffix; any other suffix gets .npz added, as numpy would.
FORMATS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".xyz": "xyz", ".dcd": "dcd"}


def output_path(args) -> str:
    """The file the run writes: -o (.npz, .h5/.hdf5, .xyz or .dcd; another name gets .npz added,
    as numpy would), else the file resumed from (it is replaced, atomically, by the longer
    run), else FILE.npz."""
    if args.output is None:
        if getattr(args, "resume", None) is not None:
            return args.resume
        return str(Path(args.file).with_suffix(".npz"))
    if Path(args.output).is_dir():
        raise TpcError(f"cannot write '{args.output}': it is a directory")
    return args.output if Path(args.output).suffix.lower() in FORMATS else args.output + ".npz"


def output_format(path: str) -> str:
    return FORMATS.get(Path(path).suffix.lower(), "npz")


def run_metadata(sim: api.Simulation, cfg: RunConfig, device: str = "cpu") -> dict:
    """What produced the run, known before it starts (every output records it)."""
    meta = {
        OUTPUT_MARK: np.str_(api.VERSION),
        "compiler": np.str_(api.compiler_fingerprint()),
        "system": np.str_(sim.info.name),
        "source": np.str_(sim.source),
        "source_sha256": np.str_(hashlib.sha256(sim.source.encode()).hexdigest()),
        OUTPUT_STATE_NAMES: np.array([sim.info.q, sim.info.p]),
        "integrator": np.str_(sim.options.integrator),
        "precision": np.str_(sim.options.precision),
        "fold_enabled": np.bool_(sim.options.fold),
        "newton3": np.bool_(sim.options.newton3),
        "kahan": np.bool_(sim.options.kahan),
        "device": np.str_(device),
        "dt": np.float64(cfg.dt),
        "save_every": np.int64(cfg.save_every),
        "steps_total": np.int64(cfg.steps),
    }
    from tpc.units import unit_names

    if (units := unit_names(sim.program)) is not None:
        meta["units"] = np.array(units)
    if sim.info.box is not None:
        meta["box"] = np.array(sim.info.box, dtype=np.float64)
    return meta | {f"param_{k}": np.float64(v) for k, v in cfg.params.items()}


def final_metadata(traj: api.Trajectory) -> dict:
    """What the run did: its steps, final t and how it ran."""
    return {"steps_done": np.int64(traj.steps_done),
            "t_final": np.float64(traj.t[-1] if len(traj.t) else 0.0),
            "folded": np.bool_(traj.folded), "fold_method": np.str_(traj.fold_method)}


def end_arrays(traj: api.Trajectory) -> dict:
    """The run state at the end beyond the snapshots: the carried state (with kahan: the
    compensations kahan_q, kahan_p, shaped like one row of q) at the last step, the same at the
    last row on the snapshot grid under `resume_<name>` (where a resumed run restarts), and a
    folded run's own state."""
    arrays = dict(traj.carry)
    arrays |= {f"{RESUME_CARRY_PREFIX}{k}": v for k, v in traj.grid_carry.items()}
    arrays |= traj.derived
    if traj.fold_carry is not None:
        arrays["fold_carry"] = np.asarray(traj.fold_carry.data, dtype=np.float64)
        arrays["fold_carry_step"] = np.int64(traj.fold_carry.step)
    return arrays


def trajectory_arrays(traj: api.Trajectory, sim: api.Simulation, cfg: RunConfig,
                      device: str = "cpu") -> dict:
    """The snapshots (the state under its names in the source) plus what produced them, so
    that the file describes itself, a later `tpc run --init` can start from its last
    snapshot and `tpc run --resume` can continue the run bitwise (tpc.resume reads these
    back)."""
    arrays = {"t": traj.t, sim.info.q: traj.q, sim.info.p: traj.p, "H": traj.H}
    if traj.box is not None:  # q is the unwrapped state; the positions in the box too
        arrays[f"{sim.info.q}_wrapped"] = traj.q_wrapped
    # The monitored quantities (P_x, L_z, the user's observables) under their own names.
    arrays |= {k: v for k, v in traj.monitors.items() if k not in arrays}
    arrays |= end_arrays(traj)
    arrays |= {f"{OUTPUT_INPUT_PREFIX}{k}": v for k, v in cfg.inputs.items()}
    return arrays | run_metadata(sim, cfg, device) | final_metadata(traj)


def write_npz(path: str, arrays: dict) -> None:
    write_file(path, lambda f: np.savez(f, **arrays))


class Output:
    """Where a run's snapshots go: an .npz, .xyz or .dcd written atomically at the end, or an
    HDF5 file streamed as the run goes (Simulation.run's `output=`, `run_options`), which the
    run itself finishes however it ends."""

    def __init__(self, path: str, sim: api.Simulation, cfg: RunConfig, device: str,
                 compress: bool = False):
        self.path, self.sim, self.cfg, self.device = path, sim, cfg, device
        self.format, self.compress = output_format(path), compress
        if self.format == "xyz":
            from tpc.xyz import check_particles

            check_particles(sim)
        elif self.format == "dcd":
            from tpc.dcd import check_particles

            check_particles(sim)
        if self.format == "hdf5" and device != "cpu":
            raise TpcError(f"-o {path} streams a run on the cpu device; write .npz on "
                           f"'{device}'")

    @property
    def run_options(self) -> dict:
        """What Simulation.run needs to stream to the file."""
        if self.format != "hdf5":
            return {}
        return {"output": self.path, "compress": self.compress}

    def write(self, traj: api.Trajectory, complete: bool = True) -> None:
        if self.format == "hdf5":
            return  # written as the run went, and finished by it
        if self.format == "xyz":
            from tpc.xyz import write_xyz

            write_xyz(self.path, traj, self.sim)
        elif self.format == "dcd":
            from tpc.dcd import write_dcd

            write_dcd(self.path, traj, self.cfg.dt, self.cfg.save_every,
                      f"system {self.sim.info.name}, {self.sim.options.integrator}")
        else:
            write_npz(self.path, trajectory_arrays(traj, self.sim, self.cfg, self.device))


def main(args) -> int:
    if args.resume is not None and getattr(args, "check_invariants", None) is not None:
        raise TpcError("--check-invariants is not supported with --resume (the drift is "
                       "measured from the run's first snapshot, which a resumed run does not "
                       "watch)")
    if getattr(args, "lyapunov", False) and (args.resume is not None or getattr(
            args, "ensemble", None) is not None or (args.device or "cpu") != "cpu"):
        raise TpcError("--lyapunov is for a new single run on the cpu (no --resume, "
                       "--ensemble or --device cuda)")
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
        cfg = load_run_config(sim.program, sim.info, steps=args.steps, dt=args.dt,
                              save_every=args.save_every, sets=args.set, init=args.init)
    if getattr(args, "ensemble", None) is not None:
        from tpc import ensemble_run

        if resumed is not None or device != "cpu":
            raise TpcError("--ensemble runs a new ensemble on the CPU: no --resume or --device")
        return ensemble_run.run(args, sim, cfg, out)
    if getattr(args, "workers", None) is not None or getattr(args, "scheduler", None) is not None:
        raise TpcError("--workers and --scheduler run an ensemble: give --ensemble FILE.npz")
    if device == "cuda":
        from tpc.runtime.cuda import require_cuda

        require_cuda()
    if resumed is not None and output_format(out) != "npz":
        raise TpcError(f"--resume writes the continued run as an .npz, not '{out}'")
    if getattr(args, "compress", False) and output_format(out) != "hdf5":
        raise TpcError(f"--compress is for HDF5 outputs (-o FILE.h5), not '{out}'")
    output = Output(out, sim, cfg, device, compress=getattr(args, "compress", False))
    chaos, derived = None, {}
    if getattr(args, "lyapunov", False):  # first: a streamed output records it as it lands
        chaos = sim.lyapunov(cfg.q0, cfg.p0, dt=cfg.dt, steps=cfg.steps, params=cfg.params,
                             **cfg.inputs)
        derived = {"lyapunov": np.float64(chaos.exponent), "lyapunov_t": chaos.t,
                   "lyapunov_history": chaos.history, "megno": chaos.mean_megno}
    streamed = output.run_options | ({"output_arrays": derived} if output.run_options
                                     and derived else {})
    try:
        if resumed is not None:
            traj = sim.resume(prev, dt=cfg.dt, steps=cfg.steps - prev.steps_done,
                              save_every=cfg.save_every, params=cfg.params,
                              progress=not args.quiet, **cfg.inputs)
        else:
            traj = sim.run(cfg.q0, cfg.p0, dt=cfg.dt, steps=cfg.steps,
                           save_every=cfg.save_every, params=cfg.params,
                           progress=not args.quiet, device=device,
                           check_invariants=getattr(args, "check_invariants", None),
                           **streamed, **cfg.inputs)
    except api.InvariantDrift as e:
        output.write(e.trajectory, complete=False)
        print(f"error: {e.message}; wrote {out}", file=sys.stderr)
        return e.exit_code
    except api.PartialRun as e:
        output.write(e.trajectory, complete=False)
        if args.remarks:
            print(run_remark(sim, e.trajectory, device), file=sys.stderr)
        if e.interrupted:
            # Ctrl-C: the conventional status, one line, and the rows computed are on disk.
            again = f" (continue with --resume {out})" if output.format == "npz" else ""
            print(f"error: {e.message}; wrote {out}{again}", file=sys.stderr)
            return 130
        raise TpcError(f"{e.message}; wrote {out}") from None
    traj.derived = derived
    output.write(traj)
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
    if chaos is not None:
        print(f"max Lyapunov exponent: {chaos.exponent:.6g} (MEGNO <Y> = "
              f"{chaos.final_megno:.4g} at t = {chaos.t[-1]:g}; 2 for a quasi-periodic orbit)")
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
