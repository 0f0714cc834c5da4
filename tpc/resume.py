"""`tpc run FILE.ham --resume OUT.npz`: continue a run from the file it wrote.

The .npz that `tpc run` writes describes the run that made it (tpc.runner.trajectory_arrays):
the source's hash, the compile options, dt, save_every, params, inputs, the steps done and
asked for, and for a folded run the fold's own state. A resumed run takes all of these from
the file, so that it continues bitwise as if it had never stopped; a command-line value that
contradicts the file is an error, never silently a different run. `--steps N` asks for N more
steps; without it, a run that was cut short (interrupted, or stopped by a non-finite state) is
finished, and a finished one runs the simulate block's step count again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tpc.diagnostics import TpcError
from tpc.simulate import (
    MAX_INIT_BYTES,
    OUTPUT_INPUT_PREFIX,
    OUTPUT_MARK,
    RunConfig,
    _read_npz,
    load_run_config,
    output_state_keys,
)
from tpc.syntax import read_bytes

# What a file must hold to be resumed (written by tpc.runner.trajectory_arrays).
NEEDED = ("t", "H", "system", "source_sha256", "integrator", "precision", "kahan",
          "dt", "save_every", "steps_done", "steps_total", "folded", "fold_method",
          "fold_enabled", "newton3", "device")
PARAM_PREFIX = "param_"
RESUME_CARRY_PREFIX = "resume_"  # carried run state (kahan_q, ...) at the restart row


@dataclass
class Resumed:
    """A run read back from its .npz: the options to compile with, the run's settings, and its
    trajectory so far."""

    path: str
    arrays: dict[str, np.ndarray]

    @property
    def state_keys(self) -> tuple[str, str]:
        """The keys of q and p in the file: the state's names in the source."""
        return output_state_keys(self.arrays)

    def text(self, key: str) -> str:
        return str(self.arrays[key])

    def number(self, key: str) -> float:
        return float(self.arrays[key])

    def integer(self, key: str) -> int:
        return int(self.arrays[key])

    def flag(self, key: str) -> bool:
        return bool(self.arrays[key])

    @property
    def params(self) -> dict[str, float]:
        return {k[len(PARAM_PREFIX):]: float(v) for k, v in self.arrays.items()
                if k.startswith(PARAM_PREFIX)}

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {k[len(OUTPUT_INPUT_PREFIX):]: np.asarray(v, dtype=np.float64)
                for k, v in self.arrays.items() if k.startswith(OUTPUT_INPUT_PREFIX)}


def read(path: str) -> Resumed:
    """The arrays of a tpc output, refusing anything else with the reason."""
    shown = f"cannot resume from '{path}'"
    data = read_bytes(Path(path), f"'{path}'", MAX_INIT_BYTES)
    try:
        arrays = _read_npz(data, path, None)
    except TpcError as e:
        raise TpcError(e.message.replace(f"cannot read init file '{path}'", shown)) from None
    if OUTPUT_MARK not in arrays:
        raise TpcError(f"{shown}: it is not an output of 'tpc run' (no '{OUTPUT_MARK}')")
    missing = [k for k in (*NEEDED, *output_state_keys(arrays)) if k not in arrays]
    if missing:
        raise TpcError(f"{shown}: it lacks {', '.join(repr(k) for k in missing)} (written by "
                       f"tpc {arrays[OUTPUT_MARK]}, before runs could be resumed?)")
    return Resumed(path, arrays)


def compile_options(res: Resumed, args) -> dict:
    """The compile options of the resumed run (the file's), checked against the flags given.
    Returns the keyword arguments of tpc.api.compile."""
    wanted = {"integrator": res.text("integrator"), "precision": res.text("precision"),
              "newton3": res.flag("newton3"), "kahan": res.flag("kahan"),
              "device": res.text("device")}
    if wanted["device"] != "cpu":
        raise TpcError(f"cannot resume from '{res.path}': runs on the {wanted['device']} "
                       "device cannot be resumed yet")
    given = {"integrator": args.integrator, "precision": args.precision,
             "newton3": args.newton3, "kahan": getattr(args, "kahan", None),
             "device": args.device}
    for key, value in given.items():
        if value is not None and value != wanted[key]:
            flag = (f"--{key} {value}" if not isinstance(value, bool)
                    else f"--{key}" if value else f"--no-{key}")
            raise TpcError(f"{flag} contradicts the run in '{res.path}' ({key} = "
                           f"{wanted[key]})")
    if args.no_fold and res.flag("fold_enabled"):
        raise TpcError(f"--no-fold contradicts the run in '{res.path}', which was compiled "
                       "with folding enabled")
    return {"integrator": wanted["integrator"], "precision": wanted["precision"],
            "newton3": wanted["newton3"], "kahan": wanted["kahan"],
            "fold": res.flag("fold_enabled"), "shadow": bool(getattr(args, "shadow", False))}


