"""Run outputs: the state under its names, metadata in every format, HDF5 streamed as the run
goes (readable after SIGKILL), XYZ for particles, the progress bar and --quiet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import tpc
from tpc import cli
from tpc.reporting import Progress

ROOT = Path(__file__).resolve().parent.parent
KEPLER = ROOT / "examples" / "kepler.ham"

SPRINGS = """\
system Springs {
    param k = 2.0
    state x[2], px[2]
    H = sum(i: px[i] * px[i] / 2) + k * (x[0] * x[0] + x[1] * x[1] + (x[0] - x[1])^2) / 2
}
simulate {
    integrator = yoshida4
    dt = 0.05
    steps = 205
    save_every = 10
    x = [0.3, -0.1]
    px = [0.0, 0.2]
}
"""


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def springs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "springs.ham"
    path.write_text(SPRINGS)
    return path


def run(capsys, *argv) -> str:
    rc = cli.main(["run", *map(str, argv), "--quiet", "--no-fold"])
    err = capsys.readouterr().err
    assert rc == 0, err
    return err


def test_npz_keeps_state_names_and_metadata(capsys, tmp_path, springs):
    out = tmp_path / "s.npz"
    run(capsys, springs, "-o", out)
    data = np.load(out)
    assert {"x", "px", "t", "H"} <= set(data.files) and "q" not in data.files
    assert data["x"].shape == (22, 2)  # rows 0..20 and the remainder of 5 steps
    assert str(data["source"]) == SPRINGS and float(data["param_k"]) == 2.0
    assert float(data["dt"]) == 0.05 and str(data["integrator"]) == "yoshida4"
    assert str(data["precision"]) == "f64" and str(data["tpc_version"]) == tpc.api.VERSION
    assert float(data["t_final"]) == data["t"][-1] and int(data["steps_done"]) == 205
    assert list(data["state_names"]) == ["x", "px"]
    # the API run of the same data: the file holds exactly its snapshots
    sim = tpc.compile(springs, fold=False)
    ref = sim.run([0.3, -0.1], [0.0, 0.2], dt=0.05, steps=205, save_every=10)
    assert np.array_equal(data["x"], ref["x"]) and np.array_equal(data["px"], ref.p)


def test_named_state_resumes_bitwise(capsys, tmp_path, springs):
    part, full = tmp_path / "part.npz", tmp_path / "full.npz"
    run(capsys, springs, "--steps", "100", "-o", part)
    run(capsys, springs, "--resume", part, "--steps", "105")
    run(capsys, springs, "-o", full)
    a, b = np.load(part), np.load(full)
    for key in ("t", "x", "px", "H"):
        assert np.array_equal(a[key], b[key]), key


def test_hdf5_holds_the_run_and_its_metadata(capsys, tmp_path, springs):
    h5, npz = tmp_path / "s.h5", tmp_path / "s.npz"
    run(capsys, springs, "-o", h5)
    run(capsys, springs, "-o", npz)
    ref = np.load(npz)
    with h5py.File(h5, "r") as f:
        for key in ("t", "x", "px", "H"):
            assert np.array_equal(f[key][()], ref[key]), key
        assert f["x"].chunks is not None and f["x"].compression is None
        attrs = dict(f.attrs)
    assert attrs["complete"] and attrs["rows"] == 22 and attrs["source"] == SPRINGS
    assert attrs["integrator"] == "yoshida4" and attrs["param_k"] == 2.0
    assert attrs["t_final"] == ref["t"][-1] and list(attrs["state_names"]) == ["x", "px"]


def test_hdf5_compressed(capsys, tmp_path, springs):
    run(capsys, springs, "-o", tmp_path / "c.h5", "--compress")
    run(capsys, springs, "-o", tmp_path / "c.npz")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["px"].compression == "gzip"
        assert np.array_equal(f["px"][()], np.load(tmp_path / "c.npz")["px"])


def test_hdf5_after_sigkill_has_the_snapshots_written_so_far(tmp_path):
    """A run killed with SIGKILL midway: its file (still named .part: the run never got to
    rename it over the target) opens, its first `rows` snapshots are exactly those of an
    uninterrupted run, and it says it is not complete."""
    out = tmp_path / "killed.h5"
    part = tmp_path / "killed.h5.part"
    assert tpc.compile(KEPLER).native  # the compiled code in the cache the child reads
    child = subprocess.Popen([sys.executable, "-m", "tpc.cli", "run", str(KEPLER), "--steps",
                              str(10**11), "--save-every", "100", "--quiet", "-o", str(out)],
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if part.exists() and part.stat().st_size > 100_000:  # the first rows are written
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode()
        time.sleep(0.6)  # midway: kill it between or during writes, wherever it is
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    with h5py.File(part, "r") as f:
        rows = int(f.attrs["rows"])
        assert rows > 1 and not f.attrs["complete"]
        got = {k: f[k][:rows] for k in ("t", "q", "p", "H")}
        assert all(len(f[k]) >= rows for k in ("t", "q", "p", "H"))
    # every row on the snapshot grid and finite; the first ones exactly the uninterrupted run's
    assert np.array_equal(got["t"], np.arange(rows) * 100 * 0.01)
    assert np.isfinite(got["q"]).all() and np.isfinite(got["H"]).all()
    head = min(rows, 300)
    ref = tpc.compile(KEPLER).run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=0.01,
                                  steps=(head - 1) * 100, save_every=100)
    for key in got:
        assert np.array_equal(got[key][:head], ref[key]), key


def test_xyz_for_particles(capsys, tmp_path):
    out = tmp_path / "k.xyz"
    run(capsys, KEPLER, "--steps", "200", "--save-every", "100", "-o", out)
    lines = out.read_text().splitlines()
    assert lines[0] == "1" and len(lines) == 3 * (1 + 2)
    assert lines[1].startswith("Properties=species:S:1:pos:R:3 Time=0.0 H=-")
    assert lines[2] == "X 0.4 0.0 0.0"
    last = np.array([float(v) for v in lines[-1].split()[1:]])
    run(capsys, KEPLER, "--steps", "200", "--save-every", "100", "-o", tmp_path / "k.npz")
    assert np.array_equal(last, np.load(tmp_path / "k.npz")["q"][-1])  # repr round-trips


def test_xyz_refuses_a_state_that_is_not_particles(capsys, tmp_path, springs):
    rc = cli.main(["run", str(springs), "--no-fold", "-o", str(tmp_path / "s.xyz")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: XYZ output is for particles in 3-D: the state 'x' "
                                      "of system 'Springs' is [2], not [N, 3]")
    assert not (tmp_path / "s.xyz").exists()


def test_progress_bar_writes_when_piped_and_quiet_silences_it(capsys, springs, tmp_path):
    bar = Progress(1000, delay=0.0)
    bar.update(500)
    bar.update(1000)
    bar.close()
    err = capsys.readouterr().err  # stderr is not a terminal here
    assert "/1.00k" in err and "step/s" in err
    rc = cli.main(["run", str(springs), "--quiet", "--no-fold", "-o", str(tmp_path / "q.npz")])
    out = capsys.readouterr()
    assert rc == 0 and out.err == "" and out.out == ""
