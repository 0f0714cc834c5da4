"""Compensated state updates (sym-kahan, --kahan): the accuracy they buy in float32 against
independent references (a float64 twin of each run, the exact leapfrog map of a linear
chain from numpy), the energies reported in float64, the compensation as carried run state
(a run split into pieces equals the unsplit run bitwise), and the user-facing switches."""

from __future__ import annotations

import ctypes
import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KEPLER = EXAMPLES / "kepler.ham"
TPC = [sys.executable, "-m", "tpc.cli"]
F32 = np.float32


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


def _f32(x) -> np.ndarray:
    """x rounded to float32, held in float64 (so the f32 run and its f64 twin start alike)."""
    return np.asarray(x, dtype=F32).astype(np.float64)


# ------------------------------------------------------------------ Kepler energy round-off

ECC = 0.5
DT = float(F32(2 * np.pi / 1000))  # 1000 steps per orbit (a = mu = 1), exact in f32
ORBIT = 1000


def _kepler_copies(count: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """The e = 0.5 orbit started at pericentre, rotated to random orientations (each copy
    rounds differently), rounded to f32."""
    rng = np.random.default_rng(seed)
    q = np.array([1 - ECC, 0.0, 0.0])
    p = np.array([0.0, np.sqrt((1 + ECC) / (1 - ECC)), 0.0])
    out = []
    for _ in range(count):
        a, b = rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        out.append((_f32(rx @ rz @ q), _f32(rx @ rz @ p)))
    return out


def _kepler_h(q, p) -> np.ndarray:
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    return 0.5 * np.sum(p * p, -1) - 1.0 / np.linalg.norm(q, axis=-1)


def last_orbit_energy(sim, q0, p0, steps: int) -> float:
    """The mean energy (numpy, float64, from the run's state) over the last orbit of a
    `steps`-step run: averaging over an orbit removes leapfrog's own O(dt^2) oscillation,
    which a phase difference between two runs would otherwise turn into a spurious error.
    The run goes in two pieces (the compensation carried across) so that only the last
    orbit is sampled."""
    a = sim.run(q0, p0, dt=DT, steps=steps - ORBIT, save_every=steps - ORBIT)
    b = sim.run(a.q[-1], a.p[-1], dt=DT, steps=ORBIT, save_every=10, carry=a.carry)
    return float(np.mean(_kepler_h(b.q[1:], b.p[1:])))


def roundoff_energy_error(sim, twin, copies, steps: int) -> np.ndarray:
    """Per copy: |<H>_last orbit (run) - <H>_last orbit (its twin)| / |H0|, the twin a
    higher-precision run from the same (f32-rounded) start: the truncation error of leapfrog
    is the same in both, so the difference is the run's round-off part."""
    return np.array([abs(last_orbit_energy(sim, q, p, steps) - last_orbit_energy(twin, q, p,
                                                                                   steps))
                     / abs(_kepler_h(q, p)) for q, p in copies])


def test_kepler_f32_kahan_energy_roundoff():
    """Kepler e = 0.5, dt = 2 pi / 1000, 10^6 steps, 32 rotated copies; the measure is the
    median over the copies of the round-off part of the energy error. f32+Kahan reaches
    the goal of 1e-6 (measured 6e-7 to 8e-7), plain f32 is more than 10x worse (4e-5)."""
    f32 = tpc.compile(KEPLER, precision="f32")
    f32k = tpc.compile(KEPLER, precision="f32", kahan=True)
    f64 = tpc.compile(KEPLER, precision="f64")
    copies = _kepler_copies(32)
    plain = np.median(roundoff_energy_error(f32, f64, copies, 10**6))
    kahan = np.median(roundoff_energy_error(f32k, f64, copies, 10**6))
    assert kahan <= 1e-6, kahan
    assert plain >= 10 * kahan, (plain, kahan)


def test_f64_kahan_is_closer_to_exact_summation():
    """f64+Kahan (REBOUND-style compensated f64) is a valid twin: its difference from plain
    f64 is f64's own round-off, far below f32's (measured ~1e-14 at 10^6 steps)."""
    f64 = tpc.compile(KEPLER, precision="f64")
    f64k = tpc.compile(KEPLER, precision="f64", kahan=True)
    err = roundoff_energy_error(f64, f64k, _kepler_copies(4), 10**5)
    assert 0 < np.max(err) < 1e-12


# ------------------------------------------------------------------ reported energies


def test_f32_energies_are_evaluated_in_f64():
    """H of an f32 run is float64: the energy of each stored f32 state evaluated in float64
    (numpy's evaluation of the same state agrees to f64 round-off, far below f32's 6e-8)."""
    sim = tpc.compile(KEPLER, precision="f32", kahan=True)
    (q0, p0), = _kepler_copies(1)
    traj = sim.run(q0, p0, dt=DT, steps=5000, save_every=500)
    assert traj.q.dtype == np.float32 and traj.H.dtype == np.float64
    ref = _kepler_h(traj.q, traj.p)
    assert np.max(np.abs(traj.H - ref)) <= 1e-15 * np.max(np.abs(ref))
    e = sim.energy(traj.q[-1], traj.p[-1])
    assert isinstance(e, float) and abs(e - ref[-1]) <= 1e-15 * abs(ref[-1])


# ------------------------------------------------------------------ carried state


def _nbody_state(n: int = 8, seed: int = 3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3)) * 3, rng.standard_normal((n, 3)) * 0.1,
            rng.random(n) + 0.5)


