"""tpc.jax: a tpc run inside jax.grad and jax.jit, against JAX's own autodiff of a pure-JAX
leapfrog written here (skipped without the `jax` extra)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import tpc  # noqa: E402
import tpc.jax  # noqa: E402
from tests.systems import KEPLER, NBODY, PENDULUM  # noqa: E402

Q0, P0 = np.array([0.4, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])


def jax_leapfrog(q, p, mu, h, steps):
    def force(q):
        return mu * q / jnp.linalg.norm(q) ** 3

    def step(carry, _):
        q, p = carry
        p = p - 0.5 * h * force(q)
        q = q + h * p
        p = p - 0.5 * h * force(q)
        return (q, p), None

    (q, p), _ = jax.lax.scan(step, (q, p), None, length=steps)
    return q, p


def loss_of(run):
    def loss(q0, p0, mu):
        q, p = run(q0, p0, mu)
        return jnp.sum(q * jnp.array([1.0, -2.0, 0.5])) + jnp.sum(p ** 2)
    return loss


def test_grad_matches_jax_autodiff_of_a_jax_leapfrog():
    sim = tpc.compile(KEPLER, integrator="leapfrog")
    run = tpc.jax.simulate(sim, dt=0.01, steps=1500)
    ours = loss_of(lambda q, p, mu: run(q, p, {"mu": mu}))
    ref = loss_of(lambda q, p, mu: jax_leapfrog(q, p, mu, 0.01, 1500))
    args = (jnp.asarray(Q0), jnp.asarray(P0), 1.2)
    assert float(ours(*args)) == pytest.approx(float(ref(*args)), rel=1e-11)
    got = jax.grad(ours, argnums=(0, 1, 2))(*args)
    want = jax.grad(ref, argnums=(0, 1, 2))(*args)
    for a, b in zip(got, want):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) < 1e-7 * np.max(np.abs(b))
    jitted = jax.jit(jax.grad(ours, argnums=2))(*args)
    assert float(jitted) == pytest.approx(float(want[2]), rel=1e-7)


def test_input_gradients_and_snapshots():
    sim = tpc.compile(NBODY, integrator="leapfrog")
    rng = np.random.default_rng(2)
    q0, p0 = rng.normal(size=(4, 3)) * 2, rng.normal(size=(4, 3)) * 0.1
    m = rng.uniform(0.5, 1.5, 4)
    run = tpc.jax.simulate(sim, dt=0.002, steps=200, save_every=50)

    def loss(m):
        q, p = run(q0, p0, {"G": 1.0}, {"m": m})
        assert q.shape == (5, 4, 3)
        return jnp.sum(q[-1, 0] ** 2) + jnp.sum(p[2] * p[3])

    g = jax.grad(loss)(jnp.asarray(m))
    h = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        fd = (float(loss(jnp.asarray(m + e))) - float(loss(jnp.asarray(m - e)))) / (2 * h)
        assert abs(float(g[i]) - fd) < 1e-6 * max(1.0, abs(fd))


def jax_kdk(potential, kinetic_grad, q, p, theta, h, steps):
    """Leapfrog KDK on any separable H, forces by jax.grad of the potential."""
    force = jax.grad(potential, argnums=0)

    def step(carry, _):
        q, p = carry
        p = p - 0.5 * h * force(q, theta)
        q = q + h * kinetic_grad(p, theta)
        p = p - 0.5 * h * force(q, theta)
        return (q, p), None

    (q, p), _ = jax.lax.scan(step, (q, p), None, length=steps)
    return q, p



def test_pendulum_param_gradients_match_jax():
    sim = tpc.compile(PENDULUM, integrator="leapfrog")
    run = tpc.jax.simulate(sim, dt=0.01, steps=800)

    def v(q, th):
        return -th["g"] * th["l"] * jnp.cos(q[0])

    def tp(p, th):
        return p / th["l"] ** 2

    def loss_ours(q0, p0, th):
        q, p = run(q0, p0, th)
        return 0.7 * q[0] - 1.1 * p[0]

    def loss_ref(q0, p0, th):
        q, p = jax_kdk(v, tp, q0, p0, th, 0.01, 800)
        return 0.7 * q[0] - 1.1 * p[0]

    args = (jnp.array([1.0]), jnp.array([0.3]), {"g": 9.0, "l": 1.2})
    got = jax.grad(loss_ours, argnums=(0, 1, 2))(*args)
    want = jax.grad(loss_ref, argnums=(0, 1, 2))(*args)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        a, b = np.ravel(a), np.ravel(b)
        assert np.max(np.abs(a - b)) < 1e-7 * max(1.0, np.max(np.abs(b)))


def test_nbody_gradients_match_jax():
    sim = tpc.compile(NBODY, integrator="leapfrog")
    rng = np.random.default_rng(8)
    n = 8
    q0, p0 = rng.normal(size=(n, 3)) * 2, rng.normal(size=(n, 3)) * 0.2
    m = rng.uniform(0.5, 1.5, n)
    iu = np.triu_indices(n, 1)

    def v(q, th):
        d = q[:, None, :] - q[None, :, :]
        r = jnp.sqrt(jnp.sum(d ** 2, axis=-1)[iu])
        return -th["G"] * jnp.sum(th["m"][iu[0]] * th["m"][iu[1]] / r)

    def tp(p, th):
        return p / th["m"][:, None]

    run = tpc.jax.simulate(sim, dt=0.002, steps=300)
    c = rng.normal(size=(n, 3))

    def loss_ours(q0, th):
        q, p = run(q0, p0, {"G": th["G"]}, {"m": th["m"]})
        return jnp.sum(q * c) + jnp.sum(p * p)

    def loss_ref(q0, th):
        q, p = jax_kdk(v, tp, q0, jnp.asarray(p0), th, 0.002, 300)
        return jnp.sum(q * c) + jnp.sum(p * p)

    th = {"G": 1.1, "m": jnp.asarray(m)}
    got = jax.grad(loss_ours, argnums=(0, 1))(jnp.asarray(q0), th)
    want = jax.grad(loss_ref, argnums=(0, 1))(jnp.asarray(q0), th)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) < 1e-7 * max(1.0, np.max(np.abs(b)))
