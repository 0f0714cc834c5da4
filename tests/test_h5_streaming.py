"""Streamed HDF5 runs (`sim.run(output=...)`, `tpc run -o FILE.h5`): the file equals the
in-memory run bitwise, only a window of snapshots is ever in memory, the file is renamed into
place however the run ends, and the returned Trajectory reads from it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import tpc
from tpc import cli, h5stream
from tpc.api import InvariantDrift, PartialRun
from tpc.diagnostics import TpcError
from tpc.h5stream import Stored

KEPLER = "examples/kepler.ham"
START = ([0.4, 0.0, 0.0], [0.0, 2.0, 0.0])
WALL = "system Wall {\n    state q[1], p[1]\n    H = p[0]^2 / 2 + 1e-300 * sqrt(1 - q[0])\n}\n"
WINDOW = 4  # rows of the instrumented window: far fewer than any run below has


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def small_window(monkeypatch):
    """A window of WINDOW rows of a 3-value f64 state, and no time-based writes: only a full
    window (or the run's end) sends rows to the file."""
    monkeypatch.setattr(h5stream, "WINDOW_BYTES", WINDOW * 3 * 8)
    monkeypatch.setattr(h5stream, "FLUSH_SECONDS", float("inf"))


@pytest.fixture(scope="module")
def kepler():
    from pathlib import Path

    return tpc.compile(Path(__file__).resolve().parent.parent / KEPLER)


def instrument(monkeypatch, sim):
    """Record the rows of every buffer the native run writes into and of every write to the
    file (the bounds on what the run holds in memory)."""
    buffers, writes = [], []
    call = type(sim.native).call

    def spy_call(native, name, env, **named):
        if name == "run":
            buffers.append(max(len(named["out_q"].base), len(named["out_H"].base)))
        return call(native, name, env, **named)

    rows = h5stream.H5Stream.rows

    def spy_rows(stream, first, t, q, p, h, monitors):
        writes.append((first, len(t)))
        return rows(stream, first, t, q, p, h, monitors)

    monkeypatch.setattr(type(sim.native), "call", spy_call)
    monkeypatch.setattr(h5stream.H5Stream, "rows", spy_rows)
    return buffers, writes


def same(traj, ref):
    for key in ("t", "q", "p", "H"):
        got = np.asarray(getattr(traj, key))
        want = getattr(ref, key)
        assert got.dtype == want.dtype and np.array_equal(got, want), key
    assert traj.monitors.keys() == ref.monitors.keys()
    for key, values in ref.monitors.items():
        assert np.array_equal(np.asarray(traj.monitors[key]), values), key


@pytest.mark.parametrize("steps, every, report", [(2005, 10, None), (3000, 7, 3), (40, 10, 2)])
def test_streamed_file_equals_the_in_memory_run_bitwise(kepler, tmp_path, monkeypatch,
                                                        small_window, steps, every, report):
    ref = kepler.run(*START, dt=0.01, steps=steps, save_every=every)
    seen = []
    reporting = {} if report is None else {"reporter": seen.append, "report_every": report}
    buffers, writes = instrument(monkeypatch, kepler)
    out = tmp_path / "k.h5"
    traj = kepler.run(*START, dt=0.01, steps=steps, save_every=every, output=str(out),
                      **reporting)
    # only the window is in memory: every native call wrote into a buffer of WINDOW rows
    # (a multiple of report_every), and the file was written a window at a time, in order
    window = WINDOW if report is None else -(-WINDOW // report) * report
    assert buffers and max(buffers) <= window, buffers
    assert all(n <= window for _, n in writes)
    assert [first for first, _ in writes] == list(np.cumsum([0] + [n for _, n in writes[:-1]]))
    assert sum(n for _, n in writes) == len(ref.t) > window
    # the returned Trajectory reads the finished file
    assert isinstance(traj.q, Stored) and traj.file == str(out.resolve())
    same(traj, ref)
    assert traj.energy_error() == ref.energy_error() and np.array_equal(traj.q[-1], ref.q[-1])
    with h5py.File(out, "r") as f:
        assert f.attrs["complete"] and f.attrs["rows"] == len(ref.t)
        assert f.attrs["steps_done"] == steps and f.attrs["t_final"] == ref.t[-1]
        for key in ("t", "q", "p", "H", "L_z"):
            want = ref.monitors[key] if key == "L_z" else ref[key]
            assert np.array_equal(f[key][()], want), key
    assert not (tmp_path / "k.h5.part").exists()
    if report is not None:  # the reporter still sees every row once, in order
        assert np.array_equal(np.concatenate([s.t for s in seen]), ref.t)
        assert all(len(s.t) <= report for s in seen[:-1])


def test_cli_stream_equals_npz(capsys, tmp_path, small_window):
    h5, npz = tmp_path / "k.h5", tmp_path / "k.npz"
    for out in (h5, npz):
        assert cli.main(["run", KEPLER, "--steps", "1234", "--save-every", "5", "--quiet",
                         "-o", str(out)]) == 0, capsys.readouterr().err
    ref = np.load(npz)
    with h5py.File(h5, "r") as f:
        for key in ("t", "q", "p", "H", "L_x", "L_y", "L_z"):
            assert np.array_equal(f[key][()], ref[key]), key
        assert f.attrs["source_sha256"] == str(ref["source_sha256"])


def test_summary_of_a_streamed_run(capsys, tmp_path, small_window):
    """The summary reads the file-backed arrays (energy error, drifts) like in-memory ones."""
    lines = {}
    for name in ("k.h5", "k.npz"):
        assert cli.main(["run", KEPLER, "--steps", "500", "-o", str(tmp_path / name)]) == 0
        lines[name] = [x for x in capsys.readouterr().out.splitlines() if "->" not in x
                       and "compile" not in x]
    assert lines["k.h5"] == lines["k.npz"] and any("L_z drift" in x for x in lines["k.h5"])


def test_non_finite_run_keeps_its_rows_and_names_the_step(tmp_path, small_window):
    sim = tpc.compile(WALL, integrator="leapfrog", fold=False)
    with pytest.raises(PartialRun) as ref:
        sim.run([0.0], [1.0], dt=0.01, steps=1000, save_every=3)
    out = tmp_path / "w.h5"
    with pytest.raises(PartialRun) as e:
        sim.run([0.0], [1.0], dt=0.01, steps=1000, save_every=3, output=str(out))
    assert e.value.message == ref.value.message and "non-finite at step" in e.value.message
    traj = e.value.trajectory
    assert isinstance(traj.q, Stored) and len(traj.t) > WINDOW
    same(traj, ref.value.trajectory)
    with h5py.File(out, "r") as f:
        assert not f.attrs["complete"] and f.attrs["rows"] == len(ref.value.trajectory.t)
        assert f.attrs["steps_done"] == ref.value.trajectory.steps_done


def test_interrupted_run_is_renamed_into_place(kepler, tmp_path, small_window):
    calls = []

    def stop(snaps):  # Ctrl-C during the run, after a few reports
        calls.append(snaps)
        if len(calls) == 5:
            raise KeyboardInterrupt

    out = tmp_path / "i.h5"
    with pytest.raises(PartialRun) as e:
        kepler.run(*START, dt=0.01, steps=10**5, save_every=10, output=str(out),
                   reporter=stop, report_every=2)
    assert e.value.interrupted and "interrupted at step" in e.value.message
    traj = e.value.trajectory
    ref = kepler.run(*START, dt=0.01, steps=traj.steps_done, save_every=10)
    same(traj, ref)
    with h5py.File(out, "r") as f:
        assert not f.attrs["complete"] and f.attrs["rows"] == len(ref.t)
    assert not (tmp_path / "i.h5.part").exists()


def test_invariant_drift_keeps_the_rows_up_to_the_violation(kepler, tmp_path, small_window):
    kw = dict(dt=0.05, steps=2000, save_every=5, check_invariants=1e-3)
    with pytest.raises(InvariantDrift) as ref:
        kepler.run(*START, **kw)
    out = tmp_path / "d.h5"
    with pytest.raises(InvariantDrift) as e:
        kepler.run(*START, output=str(out), **kw)
    assert e.value.message == ref.value.message
    same(e.value.trajectory, ref.value.trajectory)
    assert e.value.trajectory.steps_done == ref.value.trajectory.steps_done
    with h5py.File(out, "r") as f:
        assert f.attrs["rows"] == len(ref.value.trajectory.t) == len(f["q"])


def test_folded_run_is_written_whole(tmp_path):
    springs = ("system S {\n    state x[2], px[2]\n    H = sum(i: px[i] * px[i] / 2) + "
               "(x[0] * x[0] + x[1] * x[1]) / 2\n}\n")
    sim = tpc.compile(springs)
    ref = sim.run([0.3, -0.1], [0.0, 0.2], dt=0.05, steps=10**6, save_every=10**4)
    traj = sim.run([0.3, -0.1], [0.0, 0.2], dt=0.05, steps=10**6, save_every=10**4,
                   output=str(tmp_path / "f.h5"))
    assert ref.folded and traj.folded
    assert np.array_equal(np.asarray(traj["x"]), ref["x"]) and np.array_equal(
        np.asarray(traj.H), ref.H)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert f.attrs["folded"] and f.attrs["complete"] and "x" in f and "px" in f


def test_refused_start_leaves_the_old_file(tmp_path):
    sim = tpc.compile("system P {\n    state q[1], p[1]\n    H = p[0]^2 / 2 + 1 / q[0]\n}\n",
                      fold=False)
    out = tmp_path / "old.h5"
    out.write_bytes(b"an earlier result")
    with pytest.raises(TpcError, match="not finite at the initial state"):
        sim.run([0.0], [1.0], dt=0.1, steps=10, output=str(out))
    assert out.read_bytes() == b"an earlier result"
    assert not (tmp_path / "old.h5.part").exists()


@pytest.mark.parametrize("kw, message", [
    (dict(output="x.npz"), "output= streams the snapshots to HDF5 (.h5 or .hdf5), not 'x.npz'"),
    (dict(output="x.h5", device="cuda"), "output= streams single runs on the cpu device"),
    (dict(output="/no/such/dir/x.h5"), "cannot write '/no/such/dir/x.h5': directory"),
])
def test_output_errors(kepler, kw, message):
    with pytest.raises(TpcError) as e:
        kepler.run(*START, dt=0.01, steps=10, **kw)
    assert e.value.message.startswith(message), e.value.message


def test_stored_behaves_like_an_array(kepler, tmp_path):
    ref = kepler.run(*START, dt=0.01, steps=300, save_every=10)
    traj = kepler.run(*START, dt=0.01, steps=300, save_every=10, output=str(tmp_path / "s.h5"))
    assert traj.q.shape == ref.q.shape and len(traj.q) == len(ref.q) and traj.q.ndim == 2
    assert np.array_equal(traj.q[3:7, 1], ref.q[3:7, 1]) and np.array_equal(traj.q[-1], ref.q[-1])
    assert np.array_equal(traj.H - traj.H[0], ref.H - ref.H[0])
    assert np.array_equal(np.abs(traj.q), np.abs(ref.q)) and np.max(traj.H) == np.max(ref.H)
    assert np.array_equal(np.array(list(traj.t)), ref.t)
    assert np.array_equal(traj.relative_energy_error(), ref.relative_energy_error())


def test_failing_write_keeps_what_the_file_holds(kepler, tmp_path, monkeypatch, small_window):
    """A write that fails mid-run (a full disk): a clear error, and the file, renamed into
    place, keeps every snapshot written before."""
    write = h5stream.H5Stream._write

    def full_disk(stream, *args):
        if stream.written >= 3 * WINDOW:
            raise OSError(28, "No space left on device")
        return write(stream, *args)

    monkeypatch.setattr(h5stream.H5Stream, "_write", full_disk)
    out = tmp_path / "full.h5"
    with pytest.raises(TpcError) as e:
        kepler.run(*START, dt=0.01, steps=1000, save_every=10, output=str(out))
    assert e.value.message == (f"cannot write '{out.resolve()}': [Errno 28] No space left on "
                               f"device; it keeps the first {3 * WINDOW} snapshot(s)")
    ref = kepler.run(*START, dt=0.01, steps=(3 * WINDOW - 1) * 10, save_every=10)
    with h5py.File(out, "r") as f:
        rows = int(f.attrs["rows"])
        assert rows == 3 * WINDOW and not f.attrs["complete"]
        assert np.array_equal(f["q"][:rows], ref.q) and np.array_equal(f["t"][:rows], ref.t)
    assert not (tmp_path / "full.h5.part").exists()


def test_plots_of_a_streamed_run_and_of_a_killed_runs_part_file(kepler, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    traj = kepler.run(*START, dt=0.01, steps=2000, save_every=20, output=str(tmp_path / "k.h5"))
    fig = traj.plot(str(tmp_path / "k.png"))  # from the file-backed arrays
    assert np.array_equal(fig.axes[1].lines[0].get_xdata(), np.asarray(traj.q)[:, 0])
    (tmp_path / "k.h5").rename(tmp_path / "k.h5.part")  # as SIGKILL would leave it
    assert cli.main(["plot", str(tmp_path / "k.h5.part"), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
