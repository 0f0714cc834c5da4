"""`convert-func-to-llvm`: `func.func/call/return` to `llvm.func/call/return`.

Signatures follow the bare-pointer ABI: memref arguments become `!llvm.ptr`,
index becomes i64; the entry block is retyped to match and casts keep the body
valid until the other conversions have run. Private functions with a body get
internal linkage (LLVM may inline and drop them); everything else is external,
i.e. an exported entry point or a declaration resolved at link/JIT time.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.passes.llvm_types import (
    convert_block_args,
    from_llvm,
    llvm_type,
    to_llvm,
    to_llvm_all,
    unsupported,
)
from xdsl.context import Context
from xdsl.dialects import builtin, func, llvm
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

PASS_NAME = "convert-func-to-llvm"


def _llvm_signature(op: Operation, ftype: builtin.FunctionType) -> llvm.LLVMFunctionType:
    outputs = ftype.outputs.data
    if len(outputs) > 1:
        raise unsupported(PASS_NAME, op, "functions may return at most one value")
    result = llvm_type(outputs[0]) if outputs else llvm.LLVMVoidType()
    return llvm.LLVMFunctionType([llvm_type(t) for t in ftype.inputs.data], result)


class FuncPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, func.FuncOp):
            return
        signature = _llvm_signature(op, op.function_type)
        body = rewriter.move_region_contents_to_new_regions(op.body)
        if body.blocks:
            convert_block_args(body.blocks.first)
        private = op.sym_visibility is not None and op.sym_visibility.data == "private"
        linkage = "internal" if private and body.blocks else "external"
        new = llvm.FuncOp(
            op.sym_name.data,
            signature,
            linkage=llvm.LinkageAttr(linkage),
            body=body,
        )
        # Facts the front half proved about the function (e.g. `tpc.noalias`) travel along.
        new.attributes |= {k: v for k, v in op.attributes.items() if k.startswith("tpc.")}
        rewriter.replace(op, [new], [])


class ReturnPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, func.ReturnOp):
            return
        if len(op.arguments) > 1:
            raise unsupported(PASS_NAME, op, "functions may return at most one value")
        new_ops: list[Operation] = []
        value = to_llvm(op.arguments[0], new_ops) if op.arguments else None
        new_ops.append(llvm.ReturnOp(value))
        rewriter.replace(op, new_ops, [])


class CallPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, func.CallOp):
            return
        if len(op.res) > 1:
            raise unsupported(PASS_NAME, op, "calls may return at most one value")
        new_ops: list[Operation] = []
        args = to_llvm_all(op.arguments, new_ops)
        ret = llvm_type(op.res[0].type) if op.res else None
        call = llvm.CallOp(op.callee.root_reference.data, *args, return_type=ret)
        new_ops.append(call)
        results = [from_llvm(call.returned, op.res[0].type, new_ops)] if op.res else []
        rewriter.replace(op, new_ops, results)


class RejectOtherFuncOps(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if op.name.startswith("func.") and not isinstance(
            op, func.FuncOp | func.ReturnOp | func.CallOp
        ):
            raise unsupported(PASS_NAME, op, "only func.func, func.call and func.return")


@dataclass(frozen=True)
class ConvertFuncToLLVMPass(ModulePass):
    """Lower func.func/call/return to llvm with bare-pointer memref arguments."""

    name = "convert-func-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [FuncPattern(), ReturnPattern(), CallPattern(), RejectOtherFuncOps()]
            )
        ).rewrite_module(op)
