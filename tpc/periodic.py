"""The periodic declarations of a system (`box`, `cutoff`, `ewald`), checked and turned into the
facts `ham.system` carries: `box` (one length per position axis), `cutoff`, `cutoff_shift`,
`ewald_tolerance`. The passes that use them are ham-ewald and ham-periodic."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tpc.diagnostics import TpcError
from tpc.syntax import Option, System

DEFAULT_EWALD_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Periodic:
    box: tuple[float, ...]
    cutoff: float | None
    shift: str
    ewald_tolerance: float


def _single(decls: list, what: str):
    if len(decls) > 1:
        raise TpcError(f"a system has at most one '{what}' declaration", decls[1].loc)
    return decls[0] if decls else None


def _options(options: list[Option], allowed: dict[str, object]) -> dict[str, Option]:
    seen: dict[str, Option] = {}
    for opt in options:
        if opt.name not in allowed:
            known = ", ".join(allowed)
            raise TpcError(f"unknown option '{opt.name}' (known: {known})", opt.loc)
        if opt.name in seen:
            raise TpcError(f"option '{opt.name}' is given twice", opt.loc)
        kind = allowed[opt.name]
        if kind is float and not isinstance(opt.value, float | int):
            raise TpcError(f"option '{opt.name}' needs a number", opt.value_loc)
        if isinstance(kind, tuple) and opt.value not in kind:
            raise TpcError(
                f"option '{opt.name}' is one of {', '.join(kind)}, got '{opt.value}'", opt.value_loc
            )
        seen[opt.name] = opt
    return seen


def periodic(system: System) -> Periodic | None:
    """The checked periodic facts, or None for an open system."""
    box = _single(system.boxes, "box")
    cutoff = _single(system.cutoffs, "cutoff")
    ewald = _single(system.ewalds, "ewald")
    if box is None:
        stray = cutoff or ewald
        if stray is not None:
            word = "cutoff" if cutoff else "ewald"
            raise TpcError(f"'{word}' needs a periodic box (declare 'box L = ...')", stray.loc)
        return None
    q = system.states[0].q
    axes = q.shape[-1] if len(q.shape) == 2 else None
    if not isinstance(axes, int):
        raise TpcError(
            "a periodic box needs positions of shape [N, D] with a fixed number of axes D "
            f"(got '{q.name}' of shape {list(q.shape)})", box.loc)
    for value, loc in zip(box.lengths, box.length_locs):
        if not (math.isfinite(value) and value > 0):
            raise TpcError(f"a box length must be a finite number > 0, got {value:g}", loc)
    if len(box.lengths) not in (1, axes):
        raise TpcError(
            f"the box has {len(box.lengths)} lengths; '{q.name}' has {axes} axes", box.loc)
    lengths = tuple(box.lengths) * axes if len(box.lengths) == 1 else tuple(box.lengths)
    rc, shift = None, "none"
    if cutoff is not None:
        opts = _options(cutoff.options, {"shift": ("energy", "none")})
        rc = cutoff.value
        if not (math.isfinite(rc) and rc > 0):
            raise TpcError(f"a cutoff must be a finite number > 0, got {rc:g}", cutoff.loc)
        if rc > min(lengths) / 2:
            raise TpcError(
                f"cutoff {rc:g} exceeds half the smallest box length ({min(lengths) / 2:g}): "
                "the minimum-image convention needs rc <= L/2", cutoff.loc)
        if "shift" in opts:
            shift = str(opts["shift"].value)
    tolerance = DEFAULT_EWALD_TOLERANCE
    if ewald is not None:
        opts = _options(ewald.options, {"tolerance": float, "method": ("ewald", "pme"),
                                        "surface": ("tinfoil", "vacuum")})
        if "tolerance" in opts:
            tolerance = float(opts["tolerance"].value)
            if not (1e-15 <= tolerance <= 0.1):
                raise TpcError(f"the Ewald tolerance must lie in [1e-15, 0.1], got {tolerance:g}",
                               opts["tolerance"].value_loc)
        if "method" in opts and opts["method"].value == "pme":
            raise TpcError("particle-mesh Ewald (method = pme) is not supported yet",
                           opts["method"].value_loc)
        if "surface" in opts and opts["surface"].value == "vacuum":
            raise TpcError("the vacuum (dipole) surface term is not supported yet; "
                           "Ewald sums use tin-foil boundary conditions", opts["surface"].value_loc)
    return Periodic(lengths, rc, shift, tolerance)
