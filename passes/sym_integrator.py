"""sym-integrator: build the time step of the chosen integrator as a `sym.scheme` of flows.

Algorithm:
  1. Sort H's parts by ham-degree's `depends_on`: parts of q alone (and constant parts) form
     the potential side V, parts of p alone the kinetic side T; a part of both is non-separable.
  2. leapfrog is Strang splitting with V outermost: flow(V, 1/2) flow(T, 1) flow(V, 1/2)
     (Stormer-Verlet). yoshidaN composes the order-(N-2) method with itself by the triple jump
     S(w1 h) S(w0 h) S(w1 h), where w1 = 1 / (2 - 2^(1/(N-1))) and w0 = 1 - 2 w1: each level
     raises a symmetric method's order by two. An explicit splitting needs every part to be
     separable; otherwise the pass fails, naming the part and its location.
  3. midpoint flows all of H at once, composed the same way for yoshidaN-style orders; exact
     is one flow of all of H for the whole step (the scheme is marked `exact`; sym-flow-kinds
     checks that H is quadratic and sym-fold-linear builds its matrix exponential).
  4. Emit the scheme after the system and a `sym.evolve` time loop that saves q, p and H.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.ham_degree import describe, read_facts
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, UnitAttr, i64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import PassFailedException

ORDERS = {"leapfrog": 2, "midpoint": 2, "yoshida4": 4, "yoshida6": 6, "yoshida8": 8, "exact": 0}


def composition_weights(order: int) -> list[float]:
    """Step fractions of the recursive triple jump that lifts a 2nd-order method to `order`."""
    weights = [1.0]
    for k in range(4, order + 1, 2):
        w1 = 1.0 / (2.0 - 2.0 ** (1.0 / (k - 1)))
        w0 = 1.0 - 2.0 * w1
        weights = [w * f for f in (w1, w0, w1) for w in weights]
    return weights


def sides(system: ham.SystemOp) -> tuple[list[str], list[str], list[ham.PartOp]]:
    """(V parts, T parts, non-separable parts) of the system's H, in H's order."""
    q, p = system.state.names
    v, t, mixed = [], [], []
    for name in system.hamiltonian.part_names:
        part = system.part(name)
        deps = read_facts(part).depends_on
        if len(deps) == 2:
            mixed.append(part)
        elif deps == (p,):
            t.append(name)
        else:
            v.append(name)
    return v, t, mixed


def splitting_flows(system: ham.SystemOp, integrator: str, weights: list[float]) -> list:
    v, t, mixed = sides(system)
    if mixed:
        part = mixed[0]
        raise PassFailedException(
            f"integrator '{integrator}' is an explicit splitting, but part @{part.part_name} "
            f"of H ({describe(part)}) couples q and p, so its flow is not a kick or a drift and "
            "the split method would not be symplectic; use integrator = midpoint"
        )
    if not v and not t:
        v = system.hamiltonian.part_names
    stages = []
    for w in weights:
        if v:
            stages.append(sym.FlowOp(v, w / 2))
        if t:
            stages.append(sym.FlowOp(t, w))
        if v:
            stages.append(sym.FlowOp(v, w / 2))
    return stages


def build_scheme(system: ham.SystemOp, integrator: str) -> sym.SchemeOp:
    if integrator not in ORDERS:
        raise PassFailedException(f"sym-integrator: unknown integrator '{integrator}'")
    order = ORDERS[integrator]
    weights = composition_weights(order)
    everything = system.hamiltonian.part_names
    extra = {}
    if integrator == "exact":
        stages = [sym.FlowOp(everything, 1.0)]
        extra["exact"] = UnitAttr()
    elif integrator == "midpoint":
        stages = [sym.FlowOp(everything, w) for w in weights]
    else:
        stages = splitting_flows(system, integrator, weights)
    return sym.SchemeOp(
        integrator, system.sym_name.data, stages, order=IntegerAttr(order, i64),
        integrator=StringAttr(integrator), **extra,
    )


@dataclass
class BuildScheme(RewritePattern):
    integrator: str

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.SystemOp, rewriter: PatternRewriter) -> None:
        module = op.parent_op()
        name = op.sym_name.data
        if any(isinstance(s, sym.SchemeOp) and s.system.string_value() == name
               for s in module.body.block.ops):
            return
        scheme = build_scheme(op, self.integrator)
        rewriter.insert_op([scheme, sym.EvolveOp(scheme.sym_name.data)], InsertPoint.after(op))


@dataclass(frozen=True)
class SymIntegratorPass(ModulePass):
    """Build the integrator's step (sym.scheme of flows of H's parts) and the time loop
    (sym.evolve) for each system."""

    name = "sym-integrator"
    integrator: str = "leapfrog"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(BuildScheme(self.integrator), apply_recursively=False,
                             walk_regions_first=False).rewrite_module(op)
