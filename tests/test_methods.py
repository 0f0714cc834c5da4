"""Integrators over named parts: the specification language, Strang orderings and RESPA,
checked against plain numpy integrators written here."""

from __future__ import annotations

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError
from tpc.passes import methods

# --------------------------------------------------------------------------- the syntax


@pytest.mark.parametrize("text, canonical", [
    ("leapfrog", "leapfrog"),
    ("leapfrog(A,B)", "leapfrog(A, B)"),
    ("yoshida6( A , T+B )", "yoshida6(A, T + B)"),
    ("respa(slow=V, fast=leapfrog(Vb, T), inner=10)",
     "respa(slow = V, fast = leapfrog(Vb, T), inner = 10)"),
    ("compose(A, B, order = 4, stages = 6)", "compose(A, B, order = 4, stages = 6)"),
])
def test_parse_round_trip(text, canonical):
    spec = methods.parse(text)
    assert str(spec) == canonical
    assert str(methods.parse(str(spec))) == canonical


@pytest.mark.parametrize("text, offset, words", [
    ("leapfrog(A,,B)", 11, "expected a part"),
    ("leapfrog(A, B", 13, "expected ')'"),
    ("leapfrog(A) x", 12, "unexpected 'x'"),
    ("respa(slow = 1 +)", 15, "expected ')'"),
    ("(A)", 0, "expected an integrator name"),
    ("leapfrog(A + 2)", 13, "part name after '+'"),
])
def test_parse_errors_point_into_the_text(text, offset, words):
    with pytest.raises(methods.MethodError) as e:
        methods.parse(text)
    assert e.value.offset == offset and words in str(e.value)


def test_nesting_is_limited():
    text = "respa(slow = A, fast = " * 40 + "leapfrog" + ", inner = 2)" * 40
    with pytest.raises(methods.MethodError, match="nest at most"):
        methods.parse(text)


# --------------------------------------------------------------------------- schemes

TRAP = """
system Trap {
    param k = 4.0
    param eps = 0.1
    state q[1], p[1]
    let T = p[0]^2 / 2
    let Vtrap = k * q[0]^2 / 2
    let Vweak = eps * q[0]^4
    H = T + Vtrap + Vweak
}
"""


def strang_numpy(z, dt, flows):
    """Apply flows [(kind, grad, c)] in order: kick p -= c dt dV/dq, drift q += c dt dT/dp."""
    q, p = z
    for kind, grad, c in flows:
        if kind == "kick":
            p = p - c * dt * grad(q)
        else:
            q = q + c * dt * grad(p)
    return q, p


