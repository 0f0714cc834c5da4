"""--shadow: the leading term of the scheme's shadow Hamiltonian, against the classical
coefficients, numpy's brackets, exact polynomial brackets, the logarithm of a linear map, and
the orders of the errors (leapfrog: H dt^2, H~ dt^4; yoshida4: H dt^4, H~ dt^6)."""

from fractions import Fraction

import numpy as np
import pytest
from systems import KEPLER, NBODY
from tpc.passes.sym_shadow import bracket_terms, h2_coefficients

import tpc
from tpc import invariants
from tpc.diagnostics import TpcError

PENDULUM = """system Pendulum {
    param g = 9.81
    state q[1], p[1]
    H = p[0]^2 / 2 - g * cos(q[0])
}"""


def test_bch_gives_the_classical_leapfrog_coefficients():
    half, one = Fraction(1, 2), Fraction(1)
    assert h2_coefficients([(0, half), (1, one), (0, half)]) == (Fraction(-1, 24), Fraction(1, 12))
    assert h2_coefficients([(1, half), (0, one), (1, half)]) == (Fraction(1, 12), Fraction(-1, 24))


def slopes(sim, q0, p0, dts):
    """Fitted log-log slopes of max |H - H0| / |H0| and of the same for H~, over one period."""
    errs = []
    for dt in dts:
        steps = int(round(2 * np.pi / dt))
        traj = sim.run(q0, p0, dt=dt, steps=steps, save_every=max(1, steps // 100))
        errs.append((np.max(invariants.drift(traj.H)),
                     np.max(invariants.drift(traj.monitors[invariants.SHADOW]))))
    errs = np.array(errs)
    fit = [np.polyfit(np.log(dts), np.log(errs[:, k]), 1)[0] for k in (0, 1)]
    return fit, errs


@pytest.mark.parametrize("src, q0, p0", [(KEPLER, [0.4, 0.0, 0.0], [0.0, 2.0, 0.0]),
                                          (PENDULUM, [1.0], [0.0])], ids=["kepler", "pendulum"])
def test_leapfrog_shadow_error_is_dt4_while_H_is_dt2(src, q0, p0):
    sim = tpc.compile(src, shadow=True, integrator="leapfrog")
    (h_slope, s_slope), errs = slopes(sim, q0, p0, [0.02, 0.01, 0.005, 0.0025])
    assert abs(h_slope - 2) < 0.1 and abs(s_slope - 4) < 0.15, (h_slope, s_slope)
    assert np.all(errs[:, 1] < errs[:, 0] / 100)


def test_nbody_H2_against_numpy_brackets():
    sim = tpc.compile(NBODY, shadow=True)
    rng = np.random.default_rng(1)
    m = np.array([1.0, 2.0, 0.5])
    dt = 1e-2
    traj = sim.run(rng.normal(size=(3, 3)), 0.3 * rng.normal(size=(3, 3)), dt=dt, steps=10,
                   save_every=10, m=m)

    def grad_v(q):
        g = np.zeros_like(q)
        for i in range(3):
            for j in range(i + 1, 3):
                d = q[i] - q[j]
                f = m[i] * m[j] * d / np.linalg.norm(d) ** 3
                g[i] += f
                g[j] -= f
        return g

    q, p = traj.q[-1], traj.p[-1]
    g, v = grad_v(q), p / m[:, None]
    eps = 1e-5
    v_hess_v = np.sum((grad_v(q + eps * v) - grad_v(q - eps * v)) * v) / (2 * eps)
    h2 = -np.sum(g * g / m[:, None]) / 24 + v_hess_v / 12  # {V,{V,T}}, {T,{T,V}}
    got = (traj.monitors[invariants.SHADOW][-1] - traj.H[-1]) / dt**2
    assert got == pytest.approx(h2, rel=1e-8)


def test_large_dt_warns_with_a_smaller_dt():
    sim = tpc.compile(KEPLER, shadow=True)
    traj = sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=0.1, steps=200, save_every=10)
    lines = invariants.shadow_summary(traj.H, traj.monitors[invariants.SHADOW], 0.1)
    warn = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warn) == 1 and "dt = 0.1 is large" in warn[0]
    suggested = float(warn[0].split("dt = ")[2].split()[0])
    assert 0 < suggested < 0.1


def test_sixth_order_composition_is_refused_at_the_integrator():
    sim = tpc.compile(KEPLER, shadow=True, integrator="yoshida6")
    with pytest.raises(TpcError) as e:
        sim.run([0.4, 0.0, 0.0], [0.0, 2.0, 0.0], dt=0.01, steps=1)  # builds the code
    assert "dt^2 and dt^4 terms of yoshida6's shadow Hamiltonian vanish" in e.value.message


# ------------------------------------------------------------------ the dt^4 term (yoshida4)

