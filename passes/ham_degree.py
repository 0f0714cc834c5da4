"""ham-degree: per part of H, its polynomial degree in (q, p), separability and dependence.

Algorithm:
  1. Walk each part's region in order, giving every value a degree: a state load is 1, constants,
     params, inputs and indices are 0, add/sub take the max, mul the sum, x^n (constant integer n)
     n times deg(x); dividing by a state-dependent value, a non-integer power and any
     transcendental of a state-dependent value are "nonpoly". A literal 0 is identically zero
     (degree -1), and so is any product with it, so `0 * sin(q)` adds nothing.
  2. Remember the first op whose result leaves the quadratic class while its operands were
     inside it: that is the op remarks point at ("degree 4 via ham.ipow at kepler.ham:3:12").
  3. Split the part into additive terms, descending through sums and constant factors, and
     call it separable when every term depends on q alone or on p alone.
  4. Attach `degree`, `quadratic`, `separable`, `depends_on` (the state fields the part
     reads) and `why` to each `ham.part`, and the facts of the whole H (largest degree,
     separable when every part is) to `ham.hamiltonian`. Later passes read these attributes
     (`read_facts`); nothing recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tpc.dialects import ham
from tpc.passes.refusal import Refusal
from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    ArrayAttr,
    BoolAttr,
    FileLineColLoc,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    i64,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

NONPOLY = 10**9  # larger than any real degree; keeps max/sum arithmetic uniform
ZERO = -1  # identically zero
_TRANSCENDENTAL = (
    math.SinOp, math.CosOp, math.TanOp, math.ExpOp, math.LogOp, math.SqrtOp, math.AbsFOp,
    math.SinhOp, math.CoshOp, math.TanhOp, math.PowFOp, ham.NormOp, math.ErfOp, ham.ErfcOp,
    math.RoundOp, arith.SelectOp,  # a minimum image, a cutoff: piecewise
)


def describe(op: Operation) -> str:
    loc = op.location
    where = (
        f" at {loc.filename.data}:{loc.line.data}:{loc.column.data}"
        if isinstance(loc, FileLineColLoc) else ""
    )
    return f"{op.name}{where}"


@dataclass
class HamFacts:
    degree: int  # ZERO, 0, 1, ... or NONPOLY
    separable: bool
    why: str = ""  # the op that made H leave the quadratic class
    deps: dict[SSAValue, frozenset[str]] = field(default_factory=dict, repr=False)

    @property
    def quadratic(self) -> bool:
        return self.degree <= 2

    @property
    def degree_text(self) -> str:
        return "nonpoly" if self.degree >= NONPOLY else str(max(self.degree, 0))


class _Analysis:
    def __init__(self, state: tuple[str, str]):
        self.q, self.p = state
        self.deg: dict[SSAValue, int] = {}
        self.deps: dict[SSAValue, frozenset[str]] = {}
        self.culprit: Operation | None = None

    def degree_of(self, op: Operation) -> tuple[int, frozenset[str]]:
        ins = [self.deg.get(o, 0) for o in op.operands]
        deps = frozenset().union(*(self.deps.get(o, frozenset()) for o in op.operands))
        match op:
            case arith.ConstantOp() if isinstance(op.value, FloatAttr) and op.value.value.data == 0:
                return ZERO, deps
            case ham.LoadOp():
                name = op.field_name
                return (1, frozenset([name])) if name in (self.q, self.p) else (0, frozenset())
            case arith.AddfOp() | arith.SubfOp():
                return max(ins), deps
            case arith.MulfOp() | ham.DotOp() | ham.CrossOp():
                if ZERO in ins:
                    return ZERO, frozenset()
                return min(sum(max(d, 0) for d in ins), NONPOLY), deps
            case arith.DivfOp():
                num, den = ins
                if den > 0:
                    return NONPOLY, deps
                return num, deps
            case ham.IPowOp():
                n = op.exponent.value.data
                (d,) = ins
                if d == ZERO:
                    return (ZERO if n > 0 else NONPOLY), deps
                if d <= 0:
                    return 0, deps
                return (min(n * d, NONPOLY) if n >= 0 else NONPOLY), deps
            case _ if isinstance(op, _TRANSCENDENTAL):
                return (0 if max(ins) <= 0 else NONPOLY), deps
            case ham.SumOp() | ham.PairSumOp():
                y = op.body.block.last_op
                return self.deg.get(y.values[0], 0), self.deps.get(y.values[0], frozenset())
            case _:
                # neg, broadcast, extract, reduce keep degree; index arithmetic is degree 0.
                return (max(ins) if ins else 0), deps

    def run(self, region_block) -> None:
        for op in region_block.ops:
            for r in op.regions:
                for b in r.blocks:
                    self.run(b)
            if not op.results:
                continue
            d, deps = self.degree_of(op)
            if d > 2 and self.culprit is None and all(
                self.deg.get(o, 0) <= 2 for o in op.operands
            ):
                self.culprit = op
            for res in op.results:
                self.deg[res], self.deps[res] = d, deps

    def terms(self, v: SSAValue) -> list[SSAValue]:
        """Additive terms of v, looking through sums, negation and constant factors."""
        op = v.owner
        match op:
            case arith.AddfOp() | arith.SubfOp():
                return self.terms(op.lhs) + self.terms(op.rhs)
            case arith.NegfOp():
                return self.terms(op.operand)
            case arith.MulfOp() if not self.deps.get(op.lhs):
                return self.terms(op.rhs)
            case arith.MulfOp() if not self.deps.get(op.rhs):
                return self.terms(op.lhs)
            case arith.DivfOp() if not self.deps.get(op.rhs):
                return self.terms(op.lhs)
            case ham.SumOp() | ham.PairSumOp():
                return self.terms(op.body.block.last_op.values[0])
        return [v]


def analyze_part(part: ham.PartOp, state: tuple[str, str]) -> HamFacts:
    """The facts of one part's region (see the module docstring)."""
    a = _Analysis(state)
    block = part.body.block
    a.run(block)
    h = block.last_op.values[0]
    separable = all(len(a.deps.get(t, frozenset())) <= 1 for t in a.terms(h))
    degree = a.deg.get(h, 0)
    why = ""
    if degree > 2 and a.culprit is not None:
        kind = "is not a polynomial" if degree >= NONPOLY else f"has degree {degree}"
        why = f"H {kind} via {describe(a.culprit)} (part @{part.part_name})"
    return HamFacts(degree, separable, why, a.deps)


