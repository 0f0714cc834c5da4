"""PTX back end: every example compiles to PTX that ptxas accepts, kernels are `.entry`,
transcendental math goes through libdevice, and the failure modes give clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


def compile_ptx(path: Path, out: Path) -> str:
    r = subprocess.run([*TPC, "compile", str(path), "--emit=ptx", "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out.read_text()


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
