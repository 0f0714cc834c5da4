"""Every dialect and pass the driver knows, loaded lazily so that `tpc --help` stays fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from xdsl.context import Context
from xdsl.passes import ModulePass

if TYPE_CHECKING:
    from xdsl.ir import Dialect
    from xdsl.universe import Universe


def _ours(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    return lambda: getattr(importlib.import_module(f"tpc.passes.{module}"), cls)


def _xdsl(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    return lambda: getattr(importlib.import_module(f"xdsl.transforms.{module}"), cls)


PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "ham-degree": _ours("ham_degree", "HamDegreePass"),
    "ham-split-parts": _ours("ham_split_parts", "HamSplitPartsPass"),
    "ham-ewald": _ours("ham_ewald", "HamEwaldPass"),
    "ham-periodic": _ours("ham_periodic", "HamPeriodicPass"),
    "ham-kepler": _ours("ham_kepler", "HamKeplerPass"),
    "ham-magnetic": _ours("ham_magnetic", "HamMagneticPass"),
    "ham-symmetry": _ours("ham_symmetry", "HamSymmetryPass"),
    "ham-derive": _ours("ham_derive", "HamDerivePass"),
    "ham-derive-params": _ours("ham_derive_params", "HamDeriveParamsPass"),
    "sym-integrator": _ours("sym_integrator", "SymIntegratorPass"),
    "sym-flow-kinds": _ours("sym_flow_kinds", "SymFlowKindsPass"),
    "sym-fuse-stages": _ours("sym_fuse_stages", "SymFuseStagesPass"),
    "sym-lower-flows": _ours("sym_lower_flows", "SymLowerFlowsPass"),
    "sym-kahan": _ours("sym_kahan", "SymKahanPass"),
    "sym-shadow": _ours("sym_shadow", "SymShadowPass"),
    "sym-project": _ours("sym_project", "SymProjectPass"),
    "sym-fold-linear": _ours("sym_fold_linear", "SymFoldLinearPass"),
    "sym-tangent": _ours("sym_tangent", "SymTangentPass"),
    "sym-lower-loops": _ours("sym_lower_loops", "SymLowerLoopsPass"),
    "sym-gpu-kernels": _ours("sym_gpu_kernels", "SymGpuKernelsPass"),
    "canonicalize": _xdsl("canonicalize", "CanonicalizePass"),
    "cse": _xdsl("common_subexpression_elimination", "CommonSubexpressionElimination"),
    "dce": _xdsl("dead_code_elimination", "DeadCodeElimination"),
    "reconcile-unrealized-casts": _xdsl(
        "reconcile_unrealized_casts", "ReconcileUnrealizedCastsPass"
    ),
}


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    passes = dict(PASSES)
    try:
        from tpc.passes.registry_llvm import LLVM_PASSES
    except ImportError:
        LLVM_PASSES = {}
    passes.update(LLVM_PASSES)
    return passes


_DIALECTS: dict[str, tuple[str, str]] = {
    "builtin": ("xdsl.dialects.builtin", "Builtin"),
    "arith": ("xdsl.dialects.arith", "Arith"),
    "math": ("xdsl.dialects.math", "Math"),
    "scf": ("xdsl.dialects.scf", "Scf"),
    "cf": ("xdsl.dialects.cf", "Cf"),
    "func": ("xdsl.dialects.func", "Func"),
    "memref": ("xdsl.dialects.memref", "MemRef"),
    "llvm": ("xdsl.dialects.llvm", "LLVM"),
    "ham": ("tpc.dialects.ham", "Ham"),
    "sym": ("tpc.dialects.sym", "Sym"),
}


def _dialect(module: str, attr: str) -> Callable[[], Dialect]:
    return lambda: getattr(importlib.import_module(module), attr)


def context() -> Context:
    """Every dialect tpc reads or writes, each imported only when an op of it is met."""
    ctx = Context()
    for name, (module, attr) in _DIALECTS.items():
        ctx.register_dialect(name, _dialect(module, attr))
    return ctx


def universe() -> Universe:
    """tpc's dialects and passes as an xDSL plug-in, so that `xdsl-opt -p ham-derive` works.

    The entries of the tables above that xDSL does not define itself: xDSL refuses a
    name that two universes both define, so `xdsl-opt` keeps its own builtin/arith/...,
    canonicalize/cse/dce and convert-scf-to-cf (tpc's shadowing version, which adds
    scf.while, is only reachable through `tpc opt`)."""
    from xdsl.dialects import get_all_dialects
    from xdsl.transforms import get_all_passes
    from xdsl.universe import Universe

    xdsl_dialects, xdsl_passes = get_all_dialects(), get_all_passes()
    return Universe(
        all_dialects={
            name: _dialect(module, attr)
            for name, (module, attr) in _DIALECTS.items()
            if name not in xdsl_dialects
        },
        all_passes={
            name: load for name, load in all_passes().items() if name not in xdsl_passes
        },
    )


def __getattr__(name: str) -> object:
    # UNIVERSE (the `xdsl.universe` entry point in pyproject.toml) is built on first
    # access, so that importing the registry stays cheap for `tpc --help`.
    if name == "UNIVERSE":
        value = globals()["UNIVERSE"] = universe()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_XDSL_SUMMARIES = {
    "cse": "Common subexpression elimination (xDSL).",
    "dce": "Remove ops whose results are unused and that have no side effects (xDSL).",
    "reconcile-unrealized-casts": "Fold away pairs of unrealized conversion casts (xDSL).",
}


def available_passes() -> list[str]:
    """Names of the passes whose modules exist (a pass may be listed before it is built)."""
    names = []
    for name, load in all_passes().items():
        try:
            load()
        except (ImportError, AttributeError):
            continue
        names.append(name)
    return sorted(names)


def pass_summary(name: str) -> str:
    if name in _XDSL_SUMMARIES:
        return _XDSL_SUMMARIES[name]
    cls = all_passes()[name]()
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""