def value_deps(block, state: tuple[str, str]) -> dict[SSAValue, frozenset[str]]:
    """Which state fields each value of `block` depends on (ham-derive's dataflow)."""
    a = _Analysis(state)
    a.run(block)
    return a.deps


def _degree_attr(degree: int):
    return StringAttr("nonpoly") if degree >= NONPOLY else IntegerAttr(max(degree, 0), i64)


def degree_of_attr(attr) -> int:
    return NONPOLY if isinstance(attr, StringAttr) else attr.value.data


def attach(op, facts: HamFacts, depends_on: tuple[str, ...] | None) -> None:
    op.attributes["degree"] = _degree_attr(facts.degree)
    op.attributes["quadratic"] = BoolAttr.from_bool(facts.quadratic)
    op.attributes["separable"] = BoolAttr.from_bool(facts.separable)
    if depends_on is not None:
        op.attributes["depends_on"] = ArrayAttr([StringAttr(s) for s in depends_on])
    if facts.why:
        op.attributes["why"] = StringAttr(facts.why)


@dataclass
class Facts:
    """The facts ham-degree attached to a part or to the whole H, read back."""

    degree: int
    quadratic: bool
    separable: bool
    why: str
    depends_on: tuple[str, ...] = ()

    @property
    def degree_text(self) -> str:
        return "nonpoly" if self.degree >= NONPOLY else str(max(self.degree, 0))


def read_facts(op) -> Facts:
    """The facts on a ham.part or ham.hamiltonian (ham-degree must have run)."""
    attrs = op.attributes
    if "degree" not in attrs:
        raise Refusal(op, f"{op.name} has no degree facts (run ham-degree first)")

    def bad(key: str, what: str):
        return Refusal(op, f"{op.name}: its degree fact '{key}' must be {what}")

    degree = attrs["degree"]
    if not (isinstance(degree, StringAttr) and degree.data == "nonpoly") and not (
            isinstance(degree, IntegerAttr) and isinstance(degree.value.data, int)):
        raise bad("degree", 'an integer or "nonpoly"')
    flags = []
    for key in ("quadratic", "separable"):
        flag = attrs.get(key)
        if not isinstance(flag, IntegerAttr) or flag.type != BoolAttr.from_bool(True).type:
            raise bad(key, "a boolean (true or false)")
        flags.append(flag.value.data != 0)
    why, deps = attrs.get("why", StringAttr("")), attrs.get("depends_on", ArrayAttr([]))
    if not isinstance(why, StringAttr):
        raise bad("why", "a string")
    if not isinstance(deps, ArrayAttr) or not all(isinstance(d, StringAttr) for d in deps.data):
        raise bad("depends_on", "a list of field names")
    return Facts(degree_of_attr(degree), flags[0], flags[1], why.data,
                 tuple(d.data for d in deps.data))


class AnnotatePart(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if "degree" in op.attributes or not isinstance(system, ham.SystemOp):
            return
        q, p = system.state.names
        facts = analyze_part(op, (q, p))
        h = op.body.block.last_op.values[0]
        deps = facts.deps.get(h, frozenset())
        attach(op, facts, tuple(f for f in (q, p) if f in deps))
        rewriter.notify_op_modified(op)


class AnnotateHamiltonian(RewritePattern):
    """The whole H from its parts: the largest degree, separable when every part is, and the
    first part's reason for leaving the quadratic class."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.HamiltonianOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if "degree" in op.attributes or not isinstance(system, ham.SystemOp):
            return
        facts = [read_facts(system.part(n)) for n in op.part_names]
        degree = max(f.degree for f in facts)
        why = next((f.why for f in facts if f.degree == degree and f.why), "")
        whole = HamFacts(degree, all(f.separable for f in facts), why if degree > 2 else "")
        attach(op, whole, None)
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class HamDegreePass(ModulePass):
    """Attach degree, quadratic, separability and dependence facts to every ham.part and to
    ham.hamiltonian."""

    name = "ham-degree"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        # Parts come before ham.hamiltonian in a system's block: one walk sees them first.
        PatternRewriteWalker(
            GreedyRewritePatternApplier([AnnotatePart(), AnnotateHamiltonian()]),
            apply_recursively=False,
        ).rewrite_module(op)
