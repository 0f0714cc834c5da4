"""PTX from a tpc module: the NVPTX back end of llvmlite, with libdevice linked in.

module_to_ptx(module, arch="sm_90"):
  1. a func-level module (from sym-lower-loops, or sym-gpu-kernels) is lowered on a copy with
     target "nvptx" (math -> `__nv_*` libdevice calls); an llvm-dialect module is taken as is;
  2. xDSL llvm dialect -> llvmlite IR with triple `nvptx64-nvidia-cuda` and the NVPTX data
     layout; kernels (func.funcs marked `tpc.kernel`, or llvm.funcs named like one of
     KERNEL_NAMES) get the `ptx_kernel` calling convention, every other defined function
     internal linkage;
  3. every `llvm.*` intrinsic is checked against an allowlist BEFORE LLVM sees the module: the
     NVPTX back end aborts the whole process on intrinsics it cannot select (llvm.sin.f64...);
  4. parse + verify (malformed IR would abort too), link libdevice, internalize everything but
     the kernels, globaldce (drops the unused part of libdevice), O3 with the NVPTX target
     machine (which runs NVVMReflect), emit PTX.

No fast-math flags anywhere; the target machine's default options do not contract fmul+fadd.
"""

from __future__ import annotations

import glob
import os
import re
from functools import cache
from pathlib import Path

from xdsl.dialects import func
from xdsl.dialects import llvm as llvm_dialect
from xdsl.dialects.builtin import ModuleOp

from tpc.diagnostics import TpcError

TRIPLE = "nvptx64-nvidia-cuda"
DATA_LAYOUT = "e-p6:32:32-i64:64-i128:128-v16:16-v32:32-n16:32:64"
KERNEL_ATTR = "tpc.kernel"
KERNEL_NAMES = ("ensemble_run", "pair_forces")
ARCHES = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a")

# Intrinsics the NVPTX back end selects natively (by base name, before the type suffix).
_ALLOWED = (
    "llvm.sqrt.", "llvm.fabs.", "llvm.floor.", "llvm.ceil.", "llvm.trunc.", "llvm.fma.",
    "llvm.copysign.", "llvm.maxnum.", "llvm.minnum.", "llvm.maximum.", "llvm.minimum.",
    "llvm.fptosi.sat.", "llvm.nvvm.", "llvm.lifetime.", "llvm.memcpy.", "llvm.memset.",
    "llvm.memmove.", "llvm.assume",
)
_INTRINSIC = re.compile(r"@\"?(llvm\.[A-Za-z0-9_.]+)")


class PTXError(TpcError):
    """The GPU back end cannot compile this module."""


# ------------------------------------------------------------------- libdevice


def find_libdevice(roots: list[str] | None = None) -> Path:
    """libdevice.10.bc from $TPC_LIBDEVICE, $CUDA_HOME/$CUDA_PATH, /usr/local/cuda(-*)
    (or only the given CUDA `roots`)."""
    explicit = os.environ.get("TPC_LIBDEVICE")
    if explicit is not None:
        if Path(explicit).is_file():
            return Path(explicit)
        raise PTXError(f"TPC_LIBDEVICE={explicit} does not exist")
    if roots is None:
        roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")]
        roots += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    tried = []
    for root in roots:
        if not root:
            continue
        d = Path(root) / "nvvm" / "libdevice"
        tried.append(str(d))
        hits = sorted(d.glob("libdevice*.bc"))
        if hits:
            return hits[0]
    raise PTXError(
        "libdevice not found (looked in " + (", ".join(tried) or "no CUDA directory") + "); "
        "install the CUDA toolkit's nvvm component, or set CUDA_HOME or TPC_LIBDEVICE"
    )


@cache
def _libdevice_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


# ------------------------------------------------------------------------ IR


def _kernels_of(module: ModuleOp) -> list[str]:
    names = []
    for op in module.ops:
        if isinstance(op, func.FuncOp | llvm_dialect.FuncOp):
            name = op.sym_name.data
            if KERNEL_ATTR in op.attributes or name in KERNEL_NAMES:
                names.append(name)
    return names


