"""sym-fold-linear: replace the time loop of a linear system by powers of its one-step map.

When H is quadratic in z = (q, p) (linear terms allowed), every integrator we build (kicks,
drifts, implicit midpoint, their compositions, the exact flow) maps z to M z + b with a fixed
matrix M: stepping s times is z -> M^s z (in the augmented (2n+1) x (2n+1) form that carries b).
The loop of s steps becomes O(log s) matrix products.

Algorithm, for each `sym.evolve`:
  1. Decide from ham-degree's facts on `ham.hamiltonian`: fold when folding is enabled (pass
     option `enabled`), H has degree <= 2 in (q, p), and every coefficient is a run-time
     constant (params, inputs, sizes and literals: this only rejects reads of a field that is
     neither state nor input).
  2. Folding: the evolve becomes `sym.propagate @scheme method "auto" reason "..."`; the scheme
     stays, as the one-step code from which the runtime builds M exactly (it applies the
     compiled step to the unit vectors). An `exact` scheme gets method "expm": the exact flow
     of the linear vector field (built from the compiled gradients), which the runtime
     evaluates at each snapshot's t.
  3. Not folding: the evolve keeps its loop and records why in `not_folded` (the op and its
     location from ham-degree, e.g. "H has degree 4 via ham.ipow at kepler.ham:3:12"). An
     `exact` scheme cannot be stepped, so with folding disabled the pass fails and says so.
  4. The runtime reads the decision (method and reason) from the module's ABI table and picks
     the power method when the sizes are known: normal modes for a separable H, dense
     repeated squaring otherwise (tpc.runtime.fold); a run that is cheaper stepped is stepped,
     and `tpc run --remarks` reports what the run did, not only what this pass allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.ham_degree import describe, read_facts
from tpc.passes.refusal import Refusal
from tpc.passes.sym_flow_kinds import system_of
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

EXACT_NEEDS_FOLD = (
    "integrator 'exact' is the exact flow of a linear (quadratic-H) system, evaluated at each "
    "snapshot's t; it needs matrix-power folding, which is disabled (--no-fold / fold=False)"
)
DISABLED = "matrix-power folding disabled by --no-fold"


def non_constant(system: ham.SystemOp) -> str:
    """Why some coefficient of H is not constant during a run ('' when all are)."""
    q, p = system.state.names
    inputs = {op.sym_name.data for op in system.decls(ham.InputOp)}
    for part in system.parts:
        for op in part.walk():
            if isinstance(op, ham.LoadOp) and op.field_name not in inputs | {q, p}:
                return f"{describe(op)} reads '{op.field_name}', which may change during a run"
    return ""


def why_not(system: ham.SystemOp) -> str:
    """Why the time loop of `system` cannot fold ('' when it can)."""
    facts = read_facts(system.hamiltonian)
    if not facts.quadratic:
        return facts.why or f"H has degree {facts.degree_text}"
    return non_constant(system)


def scheme_named(module: ModuleOp, name: str, user=None) -> sym.SchemeOp:
    for op in module.body.block.ops:
        if isinstance(op, sym.SchemeOp) and op.sym_name.data == name:
            return op
    raise Refusal(user, f"sym-fold-linear: no sym.scheme @{name}")


@dataclass
class FoldEvolve(RewritePattern):
    enabled: bool

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.EvolveOp, rewriter: PatternRewriter) -> None:
        if "not_folded" in op.attributes:
            return
        scheme = scheme_named(op.parent_op(), op.scheme.string_value(), op)
        system = system_of(scheme)
        exact = "exact" in scheme.attributes
        save = [s.data for s in op.save.data]
        if not self.enabled:
            if exact:
                raise Refusal(op, EXACT_NEEDS_FOLD)
            op.attributes["not_folded"] = StringAttr(DISABLED)
            rewriter.notify_op_modified(op)
            return
        if "project" in scheme.attributes:
            reason = "project = energy: the projection onto the energy surface is not linear"
        else:
            reason = why_not(system)
        if reason:
            op.attributes["not_folded"] = StringAttr(reason)
            rewriter.notify_op_modified(op)
            return
        facts = read_facts(system.hamiltonian)
        integrator = scheme.attributes.get("integrator")
        name = integrator.data if isinstance(integrator, StringAttr) else scheme.sym_name.data
        how = ("the exact flow of its linear vector field, from the derived gradients" if exact
               else f"one-step map of {name} built exactly")
        reason = (f"time loop folded into matrix powers: H is quadratic (degree "
                  f"{facts.degree_text}), {how}")
        rewriter.replace(op, sym.PropagateOp(op.scheme.string_value(),
                                                "expm" if exact else "auto", save, reason))


@dataclass(frozen=True)
class SymFoldLinearPass(ModulePass):
    """Fold the time loop of a quadratic H into matrix powers (sym.evolve -> sym.propagate),
    or record on the sym.evolve why not."""

    name = "sym-fold-linear"
    enabled: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FoldEvolve(self.enabled), apply_recursively=False).rewrite_module(op)


def fold_remarks(module: ModuleOp) -> list[str]:
    """The folding decisions recorded in a sym-level module, as remarks."""
    out = []
    for op in module.body.block.ops:
        if isinstance(op, sym.PropagateOp):
            out.append(f"remark: {op.reason.data}")
        elif isinstance(op, sym.EvolveOp) and "not_folded" in op.attributes:
            out.append(f"remark: not folded: {op.attributes['not_folded'].data}")
    return out