def check_source(res: Resumed, sim, file: str) -> None:
    """The file must come from this source: the same text, so the same system and code."""
    shown = f"cannot resume from '{res.path}'"
    if res.text("system") != sim.info.name:
        raise TpcError(f"{shown}: it is a run of system '{res.text('system')}', not of "
                       f"'{sim.info.name}'")
    digest = hashlib.sha256(sim.source.encode()).hexdigest()
    if res.text("source_sha256") != digest:
        raise TpcError(f"{shown}: it was written from a different version of '{file}' (source "
                       f"sha256 {res.text('source_sha256')[:12]}..., the file now has "
                       f"{digest[:12]}...); resume with the source that wrote it")


def build_note(res: Resumed) -> str:
    """A note when the file was written by another build of tpc: the continuation is then the
    same run, but not necessarily bitwise (other code may round differently)."""
    from tpc.api import compiler_fingerprint

    theirs = str(res.arrays.get("compiler", ""))
    if theirs and theirs != compiler_fingerprint():
        return (f"'{res.path}' was written by another build of tpc ({theirs}, this one is "
                f"{compiler_fingerprint()}): the continuation may differ from an "
                "uninterrupted run at round-off level")
    return ""


def run_config(res: Resumed, sim, args) -> tuple[RunConfig, int]:
    """The resumed run's settings, from the file (flags may only repeat them), and the total
    step count it runs to."""
    if args.init is not None:
        raise TpcError("--init and --resume cannot be combined: a resumed run continues from "
                       "the state in its file")
    for key, flag in (("dt", args.dt), ("save_every", args.save_every)):
        have = res.number(key) if key == "dt" else res.integer(key)
        if flag is not None and flag != have:
            raise TpcError(f"--{key.replace('_', '-')} {flag:g} contradicts the run in "
                           f"'{res.path}' ({key} = {have:g})")
    params = res.params
    for item in args.set:
        name, _, text = item.partition("=")
        name = name.strip()
        try:
            value = float(text)
        except ValueError:
            raise TpcError(f"--set {item}: '{text.strip()}' is not a number") from None
        if name not in params:
            raise TpcError(f"--set {item}: the system has no param '{name}' (params: "
                           f"{', '.join(params) or 'none'})")
        if value != params[name]:
            raise TpcError(f"--set {item} contradicts the run in '{res.path}' ({name} = "
                           f"{params[name]:g})")
    done, total = res.integer("steps_done"), res.integer("steps_total")
    if args.steps is not None:
        if args.steps < 0:
            raise TpcError(f"--steps must be >= 0, got {args.steps}")
        target = done + args.steps
    elif done < total:
        target = total  # finish the run that was cut short
    else:
        block = load_run_config(sim.program, sim.info, dt=res.number("dt"),
                                steps=None, save_every=res.integer("save_every"))
        target = done + block.steps
    q_key, p_key = res.state_keys
    q = np.asarray(res.arrays[q_key])
    cfg = RunConfig(res.text("integrator"), res.number("dt"), target,
                    res.integer("save_every"), params, q[-1], np.asarray(res.arrays[p_key])[-1],
                    res.inputs, {})
    return cfg, target


def trajectory(res: Resumed, dtype, carried: list[str]) -> object:
    """The run so far, as the API's Trajectory: with a folded run's fold state, and the
    carried run state (`carried`: its names in the compiled code) at the end and at the
    restart row."""
    from tpc.api import Trajectory
    from tpc.runtime.fold import Carry

    a = res.arrays
    q, p = (np.asarray(a[k]) for k in res.state_keys)
    if q.dtype != dtype or p.dtype != dtype:
        raise TpcError(f"cannot resume from '{res.path}': its states are {q.dtype}, but a "
                       f"{res.text('precision')} run stores {np.dtype(dtype)}")
    carry = None
    if res.flag("folded"):
        if "fold_carry" not in a or "fold_carry_step" not in a:
            raise TpcError(f"cannot resume from '{res.path}': the folded run did not get as "
                           "far as its first snapshot")
        carry = Carry(res.text("fold_method"), int(a["fold_carry_step"]),
                      np.asarray(a["fold_carry"], dtype=np.float64))
    grid = {}
    for name in carried:
        key = RESUME_CARRY_PREFIX + name
        if key not in a:
            raise TpcError(f"cannot resume from '{res.path}': it lacks '{key}', the carried "
                           f"'{name}' at its last snapshot")
        grid[name] = np.asarray(a[key])
    return Trajectory(np.asarray(a["t"], dtype=np.float64), q, p, np.asarray(a["H"]),
                      res.integer("steps_done"), 0.0, res.flag("folded"),
                      carry={k: np.asarray(a[k]) for k in carried if k in a},
                      fold_method=res.text("fold_method"), fold_carry=carry, grid_carry=grid,
                      names=res.state_keys)
