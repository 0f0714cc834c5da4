"""sym-lower-flows: every sym.flow becomes the state updates that run it.

Rewrite patterns (MLIR Toy chapter 5 style): kicks and drifts become the one update op; the
other kinds become a stage op of the same parts and coefficient (one table). The CPU time loop
and the GPU kernels both lower only what this pass produces:
  kick  [V] c  ->  sym.update @p, -c, [V] wrt @q        (p -= c dt dV/dq)
  drift [T] c  ->  sym.update @q,  c, [T] wrt @p        (q += c dt dT/dp)
  linear       ->  sym.linear [parts] c                 (z <- M z + b, M built at run time)
  kepler       ->  sym.kepler [parts] c                 (each body on its conic)
  boris        ->  sym.boris [parts] c                  (the Boris pusher)
  midpoint     ->  sym.midpoint [parts] c               (the implicit stage, iterated)
  avf          ->  sym.midpoint [parts] c nodes m       (average vector field, m Gauss nodes:
                                                         exact for H's degree, else AVF_NODES)
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


# Kinds whose flow is one stage op of the same parts and coefficient.
STAGE_OPS = {"midpoint": sym.MidpointOp, "linear": sym.LinearOp, "kepler": sym.KeplerOp,
             "boris": sym.BorisOp}


class LowerToStage(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        stage = STAGE_OPS.get(op.kind_name)
        if stage is not None:
            rewriter.replace(op, stage(op.part_names, op.c))


AVF_NODES = 5  # Gauss-Legendre nodes for a non-polynomial H: exact to degree 9 along the step


def avf_nodes(op: sym.FlowOp) -> int:
    """Nodes for the average of grad H along a step: m-point Gauss-Legendre integrates a
    polynomial of degree 2m - 1 exactly, and grad H along the segment has degree deg(H) - 1."""
    from tpc.passes.ham_degree import NONPOLY, read_facts

    system = system_of(scheme_of(op))
    degree = max(read_facts(system.part(p)).degree for p in op.part_names)
    if degree >= NONPOLY:
        return AVF_NODES
    return max(2, -(-degree // 2))


class LowerAvf(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind_name == "avf":
            # tol 0: iterate to the round-off floor (the stall test stops it), as a residual of
            # the fixed point left at the tolerance drifts the energy step after step
            rewriter.replace(op, sym.MidpointOp(op.part_names, op.c, tol=0.0,
                                                nodes=avf_nodes(op)))


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
            [RequireKind(), LowerKick(), LowerDrift(), LowerToStage(), LowerAvf()]
        )).rewrite_module(op)
