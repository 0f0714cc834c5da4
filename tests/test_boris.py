"""The Boris pusher (integrator = boris, ham-magnetic's form) against the properties that define
it and against a plain numpy Boris written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError

CHARGE = """
system Charge {
    param e = 1.0
    param m = 1.0
    param ez = 0.0
    param alpha = 0.0
    input bfield[3]
    state q[3], p[3]
    let a = cross(bfield, q) / 2 * (1 + alpha * q[2])
    let K = dot(p - e * a, p - e * a) / (2 * m)
    let Phi = -e * ez * q[2]
    H = K + Phi
}
"""


@pytest.fixture(scope="module")
def boris():
    return tpc.compile(CHARGE, integrator="boris", fold=False)


def start(b, r=0.5, v=1.0):
    q0 = np.array([r, 0.0, 0.0])
    return q0, np.array([0.0, v, 0.0]) + 0.5 * np.cross(b, q0)


def test_uniform_field_speed_and_discrete_radius(boris):
    """|v| is conserved to round-off over 1e6 steps, and the positions lie on the circle of
    radius r_L sqrt(1 + (ω_c dt / 2)^2), the Boris map's own (measured: 3e-12, 2e-12)."""
    b = np.array([0.0, 0.0, 2.0])
    q0, p0 = start(b)
    dt, steps = 0.1, 10**6
    traj = boris.run(q0, p0, dt=dt, steps=steps, save_every=100, bfield=b)
    v = traj.p - 0.5 * np.cross(b, traj.q)
    speed = np.linalg.norm(v, axis=1)
    assert np.abs(speed - speed[0]).max() < 1e-11
    x, y = traj.q[:, 0], traj.q[:, 1]
    fit = np.linalg.lstsq(np.stack([2 * x, 2 * y, np.ones_like(x)], 1), x * x + y * y,
                          rcond=None)[0]
    radius = math.sqrt(fit[2] + fit[0] ** 2 + fit[1] ** 2)
    w = 2.0
    assert abs(radius - 1.0 / w * math.sqrt(1 + (w * dt / 2) ** 2)) < 1e-10
    assert np.abs(np.hypot(x - fit[0], y - fit[1]) - radius).max() < 1e-10


def numpy_boris(q, p, b0, alpha, ez, dt, steps):
    def pot(x):  # e A, e = 1
        return 0.5 * np.cross(b0, x) * (1 + alpha * x[2])

    def field(x):  # curl A for A = (b/2)(1 + alpha z)(-y, x, 0), b0 = (0, 0, b)
        b = b0[2]
        return np.array([-0.5 * b * alpha * x[0], -0.5 * b * alpha * x[1],
                         b * (1 + alpha * x[2])])

    e_field = np.array([0.0, 0.0, ez])
    v = p - pot(q)
    for _ in range(steps):
        vm = v + dt / 2 * e_field
        t = field(q) * dt / 2
        s = 2 * t / (1 + t @ t)
        vp = vm + np.cross(vm, t)
        v = vm + np.cross(vp, s) + dt / 2 * e_field
        q = q + dt * v
    return q, v + pot(q)


def test_matches_numpy_boris_in_a_nonuniform_field(boris):
    b = np.array([0.0, 0.0, 2.0])
    q0, p0 = start(b)
    p0 = p0 + np.array([0.0, 0.0, 0.2])
    params = {"alpha": 0.1, "ez": 0.05}
    traj = boris.run(q0, p0, dt=0.05, steps=2000, save_every=2000, params=params, bfield=b)
    q, p = numpy_boris(q0, p0, b, 0.1, 0.05, 0.05, 2000)
    np.testing.assert_allclose(traj.q[-1], q, rtol=0, atol=1e-11)
    np.testing.assert_allclose(traj.p[-1], p, rtol=0, atol=1e-11)


def test_boris_needs_the_magnetic_form():
    with pytest.raises(TpcError, match="integrator 'boris' needs H"):
        tpc.compile("system S { state q[3], p[3]\n H = dot(p, p) / 2 + dot(q, q) }",
                    integrator="boris")
