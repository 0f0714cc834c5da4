"""sym-flow-kinds: decide how each `sym.flow` runs, from the facts of the parts it flows.

Algorithm, for each flow without a `kind`:
  1. The parts' `depends_on` (ham-degree), united: q alone -> `kick` (p moves, q does not, so
     the flow p -= c dt dV/dq is exact); p alone -> `drift` (q += c dt dT/dp, exact).
  2. Both: in a scheme marked `exact`, `exact` when every part is quadratic (the flow of the
     whole step is the matrix exponential of a linear vector field, folded), else the pass
     fails naming the part that is not. Otherwise `linear` when every part is quadratic (the
     exact flow of the parts, an affine map per stage: the interaction picture of a stiff
     harmonic part); `kepler` when the parts are ham-kepler's kinetic and potential halves
     of a sum of Kepler problems (the exact two-body flow); else `midpoint` (the implicit
     midpoint rule). The midpoint integrator
     sets `midpoint` itself: it asked for the rule, not for the flow.
  3. A flow of parts that depend on nothing moves nothing: `kick` of a zero gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.ham_degree import read_facts
from tpc.passes.refusal import Refusal
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


def scheme_of(op: Operation) -> sym.SchemeOp | None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, sym.SchemeOp):
        parent = parent.parent_op()
    return parent


def system_of(scheme: sym.SchemeOp) -> ham.SystemOp:
    module = scheme.parent_op()
    name = scheme.system.string_value()
    for op in module.body.block.ops if module is not None else ():
        if isinstance(op, ham.SystemOp) and op.sym_name.data == name:
            return op
    raise Refusal(scheme, f"no ham.system @{name} for scheme @{scheme.sym_name.data}")


def flow_parts(system: ham.SystemOp, flow) -> list[ham.PartOp]:
    parts = []
    for name in flow.part_names:
        part = system.part(name)
        if part is None:
            raise Refusal(flow, f"{flow.name} names @{name}, which is not a ham.part")
        parts.append(part)
    return parts


def kind_of(system: ham.SystemOp, flow: sym.FlowOp, exact: bool) -> str:
    q, p = system.state.names
    facts = [read_facts(part) for part in flow_parts(system, flow)]
    deps = {d for f in facts for d in f.depends_on}
    if exact:
        for part, f in zip(flow.part_names, facts):
            if not f.quadratic:
                why = f.why or f"@{part} has degree {f.degree_text}"
                raise Refusal(
                    flow, "integrator 'exact' needs a quadratic H (a linear Hamiltonian vector "
                    f"field), but {why}")
        return "exact"
    if deps == {p}:
        return "drift"
    if deps <= {q}:
        return "kick"
    if all(f.quadratic for f in facts):
        return "linear"
    roles = [part.attributes.get("kepler") for part in flow_parts(system, flow)]
    if all(isinstance(r, StringAttr) for r in roles) and {r.data for r in roles} == {
            "kinetic", "potential"}:
        return "kepler"
    return "midpoint"


class DecideFlowKind(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.FlowOp, rewriter: PatternRewriter) -> None:
        if op.kind is not None:
            return
        scheme = scheme_of(op)
        if scheme is None:
            raise Refusal(op, "sym.flow outside a sym.scheme")
        kind = kind_of(system_of(scheme), op, "exact" in scheme.attributes)
        op.kind = StringAttr(kind)
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class SymFlowKindsPass(ModulePass):
    """Decide how each sym.flow runs (kick, drift, linear, midpoint, exact) from its parts'
    facts."""

    name = "sym-flow-kinds"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(DecideFlowKind(), apply_recursively=False).rewrite_module(op)
