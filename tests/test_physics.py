"""Physics of the compiled integrators against independent references.

Every reference here is computed without tpc: closed-form matrix powers, elliptic integrals,
plain numpy integrators and scipy's DOP853 at tight tolerances.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import ellipk

import tpc
from tpc.api import PartialRun
from tpc.diagnostics import TpcError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ORDERS = {"leapfrog": 2, "midpoint": 2, "yoshida4": 4, "yoshida6": 6, "yoshida8": 8}

OSCILLATOR = """
system Oscillator {
    param k = 2.0, m = 0.5
    state q[1], p[1]
    H = p[0]^2 / (2 * m) + k * q[0]^2 / 2
}
"""


@pytest.fixture(scope="module")
def compiled():
    cache: dict[tuple, tpc.api.Simulation] = {}

    def get(src: str, integrator: str, fold: bool = False):
        key = (src, integrator, fold)
        if key not in cache:
            cache[key] = tpc.compile(src, integrator=integrator, fold=fold)
        return cache[key]

    return get


# ----------------------------------------------------------------- harmonic oscillator


def test_oscillator_matches_exact_leapfrog_map(compiled):
    """Leapfrog on a harmonic oscillator is a linear map: compare with its matrix powers."""
    k, m, dt, steps, every = 2.0, 0.5, 0.1, 2000, 10
    sim = compiled(OSCILLATOR, "leapfrog")
    tr = sim.run([1.0], [0.3], dt=dt, steps=steps, save_every=every)
    kick = np.array([[1.0, 0.0], [-dt * k / 2, 1.0]])
    drift = np.array([[1.0, dt / m], [0.0, 1.0]])
    step = kick @ drift @ kick
    stride = np.linalg.matrix_power(step, every)
    x = np.array([1.0, 0.3])
    ref = [x]
    for _ in range(steps // every):
        x = stride @ x
        ref.append(x)
    ref = np.array(ref)
    assert tr.q.shape == (steps // every + 1, 1)
    np.testing.assert_allclose(tr.t, np.arange(len(ref)) * every * dt, rtol=1e-12)
    np.testing.assert_allclose(tr.q[:, 0], ref[:, 0], rtol=0, atol=1e-11)
    np.testing.assert_allclose(tr.p[:, 0], ref[:, 1], rtol=0, atol=1e-11)
    # The closed form of the n-th power too, at the last step: cos/sin of n * phi with
    # cos(phi) = 1 - (omega dt)^2 / 2 (the leapfrog's modified frequency).
    w = np.sqrt(k / m)
    phi = np.arccos(1 - (w * dt) ** 2 / 2)
    n = steps
    mn = (np.sin(n * phi) * step - np.sin((n - 1) * phi) * np.eye(2)) / np.sin(phi)
    np.testing.assert_allclose(mn @ np.array([1.0, 0.3]),
                               [tr.q[-1, 0], tr.p[-1, 0]], rtol=0, atol=1e-10)


def test_oscillator_energy_is_quadratic_form(compiled):
    sim = compiled(OSCILLATOR, "leapfrog")
    assert sim.energy([0.7], [-0.2], params={"k": 3.0, "m": 2.0}) == pytest.approx(
        0.04 / 4 + 3.0 * 0.49 / 2, rel=1e-15)


# ------------------------------------------------------------------------------ Kepler

# Energy error bounds over 100 orbits of the e = 0.6 Kepler orbit at dt = 0.01: C dt^order,
# with C about 2-3x the constant observed.
KEPLER_BOUND = {
    "leapfrog": 20 * 0.01**2,
    "midpoint": 20 * 0.01**2,
    "yoshida4": 300 * 0.01**4,
    "yoshida6": 1.5e4 * 0.01**6,
    "yoshida8": 1e6 * 0.01**8,
}


@pytest.mark.parametrize("integrator", sorted(ORDERS))
def test_kepler_energy_and_angular_momentum(integrator, compiled):
    sim = compiled((EXAMPLES / "kepler.ham").read_text(), integrator)
    dt = 0.01
    steps = int(round(100 * 2 * np.pi / dt))  # a = 1, mu = 1: period 2 pi
    tr = sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=dt, steps=steps, save_every=50)
    assert tr.steps_done == steps
    assert tr.H[0] == pytest.approx(-0.5, rel=1e-15)
    err = tr.energy_error()
    assert err < KEPLER_BOUND[integrator], err
    # The splitting's flows (and the midpoint rule) preserve q x p exactly: round-off only.
    L = np.cross(tr.q, tr.p)
    assert np.max(np.abs(L - L[0])) < 1e-12
    # Energy from the trajectory agrees with the compiled H.
    r = np.linalg.norm(tr.q, axis=1)
    np.testing.assert_allclose(tr.H, np.sum(tr.p**2, axis=1) / 2 - 1 / r, rtol=1e-13)


# ---------------------------------------------------------------------------- pendulum


def test_pendulum_period_matches_elliptic_integral(compiled):
    g, length, theta0 = 9.81, 1.0, 2.0
    sim = compiled((EXAMPLES / "pendulum.ham").read_text(), "yoshida4")
    dt = 1e-3
    tr = sim.run([theta0], [0.0], dt=dt, steps=12_000, save_every=1)
    q = tr.q[:, 0]
    # Downward zero crossings, linearly interpolated (q'' = -g sin q vanishes at q = 0, so
    # the interpolation error is third order in dt).
    idx = np.nonzero((q[:-1] > 0) & (q[1:] <= 0))[0]
    assert len(idx) >= 3
    times = tr.t[idx] + dt * q[idx] / (q[idx] - q[idx + 1])
    periods = np.diff(times)
    k = np.sin(theta0 / 2)
    expected = 4 * np.sqrt(length / g) * ellipk(k**2)  # scipy's ellipk takes m = k^2
    np.testing.assert_allclose(periods, expected, rtol=1e-7)


# ------------------------------------------------------------------------------ N-body


def numpy_leapfrog(q, p, m, G, dt, steps):
    def force(q):
        d = q[:, None, :] - q[None, :, :]
        r = np.linalg.norm(d, axis=-1)
        np.fill_diagonal(r, np.inf)
        return -G * np.sum((m[:, None] * m[None, :] / r**3)[:, :, None] * d, axis=1)

    q, p = q.copy(), p.copy()
    for _ in range(steps):
        p = p + dt / 2 * force(q)
        q = q + dt * p / m[:, None]
        p = p + dt / 2 * force(q)
    return q, p


def test_nbody_matches_numpy_leapfrog(compiled):
    data = json.loads((EXAMPLES / "nbody_init.json").read_text())
    q0, p0, m = (np.array(data[k], dtype=float) for k in ("q", "p", "m"))
    assert q0.shape == (16, 3)
    sim = compiled((EXAMPLES / "nbody.ham").read_text(), "leapfrog")
    dt, steps = 0.01, 100
    tr = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps, m=m)
    assert tr.q.shape == (2, 16, 3)
    q_ref, p_ref = numpy_leapfrog(q0, p0, m, 1.0, dt, steps)
    np.testing.assert_allclose(tr.q[-1], q_ref, rtol=1e-12, atol=1e-12 * np.abs(q_ref).max())
    np.testing.assert_allclose(tr.p[-1], p_ref, rtol=1e-12, atol=1e-12 * np.abs(p_ref).max())


# ----------------------------------------------------------------- convergence orders

HH_Q0, HH_P0, HH_T = np.array([0.1, 0.2]), np.array([0.35, -0.1]), 4.0


@pytest.fixture(scope="module")
def henon_heiles_reference():
    def f(t, y):
        x, yy, px, py = y
        return [px, py, -(x + 2 * x * yy), -(yy + x * x - yy * yy)]

    sol = solve_ivp(f, (0, HH_T), [*HH_Q0, *HH_P0], method="DOP853", rtol=2.3e-14, atol=1e-16)
    return sol.y[:, -1]


# Step counts over [0, 4]: in the asymptotic range and with errors well above round-off
# (yoshida8, Yoshida's solution D, reaches 1e-12 at 64 steps).
CONVERGENCE_STEPS = {
    "leapfrog": 80, "midpoint": 80, "yoshida4": 20, "yoshida6": 32, "yoshida8": 24,
}


@pytest.mark.parametrize("integrator", sorted(ORDERS))
def test_convergence_order(integrator, compiled, henon_heiles_reference):
    sim = compiled((EXAMPLES / "henon_heiles.ham").read_text(), integrator)
    errs = []
    for n in (CONVERGENCE_STEPS[integrator], 2 * CONVERGENCE_STEPS[integrator]):
        tr = sim.run(HH_Q0, HH_P0, dt=HH_T / n, steps=n, save_every=n)
        assert tr.t[-1] == pytest.approx(HH_T)
        errs.append(np.linalg.norm(np.r_[tr.q[-1], tr.p[-1]] - henon_heiles_reference))
    assert errs[1] > 1e-13  # not round-off
    order = np.log2(errs[0] / errs[1])
    assert abs(order - ORDERS[integrator]) < 0.3, (errs, order)


# -------------------------------------------------------------------- reversibility


@pytest.mark.parametrize("integrator", sorted(ORDERS))
def test_time_reversibility(integrator, compiled):
    sim = compiled((EXAMPLES / "kepler.ham").read_text(), integrator)
    q0, p0 = np.array([0.7, 0.1, 0.05]), np.array([-0.2, 1.3, 0.1])
    steps = 1000
    fwd = sim.run(q0, p0, dt=0.01, steps=steps, save_every=steps)
    assert np.linalg.norm(fwd.q[-1] - q0) > 0.1  # it went somewhere
    back = sim.run(fwd.q[-1], -fwd.p[-1], dt=0.01, steps=steps, save_every=steps)
    np.testing.assert_allclose(back.q[-1], q0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(-back.p[-1], p0, rtol=0, atol=1e-12)


# -------------------------------------------------------------------- non-separable H

NON_SEPARABLE = """
system Coupled {
    param eps = 0.3
    state q[2], p[2]
    H = dot(p, p) / 2 + dot(q, q) / 2 + eps * q[0] * p[1] + eps / 4 * q[1]^2 * p[0]^2
}
"""


def coupled_rhs(t, y, eps=0.3):
    q0, q1, p0, p1 = y
    dq0 = p0 + eps / 2 * q1**2 * p0
    dq1 = p1 + eps * q0
    dp0 = -(q0 + eps * p1)
    dp1 = -(q1 + eps / 2 * q1 * p0**2)
    return [dq0, dq1, dp0, dp1]


def test_non_separable_midpoint_is_second_order(compiled):
    q0, p0, T = np.array([0.5, -0.3]), np.array([0.2, 0.6]), 2.0
    ref = solve_ivp(coupled_rhs, (0, T), [*q0, *p0], method="DOP853",
                    rtol=2.3e-14, atol=1e-16).y[:, -1]
    sim = compiled(NON_SEPARABLE, "midpoint")
    errs = []
    for n in (40, 80, 160):
        tr = sim.run(q0, p0, dt=T / n, steps=n, save_every=n)
        errs.append(np.linalg.norm(np.r_[tr.q[-1], tr.p[-1]] - ref))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(orders, 2.0, atol=0.1)
    # The midpoint rule conserves quadratic invariants only; here H is quartic, but its error
    # still stays small and bounded.
    long = sim.run(q0, p0, dt=0.05, steps=4000, save_every=40)
    assert long.energy_error() < 1e-2


@pytest.mark.parametrize("integrator", ["leapfrog", "yoshida4", "yoshida8"])
def test_non_separable_explicit_splitting_is_refused(integrator):
    with pytest.raises(TpcError, match="separable"):
        sim = tpc.compile(NON_SEPARABLE, integrator=integrator, fold=False)
        sim.run([0.5, -0.3], [0.2, 0.6], dt=0.01, steps=10)


# ------------------------------------------------------------------------ non-finite


def test_blow_up_stops_with_partial_trajectory(compiled):
    """H = p^2/2 - q^4 reaches infinity in finite time (about t = 0.93 from q = 1)."""
    sim = compiled("system Runaway { state q[1], p[1]\n H = p[0]^2 / 2 - q[0]^4 }", "leapfrog")
    dt, every = 0.01, 5
    with pytest.raises(PartialRun) as info:
        sim.run([1.0], [0.0], dt=dt, steps=10_000, save_every=every)
    err = info.value
    assert isinstance(err, TpcError)
    msg = str(err)
    assert "non-finite" in msg
    tr = err.trajectory
    assert 1 <= len(tr.t) < 10_000 // every
    assert np.all(np.isfinite(tr.q)) and np.all(np.isfinite(tr.p)) and np.all(np.isfinite(tr.H))
    assert tr.q.shape == (len(tr.t), 1) and tr.p.shape == tr.q.shape and tr.H.shape == tr.t.shape
    # The step named in the message is right after the last finite snapshot's window.
    step = int(re.search(r"step (\d+)", msg).group(1))
    last_saved = int(round(tr.t[-1] / dt))
    assert last_saved < step <= last_saved + every
    np.testing.assert_allclose(tr.t, np.arange(len(tr.t)) * every * dt, rtol=1e-12)
    # An independent numpy leapfrog over the saved steps agrees, and goes non-finite there.
    q, p = np.float64(1.0), np.float64(0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(1, step + 1):
            p += dt / 2 * 4 * q**3
            q += dt * p
            p += dt / 2 * 4 * q**3
            if n == last_saved:
                assert q == pytest.approx(tr.q[-1, 0], rel=1e-9)
        assert not (np.isfinite(q) and np.isfinite(p))


def test_huge_dt_stops_with_error(compiled):
    sim = compiled((EXAMPLES / "kepler.ham").read_text(), "leapfrog")
    with pytest.raises(PartialRun, match=r"step \d+") as info:
        sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=1e200, steps=50, save_every=1)
    assert np.all(np.isfinite(info.value.trajectory.q))


def test_separable_part_reading_both_fields_is_split_and_stepped_by_leapfrog():
    """`let E = 0.5 * sum(i: p^2 + k q^2)` reads q and p but is separable: ham-split-parts
    makes it a kick part and a drift part, and leapfrog equals a numpy Stormer-Verlet."""
    src = ("system S {\n  param k = 2\n  state q[N], p[N]\n"
           "  let E = 0.5 * sum(i: p[i]^2 + k * q[i]^2) - 3\n  H = E\n}\n")
    sim = tpc.compile(src, integrator="leapfrog", fold=False)
    q0, p0, dt = np.array([0.3, -0.2, 0.5]), np.array([0.1, 0.0, -0.4]), 0.01
    traj = sim.run(q0, p0, dt=dt, steps=500, save_every=500)
    q, p = q0.copy(), p0.copy()
    for _ in range(500):
        p = p - dt / 2 * 2.0 * q
        q = q + dt * p
        p = p - dt / 2 * 2.0 * q
    assert np.max(np.abs(traj.q[-1] - q)) < 1e-13 and np.max(np.abs(traj.p[-1] - p)) < 1e-13
