"""The Python API: `tpc.compile(path_or_source, **options).run(q0, p0, dt=..., steps=...)`.

`compile` first looks for the build in the compile cache (tpc.build_cache): a hit gives a
Simulation made of the cached options, SystemInfo, program and library, with no front end,
no IR and no LLVM; the ham module is generated again only when something asks for it
(`Simulation.module`). A miss runs the front end and the ham passes, and `native` lowers,
links and stores the build on first use. Where no shared library can be linked, the object
code alone is cached and loaded through MCJIT (tpc.runtime.jit), with the front end run on
every call.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tpc import build_cache, compiler, snapshot_grid
from tpc.diagnostics import RunError, TpcError
from tpc.reporting import Progress, Reports
from tpc.runtime.native import DTYPES
from tpc.system_info import SystemInfo

if TYPE_CHECKING:
    from tpc.dialects import ham

VERSION = "0.1.0"
# precision -> (numpy dtype of every buffer, ctypes type of dt and of energy's result)
PRECISIONS = DTYPES


@dataclass
class Trajectory:
    """Snapshots of a run: row k is the state after k * save_every steps (row 0 the start).

    H is float64 in every precision (the energy of each snapshot's state evaluated in
    float64). `carry` is the run state beyond q and p at the end of the run, by name (with
    kahan: the compensations kahan_q, kahan_p, shaped like q): pass it back as
    `run(..., carry=traj.carry)` to continue from the last snapshot exactly where the run
    stopped; empty for a plain run."""

    t: np.ndarray
    q: np.ndarray
    p: np.ndarray
    H: np.ndarray
    steps_done: int
    wall_time: float = 0.0
    folded: bool = False
    note: str = ""  # a run-time decision worth telling the user (e.g. folding skipped)
    carry: dict[str, np.ndarray] = field(default_factory=dict)
    fold_method: str = ""  # how a folded run evolved its map (tpc.runtime.fold.METHODS)
    fold_how: str = ""  # the same, in words
    fold_carry: object = None  # a folded run's own state at its last full-stride row
    # the carried run state at the last row on the snapshot grid (where a resumed run
    # restarts; `carry` is at the last step, after a remainder of steps)
    grid_carry: dict[str, np.ndarray] = field(default_factory=dict)
    box: tuple[float, ...] | None = None  # a periodic system's box lengths
    # The monitored quantities at each snapshot, by name: the conserved quantities ham-symmetry
    # proved (P_x, L_z, ...) and the user's observables (tpc.invariants)
    monitors: dict[str, np.ndarray] = field(default_factory=dict)

    # an ensemble's member count: q, p are then [B, rows, *shape], H [B, rows]; None for one run
    batch: int | None = None
    names: tuple[str, str] = ("q", "p")  # the state's names in the source (`x`, `px`)
    # what was derived from the run and is written with it (tpc run --lyapunov: lyapunov, ...)
    derived: dict[str, np.ndarray] = field(default_factory=dict)
    # with run(tangent=...): the tangent at each snapshot, shaped like q and p
    dq: np.ndarray | None = None
    dp: np.ndarray | None = None
    # A streamed run's HDF5 file: t, q, p, H and the monitors are then read from it on demand
    # (tpc.h5stream.Stored), not held in memory.
    file: str | None = None

    @property
    def q_wrapped(self) -> np.ndarray:
        """q with every position in the box, [0, L) per axis. q itself is the unwrapped run
        state (positions move continuously across the box, so displacements and diffusion
        are read off q); H depends only on the images."""
        if self.box is None:
            return self.q
        box = np.asarray(self.box, dtype=self.q.dtype)
        return self.q - box * np.floor(self.q / box)

    def __getitem__(self, name: str) -> np.ndarray:
        """The state by its name in the source: traj["x"] is traj.q for `state x[3], px[3]`."""
        arrays = {"t": self.t, "H": self.H, self.names[0]: self.q, self.names[1]: self.p}
        if name not in arrays:
            raise KeyError(f"no array '{name}' (known: {', '.join(arrays)})")
        return arrays[name]

    def energy_error(self) -> float | np.ndarray:
        """max |H - H0| / |H0| over the snapshots (absolute when H0 is 0); for an ensemble, an
        array with each member's."""
        h = np.asarray(self.H)
        if h.shape[-1] == 0:
            return np.zeros(h.shape[:-1]) if h.ndim > 1 else 0.0
        h0 = h[..., :1]
        scale = np.where(h0 != 0, np.abs(h0), 1.0)
        err = np.max(np.abs(h - h0) / scale, axis=-1)
        return err if h.ndim > 1 else float(err)

    def relative_energy_error(self) -> np.ndarray:
        """|H - H0| / |H0| at each snapshot (absolute when H0 is 0), shaped like H."""
        h = np.asarray(self.H)
        h0 = h[..., :1]
        return np.abs(h - h0) / np.where(h0 != 0, np.abs(h0), 1.0)

    def member(self, b: int) -> Trajectory:
        """Member b of an ensemble, as the Trajectory of a single run."""
        if self.batch is None:
            raise TpcError("member() is for ensembles (run with batch=B)")
        return Trajectory(self.t, self.q[b], self.p[b], self.H[b], self.steps_done,
                          self.wall_time, self.folded, self.note,
                          {k: v[b] for k, v in self.carry.items()},
                          grid_carry={k: v[b] for k, v in self.grid_carry.items()},
                          names=self.names, box=self.box,
                          monitors={k: v[b] for k, v in self.monitors.items()})

    def plot(self, path: str | None = None, *, member: int | None = None):
        """Relative energy error against t (log scale) and the phase portraits; written to
        `path` (.png or .pdf) when given. Returns the matplotlib Figure (the `plot` extra)."""
        from tpc.plot import plot_trajectory

        return plot_trajectory(self, path, member=member)