ANHARMONIC = """system Anharmonic {
    state q[1], p[1]
    H = p[0]^2 / 2 + q[0]^2 / 2 + q[0]^4 / 4
}"""


def test_leapfrog_weight5_brackets_are_the_classical_ones():
    """Verlet's dt^4 term has -1/720 {T,{T,{T,{T,V}}}} and 7/5760 {V,{V,{V,{V,T}}}}
    (Hairer, Lubich and Wanner, Geometric Numerical Integration, IX.10)."""
    half = Fraction(1, 2)
    terms = bracket_terms([(0, half), (1, Fraction(1)), (0, half)], 5)
    assert terms["V4_vvvv"] == Fraction(-1, 720) and terms["T4_gggg"] == Fraction(7, 5760)
    assert bracket_terms([(0, half), (1, Fraction(1)), (0, half)], 3) == {
        "T2_gg": Fraction(-1, 24), "V2_vv": Fraction(1, 12)}


FINE = [0.04, 0.02, 0.01, 0.005]


# The anharmonic oscillator's H~ error reaches round-off (1e-14) at dt = 0.005: coarser dts.
@pytest.mark.parametrize("src, q0, p0, dts", [
    (PENDULUM, [1.0], [0.0], FINE), (KEPLER, [0.4, 0.0, 0.0], [0.0, 2.0, 0.0], FINE),
    (ANHARMONIC, [1.0], [0.5], [0.08, 0.04, 0.02, 0.01])],
    ids=["pendulum", "kepler", "anharmonic"])
def test_yoshida4_shadow_error_is_dt6_while_H_is_dt4(src, q0, p0, dts):
    sim = tpc.compile(src, shadow=True, integrator="yoshida4")
    assert "dt4" in sim.native.abi["shadow"]
    (h_slope, s_slope), errs = slopes(sim, q0, p0, dts)
    assert abs(h_slope - 4) < 0.15 and abs(s_slope - 6) < 0.2, (h_slope, s_slope)
    # halving dt: H's drift falls by about 2^4, the shadow-corrected one by about 2^6
    fall = errs[:-1] / errs[1:]
    assert np.all((fall[:, 0] > 12) & (fall[:, 0] < 21)), fall
    assert np.all((fall[:, 1] > 45) & (fall[:, 1] < 85)), fall
    assert np.all(errs[:, 1] < errs[:, 0] / 20)


def test_yoshida4_H4_of_a_harmonic_oscillator_against_the_log_of_its_linear_map():
    """For H = p^2/2 + w^2 q^2/2 the step is a 2x2 matrix M and the shadow Hamiltonian is the
    quadratic form of log(M) / dt exactly; (H~ - H) / dt^4 -> H4 as dt -> 0 (Richardson)."""
    from scipy.linalg import logm
    from tpc.passes.compositions import yoshida

    w = 1.3
    src = f"""system HO {{
    param w = {w}
    state q[1], p[1]
    H = p[0]^2 / 2 + w^2 * q[0]^2 / 2
}}"""
    z = np.array([0.7, -0.4])
    jay = np.array([[0.0, 1.0], [-1.0, 0.0]])

    def exact_h4(dt):
        m = np.eye(2)
        for c in yoshida(4).coefficients:  # the triple jump of kick-drift-kick
            for kind, x in (("kick", c / 2), ("drift", c), ("kick", c / 2)):
                m = (np.array([[1.0, 0.0], [-w * w * x * dt, 1.0]]) if kind == "kick" else
                     np.array([[1.0, x * dt], [0.0, 1.0]])) @ m
        s = -jay @ np.real(logm(m)) / dt  # z' = J S z
        return (z @ s @ z / 2 - (z[1] ** 2 + w * w * z[0] ** 2) / 2) / dt ** 4

    reference = (4 * exact_h4(0.02) - exact_h4(0.04)) / 3
    sim = tpc.compile(src, shadow=True, integrator="yoshida4", fold=False)
    traj = sim.run([z[0]], [z[1]], dt=0.01, steps=1)
    got = (traj.monitors[invariants.SHADOW][0] - traj.H[0]) / 0.01 ** 4
    assert got == pytest.approx(reference, rel=1e-5)


# An exact reference for the brackets: polynomials in (q0, q1, p0, p1) with rational
# coefficients, Poisson brackets by differentiation, and the weight-5 part of the BCH log
# rewritten in right-nested brackets by Dynkin-Specht-Wever, none of it through the trees.

def _poly_d(f, var):
    out = {}
    for m, c in f.items():
        if m[var]:
            mm = list(m)
            mm[var] -= 1
            key = tuple(mm)
            out[key] = out.get(key, 0) + c * m[var]
    return out


def _poly_mul(f, g):
    out = {}
    for a, x in f.items():
        for b, y in g.items():
            key = tuple(i + j for i, j in zip(a, b))
            out[key] = out.get(key, 0) + x * y
    return out


