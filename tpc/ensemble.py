"""Ensembles: B members of one compiled simulation, each with its own initial state and, where
given, its own params and inputs, run batch-first (q is [B, snapshots, *shape]).

Every member runs the very `run` of a single run on its own buffers, so member b equals the
single run of its data bit for bit. The members are called from one native loop over an
argument table (tpc.runtime.members), split over threads: per call of a member from Python the
argument conversion costs more than a short member run, and holds the GIL (bench/ensemble.py
measures both).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from tpc import snapshot_grid
from tpc.diagnostics import TpcError
from tpc.reporting import Progress, Reports
from tpc.simulate import _as_float_array, _non_number, bind_arrays


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Members:
    """The bound data of B members in the compiled code's dtype: q, p [B, n]; params
    [B, n_params]; each input [B, size] when it varies per member, else [size] (shared)."""

    q: np.ndarray
    p: np.ndarray
    params: np.ndarray
    inputs: dict[str, np.ndarray]
    per_member: set[str]  # the inputs given per member
    sizes: dict[str, int]
    params_by_member: dict[str, np.ndarray]  # the params that vary, as given (for outputs)

    @property
    def batch(self) -> int:
        return len(self.q)

    def env(self, b: int):
        from tpc.runtime.native import Bound

        return Bound(self.q[b], self.p[b], self.params[b],
                     {k: v[b] if k in self.per_member else v for k, v in self.inputs.items()},
                     self.sizes)

    def member_params(self, b: int, shared: dict[str, float]) -> dict[str, float]:
        return shared | {k: float(v[b]) for k, v in self.params_by_member.items()}

    def member_inputs(self, b: int) -> dict[str, np.ndarray]:
        return {k: v[b] if k in self.per_member else v for k, v in self.inputs.items()}


def check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise TpcError(f"batch must be a whole number >= 1 (the number of members), "
                       f"got {batch!r}")
    return int(batch)


def param_values(declared: dict[str, float], given: dict | None, batch: int | None
                 ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(every param's shared value, the params that vary per member as [B] float64 arrays).
    A param is a number, or with batch=B an array of B numbers."""
    if given is not None and not isinstance(given, dict):
        raise TpcError(f"params must be a dict of name: value, got {type(given).__name__}")
    shared, varying = dict(declared), {}
    for k, v in (given or {}).items():
        if k not in declared:
            raise TpcError(f"unknown param '{k}' (known: {', '.join(declared) or 'none'})")
        bad = None if _is_plain_number(v) else _non_number(v)
        if bad is not None:
            raise TpcError(f"param '{k}' must be a number or an array of numbers, got {bad}")
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (ValueError, TypeError):
            raise TpcError(f"param '{k}' is not a number or a rectangular array of numbers"
                           ) from None
        if arr.ndim == 0:
            shared[k] = float(arr)
            continue
        if batch is None:
            raise TpcError(f"param '{k}' is an array of shape {list(arr.shape)}: values per "
                           f"member need batch=B (and one value per member)")
        if arr.shape != (batch,):
            raise TpcError(f"param '{k}' needs one value per member, shape [{batch}], got "
                           f"shape {list(arr.shape)}")
        varying[k] = arr
    return shared, varying


def _is_plain_number(v) -> bool:
    return isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)