def _is_llvm_only(module: ModuleOp) -> bool:
    return all(op is module or op.name.startswith("llvm.") for op in module.walk())


def to_nvptx_ir(module_op: ModuleOp):
    """(llvmlite ir.Module, kernel names) for a func-level or llvm-dialect module."""
    from xdsl.backend.llvm.convert import convert_module

    kernels = _kernels_of(module_op)
    if not _is_llvm_only(module_op):
        from tpc.passes.llvm_pipeline import lower_to_llvm

        module_op = module_op.clone()
        lower_to_llvm(module_op, target="nvptx")
    if not kernels:
        raise PTXError("no GPU kernel in the module (run the sym-gpu-kernels pass first)")
    irmod = convert_module(module_op, fallback_target_triple=TRIPLE)
    irmod.triple = TRIPLE
    irmod.data_layout = DATA_LAYOUT
    for op in module_op.ops:
        if not isinstance(op, llvm_dialect.FuncOp) or not op.body.blocks:
            continue
        fn = irmod.get_global(op.sym_name.data)
        if op.sym_name.data in kernels:
            fn.calling_convention = "ptx_kernel"
            fn.linkage = ""
        else:
            fn.linkage = "internal"
        fn.attributes.add("nounwind")
    return irmod, kernels


def check_intrinsics(ir_text: str) -> None:
    """Refuse intrinsics the NVPTX back end cannot select (it would kill the process)."""
    bad = sorted({m for m in _INTRINSIC.findall(ir_text) if not m.startswith(_ALLOWED)})
    if bad:
        raise PTXError(
            "cannot compile for the GPU: LLVM intrinsic(s) " + ", ".join(bad) + " have no "
            "NVPTX lowering (transcendental math must go through libdevice `__nv_*` calls: "
            "lower with target='nvptx')"
        )


# ----------------------------------------------------------------------- PTX


@cache
def _init_targets() -> None:
    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


def _target_machine(arch: str):
    import llvmlite.binding as llvm

    _init_targets()
    target = llvm.Target.from_triple(TRIPLE)
    return target.create_target_machine(cpu=arch, features="+ptx80" if arch >= "sm_90" else "",
                                        opt=3, codemodel="default")


def module_to_ptx(module_op: ModuleOp, arch: str = "sm_90",
                  libdevice_roots: list[str] | None = None) -> str:
    """PTX text (kernels as `.entry`) for a func-level or llvm-dialect tpc module."""
    import llvmlite.binding as llvm

    if arch not in ARCHES:
        raise PTXError(f"unsupported GPU architecture '{arch}' (known: {', '.join(ARCHES)})")
    irmod, kernels = to_nvptx_ir(module_op)
    text = str(irmod)
    check_intrinsics(text)
    libdevice = find_libdevice(libdevice_roots)  # before any LLVM work: a clear error, not a link failure
    try:
        ref = llvm.parse_assembly(text)
        ref.verify()
    except RuntimeError as e:
        raise PTXError(f"invalid LLVM IR for the GPU: {e}") from None
    tm = _target_machine(arch)
    ref.triple = TRIPLE
    ref.data_layout = str(tm.target_data)
    if any(f.is_declaration and f.name.startswith("__nv_") for f in ref.functions):
        lib = llvm.parse_bitcode(_libdevice_bytes(str(libdevice)))
        lib.triple = TRIPLE
        lib.data_layout = str(tm.target_data)
        ref.link_in(lib)
    for f in ref.functions:
        if not f.is_declaration and f.name not in kernels:
            f.linkage = llvm.Linkage.internal
    for g in ref.global_variables:
        if not g.is_declaration:
            g.linkage = llvm.Linkage.internal
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pb = llvm.create_pass_builder(tm, pto)
    mpm = llvm.create_new_module_pass_manager()
    mpm.add_global_dead_code_eliminate_pass()
    mpm.run(ref, pb)
    pb.getModulePassManager().run(ref, pb)
    ref.verify()
    undefined = sorted(f.name for f in ref.functions
                       if f.is_declaration and not f.name.startswith("llvm."))
    if undefined:
        raise PTXError("unresolved functions in GPU code: " + ", ".join(undefined))
    return tm.emit_assembly(ref)