@pytest.mark.parametrize("precision", ["f32", "f64"])
@pytest.mark.parametrize("name", ["kepler", "nbody"])
def test_split_run_equals_unsplit_bitwise(name: str, precision: str):
    """A run in two pieces, the second given the first's carry, is the unsplit run bit for
    bit (snapshots, energies, final compensation); without the carry it is not."""
    sim = tpc.compile(EXAMPLES / f"{name}.ham", precision=precision, kahan=True)
    if name == "kepler":
        (q0, p0), inputs = _kepler_copies(1)[0], {}
    else:
        q0, p0, m = _nbody_state()
        inputs = {"m": m}
    kw = dict(dt=1e-2, save_every=100, **inputs)
    full = sim.run(q0, p0, steps=1000, **kw)
    a = sim.run(q0, p0, steps=400, **kw)
    b = sim.run(a.q[-1], a.p[-1], steps=600, carry=a.carry, **kw)
    assert sorted(full.carry) == ["kahan_p", "kahan_q"]
    assert full.carry["kahan_q"].shape == full.q.shape[1:]
    assert full.carry["kahan_q"].dtype == sim.dtype
    assert np.any(full.carry["kahan_q"] != 0)
    for got, want in ((b.q, full.q[4:]), (b.p, full.p[4:]), (b.H, full.H[4:]),
                      (np.concatenate([a.q, b.q[1:]]), full.q)):
        assert np.array_equal(got, want)
    for k in full.carry:
        assert np.array_equal(b.carry[k], full.carry[k])
    fresh = sim.run(a.q[-1], a.p[-1], steps=600, **kw)
    assert not np.array_equal(fresh.q, b.q)


def test_batch_members_carry_their_own_compensation():
    sim = tpc.compile(KEPLER, precision="f32", kahan=True)
    copies = _kepler_copies(3)
    q0, p0 = np.stack([c[0] for c in copies]), np.stack([c[1] for c in copies])
    full = sim.run(q0, p0, dt=DT, steps=900, save_every=300, batch=3)
    a = sim.run(q0, p0, dt=DT, steps=300, save_every=300, batch=3)
    b = sim.run(a.q[:, -1], a.p[:, -1], dt=DT, steps=600, save_every=300, batch=3,
                carry=a.carry)
    assert full.carry["kahan_p"].shape == (3, 3)
    assert np.array_equal(b.q[:, -1], full.q[:, -1])
    assert np.array_equal(b.p[:, -1], full.p[:, -1])
    assert np.array_equal(b.carry["kahan_q"], full.carry["kahan_q"])