def bind_members(sim, q0, p0, params: dict | None, inputs: dict, batch: int) -> Members:
    """Check and bind the members' data: q0, p0 [B, *shape]; each param a number or [B];
    each input its declared shape (shared) or [B, *that] (per member)."""
    q_name, p_name = sim.info.q, sim.info.p
    qs = _as_float_array(q_name, q0, None)
    ps = _as_float_array(p_name, p0, None)
    for name, arr in ((q_name, qs), (p_name, ps)):
        if arr.ndim == 0 or len(arr) != batch:
            raise TpcError(f"batch={batch} needs '{name}' with a leading dimension of {batch} "
                           f"(one state per member), got shape {list(arr.shape)}")
    per_member, given = set(), {}
    for name, value in inputs.items():
        declared = sim.info.inputs.get(name)
        arr = _as_float_array(name, value, None)
        if declared is not None and arr.ndim == len(declared) + 1:
            if len(arr) != batch:
                raise TpcError(f"input '{name}' given per member needs a leading dimension of "
                               f"{batch}, got shape {list(arr.shape)}")
            per_member.add(name)
        given[name] = arr
    # Member 0 through the single-run checks (shapes, sizes, finiteness); the others have the
    # same shapes by construction, so only their values are left to check.
    _, _, _, sizes = bind_arrays(sim.info, qs[0], ps[0],
                                 {k: v[0] if k in per_member else v for k, v in given.items()})
    for name, arr in ((q_name, qs), (p_name, ps), *((k, given[k]) for k in sorted(per_member))):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            member, *index = (int(i) for i in bad[0])
            raise TpcError(f"member {member}: initial value of '{name}' is not finite at index "
                           f"{index[0] if len(index) == 1 else tuple(index)}")
    shared, varying = param_values(sim.info.params, params, batch)
    table = np.empty((batch, max(1, len(shared))), np.float64)
    table[:] = list(shared.values()) or [0.0]
    for j, k in enumerate(shared):
        if k in varying:
            table[:, j] = varying[k]
    dtype = sim.dtype
    flat = {k: (v.reshape(batch, -1) if k in per_member else v.ravel()).astype(dtype)
            for k, v in given.items()}
    return Members(qs.reshape(batch, -1).astype(dtype), ps.reshape(batch, -1).astype(dtype),
                   table.astype(dtype), flat, per_member, sizes, varying)


def _rows(a: np.ndarray, batch: int, offset: int = 0) -> np.ndarray:
    """The address of each member's row of a [B, ...] array (plus a byte offset)."""
    return (np.uint64(a.ctypes.data + offset)
            + np.arange(batch, dtype=np.uint64) * np.uint64(a.strides[0]))


def member_table(native, name: str, m: Members, named: dict) -> np.ndarray:
    """The argument table of `name` for every member: the env role from `m`; the others by
    name from `named`, each a number (the same for all) or a [B, ...] array (each member its
    row) or (array, byte offset); for a function with a result, `named["result"]` [B]."""
    from tpc.runtime.members import arg_kinds, result_kind, word

    real = "f32" if native.abi["precision"] == "f32" else "f64"
    cols: list = []
    for role in native.roles(name):
        if role == "env":
            cols += [_rows(m.q, m.batch), _rows(m.p, m.batch), _rows(m.params, m.batch)]
            for inp in native.abi["inputs"]:
                v = m.inputs[inp]
                cols.append(_rows(v, m.batch) if inp in m.per_member else np.uint64(v.ctypes.data))
            cols += [np.uint64(m.sizes[size]) for size in native.abi["sizes"]]
            continue
        kind, key, *_ = role.split(":")
        value = named[key]
        if kind == "real":
            cols.append(word(value, real))
        elif kind == "index":
            cols.append(np.uint64(value))
        elif isinstance(value, tuple):
            cols.append(_rows(value[0], m.batch, value[1]))
        else:
            cols.append(_rows(value, m.batch))
    if result_kind(native, name):
        cols.append(_rows(named["result"], m.batch))
    table = np.empty((m.batch, len(cols)), np.uint64)
    for j, c in enumerate(cols):
        table[:, j] = c
    assert len(cols) == len(arg_kinds(native, name)) + bool(result_kind(native, name))
    return table


def call_members(native, name: str, m: Members, threads: int = 1, **named) -> None:
    from tpc.runtime.members import call_rows

    call_rows(native, name, member_table(native, name, m, named), threads)


def energies(native, m: Members) -> np.ndarray:
    """H of every member's state, float64 [B]."""
    out = np.empty(m.batch)
    call_members(native, "energy", m, result=out)
    return out


