"""Periodic boxes: minimum image and cutoffs (ham-periodic), Ewald sums (ham-ewald), against
references written here: a direct minimum-image numpy sum, published Madelung constants, and
a numpy Ewald sum with its own parameters that sums real space over explicit images and
reciprocal space over the whole k lattice."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError

LJ = """
system LJ {{
    box L = {box}
    cutoff rc = 2.5{shift}
    state q[N, 3], p[N, 3]
    let T = sum(i: dot(p[i], p[i]) / 2)
    let V = sum(i < j: 4 * (norm(q[i] - q[j])^-12 - norm(q[i] - q[j])^-6))
    H = T + V
}}
"""

SALT = """
system Salt {{
    param k = {k}
    box L = {box}
    ewald tolerance = {tol}
    input Q[N]
    state q[N, 3], p[N, 3]
    let T = sum(i: dot(p[i], p[i]) / 2)
    let V = k * sum(i < j: Q[i] * Q[j] / norm(q[i] - q[j]))
    H = T + V
}}
"""


def lj_reference(q, box, rc, shift):
    """Energy and dE/dq by all pairs at once (numpy), minimum image per axis."""
    d = q[:, None, :] - q[None, :, :]
    d -= box * np.round(d / box)
    r2 = np.einsum("ijk,ijk->ij", d, d)
    iu = np.triu_indices(len(q), 1)
    inside = np.zeros_like(r2, dtype=bool)
    inside[iu] = r2[iu] < rc * rc
    r2 = np.where(inside, r2, 1.0)
    e_rc = 4 * (rc**-12 - rc**-6) if shift else 0.0
    e = np.sum(np.where(inside, 4 * (r2**-6 - r2**-3) - e_rc, 0.0))
    coef = np.where(inside, 4 * (-12 * r2**-7 + 6 * r2**-4), 0.0)  # (dV/dr) / r
    pair = coef[:, :, None] * d
    return e, pair.sum(axis=1) - pair.sum(axis=0)


@pytest.mark.parametrize("box, shift, pairs", [
    ("6.0", True, "i < j"), ("[6.0, 5.5, 7.0]", False, "i < j"),  # all pairs
    ("12.0", True, "i < j"), ("[7.5, 10.0, 12.5]", False, "i != j"),  # cell lists
])
def test_lennard_jones_is_the_minimum_image_sum(box, shift, pairs):
    lengths = np.array(eval(box) if box.startswith("[") else [float(box)] * 3)
    source = LJ.format(box=box, shift=", shift = energy" if shift else "")
    if pairs == "i != j":
        source = source.replace("sum(i < j: 4 *", "sum(i != j: 2 *")
    sim = tpc.compile(source, fold=False)
    rng = np.random.default_rng(3)
    q = rng.uniform(-2, lengths + 2, (40, 3))  # some particles start outside the box: allowed
    p = rng.normal(size=(40, 3))
    want_e, want_grad = lj_reference(q, lengths, 2.5, shift)
    got_e = sim.energy(q, p) - 0.5 * np.sum(p * p)
    assert abs(got_e - want_e) <= 1e-12 * abs(want_e)
    grad = np.asarray(sim.gradient(q, p)[0]).reshape(-1, 3)
    assert np.abs(grad - want_grad).max() <= 1e-12 * np.abs(want_grad).max()


def test_cell_list_dynamics_match_a_numpy_leapfrog():
    """A Lennard-Jones gas on a 4 x 4 x 4 lattice in a box of 8 (a 3 x 3 x 3 cell list): 25
    kick-drift-kick steps against numpy's, with the minimum-image forces written above."""
    sim = tpc.compile(LJ.format(box="8.0", shift=", shift = energy"), fold=False)
    grid = np.array(list(itertools.product(range(4), repeat=3)), float) * 2.0 + 0.5
    rng = np.random.default_rng(2)
    q, p = grid + rng.normal(0, 0.05, grid.shape), rng.normal(0, 0.5, grid.shape)
    dt, steps = 0.002, 25
    traj = sim.run(q, p, dt=dt, steps=steps, save_every=steps)
    box = np.array([8.0] * 3)
    for _ in range(steps):
        p = p - 0.5 * dt * lj_reference(q, box, 2.5, True)[1]
        q = q + dt * p
        p = p - 0.5 * dt * lj_reference(q, box, 2.5, True)[1]
    np.testing.assert_allclose(traj.q[-1].reshape(-1, 3), q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traj.p[-1].reshape(-1, 3), p, rtol=0, atol=1e-11)