def test_npz_output_carries_the_compensation(tmp_path: Path):
    """`tpc run --precision f32 --kahan` writes the compensation as named arrays; passing
    them back continues the run bitwise."""
    out = tmp_path / "k.npz"
    r = subprocess.run([*TPC, "run", str(KEPLER), "--precision", "f32", "--kahan", "--steps",
                        "400", "--save-every", "100", "--quiet", "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    data = np.load(out)
    assert bool(data["kahan"]) and str(data["precision"]) == "f32"
    assert data["kahan_q"].dtype == np.float32 and data["kahan_q"].shape == (3,)
    assert data["H"].dtype == np.float64
    sim = tpc.compile(KEPLER, precision="f32", kahan=True)
    q0, p0, dt = data["q"][0], data["p"][0], float(data["dt"])
    full = sim.run(q0, p0, dt=dt, steps=1000, save_every=100)
    assert np.array_equal(data["q"], full.q[:5])
    rest = sim.run(data["q"][-1], data["p"][-1], dt=dt, steps=600, save_every=100,
                   carry={k: data[k] for k in ("kahan_q", "kahan_p")})
    assert np.array_equal(rest.q, full.q[4:]) and np.array_equal(rest.p, full.p[4:])


def test_carry_errors():
    sim = tpc.compile(KEPLER, precision="f32", kahan=True)
    with pytest.raises(TpcError, match="carry 'kahan_x' is not run state"):
        sim.run([1, 0, 0], [0, 1, 0], dt=0.01, steps=10, carry={"kahan_x": np.zeros(3)})
    with pytest.raises(TpcError, match="carry 'kahan_q' has 2 values; the state has 3"):
        sim.run([1, 0, 0], [0, 1, 0], dt=0.01, steps=10, carry={"kahan_q": np.zeros(2)})
    plain = tpc.compile(KEPLER, precision="f32")
    with pytest.raises(TpcError, match="compile with kahan=True"):
        plain.run([1, 0, 0], [0, 1, 0], dt=0.01, steps=10, carry={"kahan_q": np.zeros(3)})


# ------------------------------------------------------------------ harmonic chain

CHAIN_N = 16


def _chain_exact(q0, p0, dt: float, steps: int) -> np.ndarray:
    """(q, p) after `steps` leapfrog (kick-drift-kick) steps of the unit chain with walls,
    from the exact one-step matrix raised to the power in float64 (numpy, by squaring)."""
    n = CHAIN_N
    k = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    eye, zero = np.eye(n), np.zeros((n, n))
    kick = np.block([[eye, zero], [-dt / 2 * k, eye]])
    drift = np.block([[eye, dt * eye], [zero, eye]])
    step = kick @ drift @ kick
    power, base = np.eye(2 * n), step
    while steps:
        if steps & 1:
            power = power @ base
        base, steps = base @ base, steps >> 1
    return power @ np.concatenate([q0, p0])


@pytest.mark.parametrize("seed", [0, 1])
def test_chain_f32_kahan_tracks_the_exact_leapfrog_map(seed: int):
    """After 10^6 steps the f32+Kahan chain is >= 10x closer to the exact leapfrog map than
    plain f32 (measured 62x at this dt). The gain is bounded by the f32 force round-off,
    which Kahan does not see and which grows against the update round-off like dt * omega:
    at the example's dt = 0.05 it is only ~2x (docs/precision.md)."""
    dt, steps = float(F32(0.02)), 10**6
    rng = np.random.default_rng(seed)
    q0, p0 = _f32(rng.standard_normal(CHAIN_N) / 2), _f32(rng.standard_normal(CHAIN_N) / 2)
    exact = _chain_exact(q0, p0, dt, steps)
    err = {}
    for kahan in (False, True):
        sim = tpc.compile(EXAMPLES / "harmonic_chain.ham", precision="f32", kahan=kahan,
                          fold=False)  # kahan never folds; plain f32 steps too
        traj = sim.run(q0, p0, dt=dt, steps=steps, save_every=steps)
        assert not traj.folded
        z = np.concatenate([traj.q[-1], traj.p[-1]]).astype(np.float64)
        err[kahan] = np.max(np.abs(z - exact)) / np.max(np.abs(exact))
    assert err[False] >= 10 * err[True], err


# ------------------------------------------------------------------ asking for it


def _ham(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "k.ham"
    text = KEPLER.read_text().replace("simulate {", "simulate {\n" + extra, 1)
    path.write_text(text)
    return path


def test_simulate_block_keys(tmp_path: Path):
    path = _ham(tmp_path, "    precision = f32\n    kahan = true\n")
    sim = tpc.compile(path)
    assert sim.options.precision == "f32" and sim.options.kahan
    assert sim.native.carry == ["kahan_q", "kahan_p"]
    off = tpc.compile(path, kahan=False, precision="f64")  # the caller's choice wins
    assert off.options.precision == "f64" and not off.options.kahan
    r = subprocess.run([*TPC, "run", str(path), "--steps", "100", "--quiet", "--no-kahan"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    data = np.load(path.with_suffix(".npz"))
    assert str(data["precision"]) == "f32" and not bool(data["kahan"])
    assert "kahan_q" not in data.files


@pytest.mark.parametrize("line,message", [
    ("kahan = maybe", "kahan must be true or false, got maybe"),
    ("kahan = 1", "kahan must be true or false, got 1"),
    ("precision = f16", "unknown precision 'f16' (known: f64, f32)"),
])
def test_bad_simulate_keys_are_located_errors(tmp_path: Path, line: str, message: str):
    path = _ham(tmp_path, f"    {line}\n")
    r = subprocess.run([*TPC, "run", str(path), "--steps", "10"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    col = line.index("=") + 7
    assert f"k.ham:8:{col}: error: {message}" in r.stderr, r.stderr
    assert "^" in r.stderr


def test_kahan_refuses_what_it_cannot_compensate():
    with pytest.raises(TpcError, match="implicit midpoint stage is not one"):
        tpc.compile(EXAMPLES / "anisotropic.ham", kahan=True)  # its block says midpoint
    with pytest.raises(TpcError, match="integrator 'exact' runs only folded"):
        tpc.compile(EXAMPLES / "harmonic_chain.ham", kahan=True, integrator="exact")


def test_kahan_refuses_exact_flows_of_parts_at_the_integrator(tmp_path: Path):
    """Wisdom-Holman's Kepler drift maps the state as a whole: refused where the integrator
    is written, from `tpc run` as from `tpc compile`."""
    example = EXAMPLES / "outer_solar_system_wh.ham"
    for argv in (["run", str(example), "--steps", "10", "-o", str(tmp_path / "x.npz")],
                 ["compile", str(example), "--emit=loops", "-o", str(tmp_path / "x.mlir")]):
        r = subprocess.run([*TPC, *argv, "--kahan"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        first = r.stderr.splitlines()[0]
        assert first.startswith(f"{example}:20:18: error: sym-kahan:"), first
        assert "exact kepler flow of parts [@Hkep_q, @Hkep_p]" in first


def test_kahan_skips_folding_and_says_so():
    sim = tpc.compile(EXAMPLES / "harmonic_chain.ham", precision="f32", kahan=True)
    assert not sim.folded and "compensated updates (--kahan)" in sim.fold_reason
    r = subprocess.run([*TPC, "run", str(EXAMPLES / "harmonic_chain.ham"), "--kahan",
                        "--remarks", "--quiet", "-o", "/dev/null"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "remark: not folded: compensated updates (--kahan)" in r.stderr
    assert "carried in kahan_q, kahan_p" in r.stderr


# ------------------------------------------------------------------ the GPU schedule
# (f32+Kahan PTX for every example through ptxas: tests/test_precision.py)


@functools.cache
def _nbody_kahan(precision: str):
    """(simulation, its block_run_host) for N-body with kahan and gather-form forces."""
    sim = tpc.compile(EXAMPLES / "nbody.ham", precision=precision, kahan=True, newton3=False)
    return sim, _block_host(sim)[1]


def _block_host(sim):
    """block_run_host (the CPU emulation of block_run's schedule) for a kahan simulation."""
    from tpc.passes.sym_gpu_kernels import block_host_module
    from tpc.passes.sym_lower_loops import float_type
    from tpc.runtime.jit import compile_llvm_module

    from tpc import lowering, pipeline

    module = sim.module.clone()
    runner = pipeline.PassRunner()
    lowering.lower(module, "sym", sim.options, runner)
    host = block_host_module(module, float_type(sim.options.precision))
    lowering.make_loops(module, runner, sim.options.newton3, sim.options.precision)
    for op in list(host.ops):
        op.detach()
        module.body.block.add_op(op)
    lib = compile_llvm_module(module)
    real = ctypes.c_float if sim.dtype == F32 else ctypes.c_double
    fn = lib.get("block_run_host", None, [*[ctypes.c_void_p] * 4, ctypes.c_int64, real,
                                          *[ctypes.c_int64] * 3, *[ctypes.c_void_p] * 6])
    return lib, fn


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_block_run_schedule_matches_cpu_bitwise(precision: str):
    """block_run's schedule with compensated updates (gather-form rows, then the
    compensated row updates), emulated on the CPU, is the CPU run with gather-form forces
    (--no-newton3: the same arithmetic in the same order) bit for bit, compensation
    included, across two launches."""
    sim, fn = _nbody_kahan(precision)
    q0, p0, m = _nbody_state(13)
    ref = sim.run(q0, p0, dt=1e-3, steps=8, save_every=4, m=m)
    env = sim.bind(q0, p0, None, {"m": m})
    n = env.q.size
    kq, kp = np.zeros(n, sim.dtype), np.zeros(n, sim.dtype)
    status, g = np.full(1, -1.0), np.empty(n, sim.dtype)
    for step in (0, 4):
        oq, op_ = np.empty(n, sim.dtype), np.empty(n, sim.dtype)
        fn(env.q.ctypes.data, env.p.ctypes.data, env.params.ctypes.data,
           env.inputs["m"].ctypes.data, 13, 1e-3, 1, 4, step, oq.ctypes.data, op_.ctypes.data,
           g.ctypes.data, status.ctypes.data, kq.ctypes.data, kp.ctypes.data)
    assert status[0] == -1
    assert np.array_equal(env.q.ravel(), ref.q[-1].ravel())
    assert np.array_equal(env.p.ravel(), ref.p[-1].ravel())
    assert np.array_equal(kq, ref.carry["kahan_q"].ravel())
    assert np.array_equal(kp, ref.carry["kahan_p"].ravel())


def test_run_blocks_host_side_carries_the_compensation():
    """CudaSimulation.run_blocks hands the per-member compensation buffers to every launch
    and returns them (block_run played by block_run_host per member, f64 so that the fake
    driver's one dtype holds)."""
    from fake_cuda import FakeDriver
    from tpc.runtime.cuda import CudaSimulation, Manifest

    sim, fn = _nbody_kahan("f64")
    B, n = 2, 5
    k = 3 * n

    def kernel(q, p, par, m, size, dt, count, stride, step, oq, op, status, kq, kp, pstride,
               block, grid):
        c = int(count)
        for b in range(grid[0]):
            sl = slice(b * k, (b + 1) * k)
            qb, pb, kqb, kpb = q[sl].copy(), p[sl].copy(), kq[sl].copy(), kp[sl].copy()
            oqb, opb = np.empty(c * k), np.empty(c * k)
            fn(qb.ctypes.data, pb.ctypes.data, par.ctypes.data, m.ctypes.data, size, dt,
               count, stride, step, oqb.ctypes.data, opb.ctypes.data, np.empty(k).ctypes.data,
               status[b:b + 1].ctypes.data, kqb.ctypes.data, kpb.ctypes.data)
            q[sl], p[sl], kq[sl], kp[sl] = qb, pb, kqb, kpb
            oq[b * c * k:(b + 1) * c * k], op[b * c * k:(b + 1) * c * k] = oqb, opb

    gpu = object.__new__(CudaSimulation)
    man = Manifest(["block_run"], {"G": 1.0}, ["m"], ["N"], ["N", 3], "sm_90",
                   carry=["kahan_q", "kahan_p"])
    gpu.drv, gpu.manifest, gpu.kernels = FakeDriver(), man, {"block_run": kernel}
    states = [_nbody_state(n, seed) for seed in (4, 5)]
    q, p = np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
    m = states[0][2]
    res = gpu.run_blocks(q, p, dt=1e-3, steps=8, save_every=3, m=m)
    assert (res.status == -1).all() and res.carry["kahan_q"].shape == (B, n, 3)
    for b in range(B):
        ref = sim.run(q[b], p[b], dt=1e-3, steps=8, save_every=3, m=m)
        assert np.array_equal(res.q[:, b], ref.q) and np.array_equal(res.p[:, b], ref.p)
        assert np.array_equal(res.carry["kahan_p"][b], ref.carry["kahan_p"])
