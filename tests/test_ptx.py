"""PTX back end: every example compiles to PTX that ptxas accepts, kernels are `.entry`,
transcendental math goes through libdevice, and the failure modes give clear errors."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cuda import FakeDriver
from tpc.runtime.ptx import PTXError, check_intrinsics, find_libdevice, module_to_ptx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))
PTXAS = shutil.which("ptxas")
TPC = [sys.executable, "-m", "tpc.cli"]

try:
    find_libdevice()
    HAVE_LIBDEVICE = True
except PTXError:
    HAVE_LIBDEVICE = False

needs_libdevice = pytest.mark.skipif(not HAVE_LIBDEVICE, reason="CUDA libdevice not installed")


# Examples whose own integrator flows a part exactly in a way GPU kernels do not run yet
# (test_exact_flows_are_refused_for_ptx): their PTX is built for plain leapfrog.
GPU_INTEGRATOR = {"outer_solar_system_wh": "leapfrog"}


def compile_ptx(path: Path, out: Path) -> str:
    extra = ["--integrator", GPU_INTEGRATOR[path.stem]] if path.stem in GPU_INTEGRATOR else []
    r = subprocess.run([*TPC, "compile", str(path), "--emit=ptx", "-o", str(out), *extra],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out.read_text()


def test_exact_flows_are_refused_for_ptx(tmp_path: Path):
    example = ROOT / "examples" / "outer_solar_system_wh.ham"
    r = subprocess.run([*TPC, "compile", str(example), "--emit=ptx", "-o",
                        str(tmp_path / "x.ptx")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{example}:20:18: error: sym-gpu-kernels: integrator "
                            "'leapfrog(Hkep, Hjump, Hint)' flows parts")
    assert "GPU kernels do not run yet" in first


@needs_libdevice
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_ptx_passes_ptxas(example: Path, tmp_path: Path):
    ptx = compile_ptx(example, tmp_path / "out.ptx")
    assert ".visible .entry ensemble_run(" in ptx
    assert "__nvvm_reflect" not in ptx and "llvm." not in ptx
    if PTXAS is None:
        pytest.skip("ptxas not on PATH: PTX produced but not assembled")
    r = subprocess.run([PTXAS, "-arch=sm_90", str(tmp_path / "out.ptx"), "-o",
                        str(tmp_path / "out.cubin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_libdevice
def test_default_output_path(tmp_path: Path):
    src = tmp_path / "kepler.ham"
    shutil.copy(ROOT / "examples" / "kepler.ham", src)
    r = subprocess.run([*TPC, "compile", str(src), "--emit=ptx"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert ".entry ensemble_run" in (tmp_path / "kepler.ptx").read_text()


def _nvptx_ir(source: str) -> str:
    from tpc.runtime.ptx import to_nvptx_ir

    from tpc import api, lowering, pipeline

    sim = api.compile(source)
    module = sim.module.clone()
    from dataclasses import replace

    lowering.lower(module, "ptx", replace(sim.options, fold=False), pipeline.PassRunner())
    irmod, kernels = to_nvptx_ir(module)
    assert kernels == ["ensemble_run"]
    return str(irmod)


PENDULUM = """system P {
    param g = 9.81
    state q[1], p[1]
    H = p[0]^2 / 2 - g * cos(q[0])
}"""


def test_sin_goes_through_libdevice():
    text = _nvptx_ir(PENDULUM)
    assert "llvm.sin" not in text and "llvm.cos" not in text
    assert "__nv_sin" in text
    assert 'define ptx_kernel void @"ensemble_run"' in text or \
        "define ptx_kernel void @ensemble_run" in text
    assert "define internal" in text
    check_intrinsics(text)  # nothing outside the allowlist


BAD = """llvm.func @ensemble_run(%x: f64) {
  %y = llvm.call_intrinsic "llvm.sin.f64"(%x) : (f64) -> f64
  llvm.return
}"""


def test_unknown_intrinsic_is_refused():
    from tpc.pipeline import parse_ir

    module = parse_ir(BAD, "<bad>")
    with pytest.raises(PTXError, match=r"llvm\.sin\.f64.*no NVPTX lowering"):
        module_to_ptx(module)


def test_check_intrinsics_allowlist():
    check_intrinsics("call double @llvm.sqrt.f64(double %x)\n"
                     "call i32 @llvm.nvvm.read.ptx.sreg.tid.x()")
    with pytest.raises(PTXError, match="llvm.pow.f64"):
        check_intrinsics("call double @llvm.pow.f64(double %x, double %y)")


def test_missing_libdevice_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TPC_LIBDEVICE", raising=False)
    with pytest.raises(PTXError, match="libdevice not found.*CUDA_HOME"):
        find_libdevice([str(tmp_path)])
    monkeypatch.setenv("TPC_LIBDEVICE", str(tmp_path / "nope.bc"))
    with pytest.raises(PTXError, match="TPC_LIBDEVICE"):
        find_libdevice()


def test_missing_libdevice_in_module_to_ptx(tmp_path: Path, monkeypatch):
    from dataclasses import replace

    from tpc import api, lowering, pipeline

    monkeypatch.delenv("TPC_LIBDEVICE", raising=False)
    sim = api.compile(PENDULUM)
    module = sim.module.clone()
    lowering.lower(module, "ptx", replace(sim.options, fold=False), pipeline.PassRunner())
    with pytest.raises(PTXError, match="libdevice not found"):
        module_to_ptx(module, libdevice_roots=[str(tmp_path)])


def test_no_kernel_is_refused():
    from tpc.pipeline import parse_ir

    module = parse_ir("llvm.func @f() {\n  llvm.return\n}", "<nokernel>")
    with pytest.raises(PTXError, match="no GPU kernel"):
        module_to_ptx(module)


def test_cpu_path_does_not_import_pycuda():
    code = ("import sys, tpc.api as a; s = a.compile('examples/kepler.ham'); "
            "s.run([0.4, 0, 0], [0, 2, 0], dt=0.01, steps=10); "
            "assert 'pycuda' not in sys.modules and 'tpc.runtime.cuda' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_require_cuda_without_pycuda_is_clear():
    pytest.importorskip("numpy")
    try:
        import pycuda  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyCUDA is installed here")
    from tpc.runtime.cuda import require_cuda

    from tpc.diagnostics import TpcError

    with pytest.raises(TpcError, match="install the cuda extra"):
        require_cuda()


# ------------------------------------------------------------------ pair_forces


@needs_libdevice
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nbody_pair_forces_ptx(arch: str, tmp_path: Path):
    """nbody's PTX has the tiled gather kernel: an entry, shared-memory tiles, barriers."""
    from tpc import api
    from tpc.gpu import compile_ptx

    ptx, man = compile_ptx(api.compile(ROOT / "examples" / "nbody.ham", fold=False), arch)
    assert ".visible .entry pair_forces(" in ptx and ".visible .entry ensemble_run(" in ptx
    assert man.kernels == ["ensemble_run", "pair_forces", "block_run"]
    body = ptx[ptx.index(".entry pair_forces("):]
    body = body[:body.index("\n}\n")]
    assert ".shared .align 8 .b8 __tpc_tile_q[6144]" in ptx  # 256 rows of 3 f64
    assert ".shared .align 8 .b8 __tpc_tile_m[2048]" in ptx
    assert body.count("bar.sync") == 2  # after loading a tile, before overwriting it
    assert "st.shared.b64" in body and "ld.shared.b64" in body
    assert "%tid.x" in body and "%ctaid.x" in body and "%ntid.x" in body
    assert "atom." not in body  # gather form: no atomics
    if PTXAS is None:
        pytest.skip("ptxas not on PATH: PTX produced but not assembled")
    (tmp_path / "nbody.ptx").write_text(ptx)
    r = subprocess.run([PTXAS, f"-arch={arch}", "-v", str(tmp_path / "nbody.ptx"), "-o",
                        str(tmp_path / "nbody.cubin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Compiling entry function 'pair_forces'" in r.stderr


@needs_libdevice
def test_no_pair_forces_without_pair_sum():
    from tpc import api
    from tpc.gpu import compile_ptx

    ptx, man = compile_ptx(api.compile(ROOT / "examples" / "kepler.ham", fold=False))
    assert man.kernels == ["ensemble_run"] and "pair_forces" not in ptx


MIXED = """system Mixed {
    param k = 0.3, a = 0.7
    input m[N]
    state q[N, 3], p[N, 3]
    H = sum(i: dot(p[i], p[i]) / (2 * m[i])) + sum(i: k * m[i] * dot(q[i], q[i]))
        - sum(i < j: m[i] * m[j] / norm(q[i] - q[j]))
        + sum(i != j: a * m[i] * q[i, 0] * exp(-dot(q[i] - q[j], q[i] - q[j])))
}"""

RING = """system Ring {
    param K = 1.5
    state q[N], p[N]
    H = sum(i: p[i]^2 / 2) - K * sum(i < j: cos(q[i] - q[j]) * (1 + 0.1 * q[i]))
}"""


def _sym_module(sim):
    from dataclasses import replace

    from tpc import lowering, pipeline

    module = sim.module.clone()
    runner = pipeline.PassRunner()
    lowering.lower(module, "sym", replace(sim.options, fold=False), runner)
    runner.run(module, ["sym-lower-flows"])
    return module, runner


def _env_types(sim):
    return [ctypes.c_void_p] * (3 + len(sim.info.inputs)) + [ctypes.c_int64] * len(sim.info.sizes)


_ALIVE = []  # the bound buffers must outlive the raw pointers handed out


def _env(sim, q, p, inputs):
    bound = sim.bind(q, p, None, inputs)
    _ALIVE.append(bound)
    return bound.q, bound.p, sim.native.env_args(bound)


@pytest.mark.parametrize("source", ["nbody", MIXED, RING], ids=["nbody", "mixed", "ring"])
def test_gather_form_matches_scatter_gradient(source: str):
    """The CPU twin of pair_forces (same gather loops, no tiles) against the scatter-form
    grad_q/grad_p: `<` and `!=` pairs (asymmetric bodies), single sums, a column index, a
    scalar state. Validates the gather math without a GPU."""
    import ctypes

    import numpy as np
    from tpc.passes.sym_gpu_kernels import gather_module
    from tpc.runtime.jit import compile_llvm_module

    from tpc import api, lowering

    sim = api.compile(ROOT / "examples" / "nbody.ham" if source == "nbody" else source,
                      fold=False)
    module, runner = _sym_module(sim)
    host = gather_module(next(op for op in module.ops if op.name == "ham.system"))
    assert [f.sym_name.data for f in host.ops] == ["gather_q_host", "gather_p_host"]
    lowering.make_loops(module, runner)
    for op in list(host.ops):
        op.detach()
        module.body.block.add_op(op)
    lib = compile_llvm_module(module)
    rng = np.random.default_rng(3)
    n = 29
    shape = (n, 3) if len(sim.info.shape) == 2 else (n,)
    q, p = rng.standard_normal(shape), rng.standard_normal(shape)
    inputs = {"m": rng.random(n) + 0.5} if sim.info.inputs else {}
    ref = sim.gradient(q, p, **inputs)
    qq, pp, env = _env(sim, q, p, inputs)
    for tag, want in zip("qp", ref):
        got = np.full_like(qq, np.nan)
        lib.get(f"gather_{tag}_host", None, [*_env_types(sim), ctypes.c_void_p])(
            *env, got.ctypes.data)
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), tag


def test_gather_unsupported_reasons():
    from tpc.passes.sym_gpu_kernels import gather_unsupported, gpu_kernel_module

    from tpc import api

    for name, why in (("harmonic_chain", "accumulate outside a row loop"),
                      ("kepler", "accumulate outside a row loop")):
        sim = api.compile(ROOT / "examples" / f"{name}.ham", fold=False)
        module, _ = _sym_module(sim)
        system = next(op for op in module.ops if op.name == "ham.system")
        assert why in gather_unsupported(system)
        assert not list(gpu_kernel_module(system).ops)


# ------------------------------------------------------------------ block_run


def _block_host(sim):
    """(lib, block_run_host) for a simulation: the CPU emulation of block_run's schedule."""
    import ctypes

    from tpc.passes.sym_gpu_kernels import block_host_module
    from tpc.runtime.jit import compile_llvm_module

    from tpc import lowering

    module, runner = _sym_module(sim)
    host = block_host_module(module)
    assert [f.sym_name.data for f in host.ops] == ["block_run_host"]
    lowering.make_loops(module, runner)
    for op in list(host.ops):
        op.detach()
        module.body.block.add_op(op)
    lib = compile_llvm_module(module)
    fn = lib.get("block_run_host", None, [*_env_types(sim), ctypes.c_double, ctypes.c_int64,
                                          ctypes.c_int64, ctypes.c_int64, *[ctypes.c_void_p] * 4])
    return lib, fn


def _block_host_run(sim, fn, q, p, dt, steps, save, **inputs):
    """Snapshots [rows, n] and the status of block_run_host, chunked like the runners."""
    import numpy as np

    qq, pp, env = _env(sim, q, p, inputs)
    n = qq.size
    out_q, out_p = [qq.ravel().copy()], [pp.ravel().copy()]
    status, g, step = np.full(1, -1.0), np.empty(n), 0
    full, rem = divmod(steps, save)
    for stride, count in [(save, full)] + ([(rem, 1)] if rem else []):
        oq, op_ = np.full((count, n), np.nan), np.full((count, n), np.nan)
        fn(*env, dt, count, stride, step, oq.ctypes.data, op_.ctypes.data, g.ctypes.data,
           status.ctypes.data)
        out_q += list(oq)
        out_p += list(op_)
        step += stride * count
    return np.array(out_q), np.array(out_p), int(status[0])


@pytest.mark.parametrize("integrator", ["leapfrog", "yoshida4"])
def test_block_run_host_matches_cpu_run(integrator: str):
    """block_run's schedule (per stage: every row's gather gradient from the old state, then
    every row's update; FSAL kicks, closing kick at snapshots, snapshot stores), run on the
    CPU row after row, reproduces the CPU `run` trajectory."""
    import numpy as np

    from tpc import api

    sim = api.compile(ROOT / "examples" / "nbody.ham", integrator=integrator, fold=False)
    _, fn = _block_host(sim)
    rng = np.random.default_rng(5)
    n = 13
    q, p, m = rng.standard_normal((n, 3)) * 3, rng.standard_normal((n, 3)) * .1, rng.random(n) + .5
    ref = sim.run(q, p, dt=1e-3, steps=7, save_every=3, m=m)
    got_q, got_p, status = _block_host_run(sim, fn, q, p, 1e-3, 7, 3, m=m)
    assert status == -1
    assert np.max(np.abs(got_q - ref.q.reshape(len(ref.t), -1))) <= 1e-12 * np.max(np.abs(ref.q))
    assert np.max(np.abs(got_p - ref.p.reshape(len(ref.t), -1))) <= 1e-12 * np.max(np.abs(ref.p))


def test_block_run_host_status_matches_cpu_run():
    """A state that turns non-finite: the same status (first bad step) as the CPU run, and
    the snapshots up to the bad one written (later ones untouched)."""

    import numpy as np

    from tpc import api

    sim = api.compile(ROOT / "examples" / "nbody.ham", fold=False)
    _, fn = _block_host(sim)
    q = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.7945e308, 0, 0]])  # overflows near step 25
    p = np.array([[0.0, 0.5, 0], [0, -0.5, 0], [1e307, 0, 0]])
    m = np.ones(3)
    got_q, _, status = _block_host_run(sim, fn, q, p, 1e-3, 40, 4, m=m)
    bound = sim.bind(q, p, None, {"m": m})
    bufs = [np.full(10 * 9, np.nan), np.full(10 * 9, np.nan), np.empty(10), np.empty(9),
            np.empty(27)]
    st = np.full(1, -1.0)
    sim.native.call("run", bound, dt=1e-3, nsnap=10, stride=4, step0=0, out_q=bufs[0],
                    out_p=bufs[1], out_H=bufs[2], g=bufs[3], work=bufs[4], status=st)
    want = int(st[0])
    assert want >= 0 and status == want
    last = want // 4 + 1  # snapshot rows 1..last written
    assert np.array_equal(np.isnan(got_q[1:]).all(1), np.arange(1, 11) > last)
    assert np.array_equal(np.isnan(got_q[1:last]), np.isnan(bufs[0].reshape(10, 9)[:last - 1]))


