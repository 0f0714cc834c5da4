"""Derivatives of the flow (tpc.derivatives): tangent runs, the monodromy matrix, Lyapunov
exponents and MEGNO, reverse-mode gradients through reversal and checkpoints.

The references are independent of tpc's code: central finite differences of whole runs, and
a plain numpy leapfrog with its discrete adjoint written out by hand over a stored trajectory
(the textbook backpropagation that tpc's reversal avoids)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tpc
from tests.systems import KEPLER, NBODY, PENDULUM
from tpc.diagnostics import TpcError

HENON_HEILES = """system HenonHeiles {
    param lam = 1.0
    state q[2], p[2]
    H = dot(p, p) / 2 + (q[0]^2 + q[1]^2) / 2 + lam * (q[0]^2 * q[1] - q[1]^3 / 3)
}"""

J6 = np.block([[np.zeros((3, 3)), np.eye(3)], [-np.eye(3), np.zeros((3, 3))]])
KQ0, KP0 = np.array([0.4, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])


@pytest.fixture(scope="module")
def kepler():
    return tpc.compile(KEPLER, integrator="leapfrog")


@pytest.fixture(scope="module")
def henon():
    return tpc.compile(HENON_HEILES, integrator="leapfrog")


def end_state(sim, q0, p0, dt, steps, params=None, **inputs) -> np.ndarray:
    t = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps, params=params, **inputs)
    return np.concatenate([t.q[-1].ravel(), t.p[-1].ravel()])


def hh_start(energy: float, y0: float) -> tuple[np.ndarray, np.ndarray]:
    v = y0**2 / 2 - y0**3 / 3
    return np.array([0.0, y0]), np.array([np.sqrt(2 * (energy - v)), 0.0])


# -- numpy references: KDK leapfrog and its hand-written discrete adjoint ------------------

def kepler_force(q, mu):
    r = np.linalg.norm(q)
    return mu * q / r**3, mu * (np.eye(3) / r**3 - 3 * np.outer(q, q) / r**5), q / r**3


def hh_force(q, lam):
    x, y = q
    grad = np.array([x + 2 * lam * x * y, y + lam * (x * x - y * y)])
    hess = np.array([[1 + 2 * lam * y, 2 * lam * x], [2 * lam * x, 1 - 2 * lam * y]])
    return grad, hess, np.array([2 * x * y, x * x - y * y])


def numpy_adjoint(force, q0, p0, theta, h, steps, lq, lp):
    """(lambda_q0, lambda_p0, dL/dtheta) of L = lq.q(T) + lp.p(T), backpropagated through a
    stored KDK trajectory: each kick p -= h/2 grad V(q), drift q += h p."""
    qs = [q0.copy()]
    q, p = q0.copy(), p0.copy()
    for _ in range(steps):
        p = p - 0.5 * h * force(q, theta)[0]
        q = q + h * p
        qs.append(q.copy())
        p = p - 0.5 * h * force(q, theta)[0]
    lq, lp, lt = lq.copy(), lp.copy(), 0.0
    for k in range(steps, 0, -1):
        for at, drift in ((qs[k], True), (qs[k - 1], False)):
            _, hess, dtheta = force(at, theta)
            lq = lq - 0.5 * h * hess @ lp
            lt -= 0.5 * h * dtheta @ lp
            if drift:
                lp = lp + h * lq
    return lq, lp, lt


def numpy_lyapunov(force, q0, p0, theta, h, steps, every, v0):
    """The same Benettin procedure on a numpy leapfrog and its variational equations."""
    q, p = q0.copy(), p0.copy()
    dq, dp = v0[:2].copy(), v0[2:].copy()
    total = 0.0
    for k in range(1, steps + 1):
        g, hess, _ = force(q, theta)
        p, dp = p - 0.5 * h * g, dp - 0.5 * h * hess @ dq
        q, dq = q + h * p, dq + h * dp
        g, hess, _ = force(q, theta)
        p, dp = p - 0.5 * h * g, dp - 0.5 * h * hess @ dq
        if k % every == 0:
            norm = np.sqrt(dq @ dq + dp @ dp)
            total += np.log(norm)
            dq, dp = dq / norm, dp / norm
    return total / (steps * h)


# -- tangent map ------------------------------------------------------------------------------

def test_tangent_run_matches_finite_differences(kepler):
    dz = np.array([0.3, -0.2, 0.1, 0.05, 0.4, -0.3])
    traj = kepler.run(KQ0, KP0, dt=0.01, steps=300, save_every=100, tangent=dz)
    assert traj.dq.shape == traj.q.shape == (4, 3)
    assert np.array_equal(traj.dq[0], dz[:3]) and np.array_equal(traj.dp[0], dz[3:])
    z0, h = np.concatenate([KQ0, KP0]), 1e-6
    fd = (end_state(kepler, *np.split(z0 + h * dz, 2), 0.01, 300)
          - end_state(kepler, *np.split(z0 - h * dz, 2), 0.01, 300)) / (2 * h)
    got = np.concatenate([traj.dq[-1], traj.dp[-1]])
    assert np.max(np.abs(got - fd)) < 1e-7 * np.max(np.abs(fd))
    # the state rows are those of a plain run
    plain = kepler.run(KQ0, KP0, dt=0.01, steps=300, save_every=100)
    assert np.allclose(traj.q, plain.q, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("integrator", ["leapfrog", "yoshida4", "yoshida6"])
def test_jacobian_is_symplectic(integrator):
    sim = tpc.compile(KEPLER, integrator=integrator)
    m = sim.jacobian(KQ0, KP0, dt=0.01, steps=500)
    assert np.max(np.abs(m.T @ J6 @ m - J6)) < 1e-11 * np.max(np.abs(m)) ** 2
    assert abs(np.linalg.det(m) - 1.0) < 1e-9


def test_jacobian_of_nbody_matches_finite_differences():
    sim = tpc.compile(NBODY, integrator="yoshida4")
    rng = np.random.default_rng(3)
    q0, p0 = rng.normal(size=(3, 3)), 0.3 * rng.normal(size=(3, 3))
    m_in = np.array([1.0, 0.5, 0.8])
    jac = sim.jacobian(q0, p0, dt=0.005, steps=100, m=m_in)
    n = 9
    j = np.block([[np.zeros((n, n)), np.eye(n)], [-np.eye(n), np.zeros((n, n))]])
    assert np.max(np.abs(jac.T @ j @ jac - j)) < 1e-10 * np.max(np.abs(jac)) ** 2
    z0, h = np.concatenate([q0.ravel(), p0.ravel()]), 1e-6
    for k in (0, 4, 11, 17):
        e = np.zeros(2 * n)
        e[k] = h
        fd = (end_state(sim, (z0 + e)[:n].reshape(3, 3), (z0 + e)[n:].reshape(3, 3), 0.005,
                        100, m=m_in)
              - end_state(sim, (z0 - e)[:n].reshape(3, 3), (z0 - e)[n:].reshape(3, 3), 0.005,
                          100, m=m_in)) / (2 * h)
        assert np.max(np.abs(jac[:, k] - fd)) < 1e-7 * np.max(np.abs(fd))


# -- adjoints ----------------------------------------------------------------------------------

def test_vjp_kepler_matches_numpy_adjoint(kepler):
    lq, lp = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 0.25])
    v = kepler.vjp(KQ0, KP0, dt=0.01, steps=2000, cotangent=(lq, lp), params={"mu": 1.3})
    assert v.method == "reversal" and v.segments == 1 and v.reconstruction_error < 1e-12
    rq, rp, rmu = numpy_adjoint(kepler_force, KQ0, KP0, 1.3, 0.01, 2000, lq, lp)
    scale = max(np.max(np.abs(rq)), np.max(np.abs(rp)))
    assert np.max(np.abs(v.q0 - rq)) < 1e-9 * scale
    assert np.max(np.abs(v.p0 - rp)) < 1e-9 * scale
    assert abs(v.params["mu"] - rmu) < 1e-9 * abs(rmu)
    assert v.q.shape == (3,) and np.isfinite(v.q).all()


def test_vjp_pendulum_params_match_finite_differences():
    sim = tpc.compile(PENDULUM, integrator="yoshida4")
    q0, p0, dt, steps = np.array([1.0]), np.array([0.3]), 0.01, 700
    c = (np.array([0.7]), np.array([-1.1]))
    v = sim.vjp(q0, p0, dt=dt, steps=steps, cotangent=c, params={"g": 9.0, "l": 1.2})

    def loss(q, p, g, length):
        z = end_state(sim, q, p, dt, steps, params={"g": g, "l": length})
        return z[0] * c[0][0] + z[1] * c[1][0]

    h = 1e-6
    fd = {
        "q0": (loss(q0 + h, p0, 9.0, 1.2) - loss(q0 - h, p0, 9.0, 1.2)) / (2 * h),
        "p0": (loss(q0, p0 + h, 9.0, 1.2) - loss(q0, p0 - h, 9.0, 1.2)) / (2 * h),
        "g": (loss(q0, p0, 9.0 + h, 1.2) - loss(q0, p0, 9.0 - h, 1.2)) / (2 * h),
        "l": (loss(q0, p0, 9.0, 1.2 + h) - loss(q0, p0, 9.0, 1.2 - h)) / (2 * h),
    }
    got = {"q0": v.q0[0], "p0": v.p0[0], "g": v.params["g"], "l": v.params["l"]}
    for k, want in fd.items():
        assert abs(got[k] - want) < 1e-7 * max(1.0, abs(want)), (k, got[k], want)


def test_vjp_nbody_masses_and_G_match_finite_differences():
    sim = tpc.compile(NBODY, integrator="leapfrog")
    rng = np.random.default_rng(7)
    n_body = 8
    q0 = rng.normal(size=(n_body, 3)) * 2.0
    p0 = rng.normal(size=(n_body, 3)) * 0.2
    m_in = rng.uniform(0.5, 1.5, n_body)
    cq, cp = rng.normal(size=(n_body, 3)), rng.normal(size=(n_body, 3))
    dt, steps = 0.002, 400
    v = sim.vjp(q0, p0, dt=dt, steps=steps, cotangent=(cq, cp), params={"G": 1.1}, m=m_in)
    assert v.inputs["m"].shape == (n_body,)

    def loss(q=q0, p=p0, G=1.1, m=m_in):
        z = end_state(sim, q, p, dt, steps, params={"G": G}, m=m)
        return z @ np.concatenate([cq.ravel(), cp.ravel()])

    h = 1e-6
    want_g = (loss(G=1.1 + h) - loss(G=1.1 - h)) / (2 * h)
    assert abs(v.params["G"] - want_g) < 1e-7 * abs(want_g)
    for i in (0, 3, 7):
        e = np.zeros(n_body)
        e[i] = h
        want = (loss(m=m_in + e) - loss(m=m_in - e)) / (2 * h)
        assert abs(v.inputs["m"][i] - want) < 1e-7 * max(1.0, abs(want))
    for (i, k) in ((0, 0), (5, 2)):
        e = np.zeros((n_body, 3))
        e[i, k] = h
        want_q = (loss(q=q0 + e) - loss(q=q0 - e)) / (2 * h)
        want_p = (loss(p=p0 + e) - loss(p=p0 - e)) / (2 * h)
        assert abs(v.q0[i, k] - want_q) < 1e-7 * max(1.0, abs(want_q))
        assert abs(v.p0[i, k] - want_p) < 1e-7 * max(1.0, abs(want_p))


def test_vjp_of_a_loss_over_snapshots(kepler):
    dt, steps, every = 0.01, 250, 50
    rows = steps // every + 1
    rng = np.random.default_rng(11)
    gq, gp = rng.normal(size=(rows, 3)), rng.normal(size=(rows, 3))
    v = kepler.vjp(KQ0, KP0, dt=dt, steps=steps, save_every=every, cotangent=(gq, gp))

    def loss(q, p):
        t = kepler.run(q, p, dt=dt, steps=steps, save_every=every)
        return float(np.sum(t.q * gq) + np.sum(t.p * gp))

    h = 1e-6
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        want_q = (loss(KQ0 + e, KP0) - loss(KQ0 - e, KP0)) / (2 * h)
        want_p = (loss(KQ0, KP0 + e) - loss(KQ0, KP0 - e)) / (2 * h)
        assert abs(v.q0[k] - want_q) < 1e-7 * max(1.0, abs(want_q))
        assert abs(v.p0[k] - want_p) < 1e-7 * max(1.0, abs(want_p))


def test_vjp_splits_a_chaotic_reversal_at_checkpoints(henon):
    q0, p0 = hh_start(1 / 6, -0.1)
    lq, lp = np.array([1.0, 0.0]), np.array([0.0, 0.0])
    # t = 100: round-off grows by ~e^(0.13 t) on this orbit, past rtol, while two float64
    # runs (tpc's and numpy's) still agree well enough to compare gradients
    steps, dt, rtol = 10_000, 0.01, 1e-13
    v = henon.vjp(q0, p0, dt=dt, steps=steps, cotangent=(lq, lp), rtol=rtol)
    assert v.method == "checkpoints" and v.segments > 1
    assert v.reconstruction_error <= rtol
    rq, rp, rlam = numpy_adjoint(hh_force, q0, p0, 1.0, dt, steps, lq, lp)
    scale = max(np.max(np.abs(rq)), np.max(np.abs(rp)))
    assert scale > 1e3  # the orbit is chaotic: the gradient is large
    assert np.max(np.abs(np.concatenate([v.q0 - rq, v.p0 - rp]))) < 1e-6 * scale
    assert abs(v.params["lam"] - rlam) < 1e-6 * abs(rlam)
    # forced to trust the reversal, the same run says how far its rebuilt start is off
    loose = henon.vjp(q0, p0, dt=dt, steps=steps, cotangent=(lq, lp), rtol=1.0)
    assert loose.method == "reversal" and loose.reconstruction_error > rtol


# -- chaos --------------------------------------------------------------------------------------

def test_lyapunov_matches_numpy_benettin(henon):
    q0, p0 = hh_start(1 / 6, -0.1)
    lyap = henon.lyapunov(q0, p0, dt=0.01, steps=10_000, renormalize_every=10, seed=5)
    v0 = np.linalg.qr(np.random.default_rng(5).standard_normal((4, 1)))[0][:, 0]
    want = numpy_lyapunov(hh_force, q0, p0, 1.0, 0.01, 10_000, 10, v0)
    assert abs(lyap.exponent - want) < 1e-6 * abs(want)
    assert lyap.t[-1] == pytest.approx(100.0) and lyap.history.size == 1000


def test_henon_heiles_chaotic_and_regular_orbits(henon):
    chaotic = henon.lyapunov(*hh_start(1 / 6, -0.1), dt=0.01, steps=150_000,
                             renormalize_every=20)
    regular = henon.lyapunov(*hh_start(1 / 6, 0.1), dt=0.01, steps=150_000,
                             renormalize_every=20)
    # the chaotic sea at E = 1/6: lambda of order 0.1; MEGNO grows like lambda t / 2
    assert 0.05 < chaotic.exponent < 0.2
    assert chaotic.final_megno > 20
    # an orbit on a torus: lambda -> 0 like log(t)/t, MEGNO -> 2
    assert regular.exponent < 0.01
    assert abs(regular.final_megno - 2.0) < 0.3


def test_kepler_exponent_falls_like_log_t_over_t(kepler):
    lyap = kepler.lyapunov(KQ0, KP0, dt=0.002, steps=100_000, renormalize_every=100)
    at = {round(t): lam for t, lam in zip(lyap.t, lyap.history)}
    assert at[2] > at[20] > at[200]
    assert at[200] < 0.05
    # growth of a tangent of a regular orbit is linear: lambda(t) ~ log(t) / t
    assert at[200] == pytest.approx(np.log(at[200] * 200) / 200 + at[200], rel=1.0)
    assert abs(lyap.final_megno - 2.0) < 0.3


def test_lyapunov_spectrum_pairs(henon):
    lyap = henon.lyapunov(*hh_start(1 / 6, -0.1), dt=0.01, steps=40_000,
                          renormalize_every=20, spectrum=True)
    s = lyap.spectrum
    assert s.shape == (4,) and np.all(np.diff(s) <= 0)
    assert abs(s.sum()) < 1e-10  # volume is kept: the exponents cancel
    # +- pairs (exactly only as t -> infinity: a finite-time QR spectrum pairs to O(1/t)),
    # and a zero pair (the directions along the flow and across the energy surface)
    assert s[0] > 0.05 and abs(s[0] + s[3]) < 0.1 * s[0]
    assert abs(s[1]) < 0.02 and abs(s[2]) < 0.02


# -- what is refused -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def solar():
    import json

    data = json.loads(Path("examples/outer_solar_system_wh.json").read_text())
    q0, p0, m = (np.array(data[k], dtype=float) for k in ("q", "p", "m"))
    return tpc.compile("examples/outer_solar_system_wh.ham"), q0, p0, m


def test_wisdom_holman_tangent_through_kepler_flows(solar):
    sim, q0, p0, m = solar
    dt, steps, n = 10.0, 200, q0.size
    jac = sim.jacobian(q0, p0, dt=dt, steps=steps, m=m)
    j = np.block([[np.zeros((n, n)), np.eye(n)], [-np.eye(n), np.zeros((n, n))]])
    assert np.max(np.abs(jac.T @ j @ jac - j)) < 1e-13 * np.max(np.abs(jac)) ** 2
    z0 = np.concatenate([q0.ravel(), p0.ravel()])
    for k in (0, 8, 15, 20, 29):
        h = 1e-5 * abs(z0[k])
        e = np.zeros(2 * n)
        e[k] = h
        hi = end_state(sim, (z0 + e)[:n].reshape(q0.shape), (z0 + e)[n:].reshape(q0.shape), dt,
                       steps, m=m)
        lo = end_state(sim, (z0 - e)[:n].reshape(q0.shape), (z0 - e)[n:].reshape(q0.shape), dt,
                       steps, m=m)
        fd = (hi - lo) / (2 * h)
        assert np.max(np.abs(jac[:, k] - fd)) < 1e-7 * np.max(np.abs(fd)), k


def test_wisdom_holman_state_vjp_and_refused_param_gradients(solar):
    sim, q0, p0, m = solar
    cq = np.zeros_like(q0)
    cq[1, 0] = 1.0  # Saturn's x after 200 steps of 10 days
    v = sim.vjp(q0, p0, dt=10.0, steps=200, cotangent=(cq, np.zeros_like(p0)),
                wrt_params=False, m=m)
    assert v.params == {} and v.inputs == {} and v.method == "reversal"
    jac = sim.jacobian(q0, p0, dt=10.0, steps=200, m=m)
    want = jac[3, :]  # row of Saturn's x
    got = np.concatenate([v.q0.ravel(), v.p0.ravel()])
    assert np.max(np.abs(got - want)) < 1e-9 * np.max(np.abs(want))
    with pytest.raises(TpcError, match="through a Kepler flow is not supported yet"):
        sim.vjp(q0, p0, dt=10.0, steps=20, cotangent=(cq, np.zeros_like(p0)), m=m)
    # over 550 years the outer planets look regular: a small, falling exponent and MEGNO
    # settling toward 2 (their Lyapunov time is of order 10^7 years)
    lyap = sim.lyapunov(q0, p0, dt=10.0, steps=20_000, m=m)
    assert 0 < lyap.exponent < 1e-3 and lyap.history[-1] < lyap.history[len(lyap.t) // 2]
    assert 1.5 < lyap.final_megno < 3.0


def test_bad_tangent_and_cotangent_shapes(kepler):
    with pytest.raises(TpcError, match="tangent must be"):
        kepler.run(KQ0, KP0, dt=0.01, steps=10, tangent=np.zeros(5))
    with pytest.raises(TpcError, match="cotangent must be"):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=10, cotangent=(np.zeros(3), np.zeros(2)))
    with pytest.raises(TpcError, match="finite"):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=10, cotangent=(np.full(3, np.nan), np.zeros(3)))
    with pytest.raises(TpcError, match="one row per snapshot"):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=10, save_every=5,
                   cotangent=(np.zeros((2, 3)), np.zeros((2, 3))))
    with pytest.raises(TpcError, match="single runs"):
        kepler.run(KQ0, KP0, dt=0.01, steps=10, tangent=np.zeros(6), batch=2)
    with pytest.raises(TpcError, match="must be numbers"):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=10, cotangent=("a", np.zeros(3)))
    with pytest.raises(TpcError, match="renormalize_every"):
        kepler.lyapunov(KQ0, KP0, dt=0.01, steps=10, renormalize_every=0)
    with pytest.raises(TpcError, match="rtol"):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=10, cotangent=np.zeros(6), rtol=-1.0)
    with pytest.raises(TpcError):
        kepler.jacobian(KQ0, KP0, dt=float("nan"), steps=10)
    with pytest.raises(TpcError):
        kepler.vjp(KQ0, KP0, dt=0.01, steps=-3, cotangent=np.zeros(6))


def test_cli_lyapunov(tmp_path):
    out = tmp_path / "hh.npz"
    proc = subprocess.run([sys.executable, "-m", "tpc.cli", "run", "examples/henon_heiles.ham",
                           "--integrator", "leapfrog", "--steps", "5000", "--lyapunov",
                           "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    line = next(s for s in proc.stdout.splitlines() if s.startswith("max Lyapunov exponent:"))
    value = float(line.split(":")[1].split()[0])
    data = np.load(out)
    assert float(data["lyapunov"]) == pytest.approx(value, rel=1e-5)
    assert data["megno"].shape == data["lyapunov_t"].shape
    h5 = tmp_path / "hh.h5"
    streamed = subprocess.run([sys.executable, "-m", "tpc.cli", "run",
                               "examples/henon_heiles.ham", "--integrator", "leapfrog",
                               "--steps", "5000", "--lyapunov", "-o", str(h5)],
                              capture_output=True, text=True)
    assert streamed.returncode == 0, streamed.stderr
    import h5py

    with h5py.File(h5) as f:
        assert float(f["lyapunov"][()]) == float(data["lyapunov"])
        assert f["megno"].shape == data["megno"].shape
    bad = subprocess.run([sys.executable, "-m", "tpc.cli", "run", "examples/kepler.ham",
                          "--lyapunov", "--device", "cuda"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--lyapunov is for" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("steps", [2, 3, 7])
def test_checkpoints_down_to_single_steps(kepler, steps):
    """An rtol no reversal meets splits every span down to single steps, and stops there."""
    c = (np.array([1.0, 0.5, 0.0]), np.array([0.0, 1.0, 2.0]))
    exact = kepler.vjp(KQ0, KP0, dt=0.01, steps=steps, cotangent=c, rtol=1e-300)
    loose = kepler.vjp(KQ0, KP0, dt=0.01, steps=steps, cotangent=c)
    assert exact.method == "checkpoints" and exact.segments == steps
    assert np.allclose(exact.q0, loose.q0, rtol=1e-13) and np.allclose(exact.p0, loose.p0,
                                                                        rtol=1e-13)


def test_float32_gradients_follow_float64():
    f32 = tpc.compile(KEPLER, integrator="leapfrog", precision="f32")
    f64 = tpc.compile(KEPLER, integrator="leapfrog")
    c = (np.array([1.0, -1.0, 0.0]), np.array([0.5, 0.0, 0.0]))
    a = f32.vjp(KQ0, KP0, dt=0.01, steps=300, cotangent=c)
    b = f64.vjp(KQ0, KP0, dt=0.01, steps=300, cotangent=c)
    assert a.method == "reversal"  # float32's own default rtol
    scale = np.max(np.abs(b.q0))
    assert np.max(np.abs(a.q0 - b.q0)) < 1e-3 * scale
    assert abs(a.params["mu"] - b.params["mu"]) < 1e-3 * abs(b.params["mu"])


@pytest.mark.parametrize("source,integrator", [("examples/kepler.ham", "midpoint"),
                                               ("examples/anisotropic.ham", None)])
def test_implicit_midpoint_tangent_and_adjoint(source, integrator):
    """The midpoint stage's tangent solves its linearized equation; on a non-separable H
    (the rotating-frame oscillator) as on Kepler it is symplectic and its adjoint, params
    included, matches finite differences."""
    sim = tpc.compile(source, integrator=integrator) if integrator else tpc.compile(source)
    q0, p0 = (KQ0, KP0) if integrator else (np.array([1.0, 0.2]), np.array([0.1, -0.3]))
    n, dt, steps = q0.size, 0.01, 100
    jac = sim.jacobian(q0, p0, dt=dt, steps=steps)
    j = np.block([[np.zeros((n, n)), np.eye(n)], [-np.eye(n), np.zeros((n, n))]])
    assert np.max(np.abs(jac.T @ j @ jac - j)) < 1e-12 * max(1.0, np.max(np.abs(jac)) ** 2)
    c = np.arange(1.0, 2 * n + 1)
    v = sim.vjp(q0, p0, dt=dt, steps=steps, cotangent=c)
    got = np.concatenate([v.q0, v.p0])
    assert np.max(np.abs(got - jac.T @ c)) < 1e-10 * np.max(np.abs(got))
    name, value = next(iter(sim.info.params.items()))

    def loss(x):
        return end_state(sim, q0, p0, dt, steps, params={name: x}) @ c

    h = 1e-6 * max(1.0, abs(value))
    want = (loss(value + h) - loss(value - h)) / (2 * h)
    assert abs(v.params[name] - want) < 1e-7 * max(1.0, abs(want))


def test_tangent_over_a_cell_list_matches_finite_differences():
    """A cut-off pair sum in a box runs its tangent over the same cell list as its force."""
    import json

    source = Path("examples/lj_liquid.ham").read_text().split("simulate")[0]
    source = source.replace("box L = 7.540521415", "box L = 7.6")
    data = json.loads(Path("examples/lj_liquid_init.json").read_text())
    q0, p0 = np.array(data["q"])[:64] * (7.6 / 7.540521415), np.array(data["p"])[:64]
    sim = tpc.compile(source)
    assert "cells" in str(sim.module)
    dz = np.random.default_rng(1).normal(size=2 * q0.size)
    traj = sim.run(q0, p0, dt=0.002, steps=50, save_every=50, tangent=dz)
    z0, h, n = np.concatenate([q0.ravel(), p0.ravel()]), 1e-7, q0.size

    def at(z):
        return end_state(sim, z[:n].reshape(q0.shape), z[n:].reshape(p0.shape), 0.002, 50)

    fd = (at(z0 + h * dz) - at(z0 - h * dz)) / (2 * h)
    got = np.concatenate([traj.dq[-1].ravel(), traj.dp[-1].ravel()])
    assert np.max(np.abs(got - fd)) < 1e-6 * np.max(np.abs(fd))
