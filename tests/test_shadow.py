"""--shadow: the dt^2 term of the scheme's shadow Hamiltonian, against the classical
coefficients, numpy's brackets, and the orders of the errors (H: dt^2, H~: dt^4)."""

from fractions import Fraction

import numpy as np
import pytest
from systems import KEPLER, NBODY
from tpc.passes.sym_shadow import h2_coefficients

import tpc
from tpc import invariants
from tpc.diagnostics import TpcError

PENDULUM = """system Pendulum {
    param g = 9.81
    state q[1], p[1]
    H = p[0]^2 / 2 - g * cos(q[0])
}"""


def test_bch_gives_the_classical_leapfrog_coefficients():
    half, one = Fraction(1, 2), Fraction(1)
    assert h2_coefficients([(0, half), (1, one), (0, half)]) == (Fraction(-1, 24), Fraction(1, 12))
    assert h2_coefficients([(1, half), (0, one), (1, half)]) == (Fraction(1, 12), Fraction(-1, 24))


def slopes(sim, q0, p0, dts):
    """Fitted log-log slopes of max |H - H0| / |H0| and of the same for H~, over one period."""
    errs = []
    for dt in dts:
        steps = int(round(2 * np.pi / dt))
        traj = sim.run(q0, p0, dt=dt, steps=steps, save_every=max(1, steps // 100))
        errs.append((np.max(invariants.drift(traj.H)),
                     np.max(invariants.drift(traj.monitors[invariants.SHADOW]))))
    errs = np.array(errs)
    fit = [np.polyfit(np.log(dts), np.log(errs[:, k]), 1)[0] for k in (0, 1)]
    return fit, errs


@pytest.mark.parametrize("src, q0, p0", [(KEPLER, [0.4, 0.0, 0.0], [0.0, 2.0, 0.0]),
                                          (PENDULUM, [1.0], [0.0])], ids=["kepler", "pendulum"])
def test_leapfrog_shadow_error_is_dt4_while_H_is_dt2(src, q0, p0):
    sim = tpc.compile(src, shadow=True, integrator="leapfrog")
    (h_slope, s_slope), errs = slopes(sim, q0, p0, [0.02, 0.01, 0.005, 0.0025])
    assert abs(h_slope - 2) < 0.1 and abs(s_slope - 4) < 0.15, (h_slope, s_slope)
    assert np.all(errs[:, 1] < errs[:, 0] / 100)


def test_nbody_H2_against_numpy_brackets():
    sim = tpc.compile(NBODY, shadow=True)
    rng = np.random.default_rng(1)
    m = np.array([1.0, 2.0, 0.5])
    dt = 1e-2
    traj = sim.run(rng.normal(size=(3, 3)), 0.3 * rng.normal(size=(3, 3)), dt=dt, steps=10,
                   save_every=10, m=m)

    def grad_v(q):
        g = np.zeros_like(q)
        for i in range(3):
            for j in range(i + 1, 3):
                d = q[i] - q[j]
                f = m[i] * m[j] * d / np.linalg.norm(d) ** 3
                g[i] += f
                g[j] -= f
        return g

    q, p = traj.q[-1], traj.p[-1]
    g, v = grad_v(q), p / m[:, None]
    eps = 1e-5
    v_hess_v = np.sum((grad_v(q + eps * v) - grad_v(q - eps * v)) * v) / (2 * eps)
    h2 = -np.sum(g * g / m[:, None]) / 24 + v_hess_v / 12  # {V,{V,T}}, {T,{T,V}}
    got = (traj.monitors[invariants.SHADOW][-1] - traj.H[-1]) / dt**2
    assert got == pytest.approx(h2, rel=1e-8)


def test_large_dt_warns_with_a_smaller_dt():
    sim = tpc.compile(KEPLER, shadow=True)
    traj = sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=0.1, steps=200, save_every=10)
    lines = invariants.shadow_summary(traj.H, traj.monitors[invariants.SHADOW], 0.1)
    warn = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warn) == 1 and "dt = 0.1 is large" in warn[0]
    suggested = float(warn[0].split("dt = ")[2].split()[0])
    assert 0 < suggested < 0.1


def test_fourth_order_composition_is_refused_at_the_integrator():
    sim = tpc.compile(KEPLER, shadow=True, integrator="yoshida4")
    with pytest.raises(TpcError) as e:
        sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=0.01, steps=1)  # builds the code
    assert "dt^2 term of yoshida4's shadow Hamiltonian vanishes" in e.value.message