def _poly_add(f, g, k=1):
    out = dict(f)
    for m, c in g.items():
        out[m] = out.get(m, 0) + k * c
    return {m: c for m, c in out.items() if c != 0}


def _poisson(f, g, dim):
    out = {}
    for i in range(dim):
        out = _poly_add(out, _poly_mul(_poly_d(f, i), _poly_d(g, dim + i)))
        out = _poly_add(out, _poly_mul(_poly_d(f, dim + i), _poly_d(g, i)), -1)
    return out


def _poly_eval(f, z):
    return sum(float(c) * np.prod([x ** e for x, e in zip(z, m)]) for m, c in f.items())


def test_general_separable_H4_against_exact_polynomial_brackets():
    """A non-quadratic T (T''' and T'''' nonzero, T'' not constant) and a coupled V in 2-D:
    the compiled H4 (Taylor jets, Hessian-vector products, polarization) equals the
    polynomial brackets evaluated exactly."""
    from tpc.passes.compositions import yoshida
    from tpc.passes.sym_shadow import log_part

    src = """system Coupled {
    state q[2], p[2]
    H = p[0]^2 / 2 + p[1]^2 / 2 + p[0]^4 / 12 + p[0] * p[1]^3 / 5
        + q[0]^4 / 4 + q[0] * q[1]^2 + q[1]^3 / 3
}"""
    F = Fraction
    T = {(0, 0, 2, 0): F(1, 2), (0, 0, 0, 2): F(1, 2), (0, 0, 4, 0): F(1, 12),
         (0, 0, 1, 3): F(1, 5)}
    V = {(4, 0, 0, 0): F(1, 4), (1, 2, 0, 0): F(1), (0, 3, 0, 0): F(1, 3)}
    letters = [(x, F(c * k)) for c in yoshida(4).coefficients
               for x, k in ((0, 0.5), (1, 1.0), (0, 0.5))]
    h4 = {}
    for word, c in log_part(letters, 5).terms.items():
        f = {0: V, 1: T}[word[-1]]
        for x in reversed(word[:-1]):
            f = _poisson({0: V, 1: T}[x], f, 2)
        h4 = _poly_add(h4, {m: v * c / 5 for m, v in f.items()})
    sim = tpc.compile(src, shadow=True, integrator="yoshida4")
    dt = 0.01
    for z in ([0.3, -0.5, 0.8, 0.2], [-0.7, 0.4, -0.3, 0.9]):
        traj = sim.run(z[:2], z[2:], dt=dt, steps=1)
        got = (traj.monitors[invariants.SHADOW][0] - traj.H[0]) / dt ** 4
        assert got == pytest.approx(_poly_eval(h4, z), rel=1e-6, abs=1e-9)


def test_nbody_H4_against_finite_differences_of_the_forces():
    """N-body, yoshida4: the six contractions from finite differences of numpy forces."""
    sim = tpc.compile(NBODY, shadow=True, integrator="yoshida4")
    coeffs = sim.native.abi["shadow"]["dt4"]
    rng = np.random.default_rng(2)
    m = np.array([1.0, 2.0, 0.5])
    q, p = rng.normal(size=(3, 3)), 0.3 * rng.normal(size=(3, 3))
    dt = 0.1  # large enough that H~ - H is well above H's round-off
    traj = sim.run(q, p, dt=dt, steps=1, m=m)
    got = (traj.monitors[invariants.SHADOW][0] - traj.H[0]) / dt**4
    env = sim.bind(q, p, None, {"m": m})
    terms = invariants.dt4_terms(sim.native, env, sim.native.abi["shadow"],
                                 *[x.ravel() for x in sim.gradient(q, p, m=m)])

    def pot(x):
        return -sum(m[i] * m[j] / np.linalg.norm(x[i] - x[j])
                    for i in range(3) for j in range(i + 1, 3))

    def grad_v(x):
        g = np.zeros_like(x)
        for i in range(3):
            for j in range(i + 1, 3):
                d = x[i] - x[j]
                f = m[i] * m[j] * d / np.linalg.norm(d) ** 3
                g[i] += f
                g[j] -= f
        return g

    def along(x, d, k, h=0.03):  # k-th derivative of V along d, central differences O(h^4)
        f = [pot(x + j * h * d) for j in range(-3, 4)]
        stencils = {2: [1 / 90, -3 / 20, 3 / 2, -49 / 18, 3 / 2, -3 / 20, 1 / 90],
                    3: [1 / 8, -1, 13 / 8, 0, -13 / 8, 1, -1 / 8],
                    4: [-1 / 6, 2, -13 / 2, 28 / 3, -13 / 2, 2, -1 / 6]}
        return np.dot(stencils[k], f) / h ** k

    g, v = grad_v(q), p / m[:, None]
    eps = 1e-5
    a = (grad_v(q + eps * v) - grad_v(q - eps * v)) / (2 * eps)  # V'' v
    u, minv = g / m[:, None], 1 / m[:, None]  # T'' g, T'' = diag(1/m)
    v3 = (along(q, v + u, 3) - along(q, v - u, 3) - 2 * along(q, u, 3)) / 6
    ref = {"V4_vvvv": along(q, v, 4), "T4_gggg": 0.0, "V3_vvu": v3, "T3_gga": 0.0,
           "T2_aa": np.sum(a * a * minv), "V2_uu": along(q, u, 2)}
    for k, x in ref.items():
        assert terms[k] == pytest.approx(x, rel=1e-5, abs=1e-12), k
    assert got == pytest.approx(sum(c * terms[k] for k, c in coeffs.items()), rel=1e-9)