def test_no_block_run_for_midpoint_or_scatter():
    from tpc.passes.sym_gpu_kernels import _scheme, _system, block_unsupported

    from tpc import api

    sim = api.compile(ROOT / "examples" / "nbody.ham", integrator="midpoint", fold=False)
    module, _ = _sym_module(sim)
    assert "other than sym.update" in block_unsupported(_system(module), _scheme(module,
                                                                           _system(module)))
    sim = api.compile(ROOT / "examples" / "kepler.ham", fold=False)
    module, _ = _sym_module(sim)
    assert "not in gather form" in block_unsupported(_system(module), _scheme(module,
                                                                             _system(module)))


@needs_libdevice
@pytest.mark.parametrize("precision", ["f64", "f32"])
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nbody_block_run_ptx(arch: str, precision: str, tmp_path: Path):
    """`tpc compile --emit=ptx` of nbody has block_run: block/thread ids, barriers, ptxas."""
    out = tmp_path / "nbody.ptx"
    r = subprocess.run([*TPC, "compile", str(ROOT / "examples" / "nbody.ham"), "--emit=ptx",
                        "--precision", precision, "--arch", arch, "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ptx = out.read_text()
    assert ".visible .entry block_run(" in ptx
    body = ptx[ptx.index(".entry block_run("):]
    body = body[:body.index("\n}\n")]
    assert "%ctaid.x" in body and "%tid.x" in body and "bar.sync" in body
    assert "atom." not in body
    if PTXAS is None:
        pytest.skip("ptxas not on PATH: PTX produced but not assembled")
    r = subprocess.run([PTXAS, f"-arch={arch}", "-v", str(out), "-o", str(tmp_path / "a.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Compiling entry function 'block_run'" in r.stderr


def test_run_blocks_host_side_with_emulated_kernel():
    """CudaSimulation.run_blocks' launches (grid = B, block = rows rounded up to 32, member
    slices, chunked snapshots), with block_run played by block_run_host per member."""
    import numpy as np
    from tpc.runtime.cuda import CudaSimulation, Manifest

    from tpc import api

    sim = api.compile(ROOT / "examples" / "nbody.ham", fold=False)
    _, fn = _block_host(sim)
    man = Manifest(["block_run"], {"G": 1.0}, ["m"], ["N"], ["N", 3], "sm_90")
    rng = np.random.default_rng(9)
    B, n = 3, 5

    def kernel(q, p, par, m, size, dt, count, stride, step, oq, op, status, pstride, block,
               grid):
        assert grid == (B, 1) and block == (32, 1, 1) and size == n
        k, c = 3 * n, int(count)
        for b in range(grid[0]):
            qb, pb, st = q[b * k:(b + 1) * k].copy(), p[b * k:(b + 1) * k].copy(), status[b:b + 1]
            oqb, opb = np.empty(c * k), np.empty(c * k)
            fn(qb.ctypes.data, pb.ctypes.data, par[b * pstride:].ctypes.data, m.ctypes.data,
               size, dt, count, stride, step, oqb.ctypes.data, opb.ctypes.data,
               np.empty(k).ctypes.data, st.ctypes.data)
            q[b * k:(b + 1) * k], p[b * k:(b + 1) * k] = qb, pb
            oq[b * c * k:(b + 1) * c * k], op[b * c * k:(b + 1) * c * k] = oqb, opb

    gpu = object.__new__(CudaSimulation)
    gpu.drv, gpu.manifest, gpu.kernels = FakeDriver(), man, {"block_run": kernel}
    q, p = rng.standard_normal((B, n, 3)) * 3, rng.standard_normal((B, n, 3)) * .1
    m, G = rng.random(n) + .5, np.array([0.5, 1.0, 2.0])
    res = gpu.run_blocks(q, p, dt=1e-3, steps=8, save_every=3, params={"G": G}, m=m)
    assert (res.status == -1).all() and np.isnan(res.H).all()
    for b in range(B):
        ref = sim.run(q[b], p[b], dt=1e-3, steps=8, save_every=3, params={"G": G[b]}, m=m)
        assert np.allclose(res.t, ref.t, rtol=0, atol=1e-15)
        assert np.max(np.abs(res.q[:, b] - ref.q)) <= 1e-12 * np.max(np.abs(ref.q))
        assert np.max(np.abs(res.p[:, b] - ref.p)) <= 1e-12 * np.max(np.abs(ref.p))
