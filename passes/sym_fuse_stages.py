"""sym-fuse-stages: merge adjacent stages of the same kind, within and across steps.

Algorithm:
  1. Within the step, replace each run of adjacent kicks (or drifts) by one stage with the summed
     coefficient: a Yoshida composition of leapfrogs has kick(w1/2) kick(w0/2) at every seam.
  2. If the step begins and ends with kicks, mark the scheme `fsal` (first same as last): the
     time loop then fuses the last kick of one step with the first kick of the next, so a
     leapfrog step costs one force evaluation. The lowering splits the fused kick again only
     where a snapshot needs p at a whole step.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import sym
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, UnitAttr, i64
from xdsl.passes import ModulePass

_MERGEABLE = (sym.KickOp, sym.DriftOp)


def fuse(scheme: sym.SchemeOp) -> None:
    stages = scheme.stages
    prev = None
    for st in stages:
        if prev is not None and type(prev) is type(st) and isinstance(st, _MERGEABLE):
            merged = type(st)(prev.c + st.c)
            scheme.body.block.insert_op_before(merged, prev)
            prev.detach()
            prev.erase()
            st.detach()
            st.erase()
            prev = merged
            continue
        prev = st
    stages = scheme.stages
    if len(stages) > 1 and isinstance(stages[0], sym.KickOp) and isinstance(stages[-1], sym.KickOp):
        scheme.attributes["fsal"] = UnitAttr()
    kicks = sum(isinstance(s, sym.KickOp) for s in stages) - ("fsal" in scheme.attributes)
    scheme.attributes["force_evals"] = IntegerAttr(kicks, i64)


@dataclass(frozen=True)
class SymFuseStagesPass(ModulePass):
    """Merge adjacent kicks/drifts and mark first-same-as-last schemes (one force per step)."""

    name = "sym-fuse-stages"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for scheme in [s for s in op.walk() if isinstance(s, sym.SchemeOp)]:
            fuse(scheme)