def test_leapfrog_of_three_parts_is_nested_strang():
    """leapfrog(Vweak, T, Vtrap) is Vweak/2, T/2, Vtrap, T/2, Vweak/2: compare with numpy."""
    sim = tpc.compile(TRAP, integrator="leapfrog(Vweak, T, Vtrap)", fold=False)
    k, eps, dt, n = 4.0, 0.1, 0.05, 400
    traj = sim.run([1.0], [0.0], dt=dt, steps=n, save_every=n)
    dV4 = lambda q: 4 * eps * q**3  # noqa: E731
    dT = lambda p: p  # noqa: E731
    dV2 = lambda q: k * q  # noqa: E731
    flows = [("kick", dV4, 0.5), ("drift", dT, 0.5), ("kick", dV2, 1.0), ("drift", dT, 0.5),
             ("kick", dV4, 0.5)]
    z = (np.array([1.0]), np.array([0.0]))
    for _ in range(n):
        z = strang_numpy(z, dt, flows)
    np.testing.assert_allclose(traj.q[-1], z[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(traj.p[-1], z[1], rtol=0, atol=1e-13)


def test_orderings_are_different_maps():
    a = tpc.compile(TRAP, integrator="leapfrog(T, Vtrap + Vweak)", fold=False)
    b = tpc.compile(TRAP, integrator="leapfrog(Vtrap + Vweak, T)", fold=False)
    ta = a.run([1.0], [0.0], dt=0.1, steps=10, save_every=10)
    tb = b.run([1.0], [0.0], dt=0.1, steps=10, save_every=10)
    assert abs(ta.q[-1, 0] - tb.q[-1, 0]) > 1e-6


@pytest.mark.parametrize("integrator, words", [
    ("leapfrog(T, Vtrap)", "does not flow part @Vweak"),
    ("leapfrog(T, Vtrap, Vtrap + Vweak)", "part @Vtrap is named twice"),
    ("leapfrog(T, X)", "'X' is not a part of H (its parts: T, Vtrap, Vweak)"),
    ("respa(slow = Vweak, fast = T + Vtrap)", "needs inner = N"),
    ("respa(slow = Vweak, fast = T + Vtrap, inner = 0)", "whole number from 1"),
    ("midpoint(T)", "takes no arguments"),
    ("leapfrog(order = 2)", "takes parts"),
])
def test_bad_specifications_are_located(integrator, words):
    with pytest.raises(TpcError) as e:
        tpc.compile(TRAP, integrator=integrator)
    assert words in str(e.value)
    assert e.value.loc is not None and e.value.loc.file == "--integrator"


def test_a_let_of_parts_stands_for_them():
    source = TRAP.replace("H = T + Vtrap + Vweak", "let Hfast = T + Vtrap\n    H = Hfast + Vweak")
    a = tpc.compile(source, integrator="leapfrog(Vweak, Hfast)", fold=False)
    b = tpc.compile(TRAP, integrator="leapfrog(Vweak, T + Vtrap)", fold=False)
    ta = a.run([1.0], [0.0], dt=0.1, steps=50, save_every=50)
    tb = b.run([1.0], [0.0], dt=0.1, steps=50, save_every=50)
    assert np.array_equal(ta.q, tb.q) and np.array_equal(ta.p, tb.p)


def test_simulate_block_integrator_errors_point_into_the_source(tmp_path):
    from tpc import compiler

    path = tmp_path / "t.ham"
    path.write_text(TRAP + "simulate {\n  integrator = leapfrog(T,\n      Vtrap, Vx)\n}\n")
    with pytest.raises(TpcError) as e:
        compiler.compile_stage(str(path), "sym", compiler.Options())
    assert (e.value.loc.line, e.value.loc.col) == (13, 14)
    assert "'Vx' is not a part of H" in str(e.value)


# --------------------------------------------------------------------------- RESPA

CHAIN = """
system Beads {
    param k = 400.0
    param eps = 0.5
    state q[N], p[N]
    let T = sum(i: p[i]^2) / 2
    let Vbond = k / 2 * sum(i: (q[i + 1] - q[i] - 1)^2)
    let Vpair = -eps * sum(i < j: 1 / sqrt((q[i] - q[j])^2 + 4))
    H = T + Vbond + Vpair
}
"""


def chain_forces(n, k=400.0, eps=0.5):
    def d_bond(q):
        d = q[1:] - q[:-1] - 1
        g = np.zeros_like(q)
        g[1:] += k * d
        g[:-1] -= k * d
        return g

    def d_pair(q):
        r = q[:, None] - q[None, :]
        g = eps * r / (r * r + 4) ** 1.5
        return g.sum(axis=1)

    return d_bond, d_pair


def chain_state(n):
    rng = np.random.default_rng(3)
    q0 = np.arange(n, dtype=float) + 0.05 * rng.standard_normal(n)
    p0 = 0.3 * rng.standard_normal(n)
    return q0, p0


def test_respa_matches_numpy_respa():
    n, dt, inner, steps = 8, 0.05, 10, 200
    sim = tpc.compile(CHAIN, integrator=f"respa(slow = Vpair, fast = T + Vbond, inner = {inner})",
                      fold=False)
    q0, p0 = chain_state(n)
    traj = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps)
    d_bond, d_pair = chain_forces(n)
    q, p = q0.copy(), p0.copy()
    h = dt / inner
    for _ in range(steps):
        p -= dt / 2 * d_pair(q)
        for _ in range(inner):
            p -= h / 2 * d_bond(q)
            q += h * p
            p -= h / 2 * d_bond(q)
        p -= dt / 2 * d_pair(q)
    np.testing.assert_allclose(traj.q[-1], q, rtol=0, atol=1e-11)
    np.testing.assert_allclose(traj.p[-1], p, rtol=0, atol=1e-11)


def test_respa_saves_pair_forces_at_equal_energy_error():
    """At the step the stiff bonds need (dt = 0.005, ω·dt = 0.28), leapfrog evaluates the pair
    forces every step; respa(inner = 10) at dt = 0.05 evaluates them 10× less often. Its
    energy error must be no worse than 2× leapfrog's."""
    n, t_end = 8, 10.0
    q0, p0 = chain_state(n)
    lf = tpc.compile(CHAIN, integrator="leapfrog", fold=False)
    rs = tpc.compile(CHAIN, integrator="respa(slow = Vpair, fast = T + Vbond, inner = 10)",
                     fold=False)
    e_lf = lf.run(q0, p0, dt=0.005, steps=int(t_end / 0.005), save_every=20).energy_error()
    e_rs = rs.run(q0, p0, dt=0.05, steps=int(t_end / 0.05), save_every=2).energy_error()
    pair_evals_lf, pair_evals_rs = int(t_end / 0.005), int(t_end / 0.05)
    assert pair_evals_lf / pair_evals_rs >= 5
    assert e_rs <= 2 * e_lf, (e_rs, e_lf)
    # and plain leapfrog at respa's outer step is unstable or far worse
    e_big = lf.run(q0, p0, dt=0.05, steps=int(t_end / 0.05), save_every=2).energy_error()
    assert not np.isfinite(e_big) or e_big > 10 * e_rs


def test_nested_respa_three_levels():
    sim = tpc.compile(
        CHAIN, integrator="respa(slow = Vpair, fast = respa(slow = Vbond, fast = T, inner = 2), "
                          "inner = 5)", fold=False)
    q0, p0 = chain_state(8)
    traj = sim.run(q0, p0, dt=0.02, steps=50, save_every=50)
    d_bond, d_pair = chain_forces(8)
    q, p = q0.copy(), p0.copy()
    dt = 0.02
    for _ in range(50):
        p -= dt / 2 * d_pair(q)
        for _ in range(5):
            h = dt / 5
            p -= h / 2 * d_bond(q)
            for _ in range(2):
                q += h / 2 * p
            p -= h / 2 * d_bond(q)
        p -= dt / 2 * d_pair(q)
    np.testing.assert_allclose(traj.q[-1], q, rtol=0, atol=1e-11)
