"""Monitors of ensembles (batch=B): each member's conserved quantities, observables and shadow
Hamiltonian, and --check-invariants stopping at the first member that drifts, against the
members' single runs and numpy."""

import numpy as np
import pytest
from systems import KEPLER, NBODY

import tpc
from tpc import cli, invariants
from tpc.api import InvariantDrift

OBSERVED = KEPLER.replace("    H =", "    observe r = norm(q)\n    H =")
# three orbits: two nearly circular, the third eccentric (its energy error is the largest)
Q0 = np.array([[1.0, 0.0, 0.0], [0.9, 0.0, 0.1], [0.4, 0.0, 0.0]])
P0 = np.array([[0.0, 1.0, 0.0], [0.0, 1.05, 0.05], [0.0, 2.0, 0.0]])


@pytest.fixture(scope="module")
def kepler():
    return tpc.compile(OBSERVED)


def test_each_members_monitors_are_its_single_run(kepler):
    mu = np.array([1.0, 1.2, 0.9])
    ens = kepler.run(Q0, P0, dt=0.01, steps=600, save_every=50, batch=3, params={"mu": mu})
    assert list(ens.monitors) == ["L_x", "L_y", "L_z", "r"]
    assert all(v.shape == (3, 13) for v in ens.monitors.values())
    for b in range(3):
        one = kepler.run(Q0[b], P0[b], dt=0.01, steps=600, save_every=50,
                         params={"mu": mu[b]})
        for k, v in one.monitors.items():
            assert np.array_equal(ens.monitors[k][b], v) and np.array_equal(
                ens.member(b).monitors[k], v)
        np.testing.assert_allclose(ens.monitors["r"][b], np.linalg.norm(ens.q[b], axis=1),
                                   rtol=1e-15)
        np.testing.assert_allclose(ens.monitors["L_z"][b], np.cross(ens.q[b], ens.p[b])[:, 2],
                                   atol=1e-14)


def test_nbody_members_with_their_own_masses_against_numpy():
    sim = tpc.compile(NBODY)
    rng = np.random.default_rng(4)
    q0, p0 = rng.normal(size=(2, 3, 3)), 0.3 * rng.normal(size=(2, 3, 3))
    m = np.array([[1.0, 2.0, 0.5], [0.3, 1.0, 3.0]])
    ens = sim.run(q0, p0, dt=1e-3, steps=300, save_every=100, batch=2, m=m)
    for b in range(2):
        np.testing.assert_allclose(ens.monitors["P_y"][b], ens.p[b, :, :, 1].sum(axis=1),
                                   atol=1e-14)
        L = np.cross(ens.q[b], ens.p[b]).sum(axis=1)
        np.testing.assert_allclose(ens.monitors["L_x"][b], L[:, 0], atol=1e-13)
        assert np.ptp(ens.monitors["P_x"][b]) < 1e-13


def test_check_invariants_stops_at_the_member_that_drifts(kepler):
    good = kepler.run(Q0, P0, dt=0.01, steps=600, save_every=50, batch=3,
                      check_invariants=1e-2)
    assert len(good.t) == 13
    tol = 1e-3
    # only the eccentric member drifts past tol; its own single run stops at the same step
    for b in range(2):
        kepler.run(Q0[b], P0[b], dt=0.05, steps=400, save_every=10, check_invariants=tol)
    with pytest.raises(InvariantDrift) as single:
        kepler.run(Q0[2], P0[2], dt=0.05, steps=400, save_every=10, check_invariants=tol)
    with pytest.raises(InvariantDrift) as e:
        kepler.run(Q0, P0, dt=0.05, steps=400, save_every=10, batch=3, check_invariants=tol)
    traj, one = e.value.trajectory, single.value.trajectory
    assert e.value.message.startswith("member 2: H drifted by")
    assert f"at step {one.steps_done} " in e.value.message and e.value.exit_code == 3
    assert traj.steps_done == one.steps_done and traj.q.shape == (3, len(one.t), 3)
    assert np.array_equal(traj.q[2], one.q) and np.array_equal(traj.H[2], one.H)
    assert all(v.shape == (3, len(one.t)) for v in traj.monitors.values())
    drift = invariants.drift(traj.H[2])
    assert drift[-1] > tol and np.all(drift[:-1] <= tol)


def test_folded_ensemble_has_monitors_and_is_checked():
    ring = tpc.compile("""system Ring {
    state q[N], p[N]
    H = sum(p * p) / 2 + (sum(i: (q[i + 1] - q[i])^2) + (q[0] - q[N - 1])^2) / 2
}""")
    rng = np.random.default_rng(5)
    q0, p0 = rng.normal(size=(2, 8)), rng.normal(size=(2, 8))
    ens = ring.run(q0, p0, dt=0.1, steps=1000, save_every=100, batch=2)
    assert ens.folded and ens.monitors["P"].shape == (2, 11)
    np.testing.assert_allclose(ens.monitors["P"], ens.p.sum(axis=2), atol=1e-12)
    with pytest.raises(InvariantDrift) as e:
        ring.run(q0, p0, dt=0.1, steps=1000, save_every=100, batch=2, check_invariants=1e-6)
    assert e.value.message.startswith("member ") and "H drifted by" in e.value.message
    kept = e.value.trajectory
    assert kept.q.shape[1] == len(kept.t) == kept.monitors["P"].shape[1] < 11


def test_shadow_hamiltonian_per_member():
    sim = tpc.compile(KEPLER, shadow=True, integrator="yoshida4")
    ens = sim.run(Q0, P0, dt=0.01, steps=300, save_every=30, batch=3)
    for b in range(3):
        one = sim.run(Q0[b], P0[b], dt=0.01, steps=300, save_every=30)
        assert np.array_equal(ens.monitors[invariants.SHADOW][b], one.monitors[invariants.SHADOW])
    lines = invariants.member_summary(sim, ens)
    assert any(ln.startswith("  H_shadow drift: median") for ln in lines)


def write_case(tmp_path, dt: float):
    src = tmp_path / "k.ham"
    src.write_text(OBSERVED + f"""
simulate {{
    integrator = leapfrog
    dt = {dt}
    steps = 400
    save_every = 10
    q = [1.0, 0.0, 0.0]
    p = [0.0, 1.0, 0.0]
}}""")
    ens = tmp_path / "ens.npz"
    np.savez(ens, q=Q0, p=P0)
    return src, ens


def test_cli_ensemble_saves_monitors_and_summarizes(tmp_path, capsys):
    src, ens = write_case(tmp_path, 0.01)
    out = tmp_path / "out.npz"
    assert cli.main(["run", str(src), "--ensemble", str(ens), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "  L_z drift: median" in printed and "observable r: min" in printed
    data = np.load(out)
    assert data["L_z"].shape == (3, 41) and data["r"].shape == (3, 41)
    np.testing.assert_allclose(data["r"], np.linalg.norm(data["q"], axis=2), rtol=1e-15)


def test_cli_ensemble_check_invariants_exit_3_keeps_snapshots(tmp_path, capsys):
    src, ens = write_case(tmp_path, 0.05)
    out = tmp_path / "out.npz"
    code = cli.main(["run", str(src), "--ensemble", str(ens), "-o", str(out), "--quiet",
                     "--check-invariants", "1e-3"])
    err = capsys.readouterr().err
    assert code == 3 and "error: member 2: H drifted by" in err, err
    data = np.load(out)
    rows = len(data["t"])
    assert data["q"].shape == (3, rows, 3) and data["L_z"].shape == (3, rows) and rows < 41
