"""Non-finite energies and states: refused at the start when H is not finite there (naming
the part), and, during a run, the step named is the first whose result is not finite.

References are plain numpy integrators written here, stage by stage."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tpc
from tpc import cli
from tpc.api import PartialRun
from tpc.diagnostics import TpcError


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


# ------------------------------------------------------------------ the initial state


def write(tmp_path, text: str):
    path = tmp_path / "f.ham"
    path.write_text(text)
    return path


def run_error(capsys, path, *flags) -> tuple[int, list[str]]:
    rc = cli.main(["run", str(path), "-o", str(path.with_suffix(".npz")), "--quiet", *flags])
    return rc, capsys.readouterr().err.splitlines()


SIM = "simulate {\n    dt = 0.1\n    steps = 10\n%s}\n"


@pytest.mark.parametrize("h, term, state, part, value", [
    ("p[0]^2 / 2 + 1 / q[0]", "1 / q[0]", "    q = [0.0]\n    p = [1.0]\n", "V", "inf"),
    ("p[0]^2 / 2 - log(q[0])", "log(q[0])", "    q = [0.0]\n    p = [1.0]\n", "V", "inf"),
    ("sqrt(q[0]) + p[0]^2 / 2", "sqrt(q[0])", "    q = [-1.0]\n    p = [1.0]\n", "V", "nan"),
])
def test_h_not_finite_at_the_start_names_the_term(capsys, tmp_path, h, term, state, part, value):
    src = "system S {\n    state q[1], p[1]\n    H = " + h + "\n}\n" + SIM % state
    path = write(tmp_path, src)
    rc, err = run_error(capsys, path)
    col = len("    H = ") + h.index(term) + 1
    assert rc == 1
    assert err[0] == (f"{path}:3:{col}: error: H is not finite at the initial state: its part "
                      f"{part} is {value}")
    assert err[1] == "    H = " + h and err[2] == " " * (col - 1) + "^"
    assert not path.with_suffix(".npz").exists()  # nothing ran, nothing to keep


def test_zero_mass_names_the_kinetic_part(capsys, tmp_path):
    src = ("system M {\n    input m[N]\n    state q[N], p[N]\n"
           "    let T = sum(i: p[i]^2 / (2 * m[i]))\n    H = T + sum(q * q) / 2\n}\n"
           + SIM % "    q = [1.0, 2.0]\n    p = [1.0, 0.5]\n    m = [1.0, 0.0]\n")
    path = write(tmp_path, src)
    rc, err = run_error(capsys, path)
    assert rc == 1
    assert err[0] == f"{path}:4:9: error: H is not finite at the initial state: its part T is inf"
    assert err[1] == "    let T = sum(i: p[i]^2 / (2 * m[i]))"


def test_every_bad_part_is_named(capsys, tmp_path):
    src = ("system S {\n    state q[1], p[1]\n    let A = 1 / q[0]\n    let B = 1 / p[0]\n"
           "    H = A + B\n}\n" + SIM % "    q = [0.0]\n    p = [0.0]\n")
    path = write(tmp_path, src)
    rc, err = run_error(capsys, path)
    assert rc == 1
    assert err[0].endswith("its part A is inf")
    assert err[3] == f"note: {path}:4:9: part B is inf too"


def test_api_refuses_before_stepping():
    sim = tpc.compile("system S {\n state q[1], p[1]\n H = p[0]^2 / 2 + 1 / q[0]\n}\n",
                      integrator="leapfrog", fold=False)
    with pytest.raises(TpcError, match="not finite at the initial state") as e:
        sim.run([0.0], [1.0], dt=0.1, steps=10)
    assert not isinstance(e.value, PartialRun)
    assert str(e.value.loc) == "<source>:3:19"
    traj = sim.run([0.5], [1.0], dt=0.1, steps=10)  # a finite start runs
    assert np.all(np.isfinite(traj.q))


def test_folded_run_checks_the_start_too():
    sim = tpc.compile("system S {\n param m = 0.0\n state q[1], p[1]\n"
                      " H = p[0]^2 / (2 * m) + q[0]^2 / 2\n}\n", integrator="leapfrog")
    assert sim.folded
    with pytest.raises(TpcError, match="its part T is inf"):
        sim.run([0.0], [1.0], dt=0.1, steps=10)


def test_overflowing_sum_of_finite_parts(capsys, tmp_path):
    src = ("system S {\n    state q[1], p[1]\n    H = 1e308 * p[0]^2 + 1e308 * q[0]^2\n}\n"
           + SIM % "    q = [1.0]\n    p = [1.0]\n")
    path = write(tmp_path, src)
    rc, err = run_error(capsys, path)
    assert rc == 1
    assert err[0] == (f"{path}:3:5: error: H is not finite at the initial state: its parts "
                      "are, but their sum is inf")


# ------------------------------------------------------------------ during the run

# V = 1e-300 sqrt(1 - q): a force of ~1e-300 (so p stays exactly 1 and q moves by exact
# drifts) until q passes 1, where the force, and so p, becomes NaN.
WALL = ("system Wall {\n    state q[1], p[1]\n    H = p[0]^2 / 2 + 1e-300 * sqrt(1 - q[0])\n}\n")

W1 = 1 / (2 - 2 ** (1 / 3))
W0 = -(2 ** (1 / 3)) * W1
STAGES = {
    "leapfrog": [("K", 0.5), ("D", 1.0), ("K", 0.5)],
    "yoshida4": [("K", W1 / 2), ("D", W1), ("K", (W1 + W0) / 2), ("D", W0),
                 ("K", (W0 + W1) / 2), ("D", W1), ("K", W1 / 2)],
}


def numpy_run(integrator: str, q: float, p: float, dt: float, steps: int):
    """Stage-by-stage numpy reference: the states after each step and the first step (1-based)
    whose result is not finite (None if none)."""
    states = [(q, p)]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for n in range(1, steps + 1):
            for kind, c in STAGES[integrator]:
                if kind == "K":
                    p = p - c * dt * (-1e-300 / (2 * np.sqrt(np.float64(1.0) - q)))
                else:
                    q = q + c * dt * p
            if not (np.isfinite(q) and np.isfinite(p)):
                return states, n
            states.append((q, p))
    return states, None


@pytest.mark.parametrize("integrator, dt", [("leapfrog", 0.3), ("leapfrog", 0.25),
                                            ("yoshida4", 0.3)])
@pytest.mark.parametrize("save_every", [1, 2, 3, 4, 5, 7])
def test_first_non_finite_step_is_named(integrator, dt, save_every):
    """The failing step is the first whose result (closing kick included) is not finite, for
    every position of that step in its snapshot window, and no kept snapshot is non-finite."""
    states, bad = numpy_run(integrator, 0.0, 1.0, dt, 50)
    assert bad is not None
    sim = tpc.compile(WALL, integrator=integrator, fold=False)
    with pytest.raises(PartialRun) as e:
        sim.run([0.0], [1.0], dt=dt, steps=50, save_every=save_every)
    step = int(re.search(r"non-finite at step (\d+)", str(e.value)).group(1))
    assert step == bad, (step, bad)
    traj = e.value.trajectory
    kept = range(0, bad, save_every)
    assert len(traj.t) == len(kept)
    assert np.all(np.isfinite(traj.q)) and np.all(np.isfinite(traj.p))
    for row, n in enumerate(kept):
        assert traj.q[row, 0] == pytest.approx(states[n][0], abs=1e-12)
        assert traj.p[row, 0] == states[n][1] == 1.0
        assert traj.t[row] == pytest.approx(n * dt, rel=1e-15)


def test_issue_example_closing_kick_at_the_pole():
    """H = p^2/2 + 1e-300/(q - 1), dt = 0.5 from q = 0, p = 1: step 2 drifts q onto the pole
    and its closing kick makes p infinite; that is step 2 whatever the snapshot spacing."""
    src = "system Pole {\n state q[1], p[1]\n H = p[0]^2 / 2 + 1e-300 / (q[0] - 1)\n}\n"
    sim = tpc.compile(src, integrator="leapfrog", fold=False)
    for save_every in (1, 2, 3, 10):
        with pytest.raises(PartialRun, match=r"non-finite at step 2 \(t = 1\)") as e:
            sim.run([0.0], [1.0], dt=0.5, steps=10, save_every=save_every)
        assert np.all(np.isfinite(e.value.trajectory.p))
