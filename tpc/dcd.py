"""`tpc run -o run.dcd`: the positions of a particle system as a DCD trajectory.

DCD is the binary trajectory format of CHARMM and NAMD, read by VMD, MDAnalysis, mdtraj and
OVITO. It is a few Fortran unformatted records, each framed by its length in bytes as a 4-byte
integer before and after:

- the header (84 bytes): `CORD`, then 20 int32 control words: NSET (frames), ISTART (the step
  of the first frame), NSAVC (steps between frames), NSTEP (steps in the run), five zeros (the
  last, NAMNF, the count of fixed atoms), DELTA (the step, a float32), a flag saying each frame
  carries a unit cell, eight zeros and the CHARMM version (24, which readers take to mean
  this layout);
- the title: an int32 count of 80-byte lines, then the lines;
- NATOM (int32);
- per frame, for a periodic system, the unit cell as six float64 in CHARMM's order
  (A, gamma, B, beta, alpha, C; angles in degrees), then three records of NATOM float32 each:
  every x, every y, every z.

It is written here, not through MDAnalysis or mdtraj: the format is a header and three arrays
per frame, and either library would make a compiled analysis package with dozens of
dependencies a requirement of `tpc run` for one `struct.pack`. Little-endian throughout, as
every reader expects by default.

What a DCD cannot say is said in the file's title instead: positions are float32 in the
source's own length unit (not necessarily Angstrom) and DELTA is dt in its own time unit (not
CHARMM's AKMA unit). Frames must be evenly spaced (a frame's step is ISTART + k NSAVC), so a
last row after a remainder of steps (steps not a multiple of save_every) is left out. A
periodic system's positions are the unwrapped run state, as in the .npz (`q`, not
`q_wrapped`), with the box as each frame's unit cell.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

from tpc.diagnostics import TpcError
from tpc.output import write_file

CHARMM_VERSION = 24
TITLE_WIDTH = 80
BLOCK_ROWS = 4096  # frames converted at a time: a file-backed trajectory is read in blocks


def check_particles(sim) -> None:
    """DCD holds 3-D positions of N atoms: the state must be [N, 3]."""
    shape = tuple(sim.info.shape)
    if len(shape) != 2 or shape[-1] != 3:
        dims = ", ".join(map(str, shape))
        state = sim.program.system.states[0].q if sim.program.system.states else None
        raise TpcError(f"DCD output is for particles in 3-D: the state '{sim.info.q}' of "
                       f"system '{sim.info.name}' is [{dims}], not [N, 3]; write .npz or .h5",
                       state.loc if state is not None else None)


def record(payload: bytes) -> bytes:
    """One Fortran unformatted record: its length, the bytes, its length again."""
    mark = struct.pack("<i", len(payload))
    return mark + payload + mark


def header(frames: int, atoms: int, istart: int, nsavc: int, nstep: int, delta: float,
           cell: bool, title: list[str]) -> bytes:
    control = [frames, istart, nsavc, nstep, 0, 0, 0, 0, 0]
    head = b"CORD" + struct.pack("<9i", *control) + struct.pack("<f", delta) + struct.pack(
        "<10i", int(cell), 0, 0, 0, 0, 0, 0, 0, 0, CHARMM_VERSION)
    lines = [line.encode("ascii", "replace")[:TITLE_WIDTH].ljust(TITLE_WIDTH) for line in title]
    return (record(head) + record(struct.pack("<i", len(lines)) + b"".join(lines))
            + record(struct.pack("<i", atoms)))


def frame(positions: np.ndarray, box: tuple[float, ...] | None) -> bytes:
    """One frame's records from positions [N, 3]."""
    out = b""
    if box is not None:
        a, b, c = (float(v) for v in box)
        out += record(struct.pack("<6d", a, 90.0, b, 90.0, 90.0, c))
    xyz = np.asarray(positions, dtype="<f4").reshape(-1, 3)
    return out + b"".join(record(np.ascontiguousarray(xyz[:, k]).tobytes()) for k in range(3))


def write_dcd(path: str, traj, dt: float, save_every: int, title: str = "") -> None:
    """traj's positions as a DCD file, written atomically; rows off the snapshot grid (a last
    one after a remainder of steps) are left out."""
    if traj.batch is not None:
        raise TpcError("DCD output holds one trajectory, not an ensemble; write .npz or .h5")
    rows = len(traj.t)
    step0 = int(round(float(traj.t[0]) / dt)) if rows else 0
    on_grid = (traj.steps_done - step0) // save_every + 1
    rows = min(rows, on_grid)
    atoms = int(np.prod(traj.q.shape[1:])) // 3
    box = tuple(traj.box) if traj.box is not None else None
    lines = ["REMARKS written by tpc: positions in the source's length unit, DELTA = dt",
             f"REMARKS = {dt!r} in its time unit; {rows} frames {save_every} steps apart",
             *([f"REMARKS {title}"] if title else [])]

    def write(f: BinaryIO) -> None:
        f.write(header(rows, atoms, step0, save_every, traj.steps_done - step0, dt,
                       box is not None, lines))
        for start in range(0, rows, BLOCK_ROWS):
            block = np.asarray(traj.q[start:min(rows, start + BLOCK_ROWS)])
            f.write(b"".join(frame(q, box) for q in block))

    write_file(path, write)
