"""integrator = discrete_gradient (average vector field): the energy of Henon-Heiles kept to
round-off over 1e5 steps, against numpy's H of the saved states (midpoint, symplectic but not
energy-exact, misses that by orders of magnitude)."""

import numpy as np
import pytest

import tpc
from tpc import invariants

HH = """system HenonHeiles {
    state q[2], p[2]
    H = dot(p, p) / 2 + (q[0]^2 + q[1]^2) / 2 + q[0]^2 * q[1] - q[1]^3 / 3
}"""


def energy(q, p):
    x, y = q[..., 0], q[..., 1]
    return (p**2).sum(-1) / 2 + (x**2 + y**2) / 2 + x**2 * y - y**3 / 3


@pytest.mark.parametrize("integrator, bound", [("discrete_gradient", 1e-13), ("midpoint", None)])
def test_henon_heiles_energy_to_round_off(integrator, bound):
    sim = tpc.compile(HH, integrator=integrator)
    q0, p0 = np.array([0.0, 0.1]), np.array([0.39, 0.0])
    traj = sim.run(q0, p0, dt=0.01, steps=100_000, save_every=1000)
    h0 = energy(q0, p0)
    err = np.max(np.abs(energy(traj.q, traj.p) - h0)) / abs(h0)
    if bound is not None:
        assert err < bound, err
        lines = invariants.summary(sim, traj, 0.01)
        assert "H: conserved to round-off by discrete_gradient" in lines[-1]
    else:
        assert err > 1e-8, err  # the implicit midpoint rule keeps a shadow energy, not H


def test_project_energy_keeps_H_and_says_what_it_costs():
    """project = energy on leapfrog Kepler: H to round-off (numpy's H of the saved states),
    while L, exact under plain leapfrog, now drifts and is reported as approximate."""
    sim = tpc.compile("""system Kepler {
        state q[3], p[3]
        H = dot(p, p) / 2 - 1 / norm(q)
    }
    simulate {
        project = energy
    }""")
    q0, p0 = np.array([0.4, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    traj = sim.run(q0, p0, dt=0.01, steps=2000, save_every=100)
    h = (traj.p**2).sum(1) / 2 - 1 / np.linalg.norm(traj.q, axis=1)
    assert np.max(np.abs(h - h[0])) / abs(h[0]) < 1e-14
    lz = traj.q[:, 0] * traj.p[:, 1] - traj.q[:, 1] * traj.p[:, 0]
    assert np.max(np.abs(lz - lz[0])) > 1e-8
    lines = invariants.summary(sim, traj, 0.01)
    assert any(ln.startswith("  L_z") and "approximately" in ln for ln in lines)
    assert "conserved to round-off (projected" in lines[-1]
