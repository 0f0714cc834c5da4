"""`tpc run --remarks` and the run summary say what the run did: a fold the run-time cost gate
turned down is not reported as folded, and a folded run reports the snapshots it evaluated,
not a step rate it never ran at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpc import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHAIN = EXAMPLES / "harmonic_chain.ham"


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


def run(capsys, tmp_path, *argv) -> tuple[str, list[str]]:
    rc = cli.main(["run", *[str(a) for a in argv], "--remarks", "-o", str(tmp_path / "o.npz")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out, [ln for ln in out.err.splitlines() if ln.startswith("remark: ")]


def fold_remarks(remarks: list[str]) -> list[str]:
    return [r for r in remarks if "fold" in r]


def test_a_fold_skipped_at_run_time_is_not_reported_as_folded(capsys, tmp_path):
    stdout, remarks = run(capsys, tmp_path, CHAIN, "--steps", 3, "--save-every", 1)
    (remark,) = fold_remarks(remarks)
    assert remark.startswith("remark: not folded: folding skipped at run time: 3 steps cost")
    assert "(leapfrog)" in stdout and "steps/s" in stdout


def test_a_folded_run_reports_its_method_and_its_snapshots(capsys, tmp_path):
    stdout, remarks = run(capsys, tmp_path, CHAIN, "--steps", 10**7, "--save-every", 10**6)
    (remark,) = fold_remarks(remarks)
    assert remark.startswith("remark: time loop folded into matrix powers: H is quadratic")
    assert remark.endswith("the one-step map powered mode by mode in normal coordinates")
    assert "leapfrog, folded into matrix powers" in stdout
    assert "the map evaluated at 10 snapshot(s)" in stdout and "steps/s" not in stdout


def test_the_exact_integrator_reports_no_step_rate(capsys, tmp_path):
    stdout, remarks = run(capsys, tmp_path, EXAMPLES / "anisotropic.ham", "--integrator",
                          "exact", "--steps", 10**9, "--save-every", 10**8)
    (remark,) = fold_remarks(remarks)
    assert "the exact flow evaluated at each snapshot's t" in remark
    assert "1 by exp(t A)" in remark  # the rotating frame couples q and p: not separable
    assert "exact flow, evaluated at each snapshot" in stdout
    assert "steps/s" not in stdout and "the map evaluated at 10 snapshot(s)" in stdout


def test_a_float32_fold_says_it_works_in_float64(capsys, tmp_path):
    _, remarks = run(capsys, tmp_path, CHAIN, "--precision", "f32", "--steps", 10**6,
                     "--save-every", 10**5)
    (remark,) = fold_remarks(remarks)
    assert remark.endswith("float32 run: the map built and powered in float64 from the float32 "
                           "data, the state rounded to float32 once per snapshot")


def test_a_system_that_cannot_fold_says_why(capsys, tmp_path):
    _, remarks = run(capsys, tmp_path, EXAMPLES / "kepler.ham", "--steps", 100)
    (remark,) = fold_remarks(remarks)
    assert remark.startswith("remark: not folded: H is not a polynomial via ham.norm at ")
