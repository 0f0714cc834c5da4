"""Derivatives of the simulation: tangent runs, the monodromy matrix, Lyapunov exponents and
MEGNO, and reverse-mode gradients (vector-Jacobian products) in O(state) memory.

Everything runs the compiled `run_tangent` of a tangent build of the program (the same
source with the `tangent` option, unfolded: sym-tangent, passes/tangent_lowering.py), which
carries a tangent (dq, dp) through the very steps that move the state.

Adjoints without a stored trajectory. The step map Phi is symplectic, M^T J M = J for its
Jacobian M, so M^T = J M^-1 J^-1; for a symmetric scheme M^-1 is the Jacobian of the same
scheme run with -dt from the step's end. A cotangent lambda(T) is therefore pulled back to
t = 0 by one tangent run of -dt from z(T), started at J^-1 lambda(T) = (-lambda_p, lambda_q),
whose end gives lambda(0) = J delta = (delta_p, -delta_q): the backward run rebuilds the
states it needs as it goes (reversibility) instead of storing them. Params and inputs are
coordinates of an extended phase space with conjugate momenta (see tangent_lowering); their
gradient is the tangent of those momenta at the end of the backward run.

Reversal in floating point is not exact: the backward run ends at a rebuilt z(0) that differs
from the true one by the round-off it amplified. That difference is measured on every run;
when it exceeds `rtol` (relative to the state's size; 1e-9 in float64, 1e-4 in float32 by
default), the span is split at ceil(sqrt(n))-step
checkpoints computed forward from the start, and each piece is reversed from its exact end,
recursively where a piece is still too long for its round-off (chaotic orbits). The result
says which was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from tpc import snapshot_grid
from tpc.diagnostics import RunError, TpcError

# reconstruction error above which a reversal is split at checkpoints, per precision (a
# float32 step alone rebuilds its start only to about 1e-7)
DEFAULT_RTOL = {"f64": 1e-9, "f32": 1e-4}


def tangent_twin(sim):
    """The tangent build of `sim` (cached on it): unfolded, uncompensated, no shadow term."""
    if getattr(sim, "_tangent_twin", None) is None:
        from tpc.api import Simulation

        options = replace(sim.options, tangent=True, fold=False, kahan=False, shadow=False)
        twin = Simulation(sim.program, sim._module, options, sim.info, sim.source)
        try:
            twin.native  # noqa: B018 (compile now, so errors name the integrator)
        except TpcError as e:
            raise TpcError(f"derivatives of this simulation are not available: {e.message}",
                           e.loc) from None
        sim._tangent_twin = twin
    return sim._tangent_twin


@dataclass
class Stepper:
    """The tangent build bound to one environment and dt: forward runs and tangent runs."""

    native: object
    env: object
    dt: float
    _scratch: dict = field(default_factory=dict)
    _bound: dict = field(default_factory=dict)
    _own: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.env.q.size

    def _bufs(self, name: str, dt: float) -> dict[str, np.ndarray]:
        key = (name, dt)
        if key not in self._scratch:
            self._scratch[key] = self.native.scratch(name, self.n, env=self.env, dt=dt)
        bufs = self._scratch[key]
        bufs["status"][0] = -1.0
        return bufs

    def _check(self, bufs: dict, step0: int, sign: int) -> None:
        code = bufs["status"][0]
        if code != -1.0:
            bad, what = snapshot_grid.stopped_at(int(code))
            where = "forward" if sign > 0 else "backward (the reversed run)"
            raise RunError(f"{what} at step {step0 + bad + 1} of the {where} pass")

    def forward(self, q: np.ndarray, p: np.ndarray, steps: int, step0: int = 0):
        """The state `steps` steps after (q, p) (copies)."""
        q, p = q.copy(), p.copy()
        if steps:
            bufs = self._bufs("run", self.dt)
            self.native.call("run", self.env.with_state(q, p), dt=self.dt, nsnap=1,
                             stride=steps, step0=0, **bufs)
            self._check(bufs, step0, 1)
        return q, p

    def tangent_rows(self, q, p, tq, tp, stride: int, nsnap: int, step0: int = 0):
        """nsnap snapshots `stride` steps apart of the state and tangent, all in place
        (q, p, tq, tp end at the last); returns the tangent rows (nsnap, n) each."""
        key = ("rows", stride, nsnap)
        if key not in self._bound:
            dtype = self.native.dtype
            own = {k: np.empty(v.size, dtype=dtype) for k, v in
                   (("q", q), ("p", p), ("tq", tq), ("tp", tp))}
            own["dpi"] = np.zeros(max(1, _theta_size(self)), dtype)
            bufs = self.native.scratch("run_tangent", self.n, nsnap, env=self.env, dt=self.dt)
            bufs.update(tq=own["tq"], tp=own["tp"], dpi=own["dpi"])
            env = self.env.with_state(own["q"].reshape(self.env.q.shape),
                                      own["p"].reshape(self.env.p.shape))
            self._bound[key] = (self.native.prepare("run_tangent", env, dt=self.dt,
                                                    nsnap=nsnap, stride=stride, step0=0,
                                                    adjoint=0, **bufs), bufs, own)
        fn, bufs, own = self._bound[key]
        for name, value in (("q", q), ("p", p), ("tq", tq), ("tp", tp)):
            np.copyto(own[name], value)
        bufs["status"][0] = -1.0
        fn()
        self._check(bufs, step0, 1)
        for name, value in (("q", q), ("p", p), ("tq", tq), ("tp", tp)):
            np.copyto(value, own[name])
        n = self.n
        return (bufs["out_tq"].reshape(nsnap, n).copy(), bufs["out_tp"].reshape(nsnap, n).copy())

    def tangent(self, q, p, tq, tp, dpi, steps: int, sign: int = 1, step0: int = 0,
                adjoint: bool = False):
        """(q, p, tq, tp) `steps` steps on with dt * sign, all in place; with adjoint, dpi
        accumulates the tangent of the params' and inputs' momenta. The native call is bound
        once per (dt, steps, adjoint) to buffers of its own: a Lyapunov run makes one call per
        renormalization, and binding the arguments each time would cost more than the steps."""
        if not steps:
            return
        dt = self.dt * sign
        key = (dt, steps, bool(adjoint))
        if key not in self._bound:
            if not self._own:
                dtype = self.native.dtype
                self._own = {k: np.empty_like(v, dtype=dtype) for k, v in
                             (("q", q), ("p", p), ("tq", tq), ("tp", tp), ("dpi", dpi))}
            own = self._own
            bufs = dict(self._bufs("run_tangent", dt))
            bufs.update(tq=own["tq"], tp=own["tp"], dpi=own["dpi"])
            env = self.env.with_state(own["q"].reshape(self.env.q.shape),
                                      own["p"].reshape(self.env.p.shape))
            self._bound[key] = (self.native.prepare("run_tangent", env, dt=dt, nsnap=1,
                                                    stride=steps, step0=0,
                                                    adjoint=int(adjoint), **bufs), bufs)
        fn, bufs = self._bound[key]
        own = self._own
        for name, value in (("q", q), ("p", p), ("tq", tq), ("tp", tp), ("dpi", dpi)):
            np.copyto(own[name], value)
        bufs["status"][0] = -1.0
        fn()
        for name, value in (("q", q), ("p", p), ("tq", tq), ("tp", tp), ("dpi", dpi)):
            np.copyto(value, own[name])
        self._check(bufs, step0, sign)


def _numbers(value, what: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TpcError(f"{what} must be numbers, got {type(value).__name__}") from None


def _flat_pair(value, n: int, what: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(dq, dp) from a pair shaped like q and p, or one flat vector of 2n."""
    if isinstance(value, tuple | list) and len(value) == 2:
        a = _numbers(value[0], what)
        b = _numbers(value[1], what)
        if a.size != n or b.size != n:
            raise TpcError(f"{what} must be two arrays shaped like q and p ({n} numbers "
                           f"each), got {a.size} and {b.size}")
        return a.ravel().astype(dtype), b.ravel().astype(dtype)
    z = _numbers(value, what).ravel()
    if z.size != 2 * n:
        raise TpcError(f"{what} must be (dq, dp) shaped like q and p, or {2 * n} numbers "
                       f"(q then p), got {z.size}")
    return z[:n].astype(dtype), z[n:].astype(dtype)


