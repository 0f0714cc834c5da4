"""Ensembles (batch=B): batch-first results, per-member params and inputs, each member equal
to the single run of its data bit for bit, clean errors for bad shapes, reporters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tpc
from tpc.api import PartialRun
from tpc.diagnostics import TpcError

ROOT = Path(__file__).resolve().parent.parent
KEPLER = ROOT / "examples" / "kepler.ham"

# A chain of springs with per-particle masses: an input, so members can differ in it.
SPRINGS = """
system Springs {
    param k = 1.0
    input m[N]
    state x[N], px[N]
    H = sum(i: px[i] * px[i] / (2 * m[i])) + sum(i: k * x[i] * x[i] / 2)
}
"""

# Blows up in a finite time for a large enough start: a member that turns non-finite.
RUNAWAY = """
system Runaway {
    param g = 1.0
    state q[1], p[1]
    H = p[0] * p[0] / 2 - g * q[0]^4
}
"""


@pytest.fixture(scope="module")
def kepler():
    return tpc.compile(KEPLER)


@pytest.fixture(scope="module")
def springs():
    return tpc.compile(SPRINGS, fold=False)


def kepler_members(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.5, 2.0, count)
    q0 = np.tile([0.4, 0.0, 0.0], (count, 1)) * rng.uniform(0.9, 1.1, (count, 1))
    p0 = np.zeros((count, 3))
    p0[:, 1] = np.sqrt(mu / 0.4) * rng.uniform(0.8, 1.2, count)
    return q0, p0, mu


def test_4096_kepler_members_equal_4096_single_runs_bitwise(kepler):
    q0, p0, mu = kepler_members(4096)
    kw = dict(dt=0.01, steps=120, save_every=50)
    ens = kepler.run(q0, p0, params={"mu": mu}, batch=4096, **kw)
    assert ens.q.shape == (4096, 4, 3) and ens.H.shape == (4096, 4) and ens.t.shape == (4,)
    errors = ens.energy_error()
    assert errors.shape == (4096,)
    for b in range(4096):
        one = kepler.run(q0[b], p0[b], params={"mu": mu[b]}, **kw)
        assert np.array_equal(ens.q[b], one.q) and np.array_equal(ens.p[b], one.p)
        assert np.array_equal(ens.H[b], one.H) and np.array_equal(ens.t, one.t)
        assert errors[b] == one.energy_error()
    # the members really differ: mu reaches the code per member
    assert len({float(h) for h in ens.H[:, 0]}) == 4096


def test_threads_do_not_change_the_result(kepler):
    q0, p0, mu = kepler_members(37, seed=1)
    kw = dict(dt=0.01, steps=300, save_every=100, params={"mu": mu}, batch=37)
    one, two = kepler.run(q0, p0, threads=1, **kw), kepler.run(q0, p0, threads=2, **kw)
    assert np.array_equal(one.q, two.q) and np.array_equal(one.H, two.H)


def test_per_member_inputs_and_shared_inputs(springs):
    rng = np.random.default_rng(2)
    x0, px0 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    masses = rng.uniform(0.5, 2.0, (5, 4))
    kw = dict(dt=0.05, steps=40, save_every=10)
    ens = springs.run(x0, px0, batch=5, params={"k": [1, 2, 3, 4, 5]}, m=masses, **kw)
    shared = springs.run(x0, px0, batch=5, m=masses[0], **kw)
    for b in range(5):
        one = springs.run(x0[b], px0[b], params={"k": b + 1.0}, m=masses[b], **kw)
        assert np.array_equal(ens.q[b], one.q) and np.array_equal(ens.H[b], one.H)
        same_m = springs.run(x0[b], px0[b], m=masses[0], **kw)
        assert np.array_equal(shared.p[b], same_m.p)
    # the state keeps its names from the source
    assert ens.names == ("x", "px") and ens["x"] is ens.q and ens["px"] is ens.p
    # harmonic springs: leapfrog's energy error is O(dt^2), small and not zero
    assert np.all(ens.energy_error() < 1e-2) and np.all(ens.energy_error() > 0)


def test_member_returns_a_single_trajectory(kepler):
    q0, p0, mu = kepler_members(3)
    ens = kepler.run(q0, p0, dt=0.01, steps=20, save_every=10, params={"mu": mu}, batch=3)
    m1 = ens.member(1)
    assert m1.batch is None and np.array_equal(m1.q, ens.q[1])
    assert m1.energy_error() == ens.energy_error()[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(params={"mu": np.ones(4)}), "param 'mu' is an array of shape [4]: values per member "
                                      "need batch=B"),
    (dict(params={"mu": np.ones(3)}, batch=4), "param 'mu' needs one value per member, "
                                               "shape [4], got shape [3]"),
    (dict(params={"mu": np.ones((4, 2))}, batch=4), "got shape [4, 2]"),
    (dict(params={"mu": "heavy"}), "param 'mu' must be a number or an array of numbers"),
    (dict(params={"nu": 1.0}), "unknown param 'nu' (known: mu)"),
    (dict(batch=5), "batch=5 needs 'q' with a leading dimension of 5"),
    (dict(batch=0), "batch must be a whole number >= 1"),
    (dict(batch=True), "batch must be a whole number >= 1"),
    (dict(steps="10"), "steps must be a whole number >= 0"),
    (dict(reporter=3), "reporter must be a function"),
    (dict(report_every=0, reporter=print), "report_every must be a whole number >= 1"),
])
def test_bad_ensemble_arguments_are_clean_errors(kepler, kwargs, message):
    q0, p0, _ = kepler_members(4)
    kw = dict(dt=0.01, steps=10) | kwargs
    if "batch" not in kwargs and "params" in kwargs and np.ndim(kwargs["params"].get("mu")) > 0:
        q0, p0 = q0[0], p0[0]  # a single run given an array param
    elif "batch" not in kwargs:
        q0, p0 = q0[0], p0[0]
    with pytest.raises(TpcError) as e:
        kepler.run(q0, p0, **kw)
    assert message in e.value.message


def test_bad_member_inputs_are_clean_errors(springs):
    x0 = np.zeros((3, 4))
    with pytest.raises(TpcError, match="input 'm' given per member needs a leading dimension"):
        springs.run(x0, x0, dt=0.1, steps=1, batch=3, m=np.ones((2, 4)))
    with pytest.raises(TpcError, match="N is 4 from 'x' but 'm' has 5"):
        springs.run(x0, x0, dt=0.1, steps=1, batch=3, m=np.ones(5))
    bad = np.ones((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(TpcError, match=r"member 2: initial value of 'x' is not finite at index 1"):
        springs.run(bad, x0, dt=0.1, steps=1, batch=3, m=np.ones(4))
    with pytest.raises(TpcError, match="member 1: H is not finite at the initial state"):
        springs.run(x0, x0, dt=0.1, steps=1, batch=3, m=np.array([[1.0] * 4, [0.0] * 4,
                                                                   [1.0] * 4]))


def test_a_member_that_blows_up_keeps_the_rows_every_member_has():
    sim = tpc.compile(RUNAWAY)
    q0 = np.array([[0.1], [3.0], [0.2]])
    with pytest.raises(PartialRun) as e:
        sim.run(q0, np.zeros((3, 1)), dt=0.01, steps=10_000, save_every=10, batch=3)
    assert e.value.message.startswith("member 1: the state became non-finite at step ")
    traj = e.value.trajectory
    assert traj.q.shape[0] == 3 and np.isfinite(traj.q).all() and len(traj.t) >= 1
    alone = sim.run(q0[0], np.zeros(1), dt=0.01, steps=(len(traj.t) - 1) * 10, save_every=10)
    assert np.array_equal(traj.q[0], alone.q)


@pytest.mark.parametrize("batch", [None, 3])
def test_reporter_sees_every_snapshot_once_in_order(kepler, batch):
    q0, p0, mu = kepler_members(3)
    if batch is None:
        q0, p0, mu = q0[0], p0[0], mu[0]
    seen = []
    kw = dict(dt=0.01, steps=1050, save_every=100, params={"mu": mu}, batch=batch)
    traj = kepler.run(q0, p0, reporter=seen.append, report_every=5, **kw)
    assert [s.first for s in seen] == [0, 5, 10]  # 12 rows: 0..10 and the remainder row
    axis = 0 if batch is None else 1
    assert np.array_equal(np.concatenate([s.q for s in seen], axis=axis), traj.q)
    assert np.array_equal(np.concatenate([s.t for s in seen]), traj.t)
    assert seen[-1].step == 1050
    plain = kepler.run(q0, p0, **kw)  # the reports cut the native loop, not the result
    assert np.array_equal(plain.q, traj.q)