def test_taylor_jets_of_every_unary_rule_against_closed_forms():
    """taylor_V's derivatives 0..4 along a direction, for each function with a rule, against
    their closed forms (sech, Hermite-free erf derivatives written out), and a composite in
    2-D against finite differences."""
    from math import erf, erfc, exp, sqrt

    src = """system Funcs {
    state q[1], p[1]
    H = p[0]^2 / 2 + exp(q[0]) + log(q[0]) + sinh(q[0]) + cosh(q[0]) / 2 + tanh(q[0])
        + erf(q[0]) + erfc(q[0]) / 3 + sqrt(q[0]) + q[0]^-3
}"""
    sim = tpc.compile(src, shadow=True, integrator="yoshida4")
    x, d = 0.7, 1.3
    t, s = np.tanh(x), 1 / np.cosh(x) ** 2
    g = 2 / sqrt(np.pi) * exp(-x * x)
    erf_d = [g, -2 * x * g, (4 * x * x - 2) * g, (-8 * x**3 + 12 * x) * g]
    want = [exp(x) + np.log(x) + np.sinh(x) + np.cosh(x) / 2 + t + erf(x) + erfc(x) / 3
            + sqrt(x) + x**-3]
    for k in range(1, 5):
        log_k = (-1) ** (k + 1) * [1, 1, 2, 6][k - 1] / x**k
        hyper = np.cosh(x) if k % 2 else np.sinh(x)
        half = (np.sinh(x) if k % 2 else np.cosh(x)) / 2
        tanh_k = [s, -2 * s * t, -2 * s * s + 4 * s * t * t, 16 * s * s * t - 8 * s * t**3][k - 1]
        sqrt_k = [0.5, -0.25, 0.375, -0.9375][k - 1] * x ** (0.5 - k)
        ipow_k = [-3, 12, -60, 360][k - 1] * x ** (-3 - k)
        want.append((exp(x) + log_k + hyper + half + tanh_k + erf_d[k - 1]
                     - erf_d[k - 1] / 3 + sqrt_k + ipow_k) * d**k)
    out = np.empty(5)
    sim.native.call("taylor_V", sim.bind([x], [0.0], None, {}), dir=np.array([d]), out=out)
    np.testing.assert_allclose(out, want, rtol=1e-13)

    composite = tpc.compile("""system C {
    state q[2], p[2]
    H = dot(p, p) / 2 + tanh(q[0] * q[1]) * exp(-q[1]^2) / (1 + q[0]^2) + cos(sqrt(q[0]^2 + q[1]^2))
}""", shadow=True, integrator="yoshida4")
    z, e = np.array([0.4, -0.9]), np.array([0.6, 0.8])

    def v(y):
        return (np.tanh(y[0] * y[1]) * np.exp(-y[1] ** 2) / (1 + y[0] ** 2)
                + np.cos(np.linalg.norm(y)))

    h = 0.02
    f = [v(z + j * h * e) for j in range(-4, 5)]
    stencils = {1: [1 / 280, -4 / 105, 1 / 5, -4 / 5, 0, 4 / 5, -1 / 5, 4 / 105, -1 / 280],
                2: [-1 / 560, 8 / 315, -1 / 5, 8 / 5, -205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560],
                3: [-7 / 240, 3 / 10, -169 / 120, 61 / 30, 0, -61 / 30, 169 / 120, -3 / 10,
                    7 / 240],
                4: [7 / 240, -2 / 5, 169 / 60, -122 / 15, 91 / 8, -122 / 15, 169 / 60, -2 / 5,
                    7 / 240]}
    composite.native.call("taylor_V", composite.bind(z, np.zeros(2), None, {}), dir=e, out=out)
    assert out[0] == pytest.approx(v(z), rel=1e-14)
    for k in range(1, 5):
        assert out[k] == pytest.approx(np.dot(stencils[k], f) / h**k, rel=1e-7, abs=1e-9), k
