"""sym-fold-linear: replace the time loop of a linear system by powers of its one-step map.

When H is quadratic in z = (q, p) (linear terms allowed), every integrator we build (kicks,
drifts, implicit midpoint, their compositions, the exact flow) maps z to M z + b with a fixed
matrix M: stepping s times is z -> M^s z (in the augmented (2n+1) x (2n+1) form that carries b).
The loop of s steps becomes O(log s) matrix products.

Algorithm:
  1. Decide (`fold_decision`): fold when folding is enabled, ham-degree's analysis says H has
     degree <= 2 in (q, p), and every coefficient is a run-time constant (params, inputs, sizes
     and literals; the language has no explicit time dependence, so this only rejects reads of
     a field that is neither state nor input). Otherwise the remark says why, naming the op and
     its location from ham-degree (`H has degree 4 via ham.ipow at kepler.ham:3:12`).
  2. Rewrite: each `sym.evolve @scheme` whose system is quadratic becomes
     `sym.propagate @scheme save [...] method "auto"`. The scheme stays: it is the one-step code
     from which the runtime builds M exactly (tpc.runtime.fold applies it to the unit vectors).
  3. Asked to fold a non-quadratic H, the pass fails and says why.
  4. The runtime (tpc.runtime.fold) picks the power method at run time, when the sizes are
     known: dense repeated squaring, or a modal eigen-decomposition for large separable systems.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.ham_degree import analyze, describe
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from tpc.diagnostics import TpcError


@dataclass(frozen=True)
class Decision:
    applies: bool
    remark: str


def _systems(module: ModuleOp) -> list[ham.SystemOp]:
    return [op for op in module.walk() if isinstance(op, ham.SystemOp)]


def _non_constant(system: ham.SystemOp) -> str:
    """Why some coefficient of H is not constant during a run ('' when all are)."""
    q, p = system.state.names
    inputs = {op.sym_name.data for op in system.decls(ham.InputOp)}
    for op in system.hamiltonian.walk():
        if isinstance(op, ham.LoadOp) and op.field_name not in inputs | {q, p}:
            return f"{describe(op)} reads '{op.field_name}', which may change during a run"
    return ""


def _why_not(system: ham.SystemOp) -> str:
    facts = analyze(system)
    if not facts.quadratic:
        return facts.why or f"H has degree {facts.degree_text}"
    return _non_constant(system)


EXACT_NEEDS_FOLD = (
    "integrator 'exact' is the exact flow exp(dt A) of a linear (quadratic-H) system, built "
    "as a matrix; it needs matrix-power folding, which is disabled (--no-fold / fold=False)"
)


def exact_not_quadratic(why: str) -> str:
    return (f"integrator 'exact' needs a quadratic H (a linear Hamiltonian vector field), "
            f"but {why}")


def check_exact(options, module_or_quadratic, why: str = "") -> None:
    """TpcError when `integrator = exact` cannot be honoured (no folding, or H not quadratic)."""
    if getattr(options, "integrator", None) != "exact":
        return
    if not getattr(options, "fold", True):
        raise TpcError(EXACT_NEEDS_FOLD)
    if isinstance(module_or_quadratic, bool):
        if not module_or_quadratic:
            raise TpcError(exact_not_quadratic(why or "H is not quadratic"))
        return
    for system in _systems(module_or_quadratic):
        if reason := _why_not(system):
            raise TpcError(exact_not_quadratic(reason))


def fold_decision(module: ModuleOp, options) -> Decision:
    """Whether the time loop of `module` folds into matrix powers, with the remark that says so."""
    integrator = getattr(options, "integrator", None) or "leapfrog"
    check_exact(options, module)
    if not getattr(options, "fold", True):
        return Decision(False, "remark: not folded: matrix-power folding disabled by --no-fold")
    systems = _systems(module)
    if not systems:
        return Decision(False, "remark: not folded: no ham.system")
    degree = 0
    for system in systems:
        if reason := _why_not(system):
            return Decision(False, "remark: not folded: " + reason)
        degree = max(degree, analyze(system).degree)
    return Decision(
        True,
        f"remark: time loop folded into matrix powers: H is quadratic (degree {max(degree, 0)}), "
        f"one-step map of {integrator} built exactly",
    )


@dataclass(frozen=True)
class SymFoldLinearPass(ModulePass):
    """Replace sym.evolve of a quadratic H by sym.propagate (the loop folded into M^s)."""

    name = "sym-fold-linear"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        systems = {s.sym_name.data: s for s in op.walk() if isinstance(s, ham.SystemOp)}
        schemes = {s.sym_name.data: s for s in op.walk() if isinstance(s, sym.SchemeOp)}
        for evolve in [o for o in op.walk() if isinstance(o, sym.EvolveOp)]:
            name = evolve.scheme.string_value()
            if name not in schemes:
                raise PassFailedException(f"sym-fold-linear: no sym.scheme @{name}")
            scheme = schemes[name]
            system = systems.get(scheme.system.string_value())
            if system is None:
                raise PassFailedException(
                    f"sym-fold-linear: no ham.system {scheme.system} for scheme @{name}"
                )
            if reason := _why_not(system):
                raise PassFailedException(
                    f"sym-fold-linear: cannot fold the time loop of @{name} into matrix "
                    f"powers: {reason}"
                )
            new = sym.PropagateOp(name, "auto", [s.data for s in evolve.save.data])
            block = evolve.parent_block()
            assert block is not None
            block.insert_op_before(new, evolve)
            evolve.detach()
            evolve.erase()
