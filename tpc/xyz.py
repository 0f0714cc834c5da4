"""`tpc run -o run.xyz`: the positions of a particle system as an XYZ trajectory.

XYZ is a few lines of text per frame (the particle count, a comment line, one `X x y z` line per
particle), read by VMD, OVITO, ASE and MDAnalysis. It is written here, not through ASE: ASE's
writer would bring scipy and matplotlib as hard dependencies of the run path for a format of
three lines. The comment line is extended-XYZ style (`Time=... H=...`), which ASE and OVITO
read as frame properties. Particles are named X (the .ham source names no elements).
"""

from __future__ import annotations

import io

import numpy as np

from tpc.diagnostics import TpcError
from tpc.output import write_text


def check_particles(sim) -> None:
    """XYZ holds 3-D positions: the state must be [N, 3] (or one particle, [3])."""
    shape = tuple(sim.info.shape)
    if shape[-1:] != (3,) or len(shape) > 2:
        dims = ", ".join(map(str, shape))
        raise TpcError(f"XYZ output is for particles in 3-D: the state '{sim.info.q}' of "
                       f"system '{sim.info.name}' is [{dims}], not [N, 3]; write .npz or .h5")


def xyz_text(traj) -> str:
    out = io.StringIO()
    q = np.asarray(traj.q, dtype=np.float64)
    frames = q.reshape(len(q), -1, 3)
    for t, h, frame in zip(traj.t, traj.H, frames):
        out.write(f"{len(frame)}\n")
        out.write(f'Properties=species:S:1:pos:R:3 Time={float(t)!r} H={float(h)!r}\n')
        for x, y, z in frame:
            out.write(f"X {float(x)!r} {float(y)!r} {float(z)!r}\n")
    return out.getvalue()


def write_xyz(path: str, traj, sim) -> None:
    if traj.batch is not None:
        raise TpcError("XYZ output holds one trajectory, not an ensemble; write .npz or .h5")
    write_text(path, xyz_text(traj))
