"""Folding that keeps what the physics keeps: the exact integrator exact at any t, zero modes
(translations) conserved, and float32 folds as accurate as float64 ones, each checked against
an analytic solution or against stepping."""

from __future__ import annotations

import numpy as np
import pytest

import tpc

EPS = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
LD = np.longdouble


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


OSC = """system Osc {
    param w = 1.3
    state q[1], p[1]
    H = p[0]^2 / 2 + w^2 * q[0]^2 / 2
}"""
# A unit charge in a uniform field B along z, symmetric gauge A = B/2 (-y, x, 0): H is
# quadratic but not separable; z drifts freely.
CYCLOTRON = """system Cyclotron {
    param B = 1.0
    state q[3], p[3]
    H = ((p[0] + B * q[1] / 2)^2 + (p[1] - B * q[0] / 2)^2 + p[2]^2) / 2
}"""
# A periodic ring of unit masses and springs: translation invariant, so the total momentum is
# conserved and the centre of mass drifts.
RING = """system Ring {
    param k = 1.0
    state q[N], p[N]
    H = sum(p * p) / 2 + k / 2 * (sum(i: (q[i + 1] - q[i])^2) + (q[0] - q[N - 1])^2)
}"""
FALL = """system Fall {
    param g = 9.81
    state q[1], p[1]
    H = p[0]^2 / 2 + g * q[0]
}"""


# --------------------------------------------------------------------- the exact integrator


