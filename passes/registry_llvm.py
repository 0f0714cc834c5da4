"""Passes of the LLVM back end, by CLI name, loaded lazily (the driver merges this)."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _scf_to_cf() -> type[ModulePass]:
    from tpc.passes.convert_scf_to_cf import ConvertScfToCfPass

    return ConvertScfToCfPass


def _arith() -> type[ModulePass]:
    from tpc.passes.convert_arith_to_llvm import ConvertArithToLLVMPass

    return ConvertArithToLLVMPass


def _math() -> type[ModulePass]:
    from tpc.passes.convert_math_to_llvm import ConvertMathToLLVMPass

    return ConvertMathToLLVMPass


def _memref() -> type[ModulePass]:
    from tpc.passes.convert_memref_to_llvm import ConvertMemrefToLLVMPass

    return ConvertMemrefToLLVMPass


def _cf() -> type[ModulePass]:
    from tpc.passes.convert_cf_to_llvm import ConvertCfToLLVMPass

    return ConvertCfToLLVMPass


def _func() -> type[ModulePass]:
    from tpc.passes.convert_func_to_llvm import ConvertFuncToLLVMPass

    return ConvertFuncToLLVMPass


def _reconcile() -> type[ModulePass]:
    from xdsl.transforms.reconcile_unrealized_casts import ReconcileUnrealizedCastsPass

    return ReconcileUnrealizedCastsPass


# "convert-scf-to-cf" deliberately shadows xDSL's pass of that name: ours adds
# scf.while. Merge this dict after xDSL's registry.
LLVM_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "convert-scf-to-cf": _scf_to_cf,
    "convert-arith-to-llvm": _arith,
    "convert-math-to-llvm": _math,
    "convert-memref-to-llvm": _memref,
    "convert-cf-to-llvm": _cf,
    "convert-func-to-llvm": _func,
    "reconcile-unrealized-casts": _reconcile,
}
