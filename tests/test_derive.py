"""ham-derive: the compiled gradients against finite differences and hand-written numpy.

For every example and for small snippets exercising each derivative rule, the gradient that
the compiler derives (ham-derive -> native code, `Simulation.gradient`) is checked twice:
  * against central finite differences of the compiled energy (relative ~1e-6), and
  * against an independent numpy evaluation of the analytic gradient (relative 1e-12).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tpc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fd_gradient(sim, q, p, params=None, h=1e-5, **inputs):
    """Central differences of the compiled energy, in q and in p."""
    out = []
    for which in (0, 1):
        base = (q, p)[which]
        g = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            hi, lo = base.copy(), base.copy()
            step = h * max(1.0, abs(base[idx]))
            hi[idx] += step
            lo[idx] -= step
            args_hi = (hi, p) if which == 0 else (q, hi)
            args_lo = (lo, p) if which == 0 else (q, lo)
            e_hi = sim.energy(*args_hi, params=params, **inputs)
            e_lo = sim.energy(*args_lo, params=params, **inputs)
            g[idx] = (e_hi - e_lo) / (2 * step)
        out.append(g)
    return out


def assert_close(got, ref, rtol):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------------------ examples


def kepler_case(rng):
    mu = 1.3
    q = rng.uniform(-1.5, 1.5, 3) + np.array([0.5, 0.0, 0.0])
    p = rng.uniform(-1, 1, 3)
    r = np.linalg.norm(q)
    return {"mu": mu}, q, p, {}, (mu * q / r**3, p)


def chain_case(rng):
    k, m, n = 1.7, 0.8, 16
    q = rng.normal(size=n)
    p = rng.normal(size=n)
    d = np.zeros(n)
    diff = q[1:] - q[:-1]
    d[1:] += 2 * diff
    d[:-1] -= 2 * diff
    d[0] += 2 * q[0]
    d[-1] += 2 * q[-1]
    return {"k": k, "m": m}, q, p, {}, (k / 2 * d, p / m)


def pendulum_case(rng):
    g, length, m = 9.81, 1.3, 0.7
    q = rng.uniform(-3, 3, 1)
    p = rng.uniform(-2, 2, 1)
    return ({"g": g, "l": length, "m": m}, q, p, {},
            (m * g * length * np.sin(q), p / (m * length**2)))


def henon_heiles_case(rng):
    lam = 0.9
    q = rng.uniform(-0.5, 0.5, 2)
    p = rng.uniform(-0.5, 0.5, 2)
    x, y = q
    return ({"lam": lam}, q, p, {},
            (np.array([x + 2 * lam * x * y, y + lam * (x * x - y * y)]), p))


def nbody_gradients(q, p, m, G):
    dq = np.zeros_like(q)
    n = len(m)
    for i in range(n):
        for j in range(n):
            if i != j:
                d = q[i] - q[j]
                dq[i] += G * m[i] * m[j] * d / np.linalg.norm(d) ** 3
    return dq, p / m[:, None]


def nbody_case(rng):
    G, n = 1.1, 6
    q = rng.normal(size=(n, 3)) * 2.0
    p = rng.normal(size=(n, 3))
    m = rng.uniform(0.5, 2.0, n)
    return {"G": G}, q, p, {"m": m}, nbody_gradients(q, p, m, G)


def anisotropic_case(rng):
    wx, wy, om, f = 1.2, 1.7, 0.3, 0.2
    q = rng.normal(size=2)
    p = rng.normal(size=2)
    gq = np.array([wx**2 * q[0] + f - om * p[1], wy**2 * q[1] + om * p[0]])
    gp = np.array([p[0] + om * q[1], p[1] - om * q[0]])
    return {"wx": wx, "wy": wy, "omega": om, "f": f}, q, p, {}, (gq, gp)


def wisdom_holman_case(rng):
    """examples/outer_solar_system_wh.ham: H_kep + H_jump + H_int in democratic heliocentric
    coordinates."""
    G, m0, n = 1.3, 2.0, 4
    q = rng.normal(size=(n, 3)) * 2.0
    p = rng.normal(size=(n, 3))
    m = rng.uniform(0.5, 2.0, n)
    r = np.linalg.norm(q, axis=1)
    gq = G * m0 * (m / r**3)[:, None] * q
    for i in range(n):
        for j in range(n):
            if i != j:
                d = q[i] - q[j]
                gq[i] += G * m[i] * m[j] * d / np.linalg.norm(d) ** 3
    gp = p / m[:, None] + p.sum(axis=0) / m0
    return {"G": G, "m0": m0}, q, p, {"m": m}, (gq, gp)


def lj_liquid_case(rng):
    """examples/lj_liquid.ham: minimum image in a box of 7.540521415, cut at 2.5, shifted."""
    eps, sigma, box, rc = 1.3, 0.9, 7.540521415, 2.5
    lattice = np.array(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), float).reshape(3, -1).T
    q = lattice * (box / 4) + rng.normal(0, 0.15, lattice.shape) - 0.5  # some outside the box
    n = len(q)
    p = rng.normal(size=(n, 3))
    d = q[:, None, :] - q[None, :, :]
    d -= box * np.round(d / box)
    r2 = np.einsum("ijk,ijk->ij", d, d) + np.eye(n)
    inside = (r2 < rc * rc) & ~np.eye(n, dtype=bool)
    s2 = sigma * sigma / r2
    coef = np.where(inside, 4 * eps * (-12 * s2**6 + 6 * s2**3) / r2, 0.0)  # (dV/dr) / r
    gq = (coef[:, :, None] * d).sum(axis=1)
    return {"eps": eps, "sigma": sigma}, q, p, {}, (gq, p.copy())


CASES = {
    "lj_liquid": lj_liquid_case,
    "outer_solar_system_wh": wisdom_holman_case,
    "anisotropic": anisotropic_case,
    "kepler": kepler_case,
    "harmonic_chain": chain_case,
    "pendulum": pendulum_case,
    "henon_heiles": henon_heiles_case,
    "nbody": nbody_case,
}


@pytest.fixture(scope="module")
def compiled():
    cache: dict[str, tpc.api.Simulation] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = tpc.compile(str(EXAMPLES / f"{name}.ham"), fold=False)
        return cache[name]

    return get


def test_every_example_is_covered():
    assert sorted(CASES) == sorted(p.stem for p in EXAMPLES.glob("*.ham"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_gradient_vs_numpy(name, compiled):
    sim = compiled(name)
    rng = np.random.default_rng(1234)
    for _ in range(3):
        params, q, p, inputs, (ref_q, ref_p) = CASES[name](rng)
        gq, gp = sim.gradient(q, p, params=params, **inputs)
        assert_close(gq, ref_q, 1e-12)
        assert_close(gp, ref_p, 1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_gradient_vs_finite_differences(name, compiled):
    sim = compiled(name)
    rng = np.random.default_rng(99)
    for _ in range(2):
        params, q, p, inputs, _ = CASES[name](rng)
        gq, gp = sim.gradient(q, p, params=params, **inputs)
        fq, fp = fd_gradient(sim, q, p, params=params, **inputs)
        assert_close(gq, fq, 1e-6)
        assert_close(gp, fp, 1e-6)


def test_nbody_init_file_gradient(compiled):
    """The shipped 16-body initial data (a star and 15 planets)."""
    sim = compiled("nbody")
    data = json.loads((EXAMPLES / "nbody_init.json").read_text())
    q, p, m = (np.array(data[k], dtype=float) for k in ("q", "p", "m"))
    gq, gp = sim.gradient(q, p, m=m)
    ref_q, ref_p = nbody_gradients(q, p, m, 1.0)
    assert_close(gq, ref_q, 1e-12)
    assert_close(gp, ref_p, 1e-12)


# ----------------------------------------------------------------------- rule snippets

A = 1.7  # the param `a` in every snippet
C = np.array([0.5, -0.2, 0.9])  # the input `c`


def _cross_grad(q):
    """d/dq [ |q x c|^2 + |q x (q*q)| ]."""
    u = np.cross(q, C)
    g = 2 * np.cross(C, u)  # d|q x c|^2/dq = 2 (c x (q x c))
    w = q * q
    v = np.cross(q, w)
    nv = np.linalg.norm(v)
    # d v / d q_k = e_k x w + q x (2 q_k e_k)
    for k in range(3):
        e = np.zeros(3)
        e[k] = 1.0
        dv = np.cross(e, w) + np.cross(q, 2 * q[k] * e)
        g[k] += v @ dv / nv
    return g


def _ne_grad(q):
    # V = sum_{i != j} q_i q_j^2 = sum_i q_i (S2 - q_i^2), S2 = sum q^2
    s1, s2 = q.sum(), (q * q).sum()
    return (s2 - q * q) + 2 * q * (s1 - q)


def _lets_grad(q):
    y = q[0] * q[1]
    dx_dy = 2 * y + np.cos(y) + q[2]
    return np.array([dx_dy * q[1], dx_dy * q[0], y])


def _norm_grad(q):
    r = np.linalg.norm(q)
    return q / r + 2 * np.dot(q, C) * C


SNIPPETS = {
    # name: (V(q) in .ham, lets, dV/dq in numpy)
    "sin_cos_tan": ("sin(q[0]) + cos(q[1]) + tan(q[2])", "",
                    lambda q: np.array([np.cos(q[0]), -np.sin(q[1]), 1 / np.cos(q[2]) ** 2])),
    "exp_log_sqrt": ("exp(q[0]) + log(q[1]) + sqrt(q[2])", "",
                     lambda q: np.array([np.exp(q[0]), 1 / q[1], 0.5 / np.sqrt(q[2])])),
    "hyperbolic_abs": ("sinh(q[0]) * cosh(q[1]) + tanh(q[2]) + abs(q[0] - q[2])", "",
                       lambda q: np.array([
                           np.cosh(q[0]) * np.cosh(q[1]) + np.sign(q[0] - q[2]),
                           np.sinh(q[0]) * np.sinh(q[1]),
                           1 - np.tanh(q[2]) ** 2 - np.sign(q[0] - q[2])])),
    "integer_powers": ("q[0]^3 + q[1]^-2 + q[2]^5 * q[0] + q[1]^1 + q[2]^2", "",
                       lambda q: np.array([3 * q[0] ** 2 + q[2] ** 5,
                                           -2 * q[1] ** -3 + 1,
                                           5 * q[2] ** 4 * q[0] + 2 * q[2]])),
    "real_powers": ("q[1]^a + q[2]^(a * q[0])", "",
                    lambda q: np.array([
                        q[2] ** (A * q[0]) * A * np.log(q[2]),
                        A * q[1] ** (A - 1),
                        A * q[0] * q[2] ** (A * q[0] - 1)])),
    "cross": ("dot(cross(q, c), cross(q, c)) + norm(cross(q, q * q))", "", _cross_grad),
    "norm_dot": ("norm(q) + dot(q, c)^2", "", _norm_grad),
    "pair_sum_ne": ("sum(i != j: q[i] * q[j]^2)", "", _ne_grad),
    "range_sum_offset": ("sum(i in 0..2: q[i] * q[i + 1]^2)", "",
                         lambda q: np.array([q[1] ** 2,
                                             2 * q[0] * q[1] + q[2] ** 2,
                                             2 * q[1] * q[2]])),
    "index_sum_offset": ("sum(i: (q[i + 1] - q[i])^3)", "",
                         lambda q: np.array([-3 * (q[1] - q[0]) ** 2,
                                             3 * (q[1] - q[0]) ** 2 - 3 * (q[2] - q[1]) ** 2,
                                             3 * (q[2] - q[1]) ** 2])),
    "lets": ("x", "let y = q[0] * q[1]\n let x = y * y + sin(y) + q[2] * y", _lets_grad),
    "vector_expr": ("sum(exp(q) * c) + sum(q * q * q) / 3", "",
                    lambda q: np.exp(q) * C + q * q),
    "division": ("q[0] / q[1] + 1 / (q[2] * q[0]) - q[1] / 2", "",
                 lambda q: np.array([1 / q[1] - 1 / (q[2] * q[0] ** 2),
                                     -q[0] / q[1] ** 2 - 0.5,
                                     -1 / (q[2] ** 2 * q[0])])),
}


def snippet_source(v: str, lets: str) -> str:
    return (f"system S {{\n param a = {A}\n input c[3]\n state q[3], p[3]\n {lets}\n"
            f" H = sum(p * p) / 2 + {v}\n}}")


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_rule_snippet(name):
    v, lets, grad = SNIPPETS[name]
    sim = tpc.compile(snippet_source(v, lets), fold=False)
    rng = np.random.default_rng(7)
    for _ in range(3):
        q = rng.uniform(0.2, 1.3, 3)  # positive: log, sqrt and real powers are defined
        p = rng.normal(size=3)
        gq, gp = sim.gradient(q, p, c=C)
        assert_close(gq, grad(q), 1e-12)
        assert_close(gp, p, 1e-12)
        fq, fp = fd_gradient(sim, q, p, c=C)
        assert_close(gq, fq, 1e-6)
        assert_close(gp, fp, 1e-6)


def test_pair_sum_lt_scatters_to_both_indices():
    """sum(i < j: f(q_i - q_j)) with a non-symmetric-looking body and an input weight."""
    src = ("system P {\n input w[N]\n state q[N, 2], p[N, 2]\n"
           " H = sum(p * p) / 2 + sum(i < j: w[i] * w[j] * exp(-dot(q[i] - q[j], q[i] - q[j])))\n}")
    sim = tpc.compile(src, fold=False)
    rng = np.random.default_rng(3)
    n = 7
    q, p, w = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), rng.uniform(0.5, 1.5, n)
    ref = np.zeros_like(q)
    for i in range(n):
        for j in range(i + 1, n):
            d = q[i] - q[j]
            f = w[i] * w[j] * np.exp(-d @ d) * (-2 * d)
            ref[i] += f
            ref[j] -= f
    gq, gp = sim.gradient(q, p, w=w)
    assert_close(gq, ref, 1e-12)
    assert_close(gp, p, 1e-12)


def test_non_separable_gradient():
    """A q*p coupling: dH/dq depends on p and dH/dp on q."""
    sim = tpc.compile("system M { state q[2], p[2]\n H = dot(p, p) / 2 + q[0] * p[1] * cos(q[1]) "
                      "+ q[1]^2 * p[0]^2 }", fold=False, integrator="midpoint")
    q, p = np.array([0.3, -0.8]), np.array([1.2, 0.4])
    gq, gp = sim.gradient(q, p)
    ref_q = np.array([p[1] * np.cos(q[1]), -q[0] * p[1] * np.sin(q[1]) + 2 * q[1] * p[0] ** 2])
    ref_p = np.array([p[0] + 2 * q[1] ** 2 * p[0], p[1] + q[0] * np.cos(q[1])])
    assert_close(gq, ref_q, 1e-12)
    assert_close(gp, ref_p, 1e-12)
