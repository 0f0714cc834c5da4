"""sym-kahan: compensated state updates, with the compensations as carried run state.

In float32 every update x += d of a long run rounds, and the roundings add up: the energy of a
leapfrog orbit drifts by ~1e-5 over 10^6 steps. Compensated summation keeps, per state
element, what the stored x did not absorb in a second buffer c and adds it back with the
next increment, so x follows the exactly summed trajectory to within one rounding; what is
left is the rounding of the increments themselves (the f32 forces), which it cannot see.

Which compensation: Kahan-Babuska-Neumaier, in the feedback form
    y = d + c;  s = x + y;  c = (x + y) - s  (exactly, by Knuth's TwoSum);  x = s
 - The error term is exact whatever the magnitudes. Kahan's c = (s - x) - y is exact only
   while |x| >= |y|, and state components cross zero every orbit (q_x, p_y of a Kepler orbit
   twice a period), where the increment outgrows the value and Kahan's compensation loses
   bits. Neumaier's fix is a branch on |x| >= |y|; TwoSum computes the same exact error
   without a branch or a select, which vectorizes on the CPU and keeps GPU threads uniform.
 - The compensation is fed back into the next increment (Kahan's form) rather than summed
   apart and added at the end (Neumaier's original): the forces must see the compensated
   state at every step, not only the final sum.
Cost per element and update: 7 additions instead of 1, one more load and store.

Algorithm (after sym-lower-flows, before sym-fold-linear):
  1. Every `sym.update @x, c, [parts] wrt @y` becomes `sym.update ... kahan @kahan_x`, where
     kahan_x is kahan_q or kahan_p after the role of the target (the state's first or second
     field, whatever the system names them). sym-lower-loops' CpuMachine and
     sym-gpu-kernels' BlockMachine lower such an update with the same `compensated_add`.
  2. Every `sym.evolve` gets `carry [...]`: the compensation buffers of its scheme's updates,
     run state that the runtime keeps across chunks and snapshots, returns with the
     trajectory and takes back on a restart. The time t needs none: it is never accumulated
     (t = step * dt, computed in float64 from the integer step count).
  3. Folding is skipped: a folded run powers a matrix and never executes the per-step
     updates the user asked to compensate. Where sym-fold-linear would fold (its `why_not`
     is empty), the evolve records `not_folded` saying so (sym-fold-linear keeps an evolve
     that already has one); otherwise sym-fold-linear records its own reason.
  4. What cannot be compensated is an error, not a silent plain run: an implicit midpoint
     stage (its update is the converged iterate, not an x += d), the exact flows of parts
     (sym.linear, sym.kepler: a map of the state, not an increment), an `exact` flow (it runs
     only folded), a time loop already folded (run sym-kahan before sym-fold-linear).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import sym
from tpc.passes.sym_flow_kinds import scheme_of, system_of
from tpc.passes.sym_fold_linear import why_not
from xdsl.context import Context
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.traits import SymbolTable
from xdsl.utils.exceptions import PassFailedException

METHOD = "Kahan-Babuska-Neumaier"
STEPPED = ("compensated updates (--kahan) run the stepped time loop; folding into matrix "
           "powers would not execute them")
MIDPOINT = ("--kahan compensates explicit state updates (x += d); the implicit midpoint stage "
            "is not one (use an explicit splitting such as leapfrog or yoshida4)")
EXACT = ("--kahan compensates the updates of a stepped time loop, but integrator 'exact' runs "
         "only folded into matrix powers")
MAP = ("--kahan compensates explicit state updates (x += d); the exact {} flow of parts {} maps "
       "the state as a whole and is not one (name the parts so that each flow is a kick or a "
       "drift)")


def buffer_name(role: str) -> str:
    """The compensation buffer of the state field in role "q" or "p"."""
    return f"kahan_{role}"


def _role(op: sym.UpdateOp, scheme: sym.SchemeOp) -> str:
    q, _ = system_of(scheme).state.names
    return "q" if op.target_name == q else "p"


class CompensateUpdate(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.UpdateOp, rewriter: PatternRewriter) -> None:
        if op.comp is not None:
            return
        scheme = scheme_of(op)
        if scheme is None:
            raise PassFailedException("sym-kahan: sym.update outside a sym.scheme")
        rewriter.replace(op, sym.UpdateOp(op.target_name, op.c, op.part_names, op.wrt_name,
                                          buffer_name(_role(op, scheme))))


def _updates(scheme: sym.SchemeOp) -> list[sym.UpdateOp]:
    return [op for op in scheme.walk() if isinstance(op, sym.UpdateOp)]


class CarryCompensation(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.EvolveOp, rewriter: PatternRewriter) -> None:
        if op.carry is not None:
            return
        scheme = SymbolTable.lookup_symbol(op, op.scheme)
        if not isinstance(scheme, sym.SchemeOp):
            raise PassFailedException(f"sym-kahan: no sym.scheme {op.scheme}")
        roles = {_role(u, scheme) for u in _updates(scheme)}
        carry = [buffer_name(r) for r in ("q", "p") if r in roles]
        new = sym.EvolveOp(op.scheme.string_value(), [s.data for s in op.save.data],
                           carry=ArrayAttr([StringAttr(c) for c in carry]))
        new.attributes |= op.attributes
        if "not_folded" not in new.attributes and not why_not(system_of(scheme)):
            new.attributes["not_folded"] = StringAttr(STEPPED)
        rewriter.replace(op, new)


class Refuse(RewritePattern):
    """Stages and loops that cannot be compensated."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, sym.MidpointOp):
            raise PassFailedException(f"sym-kahan: {MIDPOINT}")
        if isinstance(op, sym.LinearOp | sym.KeplerOp):
            raise PassFailedException(f"sym-kahan: {MAP.format(op.name[4:], op.parts)}")
        if isinstance(op, sym.FlowOp):
            if op.kind_name == "exact":
                raise PassFailedException(f"sym-kahan: {EXACT}")
            raise PassFailedException(
                f"sym-kahan: sym.flow {op.parts} is not lowered to updates (run "
                "sym-lower-flows first)")
        if isinstance(op, sym.PropagateOp):
            raise PassFailedException(
                "sym-kahan: the time loop is already folded into matrix powers (run sym-kahan "
                "before sym-fold-linear)")


@dataclass(frozen=True)
class SymKahanPass(ModulePass):
    """Compensate every state update (Kahan-Babuska-Neumaier) in carried buffers; skip folding."""

    name = "sym-kahan"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier(
            [Refuse(), CompensateUpdate(), CarryCompensation()]
        )).rewrite_module(op)


def kahan_remarks(module: ModuleOp) -> list[str]:
    """What sym-kahan did, read back from the IR."""
    out = []
    for evolve in module.body.block.ops:
        if not isinstance(evolve, sym.EvolveOp) or not evolve.carry_names:
            continue
        scheme = SymbolTable.lookup_symbol(evolve, evolve.scheme)
        count = sum(1 for u in _updates(scheme) if u.comp is not None)
        out.append(f"remark: {count} state update(s) compensated ({METHOD}), carried in "
                   f"{', '.join(evolve.carry_names)}")
    return out
