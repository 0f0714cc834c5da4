"""A tpc simulation as a JAX function with its own reverse-mode rule (the `jax` extra).

    import jax
    jax.config.update("jax_enable_x64", True)   # float64 through JAX, as tpc computes
    run = tpc.jax.simulate(sim, dt=0.01, steps=10_000)
    loss = lambda q0, p0, params: jnp.sum(run(q0, p0, params)[0] ** 2)
    jax.grad(loss, argnums=(0, 1, 2))(q0, p0, {"mu": 1.0})

The forward pass is the compiled run, the backward pass `Simulation.vjp` (the run reversed
with -dt, O(state) memory however many steps; tpc.derivatives), both called from JAX through
`jax.pure_callback`, so the function also works under `jax.jit`. JAX is imported only here:
the plain CPU path never loads it.
"""

from __future__ import annotations

import numpy as np


def simulate(sim, *, dt: float, steps: int, save_every: int | None = None):
    """f(q0, p0, params={}, inputs={}) -> (q, p): the state after `steps` steps, or with
    save_every every snapshot ([rows, *shape]); differentiable in all four arguments (params
    and inputs as dicts of the system's names)."""
    import jax
    import jax.numpy as jnp

    def rows() -> int:
        return 1 if save_every is None else steps // save_every + 1 + bool(steps % save_every)

    def host_run(q0, p0, params, inputs):
        traj = sim.run(np.asarray(q0, np.float64), np.asarray(p0, np.float64), dt=dt,
                       steps=steps, save_every=save_every or steps,
                       params={k: float(v) for k, v in params.items()},
                       **{k: np.asarray(v, np.float64) for k, v in inputs.items()})
        if save_every is None:
            return traj.q[-1].astype(q0.dtype), traj.p[-1].astype(p0.dtype)
        return traj.q.astype(q0.dtype), traj.p.astype(p0.dtype)

    def host_vjp(q0, p0, params, inputs, gq, gp):
        v = sim.vjp(np.asarray(q0, np.float64), np.asarray(p0, np.float64), dt=dt,
                    steps=steps, save_every=save_every,
                    cotangent=(np.asarray(gq, np.float64), np.asarray(gp, np.float64)),
                    params={k: float(x) for k, x in params.items()},
                    **{k: np.asarray(x, np.float64) for k, x in inputs.items()})
        return (v.q0.astype(q0.dtype), v.p0.astype(p0.dtype),
                {k: np.asarray(v.params[k], np.asarray(x).dtype) for k, x in params.items()},
                {k: v.inputs[k].astype(np.asarray(x).dtype) for k, x in inputs.items()})

    def out_shapes(q0, p0):
        lead = () if save_every is None else (rows(),)
        return (jax.ShapeDtypeStruct(lead + q0.shape, q0.dtype),
                jax.ShapeDtypeStruct(lead + p0.shape, p0.dtype))

    @jax.custom_vjp
    def f(q0, p0, params, inputs):
        return jax.pure_callback(host_run, out_shapes(q0, p0), q0, p0, params, inputs)

    def fwd(q0, p0, params, inputs):
        return f(q0, p0, params, inputs), (q0, p0, params, inputs)

    def bwd(res, g):
        q0, p0, params, inputs = res
        shapes = (jax.ShapeDtypeStruct(q0.shape, q0.dtype),
                  jax.ShapeDtypeStruct(p0.shape, p0.dtype),
                  {k: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
                   for k, x in params.items()},
                  {k: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
                   for k, x in inputs.items()})
        return jax.pure_callback(host_vjp, shapes, q0, p0, params, inputs, g[0], g[1])

    f.defvjp(fwd, bwd)

    def call(q0, p0, params: dict | None = None, inputs: dict | None = None):
        return f(jnp.asarray(q0), jnp.asarray(p0), dict(params or {}), dict(inputs or {}))

    return call