class PartialRun(RunError):
    """A run stopped early; `trajectory` holds every snapshot computed before the failure."""

    exit_code = 1

    def __init__(self, message: str, trajectory: Trajectory, interrupted: bool = False):
        super().__init__(message)
        self.trajectory = trajectory
        self.interrupted = interrupted  # stopped by Ctrl-C (not by the state)


class InvariantDrift(PartialRun):
    """`check_invariants=TOL`: a conserved quantity drifted past TOL; `trajectory` keeps every
    snapshot computed, the first one past TOL last."""

    exit_code = 3


@functools.cache
def compiler_fingerprint() -> str:
    """A hash of the compiler's own code, so a changed compiler never reuses stale objects."""
    import tpc.dialects
    import tpc.passes
    import tpc.runtime

    digest = hashlib.sha256()
    for pkg in (tpc, tpc.dialects, tpc.passes, tpc.runtime):
        for path in sorted(Path(pkg.__path__[0]).glob("*.py")) + sorted(
            Path(pkg.__path__[0]).glob("*.lark")
        ):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _is_source(text: str) -> bool:
    return "{" in text and "system" in text


@dataclass
class Simulation:
    """A compiled .ham program, ready to run many times with different data."""

    program: object
    _module: object  # the ham module (after the ham passes); None until used, from the cache
    options: compiler.Options
    info: SystemInfo
    source: str
    compile_time: float = 0.0
    cache_hit: bool = False
    _native: object = field(default=None, repr=False)
    _twin: Simulation | None = field(default=None, repr=False)
    _build: tuple | None = field(default=None, repr=False)  # (Build, library) from the cache
    _request: str | None = field(default=None, repr=False)  # its key (tpc.build_cache)
    # (parts of a flow, symmetry) -> proved invariant: ham-symmetry's answers, kept
    _flows: dict = field(default_factory=dict, repr=False)

    @property
    def module(self):
        """The ham module after the ham passes (generated again for a build from the cache)."""
        if self._module is None:
            from tpc import irgen, pipeline

            module = irgen.generate(self.program)
            compiler.run_ham_passes(self.program, module, pipeline.PassRunner())
            self._module = module
        return self._module

    # ------------------------------------------------------------------ building
    @property
    def cache_key(self) -> str:
        text = f"{VERSION}\n{compiler_fingerprint()}\n{self.options!r}\n{self.source}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def request_key(self) -> str:
        """The build cache's key: that of the compile() call that made this, else of these
        (resolved) options."""
        if self._request is None:
            self._request = build_cache.request_key(VERSION, compiler_fingerprint(),
                                                    self.options, self.source)
        return self._request

    @property
    def native(self):
        """The compiled module (tpc.runtime.native.Native: code plus ABI table)."""
        if self._native is None:
            from tpc.runtime.native import Native

            t0 = time.perf_counter()
            if self._build is None:
                self._build = build_cache.load(self.request_key, self.program.path)
            if self._build is not None:
                from tpc.runtime.sharedlib import SharedLibrary

                build, library = self._build
                lib = SharedLibrary(library, meta=build.abi)
                self._flows = {**build.flows, **self._flows}
                self.cache_hit = True
            else:
                lib = self._compile_native()
            self._native = Native.of(lib)
            self.compile_time += time.perf_counter() - t0
        return self._native

    def _compile_native(self):
        """Lower, compile and (with a linker) link and store the build; else the object
        cache and MCJIT."""
        import json

        from tpc.runtime import jit
        from tpc.runtime.native import fold_of

        shared = build_cache.enabled()
        if not shared:
            lib = jit.load_cached(self.cache_key)
            self.cache_hit = lib is not None
            if lib is not None:
                return lib
        from tpc import lowering, pipeline
        from tpc.passes.abi import read_abi

        module = self.module.clone()
        try:
            lowering.lower(module, "llvm", self.options, pipeline.PassRunner())
        except TpcError as e:  # a pass refused the scheme: point at the integrator
            raise compiler.located_at_integrator(e, self.program, self.options) from None
        abi = read_abi(module)
        meta = json.dumps(abi).encode()
        # A folded run executes the step only 2n+1 times to build its matrix: O1 is
        # plenty and compiles several times faster than O3.
        opt_level = 1 if fold_of(abi)["method"] else 3
        if shared:
            from tpc.runtime.sharedlib import SharedLibrary

            obj, _ = jit.emit_object(module, opt_level=opt_level, shared=True)
            self._flows.update(self._flow_answers(abi))
            build = build_cache.Build(self.options, self.info, self.program, meta,
                                      dict(self._flows))
            resolved = build_cache.request_key(VERSION, compiler_fingerprint(), self.options,
                                               self.source)
            library = build_cache.store([self.request_key, resolved], obj, build)
            if library is not None:
                return SharedLibrary(library, meta=meta, from_cache=False)
        return jit.compile_llvm_module(module, cache_key=self.cache_key, opt_level=opt_level,
                                       meta=meta)

    def _flow_answers(self, abi: dict) -> dict:
        """What tpc.invariants.how_conserved asks ham-symmetry of this build (a flow of parts
        not each proved invariant), answered now so that a run from the cache needs no IR."""
        from tpc.invariants import CHARGES

        invariant = self.invariant_parts
        every = set(invariant)
        flows = (abi.get("scheme") or {}).get("flows") or [sorted(every)]
        for entry in abi.get("monitors") or ():
            if entry.get("quantity") not in CHARGES:
                continue
            for f in flows:
                if set(f) != every and not all(entry["symmetry"] in invariant.get(p, [])
                                               for p in f):
                    self.flow_invariant(f, entry["symmetry"])
        return self._flows

    def flow_invariant(self, parts, symmetry: str) -> bool:
        """Whether the sum of `parts` (one flow of the scheme) is proved invariant under
        `symmetry` (tpc.passes.ham_symmetry.flow_invariant)."""
        key = (tuple(parts), symmetry)
        if key not in self._flows:
            from tpc.passes.ham_symmetry import flow_invariant

            self._flows[key] = flow_invariant(self.system, list(parts), symmetry)
        return self._flows[key]

    def twin_native(self):
        """The float64 build of this (float32) simulation, from which a folded run builds its
        map (see tpc.runtime.fold, precision)."""
        if self._twin is None:
            self._twin = Simulation(self.program, self._module,
                                    replace(self.options, precision="f64"), self.info,
                                    self.source)
        native = self._twin.native
        self.compile_time, self._twin.compile_time = (self.compile_time
                                                      + self._twin.compile_time, 0.0)
        return native

    @property
    def folded(self) -> bool:
        """Whether sym-fold-linear folded the time loop (read from the compiled module)."""
        return bool(self.native.fold["method"])

    @property
    def fold_reason(self) -> str:
        return self.native.fold["reason"]

    @property
    def dtype(self) -> type:
        """numpy dtype of the native buffers (q, p, params, inputs, outputs, scratch):
        float32 for precision="f32", else float64. Trajectory q and p have this dtype (H is
        float64)."""
        return PRECISIONS[self.options.precision][0]

    # ------------------------------------------------------------------ running
    def bind(self, q0, p0, params: dict | None, inputs: dict):
        from tpc.ensemble import param_values
        from tpc.runtime.native import Bound
        from tpc.simulate import bind_arrays

        q, p, ins, sizes = bind_arrays(self.info, q0, p0, inputs)
        self.check_neutral(ins)
        values, _ = param_values(self.info.params, params, None)
        param_buf = np.array(list(values.values()) or [0.0], dtype=self.dtype)
        if self.dtype != np.float64:  # bind_arrays gives float64 copies
            q, p = q.astype(self.dtype), p.astype(self.dtype)
            ins = {k: v.astype(self.dtype) for k, v in ins.items()}
        return Bound(q, p, param_buf, ins, sizes)

    def check_neutral(self, inputs: dict[str, np.ndarray]) -> None:
        """An Ewald sum (ham-ewald) is defined for a neutral cell only."""
        for name in self.info.neutral:
            charges = inputs[name]
            total, scale = float(np.sum(charges)), float(np.sum(np.abs(charges)))
            if abs(total) > 1e-12 * scale:
                raise TpcError(f"the Ewald sum needs a neutral cell: the charges '{name}' "
                               f"add up to {total:.17g}", self._input_loc(name))

    def _input_loc(self, name: str):
        return next((a.loc for a in self.program.system.inputs if a.name == name), None)

    @property
    def system(self) -> ham.SystemOp:
        from tpc.dialects import ham

        return next(op for op in self.module.walk() if isinstance(op, ham.SystemOp))

    @property
    def invariant_parts(self) -> dict[str, list[str]]:
        """{part: the symmetries ham-symmetry proved it invariant under}."""
        return self.info.invariant_under

    def energy(self, q0, p0, params: dict | None = None, **inputs) -> float:
        return float(self.native.call("energy", self.bind(q0, p0, params, inputs)))

    def part_energies(self, q0, p0, params: dict | None = None, **inputs) -> dict[str, float]:
        """Each part of H at the given state, by name (the parts after ham-level rewrites)."""
        parts = self.native.abi.get("parts") or []
        values = np.empty(len(parts), self.dtype)
        self.native.call("energy_parts", self.bind(q0, p0, params, inputs), out=values)
        return {name: float(v) for name, v in zip(parts, values)}

    def check_start(self, env) -> None:
        """Refuse an initial state at which H is not finite, naming the part (and its place in
        the source) that is not: a run from it would fail at step 1 with no hint why."""
        parts = self.native.abi.get("parts") or []
        if not self.native.has("energy_parts") or not parts:
            return
        values = np.empty(len(parts))  # the ABI role is f64:out:parts in every precision
        self.native.call("energy_parts", env, out=values)
        total = self.native.call("energy", env)
        bad = [k for k, v in enumerate(values) if not np.isfinite(v)]
        in_f32 = " in float32" if self.dtype == np.float32 else ""
        if not bad:
            if np.isfinite(total):
                return
            hs = self.program.system.hamiltonians
            raise TpcError(f"H is not finite at the initial state{in_f32}: its parts are, but "
                           f"their sum is {total}", hs[0].loc if hs else None)
        from tpc.compiler import loc_of

        system = self.system
        first, *more = bad
        notes = tuple(f"{loc_of(system.part(parts[k]), self.program) or 'part'}: part "
                      f"{parts[k]} is {values[k]} too" for k in more)
        raise TpcError(f"H is not finite at the initial state{in_f32}: its part {parts[first]} "
                       f"is {values[first]}", loc_of(system.part(parts[first]), self.program),
                       notes)

    def gradient(self, q0, p0, params: dict | None = None, **inputs) -> tuple[np.ndarray, ...]:
        """(dH/dq, dH/dp) at the given state, from the compiled derived code."""
        env = self.bind(q0, p0, params, inputs)
        out = []
        for name in (self.info.q, self.info.p):
            g = np.zeros_like(env.q)
            self.native.call(f"grad_{name}", env, out=g)
            out.append(g)
        return tuple(out)

    def run(self, q0, p0, *, dt: float, steps: int, save_every: int = 1,
            params: dict | None = None, batch: int | None = None, progress: bool = False,
            device: str = "cpu", carry: dict | None = None, reporter=None,
            report_every: int = 1, threads: int | None = None, client=None,
            check_invariants: float | None = None, output: str | None = None,
            compress: bool = False, output_arrays: dict | None = None, tangent=None,
            **inputs) -> Trajectory:
        """`steps` steps from (q0, p0); `carry`: the carried run state to start from (a
        previous Trajectory's `carry`, to continue it bitwise as if never stopped; zero when
        absent or None).

        batch=B runs an ensemble: q0, p0 are [B, *shape]; a param may be an array of B values
        and an input [B, *its shape] (one per member), else it is shared. The result is
        batch-first (q [B, rows, *shape], H [B, rows]); member b equals the single run of its
        data bit for bit. Members run in one native loop on `threads` threads (default: the
        cores this process may use).

        reporter(snapshots) is called every `report_every` snapshots with the rows computed
        since its last call (tpc.reporting.Snapshots), and once at the end with the rest.

        client: a distributed.Client: the ensemble's members run in chunks on its workers
        (tpc.cluster), each compiling once from the source, gathered in order; bitwise the
        local run.

        check_invariants=TOL: stop (InvariantDrift) at the first snapshot where the energy or
        a proved conserved quantity drifted by more than TOL.

        output="run.h5" streams the snapshots to HDF5 as the run goes (tpc.h5stream; gzipped
        with compress=True), holding only a window of them in memory: the returned
        Trajectory (and that of a PartialRun) reads its arrays from the file (`traj.file`);
        output_arrays: more named arrays the file records with the run (tpc run --lyapunov's).

        tangent=(dq0, dp0) (or 2n numbers, q then p): also carry that tangent through the
        steps (the tangent map, tpc.derivatives); the trajectory then has `dq` and `dp` at
        every snapshot."""
        _check_run_numbers(dt, steps, save_every)
        if tangent is not None:
            from tpc import derivatives

            if (batch is not None or device != "cpu" or carry is not None or client is not None
                    or reporter is not None or check_invariants is not None
                    or output is not None):
                raise TpcError("tangent= is for single runs on the cpu device (no batch, "
                               "carry, client, reporter, check_invariants or output)")
            return derivatives.run_with_tangent(self, q0, p0, tangent, dt=dt, steps=steps,
                                                save_every=save_every, params=params,
                                                **inputs)
        if output is not None:
            if batch is not None or client is not None or device != "cpu":
                raise TpcError("output= streams single runs on the cpu device (no batch=, "
                               "client= or device='cuda')")
            return self._run_streamed(output, compress, q0, p0, inputs, dict(
                dt=dt, steps=steps, save_every=save_every, params=params, progress=progress,
                carry=carry, reporter=reporter, report_every=report_every,
                check_invariants=check_invariants), dict(output_arrays or {}))
        self._tol, self._dt = check_invariants, dt
        if check_invariants is not None and device != "cpu":
            raise TpcError("check_invariants is only supported on the cpu device")
        if self.options.shadow and device != "cpu":
            raise TpcError("the shadow Hamiltonian is only evaluated on the cpu device")
        reports = Reports(reporter, report_every)
        if batch is not None:
            from tpc.ensemble import bind_members, check_batch, check_members_start

            members = bind_members(self, q0, p0, params, inputs, check_batch(batch))
            check_members_start(self, members)
        else:
            self.check_start(self.bind(q0, p0, params, inputs))
        if client is not None:
            from tpc.cluster import run_on_cluster

            if batch is None or device != "cpu" or reporter is not None:
                raise TpcError("client= runs ensembles on the CPUs of a Dask cluster: it needs "
                               "batch=B, device='cpu' and no reporter")
            from tpc.invariants import members_checked

            return members_checked(self, run_on_cluster(self, client, q0, p0, params, inputs,
                                                        members, dt, steps, save_every, carry),
                                   members, dt)
        if device == "cuda":
            from tpc.gpu import run_on_cuda

            if reporter is not None:
                raise TpcError("reporter is not available on the cuda device (it runs the "
                               "whole run in one launch)")
            return run_on_cuda(self, q0, p0, dt=dt, steps=steps, save_every=save_every,
                               params=params, batch=batch, carry=carry, **inputs)
        if device != "cpu":
            raise TpcError(f"unknown device '{device}' (known: cpu, cuda)")
        if batch is not None:
            return self._run_batch(members, dt, steps, save_every, params, carry, threads,
                                   progress, reports)
        env = self.bind(q0, p0, params, inputs)
        carried = self._carry_buffers(carry, env.q.size)
        note = ""
        if self.folded:
            from tpc.runtime.fold import fold_seconds

            method = self.native.fold["method"]
            if method == "expm" or not self.native.has("run"):
                return self._checked(self._run_folded(env, dt, steps, save_every, method,
                                                      reports=reports), dt)
            # Folding costs O(n^3) once; stepping O(steps). Decide with the measured step time.
            per_step = self._step_seconds(env, dt, min(steps, 64))
            fold = fold_seconds(env.q.size, steps, save_every, self.info.separable, per_step)
            if fold <= steps * per_step:
                return self._checked(self._run_folded(env, dt, steps, save_every, method,
                                                      reports=reports), dt)
            note = (f"folding skipped at run time: {steps} steps cost about "
                    f"{steps * per_step:.3g} s stepped, {fold:.3g} s folded")
        traj = self._run_stepped(env, dt, steps, save_every, progress, carried,
                                 reports=reports)
        traj.note = note
        return traj

    # ------------------------------------------------------------------ derivatives
    def jacobian(self, q0, p0, *, dt: float, steps: int, params: dict | None = None,
                 **inputs) -> np.ndarray:
        """The monodromy matrix d z(T) / d z(0) of `steps` steps, z = (q flat, p flat), from
        2n tangent runs (for small systems); symplectic: M^T J M = J to round-off."""
        from tpc import derivatives

        return derivatives.jacobian(self, q0, p0, dt=dt, steps=steps, params=params, **inputs)

    def lyapunov(self, q0, p0, *, dt: float, steps: int, renormalize_every: int | None = None,
                 spectrum: bool = False, seed: int = 0, params: dict | None = None, **inputs):
        """The maximal Lyapunov exponent, its finite-time history and MEGNO
        (tpc.derivatives.Lyapunov); spectrum=True: every exponent (Benettin QR, 2n tangents)."""
        from tpc import derivatives

        return derivatives.lyapunov(self, q0, p0, dt=dt, steps=steps,
                                    renormalize_every=renormalize_every, spectrum=spectrum,
                                    seed=seed, params=params, **inputs)

    def vjp(self, q0, p0, *, dt: float, steps: int, cotangent, save_every: int | None = None,
            params: dict | None = None, rtol: float | None = None, wrt_params: bool = True,
            **inputs):
        """Gradients of <cotangent, z(T)> with respect to q0, p0, every param and input, in
        O(state) memory (the run reversed with -dt, tpc.derivatives.VJP). With save_every, the
        cotangent has one row per snapshot and the loss sums over them. wrt_params=False:
        only the gradients with respect to q0 and p0 (cheaper; required through a Kepler
        flow)."""
        from tpc import derivatives

        return derivatives.vjp(self, q0, p0, dt=dt, steps=steps, cotangent=cotangent,
                               save_every=save_every, params=params, rtol=rtol,
                               wrt_params=wrt_params, **inputs)

    # the run in progress: its check_invariants and its dt (for the shadow Hamiltonian)
    _tol: float | None = field(default=None, repr=False)
    _dt: float | None = field(default=None, repr=False)
    _sink: object = field(default=None, repr=False)  # a streamed run's H5Stream

    def _run_streamed(self, output: str, compress: bool, q0, p0, inputs: dict,
                      options: dict, extra: dict | None = None) -> Trajectory:
        """run(..., output=FILE.h5): the run with its rows going to an H5Stream, the file
        finished (renamed into place) however the run ends."""
        from tpc.h5stream import H5Stream
        from tpc.output import check_writable
        from tpc.runner import end_arrays, final_metadata, output_format, run_metadata
        from tpc.simulate import RunConfig

        if output_format(str(output)) != "hdf5":
            raise TpcError(f"output= streams the snapshots to HDF5 (.h5 or .hdf5), not "
                           f"'{output}'; other formats are written from the returned "
                           "Trajectory (tpc run -o writes .npz, .xyz and .dcd)")
        output = str(output)
        check_writable(output)
        dt, steps, save_every, params = (options[k] for k in ("dt", "steps", "save_every",
                                                              "params"))
        env = self.bind(q0, p0, params, inputs)
        self.check_start(env)  # before the file: a refused start leaves no output behind
        shape = self._concrete_shape(env.q.size)
        cfg = RunConfig(None, dt, steps, save_every,
                        dict(self.info.params) | {k: float(v) for k, v in (params or {}).items()},
                        env.q.reshape(shape), env.p.reshape(shape),
                        {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()},
                        dict(env.sizes))
        stream = H5Stream(output, (self.info.q, self.info.p), shape, self.dtype,
                          run_metadata(self, cfg), cfg.inputs, compress=compress)

        def land(traj: Trajectory, complete: bool) -> None:
            if stream.written == 0:  # a folded run: its map gave every row at once
                stream.write_all(traj)
            stream.finish(final_metadata(traj), end_arrays(traj) | (extra or {}), complete,
                          traj)

        self._sink = stream
        try:
            traj = self.run(q0, p0, **options, **inputs)
        except PartialRun as e:
            self._sink = None
            land(e.trajectory, False)
            raise
        except BaseException:
            stream.abandon()
            raise
        finally:
            self._sink = None
        land(traj, True)
        return traj

    def _checked(self, traj: Trajectory, dt: float) -> Trajectory:
        """traj (a folded run), or InvariantDrift at its first snapshot past check_invariants."""
        from tpc import invariants

        if self._tol is None or not len(traj.t):
            return traj
        hit = invariants.first_violation(
            invariants.watched(self.native, traj.monitors, traj.H), self._tol)
        if hit is not None:
            self._drifted(traj, hit, dt)
        return traj

    def _drifted(self, traj: Trajectory, hit, dt: float):
        """Raise InvariantDrift for `hit` = (row, name, drift), keeping rows 0..row."""
        row, name, d = hit
        keep = row + 1
        step = int(round(traj.t[row] / dt))
        if len(traj.t) == keep:  # a streamed run wrote only the rows kept
            cut = replace(traj, steps_done=step)
        else:
            cut = replace(traj, t=traj.t[:keep], q=traj.q[:keep], p=traj.p[:keep],
                          H=traj.H[:keep], monitors={k: v[:keep] for k, v in traj.monitors.items()},
                          steps_done=step)
        raise InvariantDrift(f"{name} drifted by {d:.3e} (more than --check-invariants "
                             f"{self._tol:g}) at step {step} (t = {traj.t[row]:g}); "
                             f"{keep} snapshot(s) kept", cut)

    def resume(self, prev: Trajectory, *, dt: float, steps: int, save_every: int,
               params: dict | None = None, progress: bool = False, **inputs) -> Trajectory:
        """`prev`, a run of this simulation with these dt, save_every, params and inputs,
        continued by `steps` more steps: the same trajectory, bitwise (t included), as one run
        of prev.steps_done + steps steps. It restarts from the last row on the snapshot grid
        (a last row after a remainder of steps is dropped and recomputed on the grid, where
        the uninterrupted run has its rows), with the carried run state there
        (prev.grid_carry); a folded run continues folded, by the method and from the state
        (prev.fold_carry) it stopped with. Returns every row, prev's included."""
        self._tol, self._dt = None, dt
        if not (np.isfinite(dt) and dt > 0) or steps < 0 or save_every < 1:
            raise TpcError(f"need dt > 0, steps >= 0 and save_every >= 1, got {dt}, {steps} "
                           f"and {save_every}")
        full = prev.steps_done // save_every
        if len(prev.t) not in (full + 1, full + 2):
            raise TpcError(f"cannot resume: {len(prev.t)} rows do not fit {prev.steps_done} "
                           f"steps saved every {save_every}")
        start = full * save_every
        todo = prev.steps_done + steps - start
        if start == 0:  # nothing to continue: the run from the start, deciding as it would
            return self.run(prev.q[0], prev.p[0], dt=dt, steps=todo, save_every=save_every,
                            params=params, progress=progress, **inputs)
        env = self.bind(prev.q[full], prev.p[full], params, inputs)

        def joined(new: Trajectory) -> Trajectory:
            def cat(a, b):  # b's first row is a's row `full`, where it restarted
                return np.concatenate([a[:full + 1], b[1:]])

            traj = Trajectory(cat(prev.t, new.t), cat(prev.q, new.q), cat(prev.p, new.p),
                              cat(prev.H, new.H), new.steps_done, new.wall_time,
                              new.folded, new.note, new.carry, new.fold_method, new.fold_how,
                              new.fold_carry, new.grid_carry, box=new.box, batch=new.batch,
                              names=new.names)
            traj.monitors = self._monitor_values(env, traj.q, traj.p, traj.H)
            return traj

        try:
            if prev.folded:
                if prev.fold_carry is None or not self.folded:
                    raise TpcError("cannot resume a folded run without its fold state")
                new = self._run_folded(env, dt, todo, save_every, prev.fold_method,
                                       step0=start, carry=prev.fold_carry)
            else:
                carried = self._carry_buffers(prev.grid_carry, env.q.size)
                new = self._run_stepped(env, dt, todo, save_every, progress, carried,
                                        step0=start)
        except PartialRun as e:
            raise PartialRun(e.message, joined(e.trajectory), e.interrupted) from None
        return joined(new)

    def _carry_buffers(self, carry: dict | None, n: int) -> dict[str, np.ndarray]:
        """Fresh buffers of the carried run state (the ABI's carry roles), zero or copied from
        `carry`; a carry the compiled code does not take is an error, not ignored."""
        names = self.native.carry if "run" in self.native.abi["functions"] else []
        carry = dict(carry or {})
        for key in carry:
            if key not in names:
                have = ", ".join(names) or "none (compile with kahan=True to carry compensations)"
                raise TpcError(f"carry '{key}' is not run state of this code (carried: {have})")
        out = {}
        for name in names:
            buf = np.zeros(n, self.dtype)
            if name in carry:
                value = np.asarray(carry[name])
                if value.size != n:
                    raise TpcError(f"carry '{name}' has {value.size} values; the state has {n}")
                buf[:] = value.ravel()
            out[name] = buf
        return out

    def _run_folded(self, env, dt, steps, save_every, method, step0=0, carry=None,
                    reports: Reports | None = None) -> Trajectory:
        from tpc.runtime.fold import run_folded
        from tpc.runtime.native import Bound

        twin = None
        if self.dtype != np.float64:
            def wide(a):
                return a.astype(np.float64)

            wide_env = Bound(wide(env.q), wide(env.p), wide(env.params),
                             {k: wide(v) for k, v in env.inputs.items()}, env.sizes)
            twin = (self.twin_native(), wide_env, float(self.dtype(dt)))
        r = run_folded(self.native, env, dt, steps, save_every, method, self.info.separable,
                       twin=twin, step0=step0, carry=carry)
        traj = self._trajectory(r.t, r.q, r.p, r.h, r.rows, r.steps, r.wall, env=env)
        traj.folded, traj.fold_method, traj.fold_how = True, r.method, r.how
        traj.fold_carry = r.carry
        if reports is not None:  # the map gives every snapshot at once: one report
            reports.send(len(traj.t), traj.steps_done, traj.t, traj.q, traj.p, traj.H, False)
        if r.error:
            raise PartialRun(f"{r.error}; {r.rows} snapshot(s) kept", traj,
                             interrupted=r.interrupted)
        return traj

    def _step_seconds(self, env, dt: float, k: int) -> float:
        """Wall time of one compiled step, from k steps run on a copy of the state."""
        if k <= 0:
            return 0.0
        copy = env.with_state(env.q.copy(), env.p.copy())
        # A trial on a copy of the state: its carried state starts at zero too.
        bufs = self.native.scratch("run", env.q.size, env=env, dt=dt)
        t0 = time.perf_counter()
        self.native.call("run", copy, dt=dt, nsnap=1, stride=k, step0=0, **bufs)
        return (time.perf_counter() - t0) / k

    def _run_batch(self, members, dt, steps, save_every, params, carry, threads, progress,
                   reports) -> Trajectory:
        from tpc.ensemble import run_members

        if not self.folded:
            return run_members(self, members, dt, steps, save_every, carry, threads, progress,
                               reports)
        # A folded member evolves a map built from its own data: one run each (the map, not
        # the steps, is the cost), stacked batch-first.
        shared = dict(self.info.params) | {k: float(v) for k, v in (params or {}).items()
                                           if np.ndim(v) == 0}
        runs = []
        tol = self._tol  # each member's run below resets it
        for b in range(members.batch):
            runs.append(self.run(members.q[b].reshape(self._concrete_shape(members.q.shape[1])),
                                 members.p[b].reshape(self._concrete_shape(members.q.shape[1])),
                                 dt=dt, steps=steps, save_every=save_every,
                                 params=members.member_params(b, shared),
                                 carry={k: np.asarray(v)[b] for k, v in (carry or {}).items()},
                                 **members.member_inputs(b)))
        traj = Trajectory(runs[0].t, np.stack([r.q for r in runs]),
                          np.stack([r.p for r in runs]), np.stack([r.H for r in runs]),
                          steps, sum(r.wall_time for r in runs), runs[0].folded,
                          carry={k: np.stack([r.carry[k] for r in runs]) for k in runs[0].carry},
                          batch=members.batch, names=(self.info.q, self.info.p),
                          box=runs[0].box,
                          monitors={k: np.stack([r.monitors[k] for r in runs])
                                    for k in runs[0].monitors})
        reports.send(len(traj.t), steps, traj.t, traj.q, traj.p, traj.H, batched=True)
        from tpc.invariants import members_checked

        self._tol = tol
        return members_checked(self, traj, members, dt)

    def _run_stepped(self, env, dt, steps, save_every, progress,
                     carried: dict[str, np.ndarray], step0: int = 0,
                     reports: Reports | None = None) -> Trajectory:
        """`steps` steps from the state of env (and `carried`), which is that at step `step0`
        (rows, times and step numbers count from there). A streamed run (self._sink, an
        H5Stream) holds only a window of rows: they go to the file when it fills, and at least
        every FLUSH_SECONDS, and the Trajectory reads them back from there."""
        native = self.native
        n = env.q.size
        rows, plan = snapshot_grid.plan(steps, save_every)
        reports = reports or Reports(None, 1)
        sink = self._sink
        window = rows
        if sink is not None:
            from tpc.h5stream import window_rows

            window = min(rows, window_rows(n, self.dtype, reports.every if reports.fn else 1))
        out_q = np.empty((window, n), self.dtype)
        out_p = np.empty((window, n), self.dtype)
        out_h = np.empty(window)  # f64 in every precision (the ABI's f64:out_H)
        t = np.zeros(window)
        base = 0  # the run's row at index 0 of the buffers (it moves with a streamed window)
        t[0] = step0 * dt
        out_q[0], out_p[0] = env.q.ravel(), env.p.ravel()
        out_h[0] = native.call("energy", env)
        bufs = native.scratch("run", n, env=env, dt=dt)
        status = bufs["status"]
        done_rows, step = 1, step0
        # The carried state at the last row on the snapshot grid: where a resumed run restarts,
        # and what an interrupted run keeps (Ctrl-C lands after a native call has advanced the
        # buffers past the rows it could not record).
        grid = {k: v.copy() for k, v in carried.items()}
        # Chunks keep Ctrl-C responsive and feed the progress bar; each is one native call.
        chunk = max(1, int(2e6 // max(1, save_every * n)))
        watch = None
        if self._tol is not None:
            from tpc.invariants import Watch

            chunk = min(chunk, 64)  # checked between chunks: stop soon after a violation
            watch = Watch(native, env, self._tol)
        bar = Progress(steps, step0) if progress else None  # before the clock: tqdm's import
        t0 = time.perf_counter()
        shape = self._concrete_shape(n)

        def report() -> None:
            reports.send(done_rows, step, t, out_q.reshape(window, *shape),
                         out_p.reshape(window, *shape), out_h, batched=False, base=base)

        def flush(end: int) -> None:
            """The rows not yet in the file, up to `end`, written to it."""
            lo, hi = sink.written - base, end - base
            if hi > lo:
                q, p = out_q[lo:hi].reshape(hi - lo, *shape), out_p[lo:hi].reshape(hi - lo, *shape)
                sink.rows(base + lo, t[lo:hi], q, p, out_h[lo:hi],
                          self._monitor_values(env, q, p, out_h[lo:hi]))

        def result(end: int, steps_done: int, carry, grid_carry) -> Trajectory:
            wall = time.perf_counter() - t0
            if sink is None:
                return self._trajectory(t, out_q, out_p, out_h, end, steps_done, wall, carry,
                                        grid_carry, env)
            flush(end)
            return self._stored_trajectory(sink, steps_done, wall, carry, grid_carry)

        try:
            for stride, count in plan:
                left = count
                while left:
                    room = base + window - done_rows
                    k = min(chunk, left, reports.limit(done_rows) or left, room)
                    at = done_rows - base
                    native.call("run", env, dt=dt, nsnap=k, stride=stride, step0=step,
                                out_q=out_q[at:], out_p=out_p[at:], out_H=out_h[at:],
                                **({k: v for k, v in bufs.items() if not k.startswith("out_")}
                                   | carried))
                    if status[0] != -1.0:
                        bad, what = snapshot_grid.stopped_at(int(status[0]))
                        good = (bad - step) // stride
                        snapshot_grid.fill_times(t, at, step, stride, good, dt)
                        done_rows += good
                        report()
                        traj = result(done_rows, bad, carried, grid)
                        raise PartialRun(f"{what} at step {bad + 1} (t = {(bad + 1) * dt:g}); "
                                         f"{done_rows} snapshot(s) kept", traj)
                    snapshot_grid.fill_times(t, at, step, stride, k, dt)
                    step += k * stride
                    done_rows += k
                    left -= k
                    if stride == save_every:
                        grid = {k: v.copy() for k, v in carried.items()}
                    if reports.due(done_rows):
                        report()
                    seen = slice(watch.rows - base, done_rows - base) if watch else None
                    hit = watch.feed(out_q[seen], out_p[seen], out_h[seen]) if watch else None
                    if hit is not None:
                        self._drifted(result(done_rows if sink is None else hit[0] + 1, step,
                                             carried, grid), hit, dt)
                    if sink is not None and (done_rows - base == window or sink.due()) and (
                            reports.fn is None or reports.sent == done_rows):
                        flush(done_rows)  # then the window starts over at the next row
                        base = done_rows
                    if bar:
                        bar.update(step)
        except KeyboardInterrupt:
            report()
            traj = result(done_rows, step, grid, grid)
            raise PartialRun(f"interrupted at step {step}; {done_rows} snapshot(s) kept",
                             traj, interrupted=True) from None
        finally:
            if bar:
                bar.close()
        report()
        return result(done_rows, step, carried, grid)

    def _stored_trajectory(self, sink, steps, wall, carry, grid) -> Trajectory:
        """A streamed run's Trajectory: its rows read from the file, the end state in memory."""
        shape = tuple(int(d) for d in sink.shape)
        arrays = sink.stored()

        def shaped(state: dict | None) -> dict:
            return {k: v.reshape(shape).copy() for k, v in (state or {}).items()}

        traj = Trajectory(arrays["t"], arrays[self.info.q], arrays[self.info.p], arrays["H"],
                          steps, wall, False, carry=shaped(carry), grid_carry=shaped(grid),
                          names=(self.info.q, self.info.p), box=self.info.box)
        traj.monitors = {k: arrays[k] for k in sink.monitors}
        traj.file = sink.path
        return traj

    def _trajectory(self, t, q, p, h, rows, steps, wall, carry=None, grid=None,
                    env=None) -> Trajectory:
        shape = (rows, *[int(d) for d in self._concrete_shape(q.shape[1])])

        def shaped(state: dict | None) -> dict:
            return {k: v.reshape(shape[1:]).copy() for k, v in (state or {}).items()}

        traj = Trajectory(t[:rows].copy(), q[:rows].reshape(shape), p[:rows].reshape(shape),
                          h[:rows].copy(), steps, wall, False, carry=shaped(carry),
                          grid_carry=shaped(grid), names=(self.info.q, self.info.p),
                          box=self.info.box)
        if env is not None:
            traj.monitors = self._monitor_values(env, traj.q, traj.p, traj.H)
        return traj

    def _monitor_values(self, env, q, p, h) -> dict[str, np.ndarray]:
        from tpc import invariants

        out = invariants.values(self.native, env, q, p)
        if self._dt is not None:
            shadow = invariants.shadow_values(self.native, env, q, p, h, self._dt)
            if shadow is not None:
                out[invariants.SHADOW] = shadow
        return out

    def _concrete_shape(self, n: int) -> tuple[int, ...]:
        fixed = [d for d in self.info.shape if isinstance(d, int)]
        known = int(np.prod(fixed)) if fixed else 1
        return tuple(d if isinstance(d, int) else n // known for d in self.info.shape)


def _check_run_numbers(dt, steps, save_every) -> None:
    """dt a finite number > 0, steps a whole number >= 0, save_every one >= 1: anything else
    (a string, an array, a bool) is refused here rather than deep in numpy or ctypes."""
    if isinstance(dt, bool) or not isinstance(dt, int | float | np.integer | np.floating) or not (
            np.isfinite(dt) and dt > 0):
        raise TpcError(f"dt must be a finite number > 0, got {dt!r}")
    for name, value, least in (("steps", steps, 0), ("save_every", save_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise TpcError(f"{name} must be a whole number >= {least}, got {value!r}")


def compile(path_or_source: str | Path, *, integrator: str | None = None, fold: bool = True,
            precision: str | None = None, newton3: bool = True,
            kahan: bool | None = None, shadow: bool = False) -> Simulation:
    """Compile a .ham file or source text. Compilation to native code happens on first run.

    precision: "f64" or "f32" (None: the simulate block's `precision`, else "f64"). In f32
    every native buffer, the arithmetic and dt are float32 (`Simulation.dtype`): q0, p0,
    params and inputs are rounded to float32, and the returned Trajectory's q, p are float32
    arrays (t stays float64), gradient() gives float32 arrays. Energies are evaluated in
    float64 from the float32 state in every precision (Trajectory.H and energy() are
    float64). A folded run builds and powers its map in float64, from the float64 build of
    the same code with the float32-rounded data, and rounds the state to float32 once per
    snapshot (a map read off float32 code is not symplectic, so folding it would cost
    accuracy).

    kahan: compensated state updates (None: the simulate block's `kahan`, else False): every
    q and p update is Kahan-Babuska-Neumaier compensated in a per-element buffer carried
    through the run (Trajectory.carry), giving most of float64's long-run accuracy in f32.
    The time loop then always steps (no folding). Not for the `midpoint` and `exact`
    integrators."""
    if precision is not None and precision not in PRECISIONS:
        raise TpcError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    text = str(path_or_source)
    is_path = isinstance(path_or_source, Path) or not _is_source(text)
    asked = compiler.Options(integrator, fold, precision, newton3, kahan=kahan, shadow=shadow)
    cached = _from_cache(text, is_path, asked)
    if cached is not None:
        return cached
    from tpc import pipeline
    from tpc.dialects import ham

    if is_path:
        program, module = pipeline.frontend(text)
        source = Path(text).read_text()
    else:
        program, module = pipeline.frontend(text, "<source>")
        source = text
    options = compiler.resolve_options(program, asked)
    compiler.run_ham_passes(program, module, pipeline.PassRunner())
    system = next(op for op in module.walk() if isinstance(op, ham.SystemOp))
    compiler.check_integrator(program, system, options)
    sim = Simulation(program, module, options, SystemInfo.of(system), source)
    sim._request = build_cache.request_key(VERSION, compiler_fingerprint(), asked, source)
    return sim


def _from_cache(text: str, is_path: bool, asked: compiler.Options) -> Simulation | None:
    """The Simulation of a build in the cache, or None (then compile() runs the front end,
    which also reports whatever is wrong with the file)."""
    if is_path:
        from tpc.syntax import MAX_SOURCE_BYTES, read_bytes

        try:  # read_bytes first: it refuses a FIFO or a device, which would block
            read_bytes(text, f"'{text}'", MAX_SOURCE_BYTES)
            source = Path(text).read_text()
        except (TpcError, OSError, UnicodeError, ValueError):
            return None
    else:
        source = text
    key = build_cache.request_key(VERSION, compiler_fingerprint(), asked, source)
    hit = build_cache.load(key, text if is_path else "<source>")
    if hit is None:
        return None
    build = hit[0]
    return Simulation(build.program, None, build.options, build.info, source, _build=hit,
                      _request=key)
