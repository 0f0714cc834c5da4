"""precision="f32" end to end: f32 buffers and arithmetic at the loops level, f32 native runs
that agree with f64 ones to float32 accuracy, f32 PTX that ptxas accepts, and f64 unchanged."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tpc
from tpc.diagnostics import TpcError
from tpc.simulate import load_run_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))
TPC = [sys.executable, "-m", "tpc.cli"]
PTXAS = shutil.which("ptxas")


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TPC_CACHE_DIR", str(tmp_path_factory.mktemp("tpc-cache")))
    yield
    mp.undo()


def _pair(name: str, **kw):
    return [tpc.compile(ROOT / "examples" / f"{name}.ham", precision=prec, **kw)
            for prec in ("f64", "f32")]


def _run(sim, steps: int, save_every: int):
    c = load_run_config(sim.program, sim.system, steps=steps, save_every=save_every)
    return sim.run(c.q0, c.p0, dt=c.dt, steps=c.steps, save_every=c.save_every,
                   params=c.params, **c.inputs), c


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


# ------------------------------------------------------------------ native runs


@pytest.mark.parametrize("name,steps", [("kepler", 200), ("nbody", 200), ("pendulum", 500)])
def test_f32_run_agrees_with_f64(name: str, steps: int):
    s64, s32 = _pair(name, fold=False)
    assert s64.dtype == np.float64 and s32.dtype == np.float32
    t64, _ = _run(s64, steps, steps // 4)
    t32, _ = _run(s32, steps, steps // 4)
    assert t64.q.dtype == np.float64 and t64.H.dtype == np.float64
    assert t32.q.dtype == np.float32 and t32.p.dtype == np.float32
    assert t32.H.dtype == np.float64  # energies are evaluated in f64 from the f32 state
    assert t32.q.shape == t64.q.shape and np.array_equal(t32.t, t64.t)
    assert _rel(t64.q, t32.q) < 1e-5
    assert _rel(t64.p, t32.p) < 1e-5
    assert _rel(t64.H, t32.H) < 1e-5


def test_f32_is_really_single_precision():
    """Not silently f64: the f32 run differs from the f64 one at the float32 round-off level."""
    s64, s32 = _pair("kepler", fold=False)
    t64, _ = _run(s64, 200, 50)
    t32, _ = _run(s32, 200, 50)
    assert _rel(t64.q, t32.q) > 1e-9


def test_f32_kepler_energy_error_is_sane():
    s64, s32 = _pair("kepler", fold=False)
    e64 = _run(s64, 2000, 100)[0].energy_error()
    e32 = _run(s32, 2000, 100)[0].energy_error()
    # leapfrog's own O(dt^2) oscillation dominates; float32 round-off adds ~1e-6 to it
    assert e32 < 1e-3
    assert abs(e32 - e64) < 5e-5


@pytest.mark.parametrize("name", ["kepler", "nbody", "pendulum", "henon_heiles"])
def test_f32_gradient_and_energy_agree_with_f64(name: str):
    s64, s32 = _pair(name, fold=False)
    c = load_run_config(s64.program, s64.system)
    g64 = s64.gradient(c.q0, c.p0, c.params, **c.inputs)
    g32 = s32.gradient(c.q0, c.p0, c.params, **c.inputs)
    for a, b in zip(g64, g32):
        assert b.dtype == np.float32
        assert _rel(a, b) < 1e-6
    h64 = s64.energy(c.q0, c.p0, c.params, **c.inputs)
    h32 = s32.energy(c.q0, c.p0, c.params, **c.inputs)
    assert abs(h64 - h32) <= 1e-6 * max(abs(h64), 1.0)


def test_f32_gather_gradient_matches():
    """--no-newton3 (the gather-form grad_q on the CPU) follows the precision too."""
    s64 = tpc.compile(ROOT / "examples" / "nbody.ham", precision="f64", newton3=False)
    s32 = tpc.compile(ROOT / "examples" / "nbody.ham", precision="f32", newton3=False)
    c = load_run_config(s64.program, s64.system)
    for a, b in zip(s64.gradient(c.q0, c.p0, c.params, **c.inputs),
                    s32.gradient(c.q0, c.p0, c.params, **c.inputs)):
        assert b.dtype == np.float32 and _rel(a, b) < 1e-6


@pytest.mark.parametrize("name", ["kepler", "pendulum"])
def test_f32_implicit_midpoint_converges(name: str):
    """The fixed-point tolerance scales with float32 epsilon: no convergence failure."""
    s64, s32 = _pair(name, fold=False, integrator="midpoint")
    t64, _ = _run(s64, 300, 100)
    t32, _ = _run(s32, 300, 100)  # a PartialRun would raise
    assert t32.steps_done == 300
    assert _rel(t64.q, t32.q) < 1e-4


def test_f32_folded_run():
    """Folding reads the f32 one-step map and powers it in f64; rows come back as float32."""
    s64, s32 = _pair("harmonic_chain")
    assert s32.folded
    t64, _ = _run(s64, 1000, 100)
    t32, _ = _run(s32, 1000, 100)
    assert t32.folded and t32.q.dtype == np.float32
    assert _rel(t64.q, t32.q) < 1e-4
    assert t32.energy_error() < 2 * t64.energy_error() + 1e-5


def test_unknown_precision_is_an_error():
    with pytest.raises(TpcError, match="unknown precision 'f16'"):
        tpc.compile(ROOT / "examples" / "kepler.ham", precision="f16")


# ------------------------------------------------------------------ emitted code


# Examples whose own integrator flows parts exactly in ways GPU kernels do not run yet.
GPU_INTEGRATOR = {"outer_solar_system_wh": "leapfrog"}


def _compile(example: Path, *flags: str) -> str:
    if "--emit=ptx" in flags and example.stem in GPU_INTEGRATOR:
        flags = (*flags, "--integrator", GPU_INTEGRATOR[example.stem])
    r = subprocess.run([*TPC, "compile", str(example), *flags, "-o", "-"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_emit_loops_f32(example: Path):
    text = _compile(example, "--emit=loops", "--precision", "f32")
    assert "memref<?xf32>" in text
    # f64 arithmetic only in `energy`, `energy_parts` and `monitors` (evaluated in f64 from
    # the f32 state); elsewhere only the status buffer (step numbers, exact in f64), out_H and
    # the ABI table name f64.
    arith, fn = {}, None
    for ln in text.splitlines()[1:]:
        if m := re.search(r"func\.func (?:private )?@(\w+)", ln):
            fn = m.group(1)
        if any(f"arith.{op}f " in ln for op in ("add", "sub", "mul", "div")):
            arith.setdefault(fn, []).append(ln)
    assert arith["run"] and not [ln for f, lns in arith.items()
                                 if not f.startswith(("energy", "monitors"))
                                 for ln in lns if "f64" in ln]
    assert all("f64" in ln for ln in arith["energy"])
    assert "arith.extf" in text  # the energy widens what it reads
    assert "f32" not in _compile(example, "--emit=loops")


def _arith(ptx: str, ty: str) -> int:
    return len(re.findall(rf"\b(?:add|sub|mul|div|fma|sqrt|rcp)\.[a-z.]*{ty}\b", ptx))


# Compensated updates (--kahan) wherever the integrator is explicit: the kernels then hold
# both the plain f32 code paths and the compensation; anisotropic needs the implicit midpoint.
NO_KAHAN = {"anisotropic"}
# Examples whose own integrator flows a part exactly, which GPU kernels do not run yet
# (tests/test_ptx.py): their PTX is built for plain leapfrog.
GPU_INTEGRATOR = {"outer_solar_system_wh": "leapfrog"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_emit_ptx_f32_passes_ptxas(example: Path, tmp_path: Path):
    from tpc.runtime.ptx import PTXError, find_libdevice

    try:
        find_libdevice()
    except PTXError:
        pytest.skip("CUDA libdevice not installed")
    kahan = example.stem not in NO_KAHAN
    extra = ["--integrator", GPU_INTEGRATOR[example.stem]] if example.stem in GPU_INTEGRATOR \
        else []
    ptx = _compile(example, "--emit=ptx", "--precision", "f32", *extra,
                   *(["--kahan"] if kahan else []))
    assert ".visible .entry ensemble_run(" in ptx
    # The TwoSum of a compensated update: s - x, s - (s - x), ... (six f32 adds per update).
    assert not kahan or ptx.count("sub.rn.f32") >= 4
    f32, f64 = _arith(ptx, "f32"), _arith(ptx, "f64")
    assert f32 > f64 and ("mul.rn.f32" in ptx or "add.rn.f32" in ptx)
    if not re.search(r"\b(?:sin|cos|tan|exp|log|sinh|cosh|tanh)\(", example.read_text()):
        # no contraction: the same rounding as the CPU code (libdevice's own sinf... use fma)
        assert "fma.rn.f32" not in ptx
    # f64 arithmetic is the snapshot energy (inlined into ensemble_run); the kernels without
    # it compute in f32 alone.
    for name in ("pair_forces", "block_run"):
        if f".entry {name}(" in ptx:
            kernel = ptx[ptx.index(f".entry {name}("):]
            kernel = kernel[:kernel.index("\n}\n")]
            assert _arith(kernel, "f64") == 0, name
            assert "ld.shared.b32" in kernel
    if PTXAS is None:
        pytest.skip("ptxas not on PATH: PTX produced but not assembled")
    path = tmp_path / "out.ptx"
    path.write_text(ptx)
    r = subprocess.run([PTXAS, "-arch=sm_90", str(path), "-o", str(tmp_path / "out.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
