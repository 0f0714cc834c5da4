"""DCD output (`tpc run -o run.dcd`): read back by a reader written here from the format's
description (Fortran records framed by their 4-byte lengths: the CORD header, the title, NATOM,
then per frame an optional unit cell and X, Y, Z as float32), and by MDAnalysis or mdtraj when
one is installed."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tpc import cli

ROOT = Path(__file__).resolve().parent.parent
NBODY = ROOT / "examples" / "nbody.ham"
LJ = ROOT / "examples" / "lj_liquid.ham"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def read_dcd(path: Path) -> dict:
    """A DCD file by its specification, checking every record's framing."""
    data = path.read_bytes()
    at = 0

    def record() -> bytes:
        nonlocal at
        (size,) = struct.unpack_from("<i", data, at)
        body = data[at + 4:at + 4 + size]
        (end,) = struct.unpack_from("<i", data, at + 4 + size)
        assert end == size and len(body) == size, "record markers disagree"
        at += 8 + size
        return body

    head = record()
    assert len(head) == 84 and head[:4] == b"CORD"
    icntrl = struct.unpack("<20i", head[4:])
    nset, istart, nsavc, nstep, namnf = icntrl[0], icntrl[1], icntrl[2], icntrl[3], icntrl[8]
    (delta,) = struct.unpack("<f", head[4 + 9 * 4:4 + 10 * 4])
    has_cell, version = icntrl[10], icntrl[19]
    title = record()
    (ntitle,) = struct.unpack_from("<i", title)
    assert len(title) == 4 + 80 * ntitle
    lines = [title[4 + 80 * k:4 + 80 * (k + 1)].decode().rstrip() for k in range(ntitle)]
    (natom,) = struct.unpack("<i", record())
    frames, cells = [], []
    for _ in range(nset):
        if has_cell:
            cells.append(struct.unpack("<6d", record()))
        xyz = [np.frombuffer(record(), "<f4") for _ in range(3)]
        assert all(len(a) == natom for a in xyz)
        frames.append(np.stack(xyz, axis=1))
    assert at == len(data), "bytes after the last frame"
    return dict(nset=nset, istart=istart, nsavc=nsavc, nstep=nstep, namnf=namnf, delta=delta,
                version=version, title=lines, natom=natom, frames=np.array(frames),
                cells=np.array(cells))


def run(capsys, *argv) -> None:
    rc = cli.main(["run", *map(str, argv), "--quiet"])
    assert rc == 0, capsys.readouterr().err


def test_nbody_positions_read_back(capsys, tmp_path):
    out, npz = tmp_path / "n.dcd", tmp_path / "n.npz"
    for path in (out, npz):
        run(capsys, NBODY, "--steps", "1050", "--save-every", "100", "-o", path)
    ref = np.load(npz)
    got = read_dcd(out)
    # 11 rows on the grid; the last row, after a remainder of 50 steps, is not evenly spaced
    assert len(ref["t"]) == 12 and got["nset"] == 11
    assert got["natom"] == ref["q"].shape[1] == 16
    assert (got["istart"], got["nsavc"], got["nstep"], got["namnf"]) == (0, 100, 1050, 0)
    assert got["delta"] == np.float32(0.01) and got["version"] == 24
    assert got["cells"].size == 0 and "system NBody, leapfrog" in got["title"][-1]
    assert np.array_equal(got["frames"], ref["q"][:11].astype(np.float32))


def test_periodic_box_is_each_frames_unit_cell(capsys, tmp_path):
    out, npz = tmp_path / "lj.dcd", tmp_path / "lj.npz"
    for path in (out, npz):
        run(capsys, LJ, "--steps", "40", "--save-every", "20", "-o", path)
    got, ref = read_dcd(out), np.load(npz)
    L = float(ref["box"][0])
    assert got["nset"] == 3 and got["natom"] == 343
    assert np.array_equal(got["cells"], np.tile([L, 90.0, L, 90.0, 90.0, L], (3, 1)))
    assert np.array_equal(got["frames"], ref["q"].astype(np.float32))  # unwrapped, as q


def test_dcd_refuses_a_state_that_is_not_particles(capsys, tmp_path):
    src = tmp_path / "line.ham"
    src.write_text("system Line {\n    state q[N], p[N]\n    H = sum(i: p[i]^2 / 2 + q[i]^2 / 2)"
                   "\n}\nsimulate {\n    dt = 0.1\n    steps = 10\n    q = [1.0, 0.0]\n"
                   "    p = [0.0, 1.0]\n}\n")
    rc = cli.main(["run", str(src), "--quiet", "-o", str(tmp_path / "line.dcd")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert err[0] == (f"{src}:2:11: error: DCD output is for particles in 3-D: the state 'q' of "
                      "system 'Line' is [N], not [N, 3]; write .npz or .h5")
    assert err[1] == "    state q[N], p[N]" and err[2] == " " * 10 + "^"
    assert not (tmp_path / "line.dcd").exists()


def test_ensemble_is_refused(tmp_path):
    from types import SimpleNamespace

    from tpc.dcd import write_dcd
    from tpc.diagnostics import TpcError

    with pytest.raises(TpcError, match="one trajectory, not an ensemble"):
        write_dcd(str(tmp_path / "e.dcd"), SimpleNamespace(batch=4), 0.1, 1)


def test_a_library_reads_it(capsys, tmp_path):
    """MDAnalysis or mdtraj, whichever is installed, reads the same positions."""
    out, npz = tmp_path / "n.dcd", tmp_path / "n.npz"
    for path in (out, npz):
        run(capsys, NBODY, "--steps", "500", "--save-every", "100", "-o", path)
    want = np.load(npz)["q"].astype(np.float32)
    try:
        import MDAnalysis  # noqa: F401
        from MDAnalysis.coordinates.DCD import DCDReader

        reader = DCDReader(str(out))
        frames = np.array([ts.positions.copy() for ts in reader])
        assert reader.n_atoms == 16
    except ImportError:
        mdtraj = pytest.importorskip("mdtraj", reason="neither MDAnalysis nor mdtraj installed")
        with mdtraj.formats.DCDTrajectoryFile(str(out)) as f:
            frames, _, _ = f.read()
    assert np.array_equal(frames, want)
