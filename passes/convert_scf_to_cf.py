"""`convert-scf-to-cf`: structured control flow to branches, `scf.while` included.

xDSL's own `convert-scf-to-cf` lowers scf.for / scf.if / scf.index_switch (with
iter_args and results) but not scf.while, which the front half emits. This pass
reuses xDSL's patterns and adds the while lowering (a direct translation of
MLIR's SCFToControlFlow WhileLowering). It registers under the same name: it is
a strict superset of the xDSL pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.passes.llvm_types import unsupported
from xdsl.context import Context
from xdsl.dialects import builtin, cf, scf
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import BlockInsertPoint, InsertPoint
from xdsl.transforms.convert_scf_to_cf import ForLowering, IfLowering, SwitchLowering

PASS_NAME = "convert-scf-to-cf"


class WhileLowering(RewritePattern):
    """
    ^current:  ... br ^before(inits)
    ^before(args): ...                 cond_br %c, ^after(cargs), ^continue
    ^after(cargs): ...                 br ^before(yielded)
    ^continue:  uses of the while results -> cargs (they dominate ^continue)
    """

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: scf.WhileOp, rewriter: PatternRewriter, /):
        current = op.parent_block()
        if current is None:
            return
        before_region, after_region = op.before_region, op.after_region
        before, after = before_region.first_block, after_region.first_block
        before_last, after_last = before_region.last_block, after_region.last_block
        assert before and after and before_last and after_last  # single_block regions
        condition = before_last.last_op
        yield_op = after_last.last_op
        if not isinstance(condition, scf.ConditionOp) or not isinstance(yield_op, scf.YieldOp):
            raise unsupported(PASS_NAME, op, "malformed scf.while terminators")

        continuation = current.split_before(op)
        results = list(condition.args)
        rewriter.replace(
            condition,
            cf.ConditionalBranchOp(condition.condition, after, results, continuation, ()),
            [],
        )
        rewriter.replace(yield_op, cf.BranchOp(before, *yield_op.operands), [])
        rewriter.inline_region(before_region, BlockInsertPoint.before(continuation))
        rewriter.inline_region(after_region, BlockInsertPoint.before(continuation))
        rewriter.insert(cf.BranchOp(before, *op.arguments), InsertPoint.at_end(current))
        rewriter.replace(op, [], results)


class RejectOtherScfOps(RewritePattern):
    _HANDLED = (scf.ForOp, scf.IfOp, scf.WhileOp, scf.IndexSwitchOp)
    _TERMINATORS = (scf.YieldOp, scf.ConditionOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if op.name.startswith("scf.") and not isinstance(op, self._HANDLED + self._TERMINATORS):
            raise unsupported(PASS_NAME, op, "no lowering to cf")


@dataclass(frozen=True)
class ConvertScfToCfPass(ModulePass):
    """Lower scf.for/if/while/index_switch to cf branches."""

    name = "convert-scf-to-cf"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    RejectOtherScfOps(),
                    SwitchLowering(),
                    IfLowering(),
                    ForLowering(),
                    WhileLowering(),
                ]
            )
        ).rewrite_module(op)