def test_two_particles_across_the_boundary():
    """x = 0.5 and 5.4 in a box of 6 are 1.1 apart, not 4.9."""
    sim = tpc.compile(LJ.format(box="6.0", shift=""), fold=False)
    q = np.array([[0.5, 0, 0], [5.4, 0, 0]])
    assert sim.energy(q, np.zeros((2, 3))) == pytest.approx(4 * (1.1**-12 - 1.1**-6), rel=1e-14)


def rock_salt():
    na = [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]
    cl = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    return np.array(na + cl, float), np.array([1.0] * 4 + [-1.0] * 4)


@pytest.fixture(scope="module")
def salt_cell():
    return tpc.compile(SALT.format(k=1.0, box=2.0, tol=1e-12), fold=False)


def test_madelung_nacl(salt_cell):
    """Rock salt, nearest-neighbour distance 1: E = -M per ion pair, M = 1.747564594633182."""
    q, charges = rock_salt()
    e = salt_cell.energy(q, np.zeros_like(q), Q=charges)
    assert abs(-e / 4 - 1.747564594633182) < 1e-10 * 1.75
    assert np.abs(salt_cell.gradient(q, np.zeros_like(q), Q=charges)[0]).max() < 1e-12


def test_madelung_cscl():
    """CsCl, cube edge a, nearest neighbours at a sqrt(3) / 2: M = 1.762674773070988."""
    sim = tpc.compile(SALT.format(k=1.0, box=1.0, tol=1e-12), fold=False)
    q = np.array([[0.0, 0, 0], [0.5, 0.5, 0.5]])
    e = sim.energy(q, np.zeros_like(q), Q=np.array([1.0, -1.0]))
    assert abs(-e * math.sqrt(3) / 2 - 1.762674773070988) < 1e-10 * 1.77


def numpy_ewald(q, charges, box, alpha, images, n_max):
    """E and dE/dq: real space over explicit images |n| <= images, reciprocal space over the
    whole lattice |n_i| <= n_max (k and -k both), the self term; no minimum image."""
    n = len(q)
    e_real, g_real = 0.0, np.zeros_like(q)
    shifts = [np.array(s) * box for s in itertools.product(range(-images, images + 1), repeat=3)]
    for i in range(n):
        for j in range(n):
            for s in shifts:
                if i == j and not s.any():
                    continue
                d = q[i] - q[j] + s
                r = np.linalg.norm(d)
                e_real += 0.5 * charges[i] * charges[j] * math.erfc(alpha * r) / r
                de_dr = charges[i] * charges[j] * (
                    -2 * alpha / math.sqrt(math.pi) * math.exp(-(alpha * r) ** 2) / r
                    - math.erfc(alpha * r) / r**2)
                g_real[i] += de_dr * d / r  # d/dq_i of the (i, j) and (j, i) terms together
    volume = np.prod(box)
    e_rec, g_rec = 0.0, np.zeros_like(q)
    for idx in itertools.product(range(-n_max, n_max + 1), repeat=3):
        if not any(idx):
            continue
        k = 2 * np.pi * np.array(idx) / box
        k2 = k @ k
        a = 4 * np.pi / volume * math.exp(-k2 / (4 * alpha**2)) / k2 / 2
        phase = q @ k
        c, s = charges @ np.cos(phase), charges @ np.sin(phase)
        e_rec += a * (c * c + s * s)
        g_rec += (a * 2 * (-c * charges * np.sin(phase) + s * charges * np.cos(phase)))[:, None] \
            * k[None, :]
    e_self = -alpha / math.sqrt(math.pi) * np.sum(charges**2)
    return e_real + e_rec + e_self, g_real + g_rec


def random_neutral(n, box, seed):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, box, (n, 3))
    charges = rng.uniform(0.5, 2.0, n) * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    charges -= charges.mean()
    return q, charges


def test_random_neutral_cell_against_numpy_ewald():
    box = 3.0
    q, charges = random_neutral(10, box, seed=7)
    sim = tpc.compile(SALT.format(k=1.5, box=box, tol=1e-13), fold=False)
    p = np.zeros_like(q)
    e = sim.energy(q, p, Q=charges)
    grad = np.asarray(sim.gradient(q, p, Q=charges)[0]).reshape(-1, 3)
    want_e, want_g = numpy_ewald(q, charges, np.array([box] * 3), alpha=1.6, images=3, n_max=9)
    assert abs(e - 1.5 * want_e) < 1e-10 * abs(1.5 * want_e)
    assert np.abs(grad - 1.5 * want_g).max() < 1e-10 * np.abs(1.5 * want_g).max()


