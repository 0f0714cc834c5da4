"""`convert-cf-to-llvm`: `cf.br` / `cf.cond_br` to `llvm.br` / `llvm.cond_br`.

Non-entry block arguments become phi nodes in LLVM IR, so they must carry LLVM
types: this pass retypes them (index -> i64, memref -> !llvm.ptr) and casts the
branch operands to match. Entry-block arguments are the function signature and
belong to `convert-func-to-llvm`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.passes.llvm_types import convert_block_args, to_llvm_all, unsupported
from xdsl.context import Context
from xdsl.dialects import builtin, cf, llvm
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

PASS_NAME = "convert-cf-to-llvm"


class CfToLLVMPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if isinstance(op, cf.BranchOp):
            new_ops: list[Operation] = []
            args = to_llvm_all(op.arguments, new_ops)
            new_ops.append(llvm.BrOp(op.successor, *args))
            rewriter.replace(op, new_ops, [])
        elif isinstance(op, cf.ConditionalBranchOp):
            new_ops = []
            then_args = to_llvm_all(op.then_arguments, new_ops)
            else_args = to_llvm_all(op.else_arguments, new_ops)
            new_ops.append(
                llvm.CondBrOp(op.cond, op.then_block, then_args, op.else_block, else_args)
            )
            rewriter.replace(op, new_ops, [])
        elif op.name.startswith("cf."):
            raise unsupported(PASS_NAME, op, "only cf.br and cf.cond_br are supported")


@dataclass(frozen=True)
class ConvertCfToLLVMPass(ModulePass):
    """Lower cf branches to llvm branches and retype non-entry block arguments."""

    name = "convert-cf-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        # Collect first: retyping inserts casts, which must not disturb the walk.
        blocks = [b for inner in op.walk() for r in inner.regions for b in list(r.blocks)[1:]]
        for block in blocks:
            convert_block_args(block)
        PatternRewriteWalker(CfToLLVMPattern()).rewrite_module(op)
