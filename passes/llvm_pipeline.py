"""The lowering ladder from func/arith/math/scf/cf/memref to the `llvm` dialect.

`llvm_pipeline` names its passes in order. `lower_to_llvm` runs them in place
and checks that nothing but llvm ops is left (`check_llvm_only`), so a missing
lowering surfaces here, by op name, instead of as an opaque failure inside the
llvmlite translation.
"""

from __future__ import annotations

from tpc.passes.llvm_types import LLVMLoweringError
from tpc.passes.registry_llvm import LLVM_PASSES
from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, func, llvm, math, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.reconcile_unrealized_casts import reconcile_unrealized_casts
from xdsl.utils.arg_spec import parse_pipeline


def standard_context() -> Context:
    """A context with every dialect the lowering reads or writes."""
    ctx = Context()
    for dialect in (
        builtin.Builtin,
        func.Func,
        arith.Arith,
        math.Math,
        scf.Scf,
        cf.Cf,
        memref.MemRef,
        llvm.LLVM,
    ):
        ctx.load_dialect(dialect)
    return ctx


def llvm_pipeline(target: str = "cpu") -> list[str]:
    """The ladder as a pass pipeline, by CLI name (what `tpc compile --emit=llvm|ptx` runs
    through its PassRunner, so that `--print-ir-after` sees every step)."""
    # scf first: its lowering creates arith (loop counters) and cf ops.
    # The rest are order-independent thanks to the casts; reconcile comes last.
    return [
        "convert-scf-to-cf",
        "convert-arith-to-llvm",
        f"convert-math-to-llvm{{target={target}}}",
        "convert-memref-to-llvm",
        "convert-cf-to-llvm",
        "convert-func-to-llvm",
        "reconcile-unrealized-casts",
    ]


def llvm_passes(target: str = "cpu") -> list[ModulePass]:
    """The conversion passes of `llvm_pipeline`, instantiated (reconcile is left to the caller)."""
    specs = parse_pipeline(",".join(llvm_pipeline(target)))
    return [
        LLVM_PASSES[spec.name]().from_pass_spec(spec)
        for spec in specs
        if spec.name != "reconcile-unrealized-casts"
    ]


def lower_to_llvm(module: ModuleOp, target: str = "cpu") -> None:
    """Lower `module` in place to pure `llvm` dialect; raise LLVMLoweringError if
    any op survives."""
    ctx = standard_context()
    for p in llvm_passes(target):
        p.apply(ctx, module)
    reconcile_unrealized_casts(module, warn_on_failure=False)
    check_llvm_only(module)
    module.verify()


def check_llvm_only(module: ModuleOp) -> None:
    for op in module.walk():
        if op is module or op.name.startswith("llvm."):
            continue
        if isinstance(op, builtin.UnrealizedConversionCastOp):
            types = f"{op.inputs.types} -> {op.result_types}"
            raise LLVMLoweringError(f"unresolved type conversion left behind: {types}")
        raise LLVMLoweringError(f"no lowering to llvm for '{op.name}'")
