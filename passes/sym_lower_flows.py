"""sym-lower-flows: every sym.flow becomes the state updates that run it.

One rewrite pattern per flow kind (MLIR Toy chapter 5 style); the CPU time loop and the GPU
kernels both lower only what this pass produces:
  kick  [V] c  ->  sym.update @p, -c, [V] wrt @q        (p -= c dt dV/dq)
  drift [T] c  ->  sym.update @q,  c, [T] wrt @p        (q += c dt dT/dp)
  linear       ->  sym.linear [parts] c                 (z <- M z + b, M built at run time)
  kepler       ->  sym.kepler [parts] c                 (each body on its conic)
  boris        ->  sym.boris [parts] c                  (the Boris pusher)
  midpoint     ->  sym.midpoint [parts] c               (the implicit stage, iterated)
  exact        ->  kept: only the folded time loop (sym.propagate, method expm) runs it.
A flow without a kind is an error (run sym-flow-kinds first).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import sym
from tpc.passes.refusal import Refusal
from tpc.passes.sym_flow_kinds import scheme_of, system_of
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


def _fields(op: sym.FlowOp) -> tuple[str, str]:
    scheme = scheme_of(op)
    if scheme is None:
        raise Refusal(op, "sym.flow outside a sym.scheme")
    return system_of(scheme).state.names


class LowerKick(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "kick":
            q, p = _fields(op)
            rewriter.replace(op, sym.UpdateOp(p, -op.c, op.part_names, q))


class LowerDrift(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "drift":
            q, p = _fields(op)
            rewriter.replace(op, sym.UpdateOp(q, op.c, op.part_names, p))


class LowerMidpoint(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "midpoint":
            rewriter.replace(op, sym.MidpointOp(op.part_names, op.c))


class LowerLinear(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "linear":
            rewriter.replace(op, sym.LinearOp(op.part_names, op.c))


class LowerKepler(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "kepler":
            rewriter.replace(op, sym.KeplerOp(op.part_names, op.c))


class LowerBoris(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "boris":
            rewriter.replace(op, sym.BorisOp(op.part_names, op.c))


class RequireKind(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name is None:
            raise Refusal(
                op, f"sym-lower-flows: sym.flow {op.parts} has no kind (run sym-flow-kinds)")


@dataclass(frozen=True)
class SymLowerFlowsPass(ModulePass):
    """Lower each sym.flow to its state updates (sym.update, sym.linear, sym.midpoint)."""

    name = "sym-lower-flows"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier(
            [RequireKind(), LowerKick(), LowerDrift(), LowerLinear(), LowerKepler(),
             LowerBoris(), LowerMidpoint()]
        )).rewrite_module(op)