def test_energy_does_not_depend_on_the_splitting():
    box = 3.0
    q, charges = random_neutral(12, box, seed=11)
    energies = []
    for tol in (1e-6, 1e-9):
        sim = tpc.compile(SALT.format(k=1.0, box=box, tol=tol), fold=False)
        energies.append((tol, sim.energy(q, np.zeros_like(q), Q=charges)))
    (_, loose), (_, tight) = energies
    assert abs(loose - tight) < 1e-5 * abs(tight)  # the looser sum is good to its tolerance


def test_molten_salt_conserves_momentum_and_energy():
    """64 ions (two by two by two rock-salt cells, jostled) with a short-range repulsion:
    Ewald forces are pair-antisymmetric in real space and sum to zero in reciprocal space,
    so the total momentum stays zero to round-off."""
    cell, unit = rock_salt()
    q = np.concatenate([cell + 2 * np.array(s) for s in itertools.product((0, 1), repeat=3)])
    charges = np.tile(unit, 8)
    rng = np.random.default_rng(1)
    q += rng.normal(0, 0.05, q.shape)
    source = SALT.format(k=1.0, box=4.0, tol="1e-5").replace(
        "H = T + V", "let Vrep = sum(i < j: 0.1 * norm(q[i] - q[j])^-8)\n    H = T + V + Vrep"
    ).replace("ewald tolerance = 1e-5", "ewald tolerance = 1e-5\n    cutoff rc = 1.9, shift = energy")
    sim = tpc.compile(source, fold=False)
    p = rng.normal(0, 0.3, q.shape)
    p -= p.mean(axis=0)
    traj = sim.run(q, p, dt=2e-3, steps=200, save_every=50, Q=charges)
    momentum = traj.p.reshape(len(traj.t), -1, 3).sum(axis=1)
    assert np.abs(momentum).max() < 1e-12
    assert traj.energy_error() < 1e-3


@pytest.mark.parametrize("source, where, message", [
    (LJ.format(box="6.0", shift="").replace("rc = 2.5", "rc = 3.5"), (4, 5),
     "cutoff 3.5 exceeds half the smallest box length (3)"),
    (LJ.format(box="0", shift=""), (3, 13), "a box length must be a finite number > 0"),
    (LJ.format(box="[6, 6]", shift=""), (3, 5), "the box has 2 lengths; 'q' has 3 axes"),
    (LJ.format(box="6.0", shift="").replace("    cutoff rc = 2.5\n", ""), (6, 13),
     "a pair sum in a periodic box needs a cutoff"),
    (SALT.format(k=1, box=2, tol="1e-6, method = pme"), (5, 38),
     "particle-mesh Ewald (method = pme) is not supported yet"),
    (SALT.format(k=1, box=2, tol="1e-6, surface = vacuum"), (5, 39),
     "the vacuum (dipole) surface term is not supported yet"),
    (SALT.format(k=1, box=2, tol="2"), (5, 23), "the Ewald tolerance must lie in"),
    (SALT.format(k=1, box=1000, tol="1e-15\n    cutoff rc = 1.0"), (10, 17),
     "needs a k lattice of 21991 x 21991 x 21991 points"),
    (LJ.format(box="6.0", shift=", shift = half"), (4, 30), "option 'shift' is one of"),
])
def test_bad_periodic_declarations(tmp_path, source, where, message):
    path = tmp_path / "bad.ham"
    path.write_text(source)
    with pytest.raises(TpcError) as err:
        tpc.compile(str(path), fold=False)
    assert message in err.value.message
    assert (err.value.loc.line, err.value.loc.col) == where
    assert "^" in err.value.render()


def test_charges_must_be_neutral_and_finite(salt_cell):
    q, charges = rock_salt()
    with pytest.raises(TpcError, match="needs a neutral cell: the charges 'Q' add up to 1"):
        salt_cell.energy(q, np.zeros_like(q), Q=charges + 0.125)
    with pytest.raises(TpcError, match="initial value of 'Q' is not finite at index 0"):
        salt_cell.energy(q, np.zeros_like(q), Q=np.where(charges > 0, np.nan, charges))