def _finite(*arrays) -> None:
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise TpcError("tangents and cotangents must be finite numbers")


def _stepper(sim, q0, p0, dt, params, inputs) -> Stepper:
    from tpc.api import _check_run_numbers

    _check_run_numbers(dt, 1, 1)
    twin = tangent_twin(sim)
    env = twin.bind(q0, p0, params, inputs)
    twin.check_start(env)
    return Stepper(twin.native, env, float(dt))


# ----------------------------------------------------------------------------- tangent runs

def run_with_tangent(sim, q0, p0, tangent, *, dt: float, steps: int, save_every: int,
                     params=None, **inputs):
    """sim.run(..., tangent=dz0): the trajectory with `dq`, `dp` at every snapshot."""
    from tpc.api import Trajectory, _check_run_numbers

    _check_run_numbers(dt, steps, save_every)
    st = _stepper(sim, q0, p0, dt, params, inputs)
    n, dtype = st.n, st.native.dtype
    tq, tp = _flat_pair(tangent, n, "tangent", dtype)
    _finite(tq, tp)
    rows, plan = snapshot_grid.plan(steps, save_every)
    q, p = st.env.q.ravel().copy(), st.env.p.ravel().copy()
    out = {k: np.empty((rows, n), dtype) for k in ("q", "p", "dq", "dp")}
    t, h = np.zeros(rows), np.empty(rows)
    dpi = np.zeros(max(1, _theta_size(st)), dtype)
    row, step = 0, 0

    def record() -> None:
        out["q"][row], out["p"][row], out["dq"][row], out["dp"][row] = q, p, tq, tp
        t[row] = step * dt
        h[row] = st.native.call("energy", st.env.with_state(q, p))

    record()
    for stride, count in plan:
        for _ in range(count):
            st.tangent(q, p, tq, tp, dpi, stride, step0=step)
            step += stride
            row += 1
            record()
    shape = sim._concrete_shape(n)
    traj = Trajectory(t, out["q"].reshape(rows, *shape), out["p"].reshape(rows, *shape), h,
                      steps, names=(sim.info.q, sim.info.p), box=sim.info.box)
    traj.dq = out["dq"].reshape(rows, *shape)
    traj.dp = out["dp"].reshape(rows, *shape)
    return traj


