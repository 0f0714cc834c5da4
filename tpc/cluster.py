"""Ensembles on a Dask cluster: `sim.run(..., batch=B, client=distributed.Client(...))`.

The members are cut into contiguous chunks, one task each. A task carries the source text and
the compile options, not compiled code (native code is not portable between machines and
cannot be pickled): each worker process compiles the simulation once, on its first task, and
keeps it for the next ones (`_compiled`), with the on-disk object cache as usual. A chunk is an
ordinary batch run on the worker, so every member is bit for bit the member of a local run; the
chunks are gathered in order. A worker that dies mid-run (killed, out of memory) loses its
tasks, and the scheduler runs them again on another worker: every member comes back once.
"""

from __future__ import annotations

import numpy as np

from tpc.diagnostics import RunError, TpcError

_SIMS: dict[tuple, object] = {}  # per worker process: (source, options) -> Simulation


def _compiled(source: str, options: tuple):
    key = (source, options)
    if key not in _SIMS:
        import tpc

        integrator, fold, precision, newton3, kahan = options
        _SIMS[key] = tpc.compile(source, integrator=integrator, fold=fold, precision=precision,
                                 newton3=newton3, kahan=kahan)
    return _SIMS[key]


def run_chunk(source: str, options: tuple, q0, p0, params: dict, inputs: dict, dt: float,
              steps: int, save_every: int, carry: dict | None, first: int) -> dict:
    """One chunk of members, on a worker: the batch run's arrays (or its error, as text: a
    PartialRun holds a trajectory and does not survive pickling as an exception)."""
    from tpc.api import PartialRun

    sim = _compiled(source, options)
    try:
        traj = sim.run(q0, p0, dt=dt, steps=steps, save_every=save_every, params=params,
                       batch=len(q0), carry=carry, **inputs)
    except PartialRun as e:
        return {"error": e.message, "first": first}
    except TpcError as e:
        return {"error": e.message, "first": first}
    return {"t": traj.t, "q": traj.q, "p": traj.p, "H": traj.H, "carry": traj.carry,
            "grid_carry": traj.grid_carry, "steps_done": traj.steps_done,
            "wall": traj.wall_time, "folded": traj.folded}


def check_client(client) -> None:
    try:
        from distributed import Client
    except ImportError:
        raise TpcError("client= needs Dask: pip install 'tpc[dask]'") from None
    if not isinstance(client, Client):
        raise TpcError(f"client must be a distributed.Client, got {type(client).__name__}")


def run_on_cluster(sim, client, q0, p0, params: dict | None, inputs: dict, members, dt: float,
                   steps: int, save_every: int, carry: dict | None, chunks: int | None = None):
    """The ensemble `members` (bound and checked here, tpc.ensemble.Members) run on the
    cluster of `client`, in chunks of contiguous members; a batch-first Trajectory."""
    from tpc.api import Trajectory

    check_client(client)
    batch = members.batch
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    count = max(1, min(batch, chunks or 2 * workers))
    cuts = np.linspace(0, batch, count + 1).astype(int)
    q0, p0 = np.asarray(q0, dtype=np.float64), np.asarray(p0, dtype=np.float64)
    o = sim.options
    options = (o.integrator, o.fold, o.precision, o.newton3, o.kahan)
    futures = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        part = slice(int(lo), int(hi))
        chunk_params = {k: (np.asarray(v)[part] if np.ndim(v) else v)
                        for k, v in (params or {}).items()}
        chunk_inputs = {k: (np.asarray(v)[part] if k in members.per_member else v)
                        for k, v in inputs.items()}
        chunk_carry = {k: np.asarray(v)[part] for k, v in carry.items()} if carry else None
        futures.append(client.submit(run_chunk, sim.source, options, q0[part], p0[part],
                                     chunk_params, chunk_inputs, dt, steps, save_every,
                                     chunk_carry, int(lo), pure=False))
    results = client.gather(futures)
    for r in results:
        if "error" in r:
            raise RunError(f"in the chunk of members from {r['first']}: {r['error']}")

    def joined(key: str) -> np.ndarray:
        return np.concatenate([r[key] for r in results])

    return Trajectory(results[0]["t"], joined("q"), joined("p"), joined("H"),
                      results[0]["steps_done"], max(r["wall"] for r in results),
                      results[0]["folded"],
                      carry={k: np.concatenate([r["carry"][k] for r in results])
                             for k in results[0]["carry"]},
                      grid_carry={k: np.concatenate([r["grid_carry"][k] for r in results])
                                  for k in results[0]["grid_carry"]},
                      batch=batch, names=(sim.info.q, sim.info.p), box=sim.info.box)