def test_erf_and_erfc_and_their_derivatives():
    """erfc keeps its digits far in the tail, where 1 - erf(x) has none left."""
    sim = tpc.compile("""
    system E {
        state q[2], p[2]
        H = erf(q[0]) + erfc(q[1]) + p[0]^2 / 2 + p[1]^2 / 2
    }
    """, fold=False)
    for x in (0.3, 2.0, 6.0):
        h = sim.energy([x, x], [0.0, 0.0])
        assert h == pytest.approx(math.erf(x) + math.erfc(x), rel=1e-15)
        g = np.asarray(sim.gradient([x, x], [0.0, 0.0])[0])
        slope = 2 / math.sqrt(math.pi) * math.exp(-x * x)
        np.testing.assert_allclose(g, [slope, -slope], rtol=1e-14)
    tail = sim.energy([0.0, 6.0], [0.0, 0.0])
    assert tail == pytest.approx(math.erfc(6.0), rel=1e-14)  # 2.15e-17


def test_tpc_energy_prints_h_and_its_parts(tmp_path, capsys):
    from tpc import cli

    (tmp_path / "cell.json").write_text(
        '{"q": [[0,0,0],[0,1,1],[1,0,1],[1,1,0],[1,0,0],[0,1,0],[0,0,1],[1,1,1]], '
        '"p": [[0,0,0],[0,0,0],[0,0,0],[0,0,0],[0,0,0],[0,0,0],[0,0,0],[0,0,0]], '
        '"Q": [1,1,1,1,-1,-1,-1,-1]}')
    path = tmp_path / "salt.ham"
    path.write_text(SALT.format(k=1.0, box=2.0, tol=1e-12)
                    + 'simulate {\n    dt = 0.01\n    steps = 0\n    init = "cell.json"\n}\n')
    assert cli.main(["energy", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("H = ") and out[1] == "  T = 0"
    assert [ln.split("=")[0].strip() for ln in out[2:]] == ["V_real", "V_recip"]
    h = float(out[0].split("=")[1])
    assert abs(-h / 4 - 1.747564594633182) < 1e-10 * 1.75
    assert sum(float(ln.split("=")[1]) for ln in out[1:]) == pytest.approx(h, rel=1e-15)


def test_periodic_ptx_passes_ptxas(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not on PATH")
    from tpc import cli

    for name, source in (("lj", LJ.format(box="6.0", shift=", shift = energy")),
                         ("salt", SALT.format(k=1.0, box=2.0, tol=1e-6))):
        path = tmp_path / f"{name}.ham"
        path.write_text(source)
        assert cli.main(["compile", str(path), "--emit=ptx", "-o", str(tmp_path / "k.ptx")]) == 0
        subprocess.run(["ptxas", "-arch=sm_90", str(tmp_path / "k.ptx"), "-o", "/dev/null"],
                       check=True)


def test_positions_are_kept_unwrapped_and_given_wrapped(tmp_path):
    """A particle that crosses the box face keeps moving in q (so its displacement is
    q[-1] - q[0]); q_wrapped puts it back in [0, L). A free particle, so the numbers are exact."""
    source = LJ.format(box="6.0", shift="")
    sim = tpc.compile(source, fold=False)
    q = np.array([[5.9, 1.0, 1.0], [2.0, 4.0, 4.0]])
    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    traj = sim.run(q, p, dt=0.05, steps=40, save_every=40)
    np.testing.assert_allclose(traj.q[-1], [[7.9, 1.0, 1.0], [2.0, 4.0, 2.0]], atol=1e-12)
    np.testing.assert_allclose(traj.q_wrapped[-1], [[1.9, 1.0, 1.0], [2.0, 4.0, 2.0]],
                               atol=1e-12)
    from tpc import cli

    path = tmp_path / "gas.ham"
    path.write_text(source + 'simulate {\n    dt = 0.05\n    steps = 40\n    save_every = 40\n'
                    '    init = "gas.json"\n}\n')
    (tmp_path / "gas.json").write_text('{"q": [[5.9, 1, 1], [2, 4, 4]], '
                                       '"p": [[1, 0, 0], [0, 0, -1]]}')
    assert cli.main(["run", str(path), "--quiet", "-o", str(tmp_path / "out.npz")]) == 0
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["box"], [6.0, 6.0, 6.0])
    np.testing.assert_allclose(out["q_wrapped"][-1], traj.q_wrapped[-1], atol=1e-15)


def test_an_ewald_part_splits_for_respa():
    """V = k * sum(Coulomb) becomes V_real (real space + self) and V_recip; respa steps the
    smooth reciprocal forces 4x less often than the short-range ones, and lands closer to a
    fine leapfrog than leapfrog at its outer step does."""
    cell, unit = rock_salt()
    rng = np.random.default_rng(6)
    q = cell + 0.5 + rng.normal(0, 0.05, cell.shape)
    p = rng.normal(0, 0.2, q.shape)
    p -= p.mean(axis=0)
    source = SALT.format(k=1.0, box=2.0, tol="1e-8").replace(
        "H = T + V", "let Vrep = sum(i < j: 0.05 * norm(q[i] - q[j])^-8)\n    H = T + V + Vrep"
    ).replace("ewald tolerance = 1e-8", "ewald tolerance = 1e-8\n    cutoff rc = 1.0")
    respa = tpc.compile(source, fold=False,
                        integrator="respa(slow = V_recip, fast = T + V_real + Vrep, inner = 4)")
    assert respa.native.abi["parts"] == ["T", "V_real", "V_recip", "Vrep"]
    plain = tpc.compile(source, fold=False, integrator="leapfrog(V, T + Vrep)")
    split = respa.run(q, p, dt=0.004, steps=100, save_every=100, Q=unit)
    coarse = plain.run(q, p, dt=0.004, steps=100, save_every=100, Q=unit)
    fine = plain.run(q, p, dt=0.0005, steps=800, save_every=800, Q=unit)
    respa_error = np.abs(split.q[-1] - fine.q[-1]).max()
    coarse_error = np.abs(coarse.q[-1] - fine.q[-1]).max()
    assert respa_error < 0.5 * coarse_error


def test_a_pair_term_that_is_not_symmetric_keeps_its_order():
    """sum(i < j: c[i] * r^-6) weighs each pair by its lower index's c: a cell list visits
    cells in any order and must still call the term with i < j."""
    sim = tpc.compile("""
    system Asym {
        box L = 9.0
        cutoff rc = 2.5
        input c[N]
        state q[N, 3], p[N, 3]
        H = sum(i: dot(p[i], p[i]) / 2) + sum(i < j: c[i] * norm(q[i] - q[j])^-6)
    }
    """, fold=False)
    rng = np.random.default_rng(9)
    lattice = np.array(list(itertools.product(range(5), repeat=3)), float) * 1.8
    q = lattice + rng.normal(0, 0.1, lattice.shape)
    c = rng.uniform(0.5, 2.0, len(q))
    d = q[:, None, :] - q[None, :, :]
    d -= 9.0 * np.round(d / 9.0)
    r2 = np.einsum("ijk,ijk->ij", d, d)
    i, j = np.triu_indices(len(q), 1)
    keep = r2[i, j] < 2.5**2
    want = np.sum(c[i][keep] * r2[i, j][keep] ** -3)
    got = sim.energy(q, np.zeros_like(q), c=c)
    assert got == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("system", ["lj", "salt"])
def test_shadow_hamiltonian_of_periodic_systems(system):
    """The dt^2 shadow term goes through minimum images, cutoffs and erfc: H + dt^2 H2 is
    conserved far better than H. (A modified Hamiltonian needs a smooth H: the interactions
    here are negligible at their cutoffs; a Lennard-Jones cut at 2.5 jumps in force there.)"""
    rng = np.random.default_rng(4)
    if system == "lj":
        soft = LJ.format(box="8.0", shift=", shift = energy").replace(
            "4 * (norm(q[i] - q[j])^-12 - norm(q[i] - q[j])^-6)",
            "3 * exp(-2 * dot(q[i] - q[j], q[i] - q[j]))")
        sim = tpc.compile(soft, fold=False, shadow=True)
        grid = np.array(list(itertools.product(range(4), repeat=3)), float) * 2.0 + 0.5
        q, inputs = grid + rng.normal(0, 0.3, grid.shape), {}
    else:
        source = SALT.format(k=1.0, box=4.0, tol="1e-8").replace(
            "H = T + V", "let Vrep = sum(i < j: 100 * exp(-6 * dot(q[i] - q[j], q[i] - q[j])))\n"
            "    H = T + V + Vrep"
        ).replace("ewald tolerance = 1e-8", "ewald tolerance = 1e-8\n    cutoff rc = 1.9")
        sim = tpc.compile(source, fold=False, shadow=True)
        cell, unit = rock_salt()
        lattice = np.concatenate([cell + 2 * np.array(o) for o in itertools.product((0, 1),
                                                                                       repeat=3)])
        q, inputs = lattice + 0.5 + rng.normal(0, 0.05, lattice.shape), {"Q": np.tile(unit, 8)}
    p = rng.normal(0, 0.3, q.shape)
    traj = sim.run(q, p, dt=0.004, steps=200, save_every=10, **inputs)
    shadow = traj.monitors["H_shadow"]
    shadow_error = np.max(np.abs(shadow - shadow[0])) / abs(shadow[0])
    assert shadow_error < traj.energy_error() / 10
