"""The lowering ladder from func/arith/math/scf/cf/memref to the `llvm` dialect.

`lower_to_llvm` runs it in place and checks that nothing but llvm ops is left,
so a missing lowering surfaces here, by op name, instead of as an opaque
failure inside the llvmlite translation.
"""

from __future__ import annotations

from tpc.passes.convert_arith_to_llvm import ConvertArithToLLVMPass
from tpc.passes.convert_cf_to_llvm import ConvertCfToLLVMPass
from tpc.passes.convert_func_to_llvm import ConvertFuncToLLVMPass
from tpc.passes.convert_math_to_llvm import ConvertMathToLLVMPass
from tpc.passes.convert_memref_to_llvm import ConvertMemrefToLLVMPass
from tpc.passes.convert_scf_to_cf import ConvertScfToCfPass
from tpc.passes.llvm_types import LLVMLoweringError
from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, func, llvm, math, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.reconcile_unrealized_casts import reconcile_unrealized_casts


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


def llvm_passes(target: str = "cpu") -> list[ModulePass]:
    # scf first: its lowering creates arith (loop counters) and cf ops.
    # The rest are order-independent thanks to the casts; reconcile comes last.
    return [
        ConvertScfToCfPass(),
        ConvertArithToLLVMPass(),
        ConvertMathToLLVMPass(target=target),
        ConvertMemrefToLLVMPass(),
        ConvertCfToLLVMPass(),
        ConvertFuncToLLVMPass(),
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