def _theta_size(st: Stepper) -> int:
    return len(st.native.abi["params"]) + sum(v.size for v in st.env.inputs.values())


def jacobian(sim, q0, p0, *, dt: float, steps: int, params=None, **inputs) -> np.ndarray:
    """d z(T) / d z(0), z = (q flat, p flat): 2n tangent runs, one per column."""
    from tpc.api import _check_run_numbers

    _check_run_numbers(dt, steps, 1)
    st = _stepper(sim, q0, p0, dt, params, inputs)
    n, dtype = st.n, st.native.dtype
    m = np.empty((2 * n, 2 * n))
    dpi = np.zeros(max(1, _theta_size(st)), dtype)
    for k in range(2 * n):
        e = np.zeros(2 * n, dtype)
        e[k] = 1.0
        q, p = st.env.q.ravel().copy(), st.env.p.ravel().copy()
        tq, tp = e[:n].copy(), e[n:].copy()
        st.tangent(q, p, tq, tp, dpi, steps)
        m[:n, k], m[n:, k] = tq, tp
    return m


# ----------------------------------------------------------------------------- chaos

@dataclass
class Lyapunov:
    """The maximal Lyapunov exponent by the tangent map with renormalization (Benettin et
    al. 1980): `exponent` = log(growth) / t at the end; `t` and `history` its finite-time
    values at each renormalization (so its convergence can be seen: for a regular orbit it
    falls like log(t)/t toward 0); `megno` and `mean_megno` MEGNO (Cincotta and Simo 2000),
    Y(t) = (2/t) int_0^t s d ln|delta|, and its running mean, which tends to 2 for
    quasi-periodic orbits, to 0 for stable periodic ones and grows like lambda t / 2 for
    chaotic ones; `spectrum`: every exponent (Benettin QR) when asked for, in descending
    order (pairs +-lambda for a Hamiltonian flow)."""

    exponent: float
    t: np.ndarray
    history: np.ndarray
    megno: np.ndarray
    mean_megno: np.ndarray
    spectrum: np.ndarray | None = None
    renormalize_every: int = 1

    @property
    def final_megno(self) -> float:
        return float(self.mean_megno[-1]) if self.mean_megno.size else float("nan")


