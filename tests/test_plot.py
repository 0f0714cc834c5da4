"""`tpc plot` and Trajectory.plot(): a picture of every example's run, written and not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import tpc
from tpc import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


def tpc_ok(capsys, *argv) -> str:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def assert_a_picture(path: Path) -> None:
    """A PNG with drawn content: not blank, not one colour, with dark (drawn) pixels."""
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    gray = image[..., :3].mean(axis=2)
    assert gray.std() > 0.05
    assert 0.005 < (gray < 0.5).mean() < 0.5  # lines and text, on a light background


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_tpc_plot_writes_a_png_for_every_example(capsys, tmp_path, example):
    run = tmp_path / f"{example.stem}.npz"
    # stepped leapfrog (midpoint where H is not separable): the cheapest code to compile; the
    # plot is the point here
    integrator = "midpoint" if example.stem == "anisotropic" else "leapfrog"
    tpc_ok(capsys, "run", example, "--steps", "300", "--save-every", "10", "--quiet",
           "--integrator", integrator, "--no-fold", "-o", run)
    out = tpc_ok(capsys, "plot", run)
    png = run.with_suffix(".png")
    assert out.strip() == f"wrote {png}"
    assert_a_picture(png)


def test_plot_reads_hdf5_and_writes_pdf(capsys, tmp_path):
    run = tmp_path / "k.h5"
    # the flags of the example test above: its compiled Kepler comes from the cache
    tpc_ok(capsys, "run", ROOT / "examples" / "kepler.ham", "--steps", "2000", "--quiet",
           "--integrator", "leapfrog", "--no-fold", "-o", run)
    tpc_ok(capsys, "plot", run, "-o", tmp_path / "k.pdf")
    assert (tmp_path / "k.pdf").read_bytes().startswith(b"%PDF")


def test_trajectory_plot_of_an_ensemble(tmp_path):
    sim = tpc.compile(ROOT / "examples" / "kepler.ham", integrator="leapfrog", fold=False)
    mu = np.linspace(0.8, 1.2, 5)
    q0 = np.tile([0.4, 0.0, 0.0], (5, 1))
    p0 = np.tile([0.0, 2.0, 0.0], (5, 1))
    traj = sim.run(q0, p0, dt=0.01, steps=2000, save_every=20, params={"mu": mu}, batch=5)
    fig = traj.plot(tmp_path / "e.png", member=2)
    energy = fig.axes[0]
    assert len(energy.lines) == 5 and energy.get_yscale() == "log"
    assert np.array_equal(fig.axes[1].lines[0].get_xdata(), traj.q[2, :, 0])
    assert_a_picture(tmp_path / "e.png")


@pytest.mark.parametrize("argv, message", [
    (["plot", "missing.npz"], "error: cannot read 'missing.npz'"),
    (["plot", "x.txt"], "error: cannot plot 'x.txt': expected a tpc run output (.npz or .h5)"),
    (["plot", "run.npz", "-o", "run.jpg"], "error: cannot plot to 'run.jpg': the file must end "
                                           "in .png or .pdf"),
])
def test_plot_errors_are_clean(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("not a run")
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(message), err
