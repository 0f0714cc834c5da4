"""Constants in the energy: `pi` always; `G` in the units the simulate block names."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError
from tpc.units import unit_constants

AU_M = 149_597_870_700.0  # IAU 2012, exact
GM_SUN = 1.3271244e20  # m^3 / s^2, IAU 2015 nominal
G_SI = 6.67430e-11  # CODATA 2018

ORBIT = """\
system Orbit {
    state q[3], p[3]
    H = dot(p, p) / 2 - G / norm(q) + pi
}
simulate {
    units = [%s]
    dt = 0.5
    steps = 10
    q = [1.0, 0.0, 0.0]
    p = [0.0, 0.0172, 0.0]
}
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path / "cache"))


def test_g_in_astronomical_units():
    g = unit_constants(["AU", "day", "Msun"])["G"]
    assert g == pytest.approx(GM_SUN * 86400.0**2 / AU_M**3, rel=1e-14)
    assert g == pytest.approx(0.01720209895**2, rel=1e-9)  # Gauss's constant, squared
    # any order, other units
    assert unit_constants(["s", "kg", "km"])["G"] == pytest.approx(G_SI * 1e-9, rel=1e-14)


def test_energy_uses_g_and_pi():
    sim = tpc.compile(ORBIT % "AU, day, Msun")
    g = GM_SUN * 86400.0**2 / AU_M**3
    q, p = np.array([0.5, 0.3, -0.2]), np.array([0.01, 0.02, 0.0])
    want = p @ p / 2 - g / np.linalg.norm(q) + math.pi
    assert sim.energy(q, p) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("units, message", [
    ("AU, day, kilogramz", "unknown unit 'kilogramz'"),
    ("AU, km, Msun", "units name two units of [length]: 'AU' and 'km'"),
    ("AU, day", "units need a unit of length, time and mass; missing [mass]"),
    ("AU, day, K", "unit 'K' is a [temperature], not a length, a time or a mass"),
])
def test_bad_units_point_at_the_setting(units, message):
    with pytest.raises(TpcError) as e:
        tpc.compile(ORBIT % units)
    assert message in e.value.message
    assert e.value.loc is not None and e.value.loc.line == 6


def test_a_declared_g_with_units_is_an_error():
    src = ORBIT.replace("state q[3]", "param G = 1.0\n    state q[3]") % "AU, day, Msun"
    with pytest.raises(TpcError, match="param 'G' would hide the constant G of the simulate "
                                       "block's units"):
        tpc.compile(src)


def test_without_units_g_is_unknown_and_a_declared_pi_shadows():
    src = ORBIT.replace("    units = [%s]\n", "")
    with pytest.raises(TpcError, match="unknown name 'G'"):
        tpc.compile(src)
    shadow = ("system S {\n    param pi = 3.0\n    state q[1], p[1]\n"
              "    H = p[0] * p[0] / 2 + pi * q[0] * q[0]\n}\n")
    sim = tpc.compile(shadow)
    assert sim.energy([1.0], [0.0]) == 3.0
