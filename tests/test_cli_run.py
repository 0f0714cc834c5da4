"""`tpc run` and `tpc compile --emit=...` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tpc import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEPLER = str(EXAMPLES / "kepler.ham")
TPC = str(Path(sys.executable).parent / "tpc")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("TPC_CACHE_DIR", str(path))
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_run_writes_npz_and_summary(tmp_path, capsys):
    out = tmp_path / "k.npz"
    rc, stdout, _ = run_cli(capsys, "run", KEPLER, "--steps", 2000, "-o", out)
    assert rc == 0
    with np.load(out) as d:
        assert {"H", "p", "q", "t"} <= set(d.files)
        rows = 2000 // 100 + 1  # the simulate block saves every 100 steps
        assert d["t"].shape == (rows,)
        assert d["q"].shape == (rows, 3) and d["p"].shape == (rows, 3)
        assert d["H"].shape == (rows,)
        np.testing.assert_allclose(d["t"], np.arange(rows) * 100 * 0.01)
        np.testing.assert_allclose(d["q"][0], [0.4, 0.0, 0.0])
        assert d["H"][0] == pytest.approx(-0.5)
        err = np.max(np.abs(d["H"] - d["H"][0])) / 0.5
    assert "2000 steps" in stdout
    assert "steps/s" in stdout
    assert "energy error" in stdout
    assert f"{err:.3e}" in stdout
    assert "cache hit" not in stdout


def test_second_run_hits_the_cache(tmp_path, capsys, cache_dir):
    out = tmp_path / "k.npz"
    rc, first, _ = run_cli(capsys, "run", KEPLER, "--steps", 100, "-o", out)
    assert rc == 0 and "cache hit" not in first
    assert cache_dir.exists() and any(cache_dir.iterdir())
    rc, second, _ = run_cli(capsys, "run", KEPLER, "--steps", 100, "-o", out)
    assert rc == 0 and "cache hit" in second


def test_flags_override_the_simulate_block(tmp_path, capsys):
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"q": [1.0, 0.0, 0.0], "p": [0.0, 1.5, 0.0]}))
    out = tmp_path / "o.npz"
    rc, stdout, _ = run_cli(capsys, "run", KEPLER, "--steps", 300, "--dt", 0.002,
                            "--save-every", 10, "--integrator", "yoshida4",
                            "--set", "mu=2.0", "--init", init, "-o", out)
    assert rc == 0
    assert "300 steps (yoshida4)" in stdout and "dt = 0.002" in stdout
    with np.load(out) as d:
        assert d["t"].shape == (31,)
        assert d["t"][-1] == pytest.approx(0.6)
        np.testing.assert_allclose(d["q"][0], [1.0, 0.0, 0.0])
        np.testing.assert_allclose(d["p"][0], [0.0, 1.5, 0.0])
        assert d["H"][0] == pytest.approx(1.5**2 / 2 - 2.0 / 1.0)  # mu = 2
        # yoshida4 at dt = 0.002 on this orbit: a tiny energy error
        assert np.max(np.abs(d["H"] - d["H"][0])) < 1e-9


def test_unknown_param_is_an_error(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "run", KEPLER, "--steps", 10, "--set", "nope=1",
                         "-o", tmp_path / "x.npz")
    assert rc == 1 and "error" in err and "nope" in err


def test_non_finite_run_exits_1_and_still_writes(tmp_path):
    """A real process: exit status 1, `error:` naming the step, the partial npz on disk."""
    out = tmp_path / "bad.npz"
    env = dict(os.environ)
    proc = subprocess.run([TPC, "run", KEPLER, "--dt", "1e200", "--steps", "20",
                           "--save-every", "1", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "error:" in proc.stderr
    assert "non-finite at step 1" in proc.stderr
    assert str(out) in proc.stderr
    with np.load(out) as d:
        assert d["t"].shape == (1,) and d["q"].shape == (1, 3)
        assert np.all(np.isfinite(d["q"]))


def test_partial_run_keeps_finite_snapshots(tmp_path, capsys):
    src = tmp_path / "runaway.ham"
    src.write_text("system Runaway { state q[1], p[1]\n H = p[0]^2 / 2 - q[0]^4 }\n"
                   "simulate { dt = 0.01\n steps = 1000\n save_every = 5\n q = [1.0]\n p = [0.0] }\n")
    out = tmp_path / "r.npz"
    rc, _, err = run_cli(capsys, "run", src, "-o", out, "--quiet")
    assert rc == 1
    # step 98's closing kick overflows p (a numpy leapfrog agrees: tests/test_nonfinite.py)
    assert "error:" in err and "non-finite at step 98 " in err
    with np.load(out) as d:
        assert d["t"].shape == (20,) and d["q"].shape == (20, 1)
        assert np.all(np.isfinite(d["q"])) and np.all(np.isfinite(d["H"]))


@pytest.mark.parametrize("emit, expected", [
    ("ham", ["ham.system @Kepler", "ham.hamiltonian", "ham.norm", "ham.dot"]),
    ("sym", ["ham.gradient @V wrt @q", "ham.gradient @T wrt @p", "ham.accumulate @q",
             "sym.scheme @leapfrog for @Kepler", "fsal", "force_evals = 1",
             'sym.flow [@V] 5.000000e-01 as "kick"', 'sym.flow [@T] 1.000000e+00 as "drift"',
             "sym.evolve @leapfrog"]),
    ("loops", ["func.func @energy", "func.func @grad_q", "func.func @grad_p",
               "func.func @run", "func.func private @grad_V_q", "scf.for", "tpc.abi"]),
    ("llvm", ["define double @energy", "define void @grad_q", "define void @grad_p",
              "define void @run"]),
])
def test_compile_emits_each_stage(emit, expected, tmp_path, capsys):
    out = tmp_path / f"kepler.{emit}"
    rc, _, _ = run_cli(capsys, "compile", KEPLER, f"--emit={emit}", "-o", out)
    assert rc == 0
    text = out.read_text()
    for s in expected:
        assert s in text, (s, text[:2000])
    if emit == "ham":
        assert "ham.gradient" not in text and "sym." not in text
    if emit == "sym":
        assert "func.func" not in text
    if emit == "loops":
        ops = text.split("\n", 1)[1]  # past the module header with its ABI table
        assert " ham." not in ops and " sym." not in ops


def test_compile_emit_sym_integrator_flag(tmp_path, capsys):
    out = tmp_path / "hh.sym"
    rc, _, _ = run_cli(capsys, "compile", EXAMPLES / "henon_heiles.ham", "--emit=sym",
                       "--integrator", "yoshida4", "-o", out)
    assert rc == 0
    text = out.read_text()
    assert "sym.scheme @yoshida4" in text and "order = 4" in text
    # fused: kick drift kick drift kick drift kick, fsal -> 3 force evaluations per step
    assert text.count("as \"kick\"") == 4 and text.count("as \"drift\"") == 3
    assert "force_evals = 3" in text