@pytest.mark.parametrize("steps", [10**6, 10**9])
def test_exact_oscillator_at_any_t(steps):
    """q(t) = A cos(w t - phi) in long double, with w = sqrt(w^2) of the f64 product the code
    computes. The phase w t is formed in long double, so the error is one f64 rounding of the
    state plus the long-double rounding of the phase (eps_ld w t; where long double is f64
    this is the f64 floor eps w t). Powering exp(dt A) instead ended 1.1e-7 off at 10^9 steps
    (eps * steps), with an energy error of 2.5e-7."""
    dt, q0, p0 = 0.1, 1.0, 0.2
    sim = tpc.compile(OSC, integrator="exact")
    traj = sim.run([q0], [p0], dt=dt, steps=steps, save_every=steps // 10)
    w = np.sqrt(LD(1.3 * 1.3))
    amp, phi = np.sqrt(LD(q0) ** 2 + (LD(p0) / w) ** 2), np.arctan2(LD(p0) / w, LD(q0))
    t = np.arange(11, dtype=LD) * (LD(steps // 10) * LD(dt))
    q = amp * np.cos(w * t - phi)
    p = -amp * w * np.sin(w * t - phi)
    bound = 4 * EPS + 8 * float(np.finfo(LD).eps) * float(w * t[-1])
    assert np.max(np.abs(traj.q[:, 0] - q.astype(float))) < bound
    assert np.max(np.abs(traj.p[:, 0] - p.astype(float))) < bound * 1.3
    assert traj.energy_error() < 8 * EPS
    assert traj.fold_method == "exact"


def cyclotron_reference(t):
    """x0 = (1, 0, 0), velocity v0 = p0 - A(x0) = (0, -1, 0.3): a circle of radius 1 about
    (0, 0) in the plane, a uniform drift along z, in long double."""
    t = np.asarray(t, dtype=LD)
    c, s = np.cos(t), np.sin(t)
    x, y, z = c, -s, LD(0.3) * t
    vx, vy = -s, -c
    return np.stack([x, y, z], 1), np.stack([vx - y / 2, vy + x / 2, np.full_like(t, 0.3)], 1)


@pytest.mark.parametrize("steps", [10**6, 10**9])
def test_exact_cyclotron_at_any_t(steps):
    """The orbit to f64 round-off of the phase (eps w t), the drift along B exactly (it is a
    block of its own, a free particle); powering exp(dt A) ended z off by 0.33 at 10^9."""
    dt = 0.01
    sim = tpc.compile(CYCLOTRON, integrator="exact")
    traj = sim.run([1.0, 0.0, 0.0], [0.0, -0.5, 0.3], dt=dt, steps=steps,
                   save_every=steps // 4)
    q, p = cyclotron_reference(np.arange(5) * (LD(steps // 4) * LD(dt)))
    wt = steps * dt
    bound = 4 * EPS * (1 + wt)
    assert np.max(np.abs(traj.q[:, :2] - q[:, :2].astype(float))) < bound
    assert np.max(np.abs(traj.p[:, :2] - p[:, :2].astype(float))) < bound
    assert np.max(np.abs(traj.q[:, 2] - q[:, 2].astype(float)) / (1 + q[:, 2].astype(float))) \
        < 4 * EPS
    assert np.all(traj.p[:, 2] == 0.3)
    assert traj.energy_error() < bound


def test_exact_free_fall_is_the_parabola():
    """A zero mode under a constant force: q = q0 + p0 t - g t^2 / 2, p = p0 - g t, exactly."""
    sim = tpc.compile(FALL, integrator="exact")
    steps, dt = 10**8, 0.001
    traj = sim.run([2.0], [3.0], dt=dt, steps=steps, save_every=steps // 4)
    t = np.arange(5) * (LD(steps // 4) * LD(dt))
    q = 2 + 3 * t - LD(9.81) * t * t / 2
    p = 3 - LD(9.81) * t
    assert np.max(np.abs(traj.q[:, 0] - q.astype(float)) / np.abs(q.astype(float) - 1)) < 8 * EPS
    assert np.max(np.abs(traj.p[:, 0] - p.astype(float)) / np.abs(p.astype(float) - 1)) < 8 * EPS


# --------------------------------------------------------------------- zero modes


def ring_data(n=16):
    k = np.arange(n)
    return np.linspace(0.0, 1.0, n) ** 2, np.sin(k) + 0.3


@pytest.mark.parametrize("integrator", ["leapfrog", "yoshida4"])
def test_folded_ring_conserves_momentum_like_stepping(integrator):
    """|P - P0| of the folded run stays at round-off, no worse than the stepped run's (measured
    before: 3.7e-8 at 10^5 steps and 3.8e-6 at 10^6, growing like t^2, against 5.6e-14 and
    1.5e-13 stepped), and both runs agree on the state."""
    q0, p0 = ring_data()
    dt, steps = 0.05, 10**5
    stepped = tpc.compile(RING, integrator=integrator, fold=False).run(
        q0, p0, dt=dt, steps=steps, save_every=steps // 100)
    sim = tpc.compile(RING, integrator=integrator)
    folded = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps // 100)
    longer = sim.run(q0, p0, dt=dt, steps=10 * steps, save_every=steps // 10)
    assert folded.folded and longer.folded and not stepped.folded
    def drift(tr):
        total = tr.p.sum(axis=1)
        return float(np.max(np.abs(total - total[0])))
    assert drift(folded) <= max(drift(stepped), 1e-13), (drift(folded), drift(stepped))
    assert drift(longer) <= max(drift(stepped), 1e-13), drift(longer)
    # the centre of mass moves by P t / N: the states agree relative to their size
    scale = np.max(np.abs(stepped.q), axis=1, keepdims=True)
    assert np.max(np.abs(folded.q - stepped.q) / scale) < 1e-10
    assert np.max(np.abs(folded.p - stepped.p)) < 1e-10


# --------------------------------------------------------------------- float32


def leapfrog_power(n: int, h, w) -> np.ndarray:
    """The n-th power of the leapfrog map of p^2/2 + w^2 q^2/2 in long double (a symplectic
    2x2 M with trace 2 cos(theta): M^n = (sin(n theta) M - sin((n-1) theta) I) / sin(theta))."""
    h, w = LD(h), LD(w)
    c = 1 - h * h * w * w / 2
    m = np.array([[c, h], [-h * w * w * (1 - h * h * w * w / 4), c]], dtype=LD)
    theta = np.arccos(c)
    return (np.sin(n * theta) * m - np.sin((n - 1) * theta) * np.eye(2, dtype=LD)) / np.sin(theta)


F32_OSC = OSC.replace("1.3", "1.25")  # w, w^2, dt, q0, p0 all exact in float32


@pytest.mark.parametrize("integrator", ["leapfrog", "exact"])
@pytest.mark.parametrize("steps", [10**4, 10**6])
def test_folding_in_f32_is_as_accurate_as_stepping(integrator, steps):
    """Folded f32 against the analytic solution (the exact leapfrog map, or the exact flow):
    one f32 rounding of the state (~eps32), while a map read off f32 code (det M - 1 ~ 5e-8)
    ended 8e-3 off at 10^6 steps, worse than stepping in f32 (1.1e-3)."""
    dt, q0, p0 = 0.0625, 1.0, 0.25
    if integrator == "exact":
        t = LD(steps) * LD(dt)
        w = LD(1.25)
        want = np.array([q0 * np.cos(w * t) + p0 / w * np.sin(w * t),
                         -q0 * w * np.sin(w * t) + p0 * np.cos(w * t)])
    else:
        want = leapfrog_power(steps, dt, 1.25) @ np.array([q0, p0], dtype=LD)
    want = want.astype(float)
    sim = tpc.compile(F32_OSC, integrator=integrator, precision="f32")
    folded = sim.run([q0], [p0], dt=dt, steps=steps, save_every=steps)
    assert folded.folded and folded.q.dtype == np.float32
    err = np.max(np.abs(np.array([folded.q[-1, 0], folded.p[-1, 0]], dtype=float) - want))
    assert err <= 2 * EPS32 * np.max(np.abs(want)) + 1e-12, err
    if integrator == "leapfrog":
        stepped = tpc.compile(F32_OSC, integrator=integrator, precision="f32", fold=False).run(
            [q0], [p0], dt=dt, steps=steps, save_every=steps)
        got = np.array([stepped.q[-1, 0], stepped.p[-1, 0]], dtype=float)
        assert err <= np.max(np.abs(got - want))
