"""Ensembles on a Dask cluster (a real LocalCluster of 2 worker processes): in order and
bitwise the local ensemble, and every member back once when a worker is killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError

distributed = pytest.importorskip("distributed")

KEPLER = Path(__file__).resolve().parent.parent / "examples" / "kepler.ham"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))  # the workers' too
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()
    mp.undo()


@pytest.fixture(scope="module")
def sim(client):
    s = tpc.compile(KEPLER)
    assert s.native  # compiled here once: the workers find it in the shared object cache
    return s


def members(count: int):
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.5, 2.0, count)
    q0 = np.tile([0.4, 0.0, 0.0], (count, 1))
    p0 = np.zeros((count, 3))
    p0[:, 1] = np.sqrt(mu / 0.4) * rng.uniform(0.8, 1.2, count)
    return q0, p0, mu


def test_cluster_ensemble_equals_the_local_one_bitwise(client, sim):
    q0, p0, mu = members(50)
    kw = dict(dt=0.01, steps=500, save_every=100, params={"mu": mu}, batch=50)
    far, near = sim.run(q0, p0, client=client, **kw), sim.run(q0, p0, **kw)
    assert far.q.shape == (50, 6, 3) and far.batch == 50
    for key in ("t", "q", "p", "H"):
        assert np.array_equal(far[key], near[key]), key


def test_a_killed_worker_still_returns_every_member_once(client, sim):
    q0, p0, mu = members(40)
    kw = dict(dt=0.01, steps=200_000, save_every=50_000, params={"mu": mu}, batch=40)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [w for w, tasks in client.processing().items() if tasks and w in pids]
            if busy:
                time.sleep(0.2)  # inside its task
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    far = sim.run(q0, p0, client=client, **kw)
    killer.join()
    assert killed, "no worker was busy to kill"
    near = sim.run(q0, p0, **kw)
    assert far.q.shape == near.q.shape
    assert np.array_equal(far.q, near.q) and np.array_equal(far.H, near.H)


def test_client_needs_an_ensemble(sim, client):
    with pytest.raises(TpcError, match="client= runs ensembles"):
        sim.run([0.4, 0, 0], [0, 2, 0], dt=0.01, steps=10, client=client)
    with pytest.raises(TpcError, match="client must be a distributed.Client"):
        sim.run(np.ones((2, 3)), np.ones((2, 3)), dt=0.01, steps=10, batch=2, client="local")


def test_cli_ensemble_on_the_scheduler_equals_the_local_cli_run(client, sim, tmp_path, capsys):
    from tpc import cli

    q0, p0, mu = members(6)
    ens = tmp_path / "ens.npz"
    np.savez(ens, q=q0, p=p0, mu=mu)
    common = ["run", str(KEPLER), "--ensemble", str(ens), "--steps", "300", "--save-every",
              "100", "--quiet"]
    assert cli.main([*common, "-o", str(tmp_path / "local.npz")]) == 0
    assert cli.main([*common, "--scheduler", client.scheduler.address, "-o",
                     str(tmp_path / "far.npz")]) == 0
    assert capsys.readouterr().err == ""
    local, far = np.load(tmp_path / "local.npz"), np.load(tmp_path / "far.npz")
    ref = sim.run(q0, p0, dt=0.01, steps=300, save_every=100, params={"mu": mu}, batch=6)
    for key in ("t", "q", "p", "H"):
        assert np.array_equal(local[key], ref[key]) and np.array_equal(far[key], ref[key])
    assert int(far["batch"]) == 6 and np.array_equal(far["param_mu"], mu)
