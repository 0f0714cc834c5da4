"""Matrix-power folding of linear dynamics (sym-fold-linear and tpc.runtime.fold)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpc.runtime import fold

import tpc
from tpc.diagnostics import TpcError

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"

OSC = """system Osc {
    param w = 1.3
    state q[1], p[1]
    H = p[0]^2 / 2 + w^2 * q[0]^2 / 2
}"""
FIELD = """system Field {
    param k = 2.0, g = 0.7
    state q[1], p[1]
    H = p[0]^2 / 2 + k * q[0]^2 / 2 + g * q[0]
}"""
SEPARABLE_INTEGRATORS = ("leapfrog", "yoshida4", "yoshida6", "yoshida8", "midpoint")


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    old = os.environ.get("TPC_CACHE_DIR")
    os.environ["TPC_CACHE_DIR"] = str(tmp_path_factory.mktemp("tpc-cache"))
    yield
    if old is None:
        os.environ.pop("TPC_CACHE_DIR", None)
    else:
        os.environ["TPC_CACHE_DIR"] = old


# H from the two runs: the stepped run rounds at every stage (yoshida8: 15 per step), and that
# drift shows in H first; measured up to 1.8e-12 (yoshida8, 10^4 steps) while q and p agree to
# 1e-12. Energies are therefore compared to 5e-12.
H_TOL = 5e-12


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def both(src, integrator, q0, p0, steps=10_000, save_every=100, **kw):
    stepped = tpc.compile(src, integrator=integrator, fold=False)
    folded = tpc.compile(src, integrator=integrator, fold=True)
    assert folded.folded and not stepped.folded
    a = stepped.run(q0, p0, steps=steps, save_every=save_every, **kw)
    b = folded.run(q0, p0, steps=steps, save_every=save_every, **kw)
    assert b.folded and not a.folded
    assert np.array_equal(a.t, b.t) and a.q.shape == b.q.shape and a.steps_done == b.steps_done
    return a, b


# --------------------------------------------------------------------- the decision


def folds(src: str) -> bool:
    return tpc.compile(src, integrator="midpoint").folded


VARS = ("q[0]", "q[1]", "p[0]", "p[1]")


@st.composite
def hamiltonians(draw):
    """(.ham source, true degree or None for a transcendental): sums of monomials with positive
    coefficients (distinct monomials never cancel), optionally plus sin/cos/exp terms."""
    terms, degree = [], 0
    for _ in range(draw(st.integers(1, 5))):
        exps = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
        c = draw(st.floats(0.1, 5.0))
        factors = [f"{v}^{e}" if e > 1 else v for v, e in zip(VARS, exps) if e > 0]
        terms.append(" * ".join([repr(c), *factors]))
        degree = max(degree, sum(exps))
    transcendental = draw(st.booleans())
    if transcendental:
        fn = draw(st.sampled_from(("sin", "cos", "exp")))
        terms.append(f"{draw(st.floats(0.1, 5.0))!r} * {fn}({draw(st.sampled_from(VARS))})")
    src = "system R {\n    state q[2], p[2]\n    H = " + " + ".join(terms) + "\n}\n"
    return src, None if transcendental else degree


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(hamiltonians())
def test_decision_is_sound(case):
    src, degree = case
    assert folds(src) == (degree is not None and degree <= 2), src


@pytest.mark.parametrize("h, expected", [
    ("p[0]^2 / 2 + q[0]^2 / 2 + 1e-12 * q[0]^4", False),  # tiny, but quartic
    ("p[0]^2 / 2 + q[0]^2 / 2 + 0 * sin(q[0])", True),  # a literal 0 factor is zero
    ("p[0]^2 / 2 + x", True),  # q^2 hidden in a let
    ("p[0]^2 / 2 + q[0]^k", False),  # a param as exponent: not a constant integer
    ("p[0]^2 / 2 + q[0]^2 / 2 + q[0] * p[0]", True),  # non-separable quadratic
])
def test_near_misses(h, expected):
    src = ("system M {\n    param k = 2.0\n    state q[1], p[1]\n    let x = q[0]^2 / 2\n"
           f"    H = {h}\n}}\n")
    assert folds(src) is expected


def test_zero_times_sin_folds_and_matches_stepped():
    """`0 * sin(q)`: ham-degree treats a literal 0 factor as identically zero, so H folds; the
    stepped code computes 0 * sin(q) = 0 (its derivative 0 * cos(q) = 0) and both runs agree."""
    src = "system Z {\n    state q[1], p[1]\n    H = p[0]^2 / 2 + q[0]^2 / 2 + 0 * sin(q[0])\n}\n"
    a, b = both(src, "leapfrog", [0.3], [0.1], dt=0.05)
    assert rel(b.q, a.q) <= 1e-12 and rel(b.p, a.p) <= 1e-12


def test_fold_decision_remarks():
    """sym-fold-linear records its decision in the IR; the remarks are read back from it."""
    from tpc import lowering, pipeline
    from tpc.compiler import Options

    def decide(path, **kw):
        _, module = pipeline.frontend(str(path))
        runner = pipeline.PassRunner()
        runner.run(module, ["ham-degree"])
        return lowering.make_sym(module, Options(**({"integrator": "leapfrog"} | kw)), runner)

    assert decide(EX / "harmonic_chain.ham") == [
        "remark: time loop folded into matrix powers: H is quadratic (degree 2), "
        "one-step map of leapfrog built exactly"]
    (remark,) = decide(EX / "kepler.ham")
    assert remark.startswith("remark: not folded: H is not a polynomial via ham.norm at ")
    assert "kepler.ham:5:30" in remark
    assert decide(EX / "harmonic_chain.ham", fold=False) == [
        "remark: not folded: matrix-power folding disabled by --no-fold"]


# --------------------------------------------------------------------- folded == stepped


def chain_data(n=32):
    q0 = np.zeros(n)
    q0[0], q0[-1] = 0.5, -0.5
    q0[n // 3] = 0.2
    return q0, np.linspace(-0.1, 0.1, n)


@pytest.mark.parametrize("integrator", SEPARABLE_INTEGRATORS)
def test_oscillator_folded_equals_stepped(integrator):
    a, b = both(OSC, integrator, [1.0], [0.2], dt=0.05)
    assert rel(b.q, a.q) <= 1e-12 and rel(b.p, a.p) <= 1e-12 and rel(b.H, a.H) <= H_TOL


@pytest.mark.parametrize("integrator", SEPARABLE_INTEGRATORS)
def test_chain_folded_equals_stepped(integrator):
    """The stepped midpoint run stops its fixed-point iteration at 1e-15 (relative) per step,
    so over 10^4 steps it is itself only good to ~1e-11: measured 1.6e-12 against the folded
    run, compared to 1e-11. The explicit integrators agree to 1e-12."""
    q0, p0 = chain_data()
    a, b = both(EX / "harmonic_chain.ham", integrator, q0, p0, dt=0.05)
    tol = 1e-11 if integrator == "midpoint" else 1e-12
    assert rel(b.q, a.q) <= tol and rel(b.p, a.p) <= tol and rel(b.H, a.H) <= H_TOL


@pytest.mark.parametrize("integrator", SEPARABLE_INTEGRATORS)
def test_affine_separable_folded_equals_stepped(integrator):
    """The folded map is the normal-mode block normalised to determinant 1, the stepped run
    rounds at each of its stages (yoshida6: 7 kicks and drifts a step): measured up to 1.0e-12
    (yoshida6) over 10^4 steps, compared to 2e-12."""
    a, b = both(FIELD, integrator, [0.4], [-0.3], dt=0.05, save_every=333)  # with a remainder
    assert len(a.t) == 1 + 30 + 1
    assert rel(b.q, a.q) <= 2e-12 and rel(b.p, a.p) <= 2e-12


def test_anisotropic_midpoint_folded_equals_stepped():
    a, b = both(EX / "anisotropic.ham", "midpoint", [1.0, 0.0], [0.0, 0.5], dt=0.01)
    assert rel(b.q, a.q) <= 1e-12 and rel(b.p, a.p) <= 1e-12 and rel(b.H, a.H) <= H_TOL


def test_anisotropic_refuses_splitting():
    with pytest.raises(TpcError, match="not separable"):
        tpc.compile(EX / "anisotropic.ham", integrator="leapfrog")


@pytest.mark.parametrize("method", ["squaring", "eigen"])
def test_both_methods_match_stepped(method):
    """40 masses, 10^4 steps: measured 1.06e-12 (squaring) and 5e-13 (eigen); both runs round
    at every step or product, so the bound is 2e-12."""
    q0, p0 = chain_data(40)
    sim = tpc.compile(EX / "harmonic_chain.ham", fold=True)
    a = tpc.compile(EX / "harmonic_chain.ham", fold=False).run(
        q0, p0, dt=0.05, steps=10_000, save_every=100)
    b = fold.run_folded(sim.native, sim.bind(q0, p0, None, {}), 0.05, 10_000, 100,
                        method=method, separable=True)
    assert rel(b.q, a.q) <= 2e-12 and rel(b.p, a.p) <= 2e-12


# --------------------------------------------------------------------- accuracy, structure


def leapfrog_power(n: int, h: float, w: float) -> np.ndarray:
    """The n-th power of the leapfrog map of p^2/2 + w^2 q^2/2, in long double: a symplectic
    2x2 M with trace 2 cos(theta) has M^n = (sin(n theta) M - sin((n-1) theta) I) / sin(theta)."""
    h, w = np.longdouble(h), np.longdouble(w)
    c = 1 - h * h * w * w / 2
    m = np.array([[c, h], [-h * w * w * (1 - h * h * w * w / 4), c]], dtype=np.longdouble)
    theta = np.arccos(c)
    s = np.sin(theta)
    return (np.sin(n * theta) * m - np.sin((n - 1) * theta) * np.eye(2, dtype=np.longdouble)) / s


def test_billion_steps_against_closed_form():
    """10^9 leapfrog steps of one oscillator (h w = 0.065) against the closed form in long double.

    Every product in the binary exponentiation rounds, and an error of eps in the rotation
    angle theta of M becomes n * eps * theta in the phase after n steps: ~1e9 * 1.1e-16 * 0.065
    ~ 1e-8 rad, times the ~60 products' accumulation. Measured: 3.3e-8 relative (max over q
    and p; x86-64, numpy 2.4 with OpenBLAS); the bound 1e-6 leaves room for other BLAS and
    CPUs while failing for any error that grows faster than n * eps (a non-symplectic M would drift by (1 + eps)^n, or blow up).
    """
    n, h, w = 10**9, 0.05, 1.3
    sim = tpc.compile(OSC, integrator="leapfrog")
    traj = sim.run([1.0], [0.2], dt=h, steps=n, save_every=n)
    want = leapfrog_power(n, h, w) @ np.array([1.0, 0.2], dtype=np.longdouble)
    got = np.array([traj.q[-1, 0], traj.p[-1, 0]])
    err = float(np.max(np.abs(got - want.astype(float))) / np.max(np.abs(want.astype(float))))
    assert err < 1e-6, err
    assert traj.t[-1] == n * h and traj.steps_done == n


@pytest.mark.parametrize("method", ["squaring", "eigen"])
@pytest.mark.parametrize("power", [1, 10**4, 10**6])
def test_symplectic_to_round_off(method, power):
    q0, p0 = chain_data(40)
    sim = tpc.compile(EX / "harmonic_chain.ham", integrator="yoshida4", fold=True)
    env = sim.bind(q0, p0, None, {})
    prop = fold.build_propagator(fold._Env(sim.native, env, env.q.shape, env.q.size), 0.05,
                                 method, separable=True)
    assert prop.method == method
    m = prop.power_dense(power)[:-1, :-1]
    j = fold.symplectic_form(len(q0))
    err = np.max(np.abs(m.T @ j @ m - j))
    # Round-off: ~ eps per product and per basis change, growing at most like the log of the
    # power for squaring (each squaring doubles the drift of the previous factor's error).
    assert err < {1: 1e-13, 10**4: 1e-11, 10**6: 1e-9}[power], err


def test_exact_matches_closed_form():
    sim = tpc.compile(OSC, integrator="exact")
    assert sim.folded
    h, w, n = 0.1, 1.3, 1000
    traj = sim.run([1.0], [0.2], dt=h, steps=n, save_every=10)
    t = traj.t
    q = np.cos(w * t) + 0.2 / w * np.sin(w * t)
    assert rel(traj.q[:, 0], q) < 1e-12
    assert traj.energy_error() < 1e-12


def test_exact_affine_and_nonseparable():
    sim = tpc.compile(FIELD, integrator="exact")
    traj = sim.run([0.4], [-0.3], dt=0.1, steps=500, save_every=50)
    k, g = 2.0, 0.7
    w, qs = np.sqrt(k), -g / k
    q = qs + (0.4 - qs) * np.cos(w * traj.t) + (-0.3) / w * np.sin(w * traj.t)
    assert rel(traj.q[:, 0], q) < 1e-12
    an = tpc.compile(EX / "anisotropic.ham", integrator="exact").run(
        [1.0, 0.0], [0.0, 0.5], dt=0.01, steps=10_000, save_every=100)
    assert an.energy_error() < 1e-12


def test_exact_refused():
    with pytest.raises(TpcError, match="quadratic"):
        tpc.compile(EX / "kepler.ham", integrator="exact")
    with pytest.raises(TpcError, match="folding"):
        tpc.compile(OSC, integrator="exact", fold=False)


def test_expm_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1.0, 30.0):
        a = scale * rng.standard_normal((7, 7))
        assert rel(fold.expm(a), scipy_linalg.expm(a)) < 1e-12


def test_non_finite_is_a_partial_run():
    from tpc.api import PartialRun

    sim = tpc.compile(OSC, integrator="leapfrog")  # h w = 2.6 > 2: unstable, grows to inf
    with pytest.raises(PartialRun) as e:
        sim.run([1.0], [0.0], dt=2.0, steps=10**6, save_every=1000)
    traj = e.value.trajectory
    assert traj.folded and 1 <= len(traj.t) < 1001 and np.all(np.isfinite(traj.q))


# --------------------------------------------------------------------- the driver


def remarks(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "tpc.cli", "compile", *args, "--emit=sym",
                        "--remarks", "-o", os.devnull], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_remarks_cli():
    kepler = remarks("examples/kepler.ham")
    assert "remark: not folded: H is not a polynomial via ham.norm at examples/kepler.ham:5:30" \
        in kepler
    chain = remarks("examples/harmonic_chain.ham")
    assert "remark: time loop folded into matrix powers: H is quadratic (degree 2)" in chain
    off = remarks("examples/harmonic_chain.ham", "--no-fold")
    assert "folded into matrix powers" not in off and "--no-fold" in off


def test_fold_cost_model_prefers_stepping_only_for_short_runs():
    """Folding costs O(n^3) once, stepping O(steps): the run-time gate compares the two."""
    from tpc.runtime.fold import fold_seconds

    per_step = 2e-6  # a 1000-mass chain step, as measured on a small machine
    assert fold_seconds(1000, 10**6, 10**6, True, per_step) > 10**6 * per_step
    assert fold_seconds(1000, 10**9, 10**9, True, per_step) < 10**9 * per_step
    assert fold_seconds(100, 10**6, 10**6, True, per_step / 10) < 10**6 * per_step / 10


def test_run_time_gate_steps_a_run_too_short_to_fold():
    sim = tpc.compile(EX / "harmonic_chain.ham")
    n = 8
    q, p = np.zeros(n), np.zeros(n)
    q[0] = 0.5
    short = sim.run(q, p, dt=0.05, steps=3, save_every=1)
    assert not short.folded and "folding skipped" in short.note
    long = sim.run(q, p, dt=0.05, steps=10**6, save_every=10**6)
    assert long.folded and long.note == ""
