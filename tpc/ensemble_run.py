"""`tpc run FILE.ham --ensemble ens.npz [--workers N | --scheduler tcp://HOST:PORT]`.

ens.npz holds the members: the state arrays under their names, [B, *shape]; any param by its
name, a number or [B]; any input by its name, its declared shape (shared) or [B, *shape].
What it does not give comes from the simulate block (params, inputs; dt, steps and save_every
always do). The members run locally on every core, or with `--workers N` on an embedded Dask
LocalCluster of N worker processes, or with `--scheduler` on a running Dask cluster. The
output is an .npz of batch-first arrays ([B, snapshots, *shape]) with the run's metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tpc import invariants
from tpc.api import InvariantDrift
from tpc.diagnostics import TpcError
from tpc.simulate import read_init_file


def read_members(path: str, sim) -> tuple[dict, dict, dict]:
    """(state arrays, params, inputs) of ens.npz, by name."""
    data = read_init_file(Path(path), path, None).arrays
    state = {}
    for name in (sim.info.q, sim.info.p):
        if name not in data:
            raise TpcError(f"ensemble file '{path}' has no '{name}' (the members' states, "
                           f"[B, {', '.join(map(str, sim.info.shape))}])")
        state[name] = data.pop(name)
    params = {k: data.pop(k) for k in list(data) if k in sim.info.params}
    inputs = {k: data.pop(k) for k in list(data) if k in sim.info.inputs}
    if data:
        known = [sim.info.q, sim.info.p, *sim.info.params, *sim.info.inputs]
        raise TpcError(f"ensemble file '{path}' has '{next(iter(data))}', which is no state, "
                       f"param or input of system '{sim.info.name}' (known: {', '.join(known)})")
    return state, params, inputs


def client_for(args):
    """The Dask client of --workers / --scheduler, or None (a local run)."""
    if args.workers is None and args.scheduler is None:
        return None, None
    if args.workers is not None and args.scheduler is not None:
        raise TpcError("--workers starts a local cluster, --scheduler uses a running one: give "
                       "one of them")
    try:
        import distributed
    except ImportError:
        raise TpcError("--workers and --scheduler need Dask: pip install 'tpc[dask]'") from None
    if args.scheduler is not None:
        try:
            return distributed.Client(args.scheduler, timeout=10), None
        except (OSError, TimeoutError, ValueError) as e:
            raise TpcError(f"cannot reach the Dask scheduler at '{args.scheduler}': {e}") from None
    if args.workers < 1:
        raise TpcError(f"--workers must be >= 1, got {args.workers}")
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    return distributed.Client(cluster), cluster


def run(args, sim, cfg, out: str) -> int:
    from tpc.runner import run_metadata, write_npz

    if not out.endswith(".npz"):
        raise TpcError(f"--ensemble writes an .npz of batch-first arrays, not '{out}'")
    state, given_params, given_inputs = read_members(args.ensemble, sim)
    q0, p0 = state[sim.info.q], state[sim.info.p]
    batch = len(q0) if np.ndim(q0) else 0
    params = dict(cfg.params) | given_params
    inputs = dict(cfg.inputs) | given_inputs
    client, cluster = client_for(args)
    drifted = None
    try:
        traj = sim.run(q0, p0, dt=cfg.dt, steps=cfg.steps, save_every=cfg.save_every,
                       params=params, batch=batch, client=client, progress=not args.quiet,
                       check_invariants=getattr(args, "check_invariants", None), **inputs)
    except InvariantDrift as e:
        drifted, traj = e, e.trajectory
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    arrays = {"t": traj.t, sim.info.q: traj.q, sim.info.p: traj.p, "H": traj.H,
              "batch": np.int64(batch), **traj.carry}
    # each member's monitors (P_x, L_z, observables, H_shadow), [B, snapshots]
    arrays |= {k: v for k, v in traj.monitors.items() if k not in arrays}
    arrays |= run_metadata(sim, cfg, "cpu")
    arrays |= {f"param_{k}": np.asarray(v, dtype=np.float64) for k, v in params.items()}
    arrays |= {f"input_{k}": np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    arrays |= {"steps_done": np.int64(traj.steps_done), "t_final": np.float64(traj.t[-1])}
    write_npz(out, arrays)
    if drifted is not None:
        print(f"error: {drifted.message}; wrote {out}", file=sys.stderr)
        return drifted.exit_code
    if not args.quiet:
        where = ("locally" if client is None else f"on {args.workers} local workers"
                 if args.scheduler is None else f"on the cluster at {args.scheduler}")
        err = traj.energy_error()
        print(f"{sim.info.name}: {batch} members x {traj.steps_done} steps ({where}), "
              f"{len(traj.t)} snapshots each -> {out}")
        print(f"  run {traj.wall_time:.3f} s; max relative energy error: median "
              f"{np.median(err):.3e}, worst {err.max():.3e} (member {int(err.argmax())})")
        for line in invariants.member_summary(sim, traj):
            print(line)
    sys.stdout.flush()
    return 0
