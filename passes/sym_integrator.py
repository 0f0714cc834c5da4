"""sym-integrator: build the time step of the chosen integrator as a `sym.scheme`.

Algorithm:
  1. Read separability from ham-degree's analysis. A separable H = T(p) + V(q) gets explicit
     splittings; a non-separable one only the implicit midpoint rule (explicit splitting of a
     q*p term would not be symplectic, so asking for it is an error that says so).
  2. leapfrog is kick(1/2) drift(1) kick(1/2) (Stormer-Verlet). yoshidaN composes the order-(N-2)
     method with itself by the triple jump S(w1 h) S(w0 h) S(w1 h), where
     w1 = 1 / (2 - 2^(1/(N-1))) and w0 = 1 - 2 w1: each level raises a symmetric method's order
     by two. The same composition applies to the midpoint rule, which is symmetric too.
  3. Emit the scheme and a `sym.evolve` time loop that saves q, p and H.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.ham_degree import analyze
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, UnitAttr, i64
from xdsl.passes import ModulePass
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


def leapfrog_stages(weights: list[float]) -> list[tuple[str, float]]:
    stages: list[tuple[str, float]] = []
    for w in weights:
        stages += [("kick", w / 2), ("drift", w), ("kick", w / 2)]
    return stages


def build_scheme(system: ham.SystemOp, integrator: str) -> sym.SchemeOp:
    if integrator not in ORDERS:
        raise PassFailedException(f"sym-integrator: unknown integrator '{integrator}'")
    facts = analyze(system)
    order = ORDERS[integrator]
    weights = composition_weights(order)
    name = system.sym_name.data
    extra = {}
    if integrator == "exact":
        # The exact flow exp(dt A) is built by the fold runtime from the derived gradients; a
        # leapfrog scheme (marked `exact`) carries that derived code through the lowering.
        if not facts.quadratic:
            raise PassFailedException(
                "integrator 'exact' needs a quadratic H (a linear Hamiltonian vector field), "
                f"but {facts.why or 'H is not quadratic'}"
            )
        make = {"kick": sym.KickOp, "drift": sym.DriftOp}
        stages = [make[kind](c) for kind, c in leapfrog_stages([1.0])]
        extra["exact"] = UnitAttr()
    elif integrator == "midpoint":
        stages = [sym.ImplicitMidpointOp(w) for w in weights]
    elif not facts.separable:
        raise PassFailedException(
            f"integrator '{integrator}' is an explicit splitting, but H is not separable into "
            "T(p) + V(q) (it has terms that couple q and p), so the split flows would not be "
            "exact and the method would not be symplectic; use integrator = midpoint"
        )
    else:
        make = {"kick": sym.KickOp, "drift": sym.DriftOp}
        stages = [make[kind](c) for kind, c in leapfrog_stages(weights)]
    return sym.SchemeOp(
        integrator, name, stages, order=IntegerAttr(order, i64),
        integrator=StringAttr(integrator), **extra,
    )


@dataclass(frozen=True)
class SymIntegratorPass(ModulePass):
    """Build the integrator's step (sym.scheme) and the time loop (sym.evolve) for each system."""

    name = "sym-integrator"
    integrator: str = "leapfrog"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for system in [s for s in op.ops if isinstance(s, ham.SystemOp)]:
            scheme = build_scheme(system, self.integrator)
            op.body.block.add_op(scheme)
            op.body.block.add_op(sym.EvolveOp(scheme.sym_name.data))
