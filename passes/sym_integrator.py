"""sym-integrator: build the time step of the chosen integrator as a `sym.scheme` of flows.

The integrator is a specification (tpc.passes.methods): a method name, optionally over named
parts of H (`leapfrog(A, B, C)`, `yoshida6(Vweak, T + Vtrap)`), a synthesized composition
(`compose(order = 6, stages = 7)`, `compose(A, B, order = 4, stages = 6)`) or a multiple-time-
step scheme (`respa(slow = Vpair, fast = T + Vbond, inner = 10)`).

Algorithm:
  1. Read H's parts and ham-degree's `depends_on`: parts of q alone (and constant parts) form
     the automatic potential side V, parts of p alone the kinetic side T; a part of both is
     non-separable. A method without parts splits H into (V, T), V outermost, and fails,
     naming the part and its location, when a part couples q and p.
  2. leapfrog(t1, ..., tk) is Strang splitting with t1 outermost: t1/2 ... tk ... t1/2.
     yoshida4/6/8 compose it with Yoshida's coefficients and compose(...) with synthesized
     ones (tpc.passes.compositions solves the order conditions); respa flows `slow` for half
     a step on either side of `inner` steps (a sym.repeat) of the fast sub-scheme at dt/inner.
  3. midpoint flows all of H at once; exact is one flow of all of H for the whole step (the
     scheme is marked `exact`; sym-flow-kinds checks that H is quadratic and sym-fold-linear
     builds its matrix exponential).
  4. Emit the scheme after the system and a `sym.evolve` time loop that saves q, p and H.
     The scheme records `integrator` (the specification) and `order`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes import compositions, methods
from tpc.passes.ham_degree import describe, read_facts
from xdsl.context import Context
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
    i64,
)
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.utils.exceptions import PassFailedException


def sides(system: ham.SystemOp) -> methods.Sides:
    """H's parts as the method builder sees them: in H's order, by the fields they read, and
    the names that stand for several parts (a `let` of parts; a part ham-split-parts split)."""
    q, p = system.state.names
    v, t, mixed = [], [], []
    names = system.hamiltonian.part_names
    for name in names:
        deps = read_facts(system.part(name)).depends_on
        (mixed if len(deps) == 2 else t if deps == (p,) else v).append(name)
    groups: dict[str, tuple[str, ...]] = {}
    for name in names:
        origin = system.part(name).attributes.get("split_from")
        if isinstance(origin, StringAttr):
            groups.setdefault(origin.data, ())
            groups[origin.data] += (name,)
    lets = system.hamiltonian.attributes.get("groups")
    if isinstance(lets, DictionaryAttr):
        for key, val in lets.data.items():
            if isinstance(val, ArrayAttr):
                groups[key] = tuple(n for x in val.data for n in _current(x.string_value(),
                                                                           groups, names))
    magnetic = tuple(n for n in names if "magnetic" in system.part(n).attributes)
    return methods.Sides(tuple(names), tuple(v), tuple(t), tuple(mixed), groups, magnetic)


def _current(name: str, groups, names) -> tuple[str, ...]:
    """A part a `let` group names, after ham-split-parts may have split it."""
    return (name,) if name in names else groups.get(name, (name,))


def mixed_part_error(system: ham.SystemOp, integrator: str):
    def error(name: str, offset: int) -> Exception:
        part = system.part(name)
        return methods.MethodError(
            f"integrator '{integrator}' is an explicit splitting, but part @{name} of H "
            f"({describe(part)}) couples q and p, so its flow is not a kick or a drift and "
            "the split method would not be symplectic; use integrator = midpoint, or name "
            "the parts to flow (e.g. leapfrog(A, B), where a part of both is flowed by the "
            "implicit midpoint rule)", offset)
    return error


class Coefficients:
    """The composition coefficients the builder asks for (tpc.passes.compositions)."""

    def named(self, name: str) -> tuple[list[float], str]:
        order = int(name[-1])
        m = compositions.triple_jump(order) if name.startswith("triple_jump") else \
            compositions.yoshida(order)
        return list(m.weights), m.describe()

    def composition(self, order: int, stages: int) -> tuple[list[float], str]:
        m = compositions.symmetric_composition(order, stages)
        return list(m.weights), m.describe()

    def splitting(self, order: int, stages: int) -> tuple[list, str]:
        m = compositions.splitting_method(order, stages)
        return list(m.sequence), m.describe()


def plan(system: ham.SystemOp, spec: methods.Method, on_mixed=None) -> methods.Scheme:
    """The scheme of the specification for `system`; MethodError (with an offset into the
    specification) when it cannot be built. `on_mixed(part, offset)` makes the error for a
    part that an explicit splitting cannot flow."""
    builder = methods.Builder(sides(system), Coefficients(),
                              on_mixed or mixed_part_error(system, str(spec)))
    return builder.build(spec)


def _ops(stages) -> list:
    return [sym.FlowOp(s.parts, s.c, s.kind) if isinstance(s, methods.Flow)
            else sym.RepeatOp(s.n, _ops(s.stages)) for s in stages]


def build_scheme(system: ham.SystemOp, integrator: str) -> sym.SchemeOp:
    try:
        spec = methods.parse(integrator)
        scheme = plan(system, spec)
    except methods.MethodError as e:
        raise PassFailedException(f"sym-integrator: {e}") from None
    extra = {"exact": UnitAttr()} if scheme.exact else {}
    if scheme.notes:
        extra["coefficients"] = ArrayAttr([StringAttr(n) for n in scheme.notes])
    return sym.SchemeOp(
        spec.name, system.sym_name.data, _ops(scheme.stages),
        order=IntegerAttr(scheme.order, i64), integrator=StringAttr(str(spec)), **extra,
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
        rewriter.insert([scheme, sym.EvolveOp(scheme.sym_name.data)], InsertPoint.after(op))


@dataclass(frozen=True)
class SymIntegratorPass(ModulePass):
    """Build the integrator's step (sym.scheme of flows of H's parts) and the time loop
    (sym.evolve) for each system."""

    name = "sym-integrator"
    integrator: str = "leapfrog"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(BuildScheme(self.integrator), apply_recursively=False,
                             walk_regions_first=False).rewrite_module(op)
