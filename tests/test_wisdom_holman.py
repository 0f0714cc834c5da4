"""The Wisdom-Holman map of examples/outer_solar_system_wh.ham against REBOUND's WHFast in
democratic heliocentric coordinates (an independent implementation of the same map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tpc
from tpc.coordinates import from_democratic_heliocentric, to_democratic_heliocentric

rebound = pytest.importorskip("rebound")  # a test extra; installed by the README's command

EXAMPLE = Path(__file__).parent.parent / "examples" / "outer_solar_system_wh.ham"
G = 2.95912208286e-4
M0 = 1.00000597682


@pytest.fixture(scope="module")
def init():
    data = json.loads(EXAMPLE.with_suffix(".json").read_text())
    return np.array(data["m"]), np.array(data["q"]), np.array(data["p"])


def system_source() -> str:
    return EXAMPLE.read_text().split("simulate")[0]


def test_coordinates_round_trip(init):
    m, q, p = init
    x, v = from_democratic_heliocentric(M0, m, q, p)
    q2, p2 = to_democratic_heliocentric(np.concatenate([[M0], m]), x, v)
    np.testing.assert_allclose(q2, q, rtol=0, atol=1e-14)
    np.testing.assert_allclose(p2, p, rtol=0, atol=1e-20)


def whfast(m, q, p, dt, steps):
    x, v = from_democratic_heliocentric(M0, m, q, p)
    sim = rebound.Simulation()
    sim.G = G
    for mi, xi, vi in zip(np.concatenate([[M0], m]), x, v):
        sim.add(m=mi, x=xi[0], y=xi[1], z=xi[2], vx=vi[0], vy=vi[1], vz=vi[2])
    sim.integrator = "whfast"
    sim.integrator.coordinates = "democraticheliocentric"
    sim.dt = dt
    sim.integrate(steps * dt, exact_finish_time=0)
    sun = sim.particles[0]
    return np.array([[b.x - sun.x, b.y - sun.y, b.z - sun.z] for b in sim.particles[1:]])


def test_agrees_with_whfast(init):
    """1e4 steps of 10 days: the same map to 1e-9 AU (measured 3.7e-12 AU); the other
    ordering, leapfrog(Hint, Hjump, Hkep), is a different map (3e-6 AU away)."""
    m, q, p = init
    ref = whfast(m, q, p, 10.0, 10_000)
    ours = tpc.compile(system_source(), integrator="leapfrog(Hkep, Hjump, Hint)", fold=False)
    traj = ours.run(q, p, dt=10.0, steps=10_000, save_every=10_000, m=m)
    assert np.abs(traj.q[-1] - ref).max() < 1e-9
    other = tpc.compile(system_source(), integrator="leapfrog(Hint, Hjump, Hkep)", fold=False)
    traj2 = other.run(q, p, dt=10.0, steps=10_000, save_every=10_000, m=m)
    assert np.abs(traj2.q[-1] - ref).max() > 1e-7
