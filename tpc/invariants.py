"""Monitors at snapshots: the conserved quantities ham-symmetry proved (P, L), the user's
observables, their drift, and the `--check-invariants` stop (docs/invariants.md).

The values come from the compiled `monitors` function (ABI table: `monitors`), called once per
snapshot on the saved state; nothing here knows what a quantity is made of.
"""

from __future__ import annotations

import numpy as np

# Below this, a quantity is taken to start at zero and its drift is absolute (a momentum of a
# system at rest is zero up to round-off; a relative drift of it would be meaningless).
ZERO_SCALE = 1e-8
CHARGES = ("momentum", "angular_momentum")
EXACT_INTEGRATORS = ("exact",)
DISCRETE_GRADIENT = "discrete_gradient"


def table(native) -> list[dict]:
    return list(native.abi.get("monitors") or []) if native.has("monitors") else []


def values(native, env, q: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """{name: one value per snapshot row} of every monitor, from rows of q and p."""
    entries = table(native)
    if not entries or len(q) == 0:
        return {e["name"]: np.empty(0) for e in entries}
    rows = len(q)
    out = np.empty((rows, len(entries)))
    buf = np.empty(len(entries))
    qs = np.ascontiguousarray(q.reshape(rows, -1), dtype=env.q.dtype)
    ps = np.ascontiguousarray(p.reshape(rows, -1), dtype=env.p.dtype)
    # One call bound once, each row copied into its buffers: binding the arguments costs
    # far more than the monitors themselves.
    at = env.with_state(np.empty_like(qs[0]), np.empty_like(ps[0]))
    call = native.prepare("monitors", at, out=buf)
    for r in range(rows):
        at.q[:], at.p[:] = qs[r], ps[r]
        call()
        out[r] = buf
    return {e["name"]: out[:, k].copy() for k, e in enumerate(entries)}


SHADOW = "H_shadow"
# |H~ - H| / |H| above this: the series H + dt^2 H2 is a poor guide, dt is large for the motion.
SHADOW_WARN = 0.05
SHADOW_TARGET = 0.01


def shadow_values(native, env, q: np.ndarray, p: np.ndarray, h: np.ndarray,
                  dt: float) -> np.ndarray | None:
    """H~ at each row from sym-shadow's terms: H + dt^2 (c_AAB g^T T'' g + c_ABB v^T V'' v)
    (g = dV/dq, v = dT/dp from the compiled gradients, the second derivatives from
    d2_<part>), or H + dt^4 H4 for a method of order 4 (`dt4_terms`)."""
    sh = native.abi.get("shadow")
    if not sh or len(q) == 0:
        return None
    qn, pn = native.abi["state"]
    rows = len(q)
    qs = np.ascontiguousarray(q.reshape(rows, -1), dtype=env.q.dtype)
    ps = np.ascontiguousarray(p.reshape(rows, -1), dtype=env.p.dtype)
    n = qs.shape[1]
    g, v = np.empty(n, env.q.dtype), np.empty(n, env.q.dtype)
    out = np.empty(rows)
    for r in range(rows):
        e = env.with_state(qs[r], ps[r])
        native.call(f"grad_{qn}", e, out=g)
        native.call(f"grad_{pn}", e, out=v)
        g64, v64 = g.astype(np.float64), v.astype(np.float64)
        if "dt4" in sh:
            terms = dt4_terms(native, e, sh, g64, v64)
            out[r] = h[r] + dt ** 4 * sum(c * terms[k] for k, c in sh["dt4"].items())
            continue
        t2 = sum(native.call(f"d2_{name}", e, dir=g64) for name in sh["drift"])
        v2 = sum(native.call(f"d2_{name}", e, dir=v64) for name in sh["kick"])
        out[r] = h[r] + dt * dt * (sh["c_aab"] * t2 + sh["c_abb"] * v2)
    return out


def dt4_terms(native, env, sh: dict, g: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """The six contractions of H4 (passes/sym_shadow.py) at one state, from the compiled
    directional derivatives (taylor_<part>: orders 0..4 along a direction) and
    Hessian-vector products (hvp_<part>) of the kicked parts V and the drifted parts T."""
    def hvp(names, d):
        acc = np.zeros_like(d)
        for name in names:
            native.call(f"hvp_{name}", env, dir=d, out=acc)
        return acc

    buf = np.empty(5)

    def jet(names, d):
        acc = np.zeros(5)
        for name in names:
            native.call(f"taylor_{name}", env, dir=np.ascontiguousarray(d), out=buf)
            acc += buf
        return acc

    def mixed3(names, x, y):
        """D3[x, x, y] by polarization, y scaled to x's length so neither swamps the other."""
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        if nx == 0 or ny == 0:
            return 0.0
        s = nx / ny
        w = s * y
        return (jet(names, x + w)[3] - jet(names, x - w)[3] - 2 * jet(names, w)[3]) / (6 * s)

    kick, drift = sh["kick"], sh["drift"]
    a, u = hvp(kick, v), hvp(drift, g)  # V'' v, T'' g
    return {"V4_vvvv": jet(kick, v)[4], "T4_gggg": jet(drift, g)[4],
            "V3_vvu": mixed3(kick, v, u), "T3_gga": mixed3(drift, g, a),
            "T2_aa": jet(drift, a)[2], "V2_uu": jet(kick, u)[2]}


def shadow_summary(h: np.ndarray, shadow: np.ndarray, dt: float,
                   series: str = "H + dt^2 H2") -> list[str]:
    """How much better H~ is conserved than H, and a warning (once) when dt is too large for
    the series to mean much, with the dt that would keep |H~ - H| / |H| near 1%."""
    err_h, err_s = float(np.max(drift(h))), float(np.max(drift(shadow)))
    ratio = err_h / err_s if err_s > 0 else float("inf")
    lines = [f"  {SHADOW} (shadow Hamiltonian, {series}) max relative error {err_s:.3e}, "
             f"{ratio:.3g}x smaller than H's {err_h:.3e}"]
    power = 4 if "dt^4" in series else 2  # |H~ - H| scales as dt^power
    scale = np.maximum(np.abs(h), 1e-300)
    gap = float(np.max(np.abs(shadow - h) / scale))
    if gap > SHADOW_WARN:
        lines.append(f"warning: the shadow Hamiltonian differs from H by up to {gap:.3g} "
                     f"(relative): dt = {dt:g} is large for this motion; dt = "
                     f"{dt * (SHADOW_TARGET / gap) ** (1 / power):.3g} keeps the difference near "
                     f"{SHADOW_TARGET:g}")
    return lines


def drift(x: np.ndarray) -> np.ndarray:
    """|x - x0| / |x0| per row (absolute when x0 is below ZERO_SCALE)."""
    if len(x) == 0:
        return x
    scale = abs(x[0]) if abs(x[0]) >= ZERO_SCALE else 1.0
    return np.abs(x - x[0]) / scale


def watched(native, monitors: dict[str, np.ndarray], h: np.ndarray) -> dict[str, np.ndarray]:
    """The quantities --check-invariants watches: the energy and every proved charge."""
    out = {"H": h}
    for e in table(native):
        if e["quantity"] in CHARGES:
            out[e["name"]] = monitors[e["name"]]
    return out


class Watch:
    """--check-invariants: fed the snapshots as they come (a chunk at a time), it tells the
    first row where the energy or a proved conserved quantity drifted by more than tol."""

    def __init__(self, native, env, tol: float):
        self.native, self.env, self.tol = native, env, tol
        self.first: dict[str, float] | None = None
        self.rows = 0

    def feed(self, q: np.ndarray, p: np.ndarray, h: np.ndarray):
        """(row, name, drift) of the first violation among these rows, or None."""
        now = watched(self.native, values(self.native, self.env, q, p), h)
        if self.first is None:
            self.first = {k: float(v[0]) for k, v in now.items() if len(v)}
        hit = first_violation({k: np.concatenate([[self.first[k]], v]) for k, v in now.items()},
                              self.tol)
        start, self.rows = self.rows, self.rows + len(h)
        return None if hit is None else (start + hit[0] - 1, hit[1], hit[2])


def first_violation(quantities: dict[str, np.ndarray], tol: float):
    """(row, name, drift) of the first snapshot where some quantity's drift exceeds tol."""
    best = None
    for name, x in quantities.items():
        d = drift(np.asarray(x, dtype=np.float64))
        bad = np.flatnonzero(~(d <= tol))  # a NaN drift is a violation too
        if len(bad) and (best is None or bad[0] < best[0]):
            best = (int(bad[0]), name, float(d[bad[0]]))
    return best


def how_conserved(sim, name: str, entry: dict | None, folded_exact: bool) -> str:
    """Whether the run's integrator conserves the quantity to round-off or approximately."""
    integrator = sim.options.integrator
    energy_exact = integrator == DISCRETE_GRADIENT
    projected = (sim.native.abi.get("scheme") or {}).get("project") == "energy"
    if projected:
        if name == "H":
            return "conserved to round-off (projected onto the start's energy every step)"
        if entry is not None and entry["quantity"] in CHARGES:
            return "conserved approximately (project = energy moves it at every step)"
    if name == "H":
        if integrator in EXACT_INTEGRATORS or folded_exact:
            return "conserved to round-off (exact flow)"
        if energy_exact:
            return ("conserved to round-off by discrete_gradient (a discrete gradient)"
                    if sim.info.degree_text != "nonpoly" else "conserved by discrete_gradient "
                    "to the accuracy of its quadrature (H is not a polynomial)")
        return f"conserved approximately by {integrator} (a nearby shadow energy is conserved)"
    if entry is None or entry["quantity"] not in CHARGES:
        return "observable"
    symmetry = entry["symmetry"]
    if energy_exact and entry["quantity"] != "momentum":
        # the average vector field keeps linear invariants exactly, quadratic ones only
        # approximately (it is not a symplectic Runge-Kutta method)
        return f"conserved approximately by {integrator} (not a quadratic-invariant method)"
    invariant = sim.invariant_parts
    every = set(invariant)
    flows = sim.native.abi.get("scheme", {}).get("flows") or [sorted(every)]
    # A flow is of an invariant Hamiltonian when each of its parts is, when it flows all of H
    # (proved invariant, even if some of its parts are not), or when the sum of its parts is
    # proved invariant by the Lie derivative (Tx + Ty = |p|^2 / 2).
    broken = [f for f in flows if set(f) != every
              and not all(symmetry in invariant.get(p, []) for p in f)
              and not sim.flow_invariant(f, symmetry)]
    if not broken:
        return (f"conserved to round-off by {integrator} (every flow is of a Hamiltonian "
                f"proved invariant under {symmetry})")
    return (f"conserved approximately by {integrator} (its flow of "
            f"{' + '.join(broken[0])} alone is not invariant under {symmetry})")


def summary(sim, traj, dt: float = 0.0) -> list[str]:
    """The summary lines of `tpc run`: each monitored quantity's drift and how it is kept."""
    entries = {e["name"]: e for e in table(sim.native)}
    lines = []
    for name, x in traj.monitors.items():
        if name == SHADOW:
            continue
        e = entries.get(name)
        if e is not None and e["quantity"] == "observable":
            lines.append(f"  observable {name}: first {x[0]:.6g}, last {x[-1]:.6g}, "
                         f"min {np.min(x):.6g}, max {np.max(x):.6g}" if len(x) else
                         f"  observable {name}: no snapshots")
            continue
        d = float(np.max(drift(x))) if len(x) else 0.0
        lines.append(f"  {name} drift {d:.3e} ({how_conserved(sim, name, e, False)})")
    if traj.monitors or len(traj.H):
        folded_exact = traj.folded and traj.fold_method == "exact"
        lines.append(f"  H: {how_conserved(sim, 'H', None, folded_exact)}")
    if SHADOW in traj.monitors and len(traj.H):
        dt4 = "dt4" in (sim.native.abi.get("shadow") or {})
        lines += shadow_summary(traj.H, traj.monitors[SHADOW], dt,
                                "H + dt^4 H4" if dt4 else "H + dt^2 H2")
    return lines


# ----------------------------------------------------------------------------- ensembles
# An ensemble's monitors are each member's, evaluated with that member's params and inputs
# (tpc.ensemble.Members), batch-first like its H: {name: [B, rows]}.


def member_monitors(sim, members, q: np.ndarray, p: np.ndarray,
                    h: np.ndarray) -> dict[str, np.ndarray]:
    per = [sim._monitor_values(members.env(b), q[b], p[b], h[b]) for b in range(members.batch)]
    if not per or not per[0]:
        return {}
    return {k: np.stack([m[k] for m in per]) for k in per[0]}


def member_violation(native, monitors: dict[str, np.ndarray], h: np.ndarray, tol: float):
    """(member, row, name, drift) of the earliest snapshot where some member's energy or proved
    charge drifted by more than tol (the lowest member among those at that row), or None."""
    best = None
    for b in range(len(h)):
        hit = first_violation(watched(native, {k: v[b] for k, v in monitors.items()}, h[b]),
                              tol)
        if hit is not None and (best is None or hit[0] < best[1]):
            best = (b, *hit)
    return best


class MemberWatch:
    """--check-invariants for an ensemble stepped on this machine: one Watch per member, fed
    the new rows of every member after each native call."""

    def __init__(self, native, members, tol: float):
        self.watches = [Watch(native, members.env(b), tol) for b in range(members.batch)]
        self.rows = 0

    def feed(self, q: np.ndarray, p: np.ndarray, h: np.ndarray):
        """(member, row, name, drift) of the earliest violation among these rows, or None."""
        best = None
        for b, w in enumerate(self.watches):
            hit = w.feed(q[b], p[b], h[b])
            if hit is not None and (best is None or hit[0] < best[1]):
                best = (b, *hit)
        self.rows += len(h[0]) if len(h) else 0
        return best


def member_summary(sim, traj) -> list[str]:
    """An ensemble's summary lines: each monitored quantity's drift over the members (median,
    worst and which member), how the integrator keeps it, and observables' ranges."""
    entries = {e["name"]: e for e in table(sim.native)}
    lines = []
    for name, x in traj.monitors.items():
        if x.shape[-1] == 0:
            continue
        e = entries.get(name)
        if e is not None and e["quantity"] == "observable":
            lines.append(f"  observable {name}: min {np.min(x):.6g}, max {np.max(x):.6g} "
                         f"over the members")
            continue
        d = np.array([np.max(drift(row)) for row in x])
        what = ("shadow Hamiltonian" if name == SHADOW
                else how_conserved(sim, name, e, False))
        lines.append(f"  {name} drift: median {np.median(d):.3e}, worst {d.max():.3e} "
                     f"(member {int(d.argmax())}; {what})")
    return lines


def members_checked(sim, traj, members, dt: float):
    """An ensemble run elsewhere (folded member by member, or on a cluster) given its members'
    monitors from its snapshots, and InvariantDrift at the first snapshot past sim's
    check_invariants, every member's rows up to it kept (the run has finished by then: the
    check can only cut it)."""
    from dataclasses import replace

    from tpc.api import InvariantDrift

    if not traj.monitors:
        traj.monitors = member_monitors(sim, members, traj.q, traj.p, traj.H)
    if sim._tol is None or not len(traj.t):
        return traj
    hit = member_violation(sim.native, traj.monitors, traj.H, sim._tol)
    if hit is None:
        return traj
    b, row, name, d = hit
    keep, at = row + 1, int(round(traj.t[row] / dt))
    cut = replace(traj, t=traj.t[:keep], q=traj.q[:, :keep], p=traj.p[:, :keep],
                  H=traj.H[:, :keep], monitors={k: v[:, :keep] for k, v in traj.monitors.items()},
                  steps_done=at)
    raise InvariantDrift(f"member {b}: {name} drifted by {d:.3e} (more than --check-invariants "
                         f"{sim._tol:g}) at step {at} (t = {traj.t[row]:g}); {keep} snapshot(s) "
                         f"of every member kept", cut)
