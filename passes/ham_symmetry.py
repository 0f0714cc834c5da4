"""ham-symmetry: which continuous symmetries H has, proved on the IR, and their Noether charges.

Candidates, from the state's shape ([N, D] or [D]: particles in D = 2 or 3 dimensions; [N] or
[K] otherwise: particles on a line):
  translation_<axis>  every q row shifted along the axis, p unchanged     -> P_<axis> = sum p_i
  rotation_<axis>     every q row and p row rotated about the axis (3-D)  -> L_<axis>
  rotation            the same in the plane (2-D)                         -> L
  time                H does not depend on t (the IR has no time symbol)  -> H itself
A 3-D system invariant under the rotations about all three axes is SO(3)-invariant.

A symmetry is claimed only when proved: for every part of H separately (then every splitting
of H into its parts flows a symmetric Hamiltonian, and a splitting or composition method
conserves the charge to round-off), or, for a state of fixed size, for H as a whole by the
Lie derivative of the sum of its parts (then a flow of a part that is not invariant alone
breaks exact conservation; `invariant_under` on the parts says which are). The per-part proof
is an abstract interpretation of each part's region, one pass over its ops per candidate:
  - translation: each value carries how the generator moves it, a vector of exact rationals
    (one per component): a q row moves by e_axis, q[i, k] by [k == axis], p and every input,
    param and constant not at all. Sums, differences, negation, broadcasts, extracts, reductions
    and products or quotients by literal constants combine the shifts exactly; any other op is
    invariant when every operand is unmoved, and unproved otherwise. `q[i] - q[j]` is unmoved,
    so are its norm and dot products.
  - rotation: each value is `inv` (every component fixed), `iso` (a fixed vector with equal
    components: a broadcast scalar) or `cov` (rotates with the state: q and p rows). cov ± cov,
    cov * iso, cov / iso and the cross product of two cov stay cov; dot and norm of cov are
    inv; about axis a, component a of a cov vector (or q[i, a]) is inv. Anything else of a
    cov operand is unproved.
A part that fails is reported at the op where the proof stopped: the first op whose operands
were proved but whose result was not. Every op the rules do not know is handled by the
generic rule (invariant when its operands are), so new expression ops stay sound.

Attributes written (later passes and the runtime read them, nothing recomputes them):
  ham.part         `invariant_under = [...]` (the candidates this part is proved invariant under)
  ham.hamiltonian  `symmetries = [...]`, `conserved = [...]` (the charges' names, "H" for time)
                   and `not_symmetric = {candidate = "why"}`
  ham.monitor @P_x, @L_z ... one per proved charge (quantity, symmetry), computed at snapshots
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tpc.dialects import ham
from tpc.passes.ham_degree import describe
from tpc.passes.ham_lie import lie_proves
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    VectorType,
    f64,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

AXES = "xyz"


@dataclass(frozen=True)
class Geometry:
    """How the state is laid out: `rows` (q[i] is a particle's vector; else one particle when
    `single`), D dimensions."""

    dims: int
    rows: bool  # [N, D]: loads q[i] (rows) and q[i, k]
    single: bool  # [D]: one particle, loads q[] and q[k]

    @property
    def candidates(self) -> list[str]:
        if self.dims > 3 or self.dims < 1:
            return []
        out = [f"translation_{AXES[a]}" for a in range(self.dims)] if self.dims > 1 else [
            "translation"]
        if self.dims == 3:
            out += [f"rotation_{AXES[a]}" for a in range(3)]
        elif self.dims == 2:
            out.append("rotation")
        return out


def geometry(system: ham.SystemOp) -> Geometry:
    shape = system.state.shape.shape
    if len(shape) == 2 and isinstance(shape[1], int):
        return Geometry(shape[1], True, False)
    if len(shape) == 1 and shape[0] in (2, 3):
        return Geometry(shape[0], False, True)
    if len(shape) == 1:
        return Geometry(1, False, False)  # particles on a line: [N] or [K]
    return Geometry(0, False, False)  # no candidate but time


def charge_name(candidate: str) -> str:
    kind, _, axis = candidate.partition("_")
    return ("P" if kind == "translation" else "L") + (f"_{axis}" if axis else "")


def _const_index(v: SSAValue) -> int | None:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return op.value.value.data
    return None


def _literal(v: SSAValue) -> Fraction | None:
    """The value of a literal constant (scalar or broadcast), exactly."""
    op = v.owner
    if isinstance(op, ham.BroadcastOp):
        return _literal(op.scalar)
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, FloatAttr):
        return Fraction(op.value.value.data)
    return None


_ELEMENTWISE = (arith.AddfOp, arith.SubfOp, arith.MulfOp, arith.DivfOp, arith.NegfOp,
                ham.IPowOp)


def _width(t) -> int:
    return t.get_shape()[0] if isinstance(t, VectorType) else 1


class _Prover:
    """One candidate's abstract interpretation of a part (see the module docstring). A value
    missing from `vals` is unproved; `culprit` is the op where the proof stopped."""

    def __init__(self, geo: Geometry, state: tuple[str, str], candidate: str):
        self.geo, (self.q, self.p) = geo, state
        kind, _, axis = candidate.partition("_")
        self.rotation = kind == "rotation"
        self.axis = AXES.index(axis) if axis else 0
        self.vals: dict[SSAValue, object] = {}
        self.culprit: Operation | None = None

    def zero(self, v: SSAValue):
        return "inv" if self.rotation else (Fraction(0),) * _width(v.type)

    def fixed(self, x) -> bool:
        return x in ("inv", "iso") if self.rotation else not any(x)

    def component(self, load: ham.LoadOp) -> int | None:
        """Which component a scalar load of q or p reads (None: not a constant)."""
        idx = list(load.indices)
        if self.geo.rows and len(idx) == 2:
            return _const_index(idx[1]) if self.geo.dims > 1 else 0
        if self.geo.single and len(idx) == 1:
            return _const_index(idx[0])
        if not (self.geo.rows or self.geo.single):
            return 0  # a particle on a line: its only coordinate
        return None

    # -- the rules ---------------------------------------------------------------------------
    def load(self, op: ham.LoadOp):
        name = op.field_name
        if name not in (self.q, self.p):
            return self.zero(op.result)
        moved = self.rotation or name == self.q
        if not moved:
            return self.zero(op.result)
        if isinstance(op.result.type, VectorType):
            if self.rotation:
                return "cov"
            width = _width(op.result.type)
            if not (self.geo.rows or self.geo.single):
                return (Fraction(1),) * width  # particles on a line: all of them move
            return tuple(Fraction(int(k == self.axis)) for k in range(width))
        k = self.component(op)
        if k is None:
            return None
        if self.rotation:
            return "inv" if self.geo.dims == 3 and k == self.axis else None
        return (Fraction(int(k == self.axis)),)

    def translate(self, op: Operation, x: list):
        match op:
            case arith.AddfOp():
                return tuple(a + b for a, b in zip(x[0], x[1]))
            case arith.SubfOp():
                return tuple(a - b for a, b in zip(x[0], x[1]))
            case arith.NegfOp():
                return tuple(-a for a in x[0])
            case ham.BroadcastOp():
                return x[0] * _width(op.result.type)
            case ham.ExtractOp():
                return (x[0][op.position.value.data],)
            case ham.ReduceOp():
                return (sum(x[0], Fraction(0)),)
            case arith.MulfOp():
                for s, other in ((op.lhs, x[1]), (op.rhs, x[0])):
                    c = _literal(s)
                    if c is not None:
                        return tuple(c * a for a in other)
            case arith.DivfOp():
                c = _literal(op.rhs)
                if c:
                    return tuple(a / c for a in x[0])
        return None

    def rotate(self, op: Operation, x: list):
        cls = set(x)
        match op:
            case arith.AddfOp() | arith.SubfOp():
                if len(cls) == 1:
                    return x[0]
                return "inv" if cls == {"inv", "iso"} else None
            case arith.NegfOp():
                return x[0]
            case arith.MulfOp():
                if cls <= {"cov", "iso"} and "cov" in cls and "iso" in cls:
                    return "cov"
            case arith.DivfOp():
                if x == ["cov", "iso"]:
                    return "cov"
            case ham.DotOp():
                if x == ["cov", "cov"]:
                    return "inv"
            case ham.NormOp():
                return "inv"
            case ham.CrossOp():
                if x == ["cov", "cov"]:
                    return "cov"
            case ham.ExtractOp():
                if self.geo.dims == 3 and op.position.value.data == self.axis:
                    return "inv"
        return None

    def value(self, op: Operation):
        if isinstance(op, ham.LoadOp):
            return self.load(op)
        if isinstance(op, ham.SumOp | ham.PairSumOp):
            self.run(op.body.block)
            y = self.vals.get(op.body.block.last_op.values[0])
            if y is None:
                return None
            return y if self.rotation or self.fixed(y) else None
        if op.regions:
            return None  # a region op these rules do not know
        x = [self.vals.get(o, self.zero(o)) if o.type == IndexType() else self.vals.get(o)
             for o in op.operands]
        if any(v is None for v in x):
            return None
        if self.rotation:
            # iso (equal components) survives only elementwise arithmetic: an op that could
            # make an anisotropic vector of isotropic ones (none yet) gets plain inv
            if x and all(v == "iso" for v in x) and isinstance(op, _ELEMENTWISE):
                return "iso"
            if isinstance(op, ham.BroadcastOp):
                return "iso" if x[0] == "inv" else None
            if all(v in ("inv", "iso") for v in x):
                return "inv"
            return self.rotate(op, x)
        if all(not any(v) for v in x):
            return self.zero(op.results[0])
        return self.translate(op, x)

    def run(self, block: Block) -> None:
        for op in block.ops:
            if not op.results:
                continue
            known = all(o in self.vals or o.type == IndexType() for o in op.operands)
            v = self.value(op)
            if v is None:
                if known and self.culprit is None:
                    self.culprit = op
                continue
            for r in op.results:
                self.vals[r] = v

    def proves(self, part: ham.PartOp) -> bool:
        block = part.body.block
        self.run(block)
        h = self.vals.get(block.last_op.values[0])
        if h is not None and self.fixed(h):
            return True
        if self.culprit is None:
            self.culprit = block.last_op.values[0].owner
        return False


def flow_invariant(system: ham.SystemOp, parts: list[str], candidate: str) -> bool:
    """The sum of `parts` (one flow of a scheme) is proved invariant under `candidate`."""
    geo = geometry(system)
    return lie_proves(system, [system.part(p) for p in parts], geo.dims, geo.rows, candidate)


def why_not(candidate: str, part: ham.PartOp, prover: _Prover) -> str:
    kind, _, axis = candidate.partition("_")
    what = (f"translations along {axis or 'the line'}" if kind == "translation"
            else f"rotations about {axis or 'the normal of the plane'}")
    at = describe(prover.culprit) if prover.culprit is not None else "its value"
    return (f"part @{part.part_name} is not proved invariant under {what}: the proof stops at "
            f"{at}, of a value the {kind} moves")


def prove(system: ham.SystemOp) -> tuple[dict[str, list[str]], dict[str, str], set[str]]:
    """{part: candidates proved}, {candidate: why not} for the candidates H is not proved
    invariant under, and the candidates some part needed the Lie-derivative proof for (the
    structural rules first: they are cheap and work for any size; then {part, G} = 0 as a
    polynomial identity, for states of fixed size, passes/ham_lie.py)."""
    geo = geometry(system)
    state = system.state.names
    by_lie: set[str] = set()
    proved: dict[str, list[str]] = {p.part_name: [] for p in system.parts}
    failed: dict[str, str] = {}
    for candidate in geo.candidates:
        why = ""
        for part in system.parts:
            prover = _Prover(geo, state, candidate)
            if prover.proves(part):
                proved[part.part_name].append(candidate)
            elif lie_proves(system, part, geo.dims, geo.rows, candidate):
                proved[part.part_name].append(candidate)
                by_lie.add(candidate)
            elif not why:
                why = why_not(candidate, part, prover)
        # H may be invariant while some of its parts are not ({V1 + V2, L} = 0): a claim for
        # H, and a flow of one such part alone is not equivariant (its charge then drifts).
        if why and lie_proves(system, system.parts, geo.dims, geo.rows, candidate):
            by_lie.add(candidate)
        elif why:
            failed[candidate] = why
    return proved, failed, by_lie


# -------------------------------------------------------------------------- the charges


class _Charge:
    """Builds the region of a charge: sum over particles of f(q row, p row)."""

    def __init__(self, system: ham.SystemOp, geo: Geometry):
        self.system, self.geo = system, geo
        self.q, self.p = system.state.names
        self.block = Block()

    def emit(self, op: Operation, block: Block | None = None) -> SSAValue:
        (block or self.block).add_op(op)
        return op.results[0]

    def index(self, k: int, block: Block) -> SSAValue:
        return self.emit(arith.ConstantOp(IntegerAttr(k, IndexType())), block)

    def comp(self, field: str, k: int, i: SSAValue | None, block: Block) -> SSAValue:
        if self.geo.rows:
            return self.emit(ham.LoadOp(field, [i, self.index(k, block)], f64), block)
        if self.geo.single:
            return self.emit(ham.LoadOp(field, [self.index(k, block)], f64), block)
        return self.emit(ham.LoadOp(field, [i], f64), block)

    def build(self, name: str, quantity: str, candidate: str, f) -> ham.MonitorOp:
        if self.geo.single:
            total = f(None, self.block)
        else:
            n = self.system.state.shape.shape[0]
            lo = self.index(0, self.block)
            hi = self.index(n, self.block) if isinstance(n, int) else self.emit(ham.DimOp(n))
            body = Block(arg_types=[IndexType()])
            y = f(body.args[0], body)
            body.add_op(ham.YieldOp(y))
            total = self.emit(ham.SumOp(lo, hi, Region(body)))
        self.block.add_op(ham.YieldOp(total))
        op = ham.MonitorOp(name, Region(self.block), quantity)
        op.attributes["symmetry"] = StringAttr(candidate)
        return op


def charge(system: ham.SystemOp, geo: Geometry, candidate: str) -> ham.MonitorOp:
    c = _Charge(system, geo)
    kind, _, axis = candidate.partition("_")
    if kind == "translation":
        a = AXES.index(axis) if axis else 0
        return c.build(charge_name(candidate), "momentum", candidate,
                       lambda i, b: c.comp(c.p, a, i, b))
    # L_a = q_b p_c - q_c p_b with (a, b, c) cyclic; in the plane, L = q_x p_y - q_y p_x.
    a = AXES.index(axis) if axis else 2
    b, d = ((a + 1) % 3, (a + 2) % 3) if axis else (0, 1)

    def ang(i, blk):
        t1 = c.emit(arith.MulfOp(c.comp(c.q, b, i, blk), c.comp(c.p, d, i, blk)), blk)
        t2 = c.emit(arith.MulfOp(c.comp(c.q, d, i, blk), c.comp(c.p, b, i, blk)), blk)
        return c.emit(arith.SubfOp(t1, t2), blk)

    return c.build(charge_name(candidate), "angular_momentum", candidate, ang)


def _strings(items) -> ArrayAttr:
    return ArrayAttr([StringAttr(s) for s in items])


class ProveSymmetries(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.SystemOp, rewriter: PatternRewriter) -> None:
        h = op.hamiltonian
        if "symmetries" in h.attributes:
            return
        geo = geometry(op)
        proved, failed, by_lie = prove(op)
        for part in op.parts:
            part.attributes["invariant_under"] = _strings(proved[part.part_name])
        symmetric = [c for c in geo.candidates if c not in failed]
        # The language has no time symbol, so every H is autonomous: energy is conserved.
        h.attributes["symmetries"] = _strings([*symmetric, "time"])
        h.attributes["conserved"] = _strings([*map(charge_name, symmetric), "H"])
        h.attributes["not_symmetric"] = DictionaryAttr(
            {c: StringAttr(w) for c, w in failed.items()})
        if by_lie & set(symmetric):
            h.attributes["proved_by_lie"] = _strings([c for c in symmetric if c in by_lie])
        # The charges go right after ham.hamiltonian, in the candidates' order, before any
        # user observable (an observable of a charge's name is the user's: it stays theirs).
        existing = {m.monitor_name for m in op.monitors}
        last: Operation = h
        for cand in symmetric:
            if charge_name(cand) not in existing:
                mon = charge(op, geo, cand)
                rewriter.insert(mon, InsertPoint.after(last))
                last = mon
        rewriter.notify_op_modified(h)


def read_symmetries(system: ham.SystemOp) -> dict:
    """What ham-symmetry attached, as plain data ({} when it has not run)."""
    h = system.hamiltonian.attributes
    if "symmetries" not in h:
        return {}
    return {
        "symmetries": [s.data for s in h["symmetries"].data],
        "conserved": [s.data for s in h["conserved"].data],
        "not_symmetric": {k: v.data for k, v in h["not_symmetric"].data.items()},
        "proved_by_lie": [s.data for s in h["proved_by_lie"].data] if "proved_by_lie" in h
        else [],
    }


def remarks(system: ham.SystemOp) -> list[str]:
    facts = read_symmetries(system)
    if not facts:
        return []
    out = []
    geo = geometry(system)
    proved = [c for c in facts["symmetries"] if c != "time"]
    if geo.dims == 3 and all(f"rotation_{a}" in proved for a in AXES):
        out.append("remark: H is SO(3)-invariant (rotations about x, y and z proved): "
                   "angular momentum L_x, L_y, L_z conserved")
    for c in proved:
        kind, _, axis = c.partition("_")
        what = (f"translations along {axis or 'the line'}" if kind == "translation"
                else f"rotations about {axis or 'the normal of the plane'}")
        how = ("the Lie derivative {part, " + charge_name(c) + "} is identically zero"
               if c in facts["proved_by_lie"] else "structurally, on the IR")
        whole = [p.part_name for p in system.parts
                 if c not in [a.data for a in p.attributes["invariant_under"].data]]
        scope = (f"H as a whole, not its parts {', '.join('@' + w for w in whole)}: a flow of "
                 "one of them alone breaks it" if whole else "every part")
        out.append(f"remark: proved: H invariant under {what} ({scope}, {how}): "
                   f"{charge_name(c)} conserved")
    out.append("remark: proved: H is autonomous (no time dependence): energy H conserved")
    for c, why in facts["not_symmetric"].items():
        out.append(f"remark: not claimed: {charge_name(c)} ({c}): {why}")
    return out


@dataclass(frozen=True)
class HamSymmetryPass(ModulePass):
    """Prove H's translation, rotation and time symmetries on the IR and add their conserved
    quantities (ham.monitor) to the system."""

    name = "ham-symmetry"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ProveSymmetries(), apply_recursively=False).rewrite_module(op)
