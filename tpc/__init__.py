"""tpc: a compiler for Hamiltonian physics.

`compile`, `Simulation` and `Trajectory` are loaded on first use: `import tpc` (and every
`tpc.x` submodule import, which runs this file first) then costs no numpy, no xDSL and no
LLVM, so that a run whose code is in the compile cache starts in a fraction of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Simulation", "Trajectory", "compile"]

if TYPE_CHECKING:
    from tpc.api import Simulation, Trajectory, compile


def __getattr__(name: str):
    if name in __all__:
        from tpc import api

        return getattr(api, name)
    # `tpc.api.PartialRun` after a plain `import tpc`: the submodules load on first use too
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'tpc' has no attribute {name!r}")