def _chaos_series(t1: np.ndarray, logs: np.ndarray):
    """(history, MEGNO Y, mean <Y>) from the segment end times and each segment's log growth
    (logs[:, 0] the first vector's): Y(t) = (2/t) int_0^t s d ln|delta| with ln|delta| linear
    over a segment, and <Y> = (1/t) int_0^t Y by the trapezoid rule."""
    t0 = np.concatenate([[0.0], t1[:-1]])
    dl = logs[:, 0]
    history = np.max(np.cumsum(logs, axis=0), axis=1) / t1
    y = 2.0 * np.cumsum(0.5 * (t0 + t1) * dl) / t1
    y_prev = np.concatenate([[0.0], y[:-1]])
    mean = np.cumsum(0.5 * (y + y_prev) * (t1 - t0)) / t1
    return history, y, mean


MAX_LOG_GROWTH = 200.0  # per native call without renormalization: e^200 is far from overflow


def lyapunov(sim, q0, p0, *, dt: float, steps: int, renormalize_every: int | None = None,
             spectrum: bool = False, seed: int = 0, params=None, **inputs) -> Lyapunov:
    from tpc.api import _check_run_numbers

    _check_run_numbers(dt, steps, 1)
    every = renormalize_every
    if every is None:
        every = max(1, min(100, steps // 1000 or 1))
    if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
        raise TpcError(f"renormalize_every must be a positive integer, got {every!r}")
    every = int(every)
    st = _stepper(sim, q0, p0, dt, params, inputs)
    n, dtype = st.n, st.native.dtype
    k = 2 * n if spectrum else 1
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((2 * n, k)))[0]
    q, p = st.env.q.ravel().copy(), st.env.p.ravel().copy()
    dpi = np.zeros(max(1, _theta_size(st)), dtype)
    segments = [every] * (steps // every) + ([steps % every] if steps % every else [])
    logs: list[np.ndarray] = []

    def nonfinite(done: int):
        return RunError(f"the tangent became non-finite before step {done} (renormalize more "
                        "often: renormalize_every)")

    done = 0
    if spectrum:
        # Benettin's QR: every vector from the same state, re-orthonormalized each segment
        for seg in segments:
            cols = np.empty((2 * n, k))
            for j in range(k):
                qj, pj = q.copy(), p.copy()
                tq, tp = basis[:n, j].astype(dtype), basis[n:, j].astype(dtype)
                st.tangent(qj, pj, tq, tp, dpi, seg, step0=done)
                cols[:n, j], cols[n:, j] = tq, tp
            q, p = qj, pj
            done += seg
            if not np.all(np.isfinite(cols)):
                raise nonfinite(done)
            basis, r = np.linalg.qr(cols)
            d = np.sign(np.diag(r))
            d[d == 0] = 1.0
            basis = basis * d
            logs.append(np.log(np.abs(np.diag(r))))
    else:
        # One vector: its norm at every renormalization point comes back from one native call
        # for a whole chunk of segments (the snapshots of run_tangent), and it is renormalized
        # between chunks, whose length adapts so its growth stays far from overflow.
        tq, tp = basis[:n, 0].astype(dtype), basis[n:, 0].astype(dtype)
        full = steps // every
        chunk = max(1, min(64, full))
        cap = max(1, (1 << 20) // max(1, n))  # rows per call: bounded memory
        while done < full * every:
            count = min(chunk, full - done // every, cap)
            start = float(np.sqrt(np.dot(tq, tq) + np.dot(tp, tp)))
            rows_q, rows_p = st.tangent_rows(q, p, tq, tp, every, count, step0=done)
            norms = np.sqrt(np.sum(rows_q.astype(np.float64) ** 2, axis=1)
                            + np.sum(rows_p.astype(np.float64) ** 2, axis=1))
            done += count * every
            if not np.all(np.isfinite(norms)) or np.any(norms == 0):
                raise nonfinite(done)
            logs += list(np.diff(np.log(np.concatenate([[start], norms])))[:, None])
            growth = float(np.log(norms[-1] / start))
            chunk = chunk * 2 if growth < MAX_LOG_GROWTH / 4 else max(1, chunk // 2)
            tq, tp = tq / norms[-1], tp / norms[-1]
        if done < steps:
            start = float(np.sqrt(np.dot(tq, tq) + np.dot(tp, tp)))
            st.tangent(q, p, tq, tp, dpi, steps - done, step0=done)
            end = float(np.sqrt(np.dot(tq, tq) + np.dot(tp, tp)))
            if not np.isfinite(end) or end == 0:
                raise nonfinite(steps)
            logs.append(np.array([np.log(end / start)]))
    t1 = np.cumsum(segments) * dt
    growth = np.array(logs)
    history, megno, mean = _chaos_series(t1, growth)
    spec = np.sort(growth.sum(axis=0) / (steps * dt))[::-1] if spectrum else None
    return Lyapunov(float(history[-1]), t1, history, megno, mean, spec, every)


# ----------------------------------------------------------------------------- adjoints

@dataclass
class VJP:
    """Gradients of L = <cotangent, z(T)> (or the sum over snapshots) with respect to the start
    and every param and input (empty dicts with wrt_params=False). `method`: "reversal" (one backward run of -dt rebuilding the
    states) or "checkpoints" (split where the rebuilt state drifted past rtol);
    `reconstruction_error`: the largest relative difference between a rebuilt and a true state
    that the result relies on; `segments`: how many reversed pieces it took."""

    q0: np.ndarray
    p0: np.ndarray
    params: dict[str, float]
    inputs: dict[str, np.ndarray]
    method: str
    reconstruction_error: float
    segments: int
    q: np.ndarray = None  # z(T)
    p: np.ndarray = None


def _rel_err(q, p, q_ref, p_ref) -> float:
    scale = max(float(np.max(np.abs(q_ref), initial=0.0)), float(np.max(np.abs(p_ref),
                                                                          initial=0.0)), 1e-300)
    d = max(float(np.max(np.abs(q - q_ref), initial=0.0)),
            float(np.max(np.abs(p - p_ref), initial=0.0)))
    return d / scale


class _Backward:
    """Pull the adjoint (as delta = J^-1 lambda, plus dpi) back over spans of steps."""

    def __init__(self, st: Stepper, rtol: float, adjoint: bool = True):
        self.st, self.rtol, self.adjoint = st, rtol, adjoint
        self.segments, self.worst, self.split = 0, 0.0, False

    def span(self, qa, pa, qb, pb, steps, tq, tp, dpi, step0) -> None:
        """delta at step step0 + steps -> at step0, in place; (qa, pa) is the true state at
        step0 and (qb, pb) the state at its end."""
        if steps == 0:
            return
        saved = (tq.copy(), tp.copy(), dpi.copy())
        q, p = qb.copy(), pb.copy()
        self.st.tangent(q, p, tq, tp, dpi, steps, sign=-1, step0=step0, adjoint=self.adjoint)
        err = _rel_err(q, p, qa, pa)
        if err <= self.rtol or steps == 1:
            self.segments += 1
            self.worst = max(self.worst, err)
            return
        # Too much round-off amplified over this span: split it at checkpoints.
        self.split = True
        tq[:], tp[:], dpi[:] = saved
        k = min(steps - 1, math.isqrt(steps - 1) + 1)  # at least two pieces
        marks = list(range(0, steps, k)) + [steps]
        states = [(qa.copy(), pa.copy())]
        for a, b in zip(marks[:-1], marks[1:]):
            states.append(self.st.forward(*states[-1], b - a, step0 + a))
        for i in range(len(marks) - 2, -1, -1):
            (q0, p0), (q1, p1) = states[i], states[i + 1]
            self.span(q0, p0, q1, p1, marks[i + 1] - marks[i], tq, tp, dpi, step0 + marks[i])
        states.clear()


def vjp(sim, q0, p0, *, dt: float, steps: int, cotangent, save_every: int | None = None,
        params=None, rtol: float | None = None, wrt_params: bool = True, **inputs) -> VJP:
    from tpc.api import _check_run_numbers

    st = _stepper(sim, q0, p0, dt, params, inputs)
    abi = st.native.abi
    if wrt_params and abi.get("kepler") and _theta_size(st):
        raise TpcError("vjp: the gradient with respect to params and inputs through a Kepler "
                       "flow is not supported yet (the flow's exact map has no parameter "
                       "tangent); vjp(..., wrt_params=False) gives the gradients with respect "
                       "to q0 and p0")
    if not abi["scheme"].get("reversible"):
        raise TpcError(f"vjp reverses the run with -dt, which inverts only a symmetric scheme; "
                       f"'{abi['scheme'].get('integrator')}' is not symmetric (use e.g. "
                       "leapfrog, yoshida4, yoshida6)")
    if rtol is None:
        rtol = DEFAULT_RTOL[abi["precision"]]
    if isinstance(rtol, bool) or not (isinstance(rtol, float | int) and rtol > 0):
        raise TpcError(f"rtol must be a positive number, got {rtol!r}")
    n, dtype = st.n, st.native.dtype
    shape = tuple(sim._concrete_shape(n))
    if save_every is None:
        _check_run_numbers(dt, steps, 1)
        cq, cp = _flat_pair(cotangent, n, "cotangent", np.float64)
        rows, plan, cots = 1, [(steps, 1)], None
    else:
        _check_run_numbers(dt, steps, save_every)
        rows, plan = snapshot_grid.plan(steps, save_every)
        try:
            gq = _numbers(cotangent[0], "cotangent").reshape(rows, n)
            gp = _numbers(cotangent[1], "cotangent").reshape(rows, n)
        except (ValueError, TypeError, IndexError, KeyError):
            raise TpcError(f"with save_every, the cotangent is (gq, gp) with one row per "
                           f"snapshot: {rows} rows shaped like q") from None
        cots = (gq, gp)
    # Forward: the state at every mark (the snapshots a loss sums over, else only the end).
    marks = [0]
    for stride, count in plan:
        marks += [marks[-1] + stride * (i + 1) for i in range(count)]
    states = [(st.env.q.ravel().copy(), st.env.p.ravel().copy())]
    for a, b in zip(marks[:-1], marks[1:]):
        states.append(st.forward(*states[-1], b - a, a))
    end = states[-1]
    if cots is None:
        cq_rows = {len(marks) - 1: (cq, cp)}
    else:
        cq_rows = {r: (cots[0][r], cots[1][r]) for r in range(rows)}
    _finite(*[c for pair in cq_rows.values() for c in pair])
    tq = np.zeros(n, dtype)
    tp = np.zeros(n, dtype)
    dpi = np.zeros(max(1, _theta_size(st)), dtype)
    back = _Backward(st, float(rtol), bool(wrt_params))
    last = len(marks) - 1
    for r in range(last, 0, -1):
        if r in cq_rows:  # delta += J^-1 c = (-c_p, c_q)
            tq -= cq_rows[r][1].astype(dtype)
            tp += cq_rows[r][0].astype(dtype)
        (qa, pa), (qb, pb) = states[r - 1], states[r]
        back.span(qa, pa, qb, pb, marks[r] - marks[r - 1], tq, tp, dpi, marks[r - 1])
    lam_q, lam_p = tp.astype(np.float64), -tq.astype(np.float64)
    if 0 in cq_rows and last != 0:
        lam_q, lam_p = lam_q + cq_rows[0][0], lam_p + cq_rows[0][1]
    params_out, inputs_out = {}, {}
    names = list(abi["params"]) if wrt_params else []
    for i, name in enumerate(names):
        params_out[name] = float(dpi[i])
    offset = len(names)
    for name in abi["inputs"] if wrt_params else ():
        arr = st.env.inputs[name]
        inputs_out[name] = dpi[offset:offset + arr.size].astype(np.float64).reshape(arr.shape)
        offset += arr.size
    return VJP(lam_q.reshape(shape), lam_p.reshape(shape), params_out, inputs_out,
               "checkpoints" if back.split else "reversal", back.worst, back.segments,
               end[0].reshape(shape).copy(), end[1].reshape(shape).copy())
