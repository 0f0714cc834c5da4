"""`tpc run --resume OUT.npz`: a run continued from its file equals, bitwise (t, q, p, H), the
run that was never stopped, stepped or folded; a file that does not match the run is refused
with the reason; Ctrl-C exits 130 and leaves a file to resume from."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from tpc.runtime import fold
from tpc.runtime.native import Native

from tpc import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEPLER = EXAMPLES / "kepler.ham"
CHAIN = EXAMPLES / "harmonic_chain.ham"
ANISO = EXAMPLES / "anisotropic.ham"


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


def tpc(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv] + ["--quiet"])
    return rc, capsys.readouterr().err


def ok(capsys, *argv) -> None:
    rc, err = tpc(capsys, "run", *argv)
    assert rc == 0, err


def assert_same_run(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        for key in ("t", "q", "p", "H"):
            assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
            assert np.array_equal(x[key], y[key]), key
        for key in ("steps_done", "steps_total", "t_final", "folded", "fold_method"):
            assert x[key] == y[key], key
        carried = [k for k in x.files if k.startswith(("kahan_", "resume_"))]
        assert carried == [k for k in y.files if k.startswith(("kahan_", "resume_"))]
        for key in carried:  # the run state beyond q and p, too
            assert np.array_equal(x[key], y[key]), key


def two_ways(capsys, tmp_path, src, n: int, *flags) -> tuple[Path, Path]:
    """The 2n-step run, and an n-step run resumed for n more."""
    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    ok(capsys, src, "--steps", 2 * n, "-o", whole, *flags)
    ok(capsys, src, "--steps", n, "-o", half, *flags)
    ok(capsys, src, "--resume", half, "--steps", n)  # in place: -o defaults to the file
    return whole, half


# ------------------------------------------------------------------ bitwise continuation


@pytest.mark.parametrize("integrator", ["leapfrog", "yoshida4"])
@pytest.mark.parametrize("save_every", [100, 300])  # 300: the half run ends on a remainder
def test_stepped_resume_is_bitwise(capsys, tmp_path, integrator, save_every):
    whole, resumed = two_ways(capsys, tmp_path, KEPLER, 10_000, "--integrator", integrator,
                              "--save-every", save_every)
    assert_same_run(whole, resumed)
    with np.load(resumed) as d:
        assert int(d["steps_done"]) == 20_000 and not bool(d["folded"])
        assert float(d["t_final"]) == d["t"][-1] == 20_000 * 0.01


@pytest.mark.parametrize("save_every", [100, 300])
def test_compensated_resume_is_bitwise(capsys, tmp_path, save_every):
    """f32 with Kahan compensation: the compensations are run state; the file keeps them at
    the end and at the last snapshot on the grid (where a run ending on a remainder restarts),
    and the continuation equals the uninterrupted run, compensations included."""
    whole, resumed = two_ways(capsys, tmp_path, KEPLER, 10_000, "--precision", "f32",
                              "--kahan", "--save-every", save_every)
    assert_same_run(whole, resumed)
    with np.load(whole) as x, np.load(resumed) as y:
        for key in ("kahan_q", "kahan_p", "resume_kahan_q", "resume_kahan_p"):
            assert np.array_equal(x[key], y[key]), key
        assert np.any(x["kahan_q"] != 0)  # the compensation is really carried


@pytest.mark.parametrize("src, flags, method", [
    (CHAIN, [], "eigen"),
    (CHAIN, ["--integrator", "yoshida4", "--save-every", "300_000"], "eigen"),
    (CHAIN, ["--precision", "f32"], "eigen"),
    (CHAIN, ["--integrator", "exact"], "exact"),
    (ANISO, ["--save-every", "1000"], "squaring"),  # midpoint, not separable
])
def test_folded_resume_is_bitwise(capsys, tmp_path, src, flags, method):
    flags = [f.replace("_", "") for f in flags]
    whole, resumed = two_ways(capsys, tmp_path, src, 10**6, *flags)
    assert_same_run(whole, resumed)
    with np.load(resumed) as d:
        assert bool(d["folded"]) and str(d["fold_method"]) == method


def test_resume_without_steps_runs_the_block_again(capsys, tmp_path):
    out = tmp_path / "k.npz"
    ok(capsys, KEPLER, "--steps", 500, "-o", out)
    ok(capsys, KEPLER, "--resume", out)  # the block asks for 100_000 steps
    with np.load(out) as d:
        assert int(d["steps_done"]) == 100_500 and int(d["steps_total"]) == 100_500


# ------------------------------------------------------------------ Ctrl-C, then resume


def interrupt_at(monkeypatch, cls, name: str, after: int) -> None:
    """A real SIGINT at the `after`-th call of cls.name (counting from 1)."""
    real = getattr(cls, name)
    calls = [0]

    def wrapped(self, *a, **kw):
        calls[0] += 1
        if calls[0] == after:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal interrupts the sleep
            raise AssertionError("SIGINT was not delivered")
        return real(self, *a, **kw)

    monkeypatch.setattr(cls, name, wrapped)


@pytest.mark.parametrize("flags", [[], ["--precision", "f32", "--kahan"]])
def test_ctrl_c_while_stepping_exits_130_and_resumes_bitwise(capsys, tmp_path, monkeypatch,
                                                            flags):
    """Ctrl-C lands after a native call has advanced the state (and the compensations) past
    the rows it could not record: the file keeps the rows and the run state of its last row."""
    whole, out = tmp_path / "whole.npz", tmp_path / "cut.npz"
    ok(capsys, KEPLER, "--steps", 2_000_000, "-o", whole, *flags)
    # Native.call("run", ...) runs one chunk of snapshots: the second chunk is interrupted.
    real = Native.call
    calls = [0]

    def call(self, name, env, **named):
        if name == "run" and named.get("nsnap", 1) > 1:
            calls[0] += 1
            if calls[0] == 2:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        return real(self, name, env, **named)

    monkeypatch.setattr(Native, "call", call)
    rc, err = tpc(capsys, "run", KEPLER, "--steps", 2_000_000, "-o", out, *flags)
    monkeypatch.undo()
    assert rc == 130
    (line,) = err.splitlines()
    assert line.startswith("error: interrupted at step ") and f"wrote {out}" in line
    assert line.endswith(f"(continue with --resume {out})")
    with np.load(out) as d:
        kept, done = len(d["t"]), int(d["steps_done"])
        assert 1 < kept < 20_001 and done == (kept - 1) * 100 and int(d["steps_total"]) == 2e6
    ok(capsys, KEPLER, "--resume", out)  # no --steps: finish the run that was cut short
    assert_same_run(whole, out)


def test_ctrl_c_while_folding_exits_130_and_resumes_bitwise(capsys, tmp_path, monkeypatch):
    whole, out = tmp_path / "whole.npz", tmp_path / "cut.npz"
    flags = ["--steps", 10**8, "--save-every", 10**5]
    ok(capsys, CHAIN, *flags, "-o", whole)
    interrupt_at(monkeypatch, fold.Propagator, "advance", 400)
    rc, err = tpc(capsys, "run", CHAIN, *flags, "-o", out)
    monkeypatch.undo()
    assert rc == 130 and err.startswith("error: interrupted at step 39900000; 400 snapshot(s)")
    ok(capsys, CHAIN, "--resume", out)
    assert_same_run(whole, out)


# ------------------------------------------------------------------ refusals


@pytest.fixture
def kepler_run(capsys, tmp_path):
    out = tmp_path / "k.npz"
    ok(capsys, KEPLER, "--steps", 1000, "-o", out)
    return out


@pytest.mark.parametrize("flags, message", [
    (["--dt", "0.02"], "--dt 0.02 contradicts the run in '{f}' (dt = 0.01)"),
    (["--save-every", "7"], "--save-every 7 contradicts the run in '{f}' (save_every = 100)"),
    (["--integrator", "yoshida4"],
     "--integrator yoshida4 contradicts the run in '{f}' (integrator = leapfrog)"),
    (["--precision", "f32"], "--precision f32 contradicts the run in '{f}' (precision = f64)"),
    (["--no-fold"], "--no-fold contradicts the run in '{f}', which was compiled with folding "
                    "enabled"),
    (["--set", "mu=2"], "--set mu=2 contradicts the run in '{f}' (mu = 1)"),
    (["--init", "x.json"], "--init and --resume cannot be combined: a resumed run continues "
                           "from the state in its file"),
])
def test_flags_that_contradict_the_file(capsys, kepler_run, flags, message):
    rc, err = tpc(capsys, "run", KEPLER, "--resume", kepler_run, *flags)
    assert rc == 1 and err == "error: " + message.format(f=kepler_run) + "\n"


def test_flags_that_repeat_the_file_are_fine(capsys, kepler_run):
    ok(capsys, KEPLER, "--resume", kepler_run, "--dt", "0.01", "--integrator", "leapfrog",
       "--set", "mu=1.0", "--steps", 10)


def test_another_source_or_system_is_refused(capsys, tmp_path, kepler_run):
    edited = tmp_path / "kepler.ham"
    edited.write_text(KEPLER.read_text().replace("mu = 1.0", "mu = 1.5"))
    rc, err = tpc(capsys, "run", edited, "--resume", kepler_run)
    assert rc == 1 and err.startswith(f"error: cannot resume from '{kepler_run}': it was "
                                      f"written from a different version of '{edited}'")
    rc, err = tpc(capsys, "run", EXAMPLES / "pendulum.ham", "--resume", kepler_run)
    assert rc == 1 and err == (f"error: cannot resume from '{kepler_run}': it is a run of "
                               "system 'Kepler', not of 'Pendulum'\n")


def test_files_that_are_not_resumable(capsys, tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, q=np.zeros(3), p=np.zeros(3))
    rc, err = tpc(capsys, "run", KEPLER, "--resume", plain)
    assert rc == 1 and err == (f"error: cannot resume from '{plain}': it is not an output of "
                               "'tpc run' (no 'tpc_version')\n")
    old = tmp_path / "old.npz"
    np.savez(old, tpc_version="0.1.0", t=np.zeros(1), q=np.zeros((1, 3)), p=np.zeros((1, 3)))
    rc, err = tpc(capsys, "run", KEPLER, "--resume", old)
    assert rc == 1 and "it lacks 'H', 'system'" in err and "Traceback" not in err
    text = tmp_path / "t.npz"
    text.write_text("not a zip")
    rc, err = tpc(capsys, "run", KEPLER, "--resume", text)
    assert rc == 1 and err.startswith(f"error: cannot resume from '{text}': unreadable .npz")
    rc, err = tpc(capsys, "run", KEPLER, "--resume", tmp_path / "missing.npz")
    assert rc == 1 and "No such file" in err


# ------------------------------------------------------------------ the API


def test_api_resume_equals_one_run():
    import tpc as api

    sim = api.compile(KEPLER, integrator="yoshida4", fold=False)
    q0, p0 = [0.4, 0.0, 0.0], [0.0, 2.0, 0.0]
    whole = sim.run(q0, p0, dt=0.01, steps=3000, save_every=70)
    first = sim.run(q0, p0, dt=0.01, steps=1000, save_every=70)
    again = sim.resume(first, dt=0.01, steps=2000, save_every=70)
    for key in ("t", "q", "p", "H"):
        assert np.array_equal(getattr(whole, key), getattr(again, key)), key
    assert again.steps_done == 3000
