"""sym-project: `project = energy`, the step followed by a projection onto the start's energy.

After every step the state z is moved along grad H to the energy surface H = H0 (two Newton
steps of z <- z - (H(z) - H0) / |grad H|^2 grad H; H0 is the energy at the start of each call
of the time loop, itself a projected state after the first). The energy is then conserved to
round-off by any integrator, at a price the remark states: the projected map is neither
symplectic nor time-reversible, and the other invariants (momentum, angular momentum) are no
longer conserved exactly, as the projection direction moves them.

Algorithm: mark the scheme `project = "energy"` and drop `fsal` (a step's closing kick must
have run before its state can be projected, so steps are not fused across their boundary).
sym-fold-linear does not fold a projected scheme (the projection is not linear), and the time
loop lowering (sym-lower-loops) emits the projection after each step; the GPU block loop
refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import sym
from xdsl.context import Context
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

NOTE = ("project = energy: every step is followed by a projection onto the start's energy "
        "surface (H conserved to round-off); it gives up symplecticity and time reversibility, "
        "and the exact conservation of momentum and angular momentum")


class MarkProjection(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.SchemeOp, rewriter: PatternRewriter) -> None:
        if "project" in op.attributes:
            return
        op.attributes["project"] = StringAttr("energy")
        if op.attributes.pop("fsal", None) is not None:
            # the step's first kick is no longer shared with the previous step's last
            evals = op.attributes.get("force_evals")
            if isinstance(evals, IntegerAttr):
                op.attributes["force_evals"] = IntegerAttr(evals.value.data + 1, i64)
        notes = op.attributes.get("coefficients")
        old = list(notes.data) if isinstance(notes, ArrayAttr) else []
        op.attributes["coefficients"] = ArrayAttr([*old, StringAttr(NOTE)])
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class SymProjectPass(ModulePass):
    """Project every step onto the energy surface of the start (project = energy)."""

    name = "sym-project"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(MarkProjection(), apply_recursively=False).rewrite_module(op)
