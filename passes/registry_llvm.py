"""Passes of the LLVM back end, by CLI name, loaded lazily (the driver merges this)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.passes import ModulePass


def _load(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    """A loader that imports `module` (a bare name means one of tpc's passes) on first use."""
    path = module if "." in module else f"tpc.passes.{module}"
    return lambda: getattr(importlib.import_module(path), cls)


# "convert-scf-to-cf" deliberately shadows xDSL's pass of that name: ours adds
# scf.while. Merge this dict after xDSL's registry.
LLVM_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "convert-scf-to-cf": _load("convert_scf_to_cf", "ConvertScfToCfPass"),
    "convert-arith-to-llvm": _load("convert_arith_to_llvm", "ConvertArithToLLVMPass"),
    "convert-math-to-llvm": _load("convert_math_to_llvm", "ConvertMathToLLVMPass"),
    "convert-memref-to-llvm": _load("convert_memref_to_llvm", "ConvertMemrefToLLVMPass"),
    "convert-cf-to-llvm": _load("convert_cf_to_llvm", "ConvertCfToLLVMPass"),
    "convert-func-to-llvm": _load("convert_func_to_llvm", "ConvertFuncToLLVMPass"),
    "reconcile-unrealized-casts": _load(
        "xdsl.transforms.reconcile_unrealized_casts", "ReconcileUnrealizedCastsPass"
    ),
}