def check_members_start(sim, m: Members) -> None:
    """check_start for every member, the energies computed natively for all of them; the
    first member whose H is not finite gets the single run's error, naming it."""
    for b in range(m.batch) if sim.info.neutral else ():
        try:
            sim.check_neutral(m.member_inputs(b))
        except TpcError as e:
            raise TpcError(f"member {b}: {e.message}", e.loc, e.notes) from None
    native = sim.native
    parts = native.abi.get("parts") or []
    if not native.has("energy_parts") or not parts:
        return
    values = np.empty((m.batch, len(parts)))  # f64:out:parts in every precision
    call_members(native, "energy_parts", m, out=values)
    bad = ~np.isfinite(values).all(axis=1) | ~np.isfinite(energies(native, m))
    if bad.any():
        b = int(np.argmax(bad))
        try:
            sim.check_start(m.env(b))
        except TpcError as e:
            raise TpcError(f"member {b}: {e.message}", e.loc, e.notes) from None


def member_buffers(native, m: Members, dt: float, carry: dict | None, shape: tuple[int, ...]
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the scratch buffers of `run` for every member, [B, size]; the carried run state,
    [B, n], from `carry` (values [B, *shape]) or zero)."""
    batch, n = m.q.shape
    one = native.scratch("run", n, env=m.env(0), dt=dt)
    bufs = {}
    for key, buf in one.items():
        if key.startswith("out_"):
            continue
        bufs[key] = np.empty((batch, buf.size), buf.dtype)
        bufs[key][:] = buf  # the status at STATUS_OK, carried state at zero, member 0's maps
    for b in range(1 if "maps" in bufs or "bodies" in bufs else batch, batch):
        # the exact flows' maps depend on each member's params and inputs
        if "maps" in bufs:
            bufs["maps"][b] = native.linear_maps(m.env(b), dt).ravel()
        if "bodies" in bufs:
            bufs["bodies"][b] = native.kepler_bodies(m.env(b)).ravel()
    names = native.carry
    carried = {}
    for key in carry or {}:
        if key not in names:
            have = ", ".join(names) or "none (compile with kahan=True to carry compensations)"
            raise TpcError(f"carry '{key}' is not run state of this code (carried: {have})")
    for name in names:
        buf = np.zeros((batch, n), native.dtype)
        if carry and name in carry:
            value = np.asarray(carry[name])
            if value.shape[:1] != (batch,) or value[0].size != n:
                raise TpcError(f"batch={batch} needs carry '{name}' shaped [{batch}, "
                               f"{', '.join(map(str, shape))}], got {list(value.shape)}")
            buf[:] = value.reshape(batch, n)
        carried[name] = buf
    return bufs, carried


def run_members(sim, m: Members, dt: float, steps: int, save_every: int, carry: dict | None,
                threads: int | None, progress: bool, reports: Reports):
    """Every member stepped `steps` steps; a batch-first Trajectory (PartialRun on a member
    whose state turns non-finite, with the rows every member completed; InvariantDrift, with
    every member's rows up to it, at the first snapshot where a member's energy or proved
    charge drifted past sim's check_invariants). Each member's monitors are computed from its
    snapshots with its own params and inputs."""
    from tpc.api import InvariantDrift, PartialRun, Trajectory
    from tpc.invariants import MemberWatch, member_monitors

    native = sim.native
    batch, n = m.q.shape
    shape = sim._concrete_shape(n)
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise TpcError(f"threads must be a whole number >= 1, got {threads!r}")
    rows, plan = snapshot_grid.plan(steps, save_every)
    out_q = np.empty((batch, rows, n), sim.dtype)
    out_p = np.empty((batch, rows, n), sim.dtype)
    out_h = np.empty((batch, rows))
    t = np.zeros(rows)
    out_q[:, 0], out_p[:, 0] = m.q, m.p
    out_h[:, 0] = energies(native, m)
    bufs, carried = member_buffers(native, m, dt, carry, shape)
    status = bufs["status"]
    named = bufs | carried | {"dt": dt}
    # A native call per chunk of snapshots keeps Ctrl-C and the progress bar responsive.
    chunk = max(1, int(2e7 // max(1, save_every * n * batch // threads)))
    done_rows, step = 1, 0
    grid = {k: v.copy() for k, v in carried.items()}
    watch = None
    if sim._tol is not None:
        chunk = min(chunk, 64)  # checked between native calls: stop soon after a violation
        watch = MemberWatch(native, m, sim._tol)
    bar = Progress(steps, 0, members=batch) if progress else None
    t0 = time.perf_counter()

    def trajectory(rows_kept: int, steps_done: int, end: dict, at_grid: dict) -> Trajectory:
        def shaped(state: dict) -> dict:
            return {k: v.reshape(batch, *shape).copy() for k, v in state.items()}

        traj = Trajectory(t[:rows_kept].copy(), out_q[:, :rows_kept].reshape(batch, rows_kept,
                                                                             *shape).copy(),
                          out_p[:, :rows_kept].reshape(batch, rows_kept, *shape).copy(),
                          out_h[:, :rows_kept].copy(), steps_done, time.perf_counter() - t0,
                          carry=shaped(end), grid_carry=shaped(at_grid), batch=batch,
                          names=(sim.info.q, sim.info.p), box=sim.info.box)
        traj.monitors = member_monitors(sim, m, traj.q, traj.p, traj.H)
        return traj

    def check() -> None:
        hit = watch.feed(out_q[:, watch.rows:done_rows], out_p[:, watch.rows:done_rows],
                         out_h[:, watch.rows:done_rows])
        if hit is None:
            return
        b, row, name, d = hit
        at = int(round(t[row] / dt))
        raise InvariantDrift(f"member {b}: {name} drifted by {d:.3e} (more than "
                             f"--check-invariants {sim._tol:g}) at step {at} (t = {t[row]:g}); "
                             f"{row + 1} snapshot(s) of every member kept",
                             trajectory(row + 1, at, carried, grid))

    def report() -> None:
        reports.send(done_rows, step, t, out_q.reshape(batch, rows, *shape),
                     out_p.reshape(batch, rows, *shape), out_h, batched=True)

    try:
        for stride, count in plan:
            left = count
            while left:
                k = min(chunk, left, reports.limit(done_rows) or left)
                window = {key: (a, done_rows * a.strides[1]) for key, a in
                          (("out_q", out_q), ("out_p", out_p), ("out_H", out_h))}
                call_members(native, "run", m, threads, nsnap=k, stride=stride, step0=step,
                             **named, **window)
                bad = np.nonzero(status[:, 0] != -1.0)[0]
                if len(bad):
                    stops = [snapshot_grid.stopped_at(int(c)) for c in status[bad, 0]]
                    at = np.array([s for s, _ in stops])
                    good = int(np.min((at - step) // stride))
                    snapshot_grid.fill_times(t, done_rows, step, stride, good, dt)
                    done_rows += good
                    report()
                    first = int(np.argmin(at))
                    what = stops[first][1]
                    listed = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
                    raise PartialRun(f"member {bad[first]}: {what} at step {at[first] + 1} "
                                     f"(t = {(at[first] + 1) * dt:g}); members failing: "
                                     f"{listed}; {done_rows} snapshot(s) of every member kept",
                                     trajectory(done_rows, step + good * stride, carried, grid))
                snapshot_grid.fill_times(t, done_rows, step, stride, k, dt)
                step += k * stride
                done_rows += k
                left -= k
                if stride == save_every:
                    grid = {key: v.copy() for key, v in carried.items()}
                if reports.due(done_rows):
                    report()
                if watch is not None:
                    check()
                if bar:
                    bar.update(step)
    except KeyboardInterrupt:
        report()
        raise PartialRun(f"interrupted at step {step}; {done_rows} snapshot(s) of every member "
                         f"kept", trajectory(done_rows, step, grid, grid),
                         interrupted=True) from None
    finally:
        if bar:
            bar.close()
    report()
    return trajectory(done_rows, step, carried, grid)
