"""sym-tangent: mark a time loop to be lowered with its tangent map (`run_tangent`).

A scheme whose stages read the same backwards is marked `reversible`: its step with -dt is
its inverse, which reverse-mode adjoints (tpc/derivatives.py) rely on.

The decision and its checks live here, on the IR after sym-lower-flows; sym-lower-loops
lowers a `sym.evolve` marked `tangent` into `run` plus `run_tangent`, `tgrad_*` and `agrad_*`
(passes/tangent_lowering.py). The tangent of an update and of an exact linear flow is
derived, that of a Kepler flow (implicit differentiation of Kepler's equation) and of an
implicit midpoint stage (its linearized equation, iterated like the stage); a Boris step, an
average-vector-field stage and an energy projection have no tangent rule yet and are refused
at the stage, as is a folded
loop (its map is a matrix: the tangent is that matrix, with no stepping to differentiate).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import sym
from tpc.passes.refusal import Refusal
from tpc.passes.tangent_lowering import TANGENT_ATTR
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

UNSUPPORTED = {sym.BorisOp: "a Boris step"}


def check_scheme(scheme: sym.SchemeOp) -> None:
    if "project" in scheme.attributes:
        raise Refusal(scheme, "sym-tangent: the energy projection (project = energy) has no "
                      "tangent map yet")
    for op in scheme.walk():
        if isinstance(op, sym.FlowOp):
            raise Refusal(op, "sym-tangent: run sym-lower-flows first")
        if isinstance(op, sym.MidpointOp) and op.n_nodes > 1:
            raise Refusal(op, "sym-tangent: the tangent map of an average-vector-field stage "
                          f"(discrete_gradient, {op.name} of {', '.join(op.part_names)}) is not "
                          "supported yet")
        if type(op) in UNSUPPORTED:
            raise Refusal(op, f"sym-tangent: the tangent map of {UNSUPPORTED[type(op)]} "
                          f"({op.name} of {', '.join(op.part_names)}) is not supported yet")


def stage_key(op) -> tuple:
    if isinstance(op, sym.UpdateOp):
        return (op.name, op.target_name, op.wrt_name, tuple(op.part_names), op.c)
    return (op.name, tuple(op.part_names), op.c)


def flat(stages) -> list:
    out = []
    for st in stages:
        out += flat(st.stages) * st.n if isinstance(st, sym.RepeatOp) else [st]
    return out


def palindromic(scheme: sym.SchemeOp) -> bool:
    """A symmetric step: the same stages read backwards, so the step with -dt is its
    inverse (what reverse-mode adjoints rely on)."""
    keys = [stage_key(op) for op in flat(scheme.stages)]
    return keys == keys[::-1]


class MarkEvolve(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.EvolveOp, rewriter: PatternRewriter) -> None:
        if TANGENT_ATTR in op.attributes:
            return
        module = op.parent_op()
        scheme = next(s for s in module.body.block.ops if isinstance(s, sym.SchemeOp)
                      and s.sym_name.data == op.scheme.string_value())
        check_scheme(scheme)
        op.attributes[TANGENT_ATTR] = UnitAttr()
        if palindromic(scheme):
            scheme.attributes["reversible"] = UnitAttr()
        rewriter.notify_op_modified(op)


class RefuseFolded(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.PropagateOp, rewriter: PatternRewriter) -> None:
        raise Refusal(op, "sym-tangent: a folded time loop has no stepped tangent map "
                      "(run sym-fold-linear{enabled=false})")


@dataclass(frozen=True)
class SymTangentPass(ModulePass):
    """Mark sym.evolve for a tangent-map lowering, after checking every stage has one."""

    name = "sym-tangent"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(RefuseFolded(), apply_recursively=False).rewrite_module(op)
        PatternRewriteWalker(MarkEvolve(), apply_recursively=False).rewrite_module(op)
