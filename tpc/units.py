"""Named constants of the energy: `pi` always, and `G` when the simulate block chooses units.

`units = [AU, day, Msun]` names a unit of length, of time and of mass (in any order); every
number of the run (params, dt, the initial state) is then in those units, and `G`, the
gravitational constant, is available in the energy expressed in them (for AU, day, Msun:
2.9591220828e-4 AU^3 / (Msun day^2), the square of Gauss's constant).

The conversions come from pint rather than astropy.units: pint is a pure-Python package of
about 1 MB with no dependencies beyond what tpc has, where astropy is a large package with
compiled parts, and only a handful of unit names and one constant are needed here. pint has no
solar mass and reads `AU` as the absorbance unit, so the astronomical names are defined below
(IAU 2012 au, IAU 2015 nominal GM_sun with CODATA 2018 G, as pint's G is). pint is only
imported by a source that declares units: the `units` extra (`pip install 'tpc[units]'`).
"""

from __future__ import annotations

import math
from functools import cache

from tpc.diagnostics import TpcError
from tpc.syntax import Program, Word

ALWAYS = {"pi": math.pi}
UNITS_KEY = "units"
DIMENSIONS = ("[length]", "[time]", "[mass]")
# names astronomy uses that pint lacks or reads otherwise (GM_sun / G, IAU 2015 resolution B3)
DEFINITIONS = (
    "AU = astronomical_unit",
    "Msun = 1.3271244e20 m**3 / s**2 / newtonian_constant_of_gravitation = M_sun = solar_mass",
    "Mearth = 3.986004e14 m**3 / s**2 / newtonian_constant_of_gravitation = M_earth",
    "Mjup = 1.2668653e17 m**3 / s**2 / newtonian_constant_of_gravitation = M_jup",
)


@cache
def _registry():
    try:
        import pint
    except ImportError:
        raise TpcError("units need pint: pip install 'tpc[units]'") from None
    ureg = pint.UnitRegistry()
    for line in DEFINITIONS:
        ureg.define(line)
    return ureg


def unit_names(program: Program) -> list[str] | None:
    """The simulate block's `units = [...]` as names, or None without it."""
    setting = next((s for s in program.settings if s.name == UNITS_KEY), None)
    if setting is None:
        return None
    value = setting.value
    if not isinstance(value, list) or not all(isinstance(v, Word) for v in value):
        raise TpcError("units must be a list of three unit names, e.g. units = [AU, day, Msun]",
                       setting.value_loc)
    return [v.text for v in value]


def unit_constants(names: list[str], loc=None) -> dict[str, float]:
    """G in the units `names` (one of length, time and mass each)."""
    ureg = _registry()
    by_dim: dict[str, object] = {}
    for name in names:
        try:
            unit = ureg.Unit(name)
        except Exception:  # pint raises its own UndefinedUnitError and parse errors
            raise TpcError(f"unknown unit '{name}' (e.g. AU, km, m, pc; day, year, s; Msun, "
                           "kg)", loc) from None
        dim = str(unit.dimensionality)
        if dim not in DIMENSIONS:
            raise TpcError(f"unit '{name}' is a {dim}, not a length, a time or a mass", loc)
        if dim in by_dim:
            raise TpcError(f"units name two units of {dim}: '{by_dim[dim]}' and '{name}'", loc)
        by_dim[dim] = unit
    if len(by_dim) != 3:
        missing = [d for d in DIMENSIONS if d not in by_dim]
        raise TpcError(f"units need a unit of length, time and mass; missing {', '.join(missing)}",
                       loc)
    length, time, mass = (by_dim[d] for d in DIMENSIONS)
    g = (1 * ureg.newtonian_constant_of_gravitation).to(length**3 / (mass * time**2))
    return {"G": float(g.magnitude)}


def constants(program: Program) -> dict[str, float]:
    """The named constants of this program's energy."""
    names = unit_names(program)
    if names is None:
        return dict(ALWAYS)
    setting = next(s for s in program.settings if s.name == UNITS_KEY)
    return ALWAYS | unit_constants(names, setting.value_loc)
