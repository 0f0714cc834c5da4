"""ham-ewald: a Coulomb pair sum in a periodic box becomes its Ewald sum.

In a box, `sum(i < j: c * Q[i] * Q[j] / norm(q[i] - q[j]))` means the sum over every periodic
image, which converges only conditionally; the Ewald split makes it absolutely convergent:

    E = c [ sum_{i<j} Q_i Q_j erfc(a r_ij) / r_ij                      (real space, r < rc)
          + (2 pi / V) sum_{k != 0} exp(-k^2 / 4a^2) / k^2 |S(k)|^2     (reciprocal space)
          - (a / sqrt(pi)) sum_i Q_i^2 ]                                (self energy)

with S(k) = sum_i Q_i exp(i k.q_i), k = 2 pi (n_x / L_x, ...), tin-foil boundary conditions
(no surface term) and r_ij the minimum-image distance (ham-periodic images the real-space
difference). The cell must be neutral: the API checks the charges it is given (`neutral`).
`sum(i != j: ...)` counts each pair twice and gets twice each term.

Parameters from the requested tolerance t (`ewald tolerance = t`, relative, default 1e-6): the
real-space cutoff rc is the system's `cutoff` or half the smallest box length, s = sqrt(-ln t),
a = s / rc (so erfc(a rc) ~ t), k_max = 2 a s (so exp(-k_max^2 / 4a^2) = t), and every k with
|k| <= k_max, taken from the half space k > 0 in lexicographic order (k and -k give the same
|S(k)|^2) with a weight of two. Everything is ham IR, so ham-derive differentiates it: forces
and energy come from one expression.

The reciprocal sum loops over the flattened index m of the (2 n_x + 1)(2 n_y + 1)(2 n_z + 1)
lattice of n; the indices above the centre are exactly the half space.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tpc.dialects import ham
from tpc.passes.periodic_common import add_notes, cell_grid, system_of, where
from tpc.passes.refusal import Refusal
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects import math as xmath
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    UnitAttr,
    VectorType,
    f64,
    i64,
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
from xdsl.transforms.dead_code_elimination import region_dce

INV_SQRT_PI = 0.5641895835477563


@dataclass(frozen=True)
class Coulomb:
    """What the recognizer found in a pair sum's body."""

    charge: str  # the input field holding the charges
    factors: list[SSAValue]  # the constant factors of c (defined outside the body or constant)
    r: SSAValue  # norm(q[i] - q[j]) in the body


@dataclass(frozen=True)
class EwaldParameters:
    alpha: float
    rc: float
    k_max: float
    n: tuple[int, ...]  # lattice half-widths per axis
    vectors: int  # k vectors in the half space with |k| <= k_max

    @classmethod
    def choose(cls, box: tuple[float, ...], rc: float, tolerance: float) -> EwaldParameters:
        s = math.sqrt(-math.log(tolerance))
        alpha = s / rc
        k_max = 2 * alpha * s
        n = tuple(max(1, math.ceil(k_max * length / (2 * math.pi))) for length in box)
        if math.prod(2 * m + 1 for m in n) > MAX_LATTICE:
            return cls(alpha, rc, k_max, n, -1)
        return cls(alpha, rc, k_max, n, _count_half(box, n, k_max))


MAX_LATTICE = 1 << 21  # index points of the reciprocal loop (each one is an O(N) sum)


def _count_half(box, n, k_max) -> int:
    axes = [2 * math.pi * np.arange(-m, m + 1) / length for m, length in zip(n, box)]
    k2 = sum(np.meshgrid(*[a * a for a in axes], indexing="ij", sparse=True))
    return int(np.count_nonzero(k2 <= k_max * k_max) - 1) // 2  # k = 0 out, half of the rest


def _defined_in(v: SSAValue, block: Block) -> bool:
    op = v.owner
    while isinstance(op, Operation):
        if op.parent_block() is block:
            return True
        op = op.parent_op()
    return False


def _constant_in(v: SSAValue, block: Block) -> bool:
    """v does not depend on the pair indices or the state: a factor of c."""
    if not _defined_in(v, block):
        return True
    op = v.owner
    if isinstance(op, ham.LoadOp) or not isinstance(op, Operation) or op.regions:
        return False
    return all(_constant_in(o, block) for o in op.operands)


def _load_of(v: SSAValue, field: str | None, index: SSAValue) -> str | None:
    op = v.owner
    if isinstance(op, ham.LoadOp) and len(op.indices) == 1 and op.indices[0] is index \
            and (field is None or op.field_name == field) and op.result.type == f64:
        return op.field_name
    return None


def recognize(pair: ham.PairSumOp, position: str, fields: dict[str, tuple]) -> Coulomb | None:
    """c * Q[i] * Q[j] / norm(q[i] - q[j]) (in any order of the factors), else None."""
    block = pair.body.block
    i, j = block.args
    y = block.last_op.values[0]
    div = y.owner
    if not isinstance(div, arith.DivfOp) or not isinstance(div.rhs.owner, ham.NormOp):
        return None
    d = div.rhs.owner.vector.owner
    if not isinstance(d, arith.SubfOp):
        return None
    ends = {_load_of_vec(d.lhs, position), _load_of_vec(d.rhs, position)}
    if ends != {i, j} or len(ends) != 2:
        return None
    factors: list[SSAValue] = []
    charges: dict[SSAValue, str] = {}

    def walk(v: SSAValue) -> bool:
        if isinstance(v.owner, arith.MulfOp):
            return walk(v.owner.lhs) and walk(v.owner.rhs)
        for idx in (i, j):
            name = _load_of(v, None, idx)
            if name is not None and len(fields.get(name, ())) == 1 and idx not in charges:
                charges[idx] = name
                return True
        if _constant_in(v, block) and v.type == f64:
            factors.append(v)
            return True
        return False

    if not walk(div.lhs) or set(charges) != {i, j} or charges[i] != charges[j]:
        return None
    return Coulomb(charges[i], factors, div.rhs)


def _load_of_vec(v: SSAValue, field: str) -> SSAValue | None:
    op = v.owner
    if isinstance(op, ham.LoadOp) and op.field_name == field and len(op.indices) == 1:
        return op.indices[0]
    return None


class _At:
    """Emits ops before a fixed op (or at a block's end) and returns their results."""

    def __init__(self, rewriter: PatternRewriter | None, point: InsertPoint):
        self.rewriter, self.point = rewriter, point

    def __call__(self, op: Operation) -> SSAValue:
        if self.rewriter is not None:
            self.rewriter.insert(op, self.point)
        else:
            self.point.block.add_op(op)
        return op.results[0]

    def f(self, value: float) -> SSAValue:
        return self(arith.ConstantOp(FloatAttr(value, f64)))

    def idx(self, value: int) -> SSAValue:
        return self(arith.ConstantOp(IntegerAttr(value, IndexType())))

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self(arith.MulfOp(a, b))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self(arith.AddfOp(a, b))


def _clone_factor(v: SSAValue, block: Block, emit: Callable[[Operation], SSAValue],
                  memo: dict[SSAValue, SSAValue]) -> SSAValue:
    """A constant factor defined in the pair body, rebuilt outside it."""
    if not _defined_in(v, block):
        return v
    if v not in memo:
        op = v.owner
        operands = [_clone_factor(o, block, emit, memo) for o in op.operands]
        new = op.clone()
        for k, o in enumerate(operands):
            new.operands[k] = o
        memo[v] = emit(new)
    return memo[v]


def _real_space(pair: ham.PairSumOp, found: Coulomb, p: EwaldParameters) -> ham.PairSumOp:
    """A clone of the pair sum whose term is multiplied by erfc(a r) and cut at rc."""
    new = pair.clone()
    block = new.body.block
    y_op = block.last_op
    y = y_op.values[0]
    # the clone's r is the value at the same position as found.r in the original
    ops_old = list(pair.body.block.ops)
    r = list(block.ops)[ops_old.index(found.r.owner)].results[0]

    def emit(op: Operation) -> SSAValue:
        block.insert_op_before(op, y_op)
        return op.results[0]

    screened = emit(arith.MulfOp(y, emit(ham.ErfcOp(emit(arith.MulfOp(
        emit(arith.ConstantOp(FloatAttr(p.alpha, f64))), r))))))
    inside = emit(arith.CmpfOp(r, emit(arith.ConstantOp(FloatAttr(p.rc, f64))), "olt"))
    cut = emit(arith.SelectOp(inside, screened, emit(arith.ConstantOp(FloatAttr(0.0, f64)))))
    y_op.operands[0] = cut
    new.attributes["ewald"] = StringAttr("real")
    return new


def _reciprocal(at: _At, pair: ham.PairSumOp, charge: str, position: str, axes: int,
                box: tuple[float, ...], p: EwaldParameters) -> SSAValue:
    """(4 pi / V) sum over the half space of exp(-k^2 / 4a^2) / k^2 (C(k)^2 + S(k)^2)."""
    widths = [2 * n + 1 for n in p.n]
    total = math.prod(widths)
    centre = 0
    for n, w in zip(p.n, widths):
        centre = centre * w + n
    vec = VectorType(f64, [axes])
    body = Block(arg_types=[IndexType()])
    b = _At(None, InsertPoint.at_end(body))
    m = body.args[0]
    rest = m
    comps: list[SSAValue] = []
    for axis in reversed(range(axes)):
        w = b.idx(widths[axis])
        digit = b(arith.RemUIOp(rest, w))
        rest = b(arith.DivUIOp(rest, w))
        as_int = b(arith.IndexCastOp(digit, i64))
        n_float = b(arith.SIToFPOp(as_int, f64))
        shifted = b(arith.SubfOp(n_float, b.f(float(p.n[axis]))))
        comps.append(b.mul(shifted, b.f(2 * math.pi / box[axis])))
    comps.reverse()
    k = None
    for axis, c in enumerate(comps):
        unit = [1.0 if a == axis else 0.0 for a in range(axes)]
        e_axis = b(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(vec, unit)))
        term = b(arith.MulfOp(b(ham.BroadcastOp(c, vec)), e_axis))
        k = term if k is None else b(arith.AddfOp(k, term))
    k2 = b(ham.DotOp(k, k))
    gauss = b(arith.DivfOp(b(xmath.ExpOp(b.mul(k2, b.f(-1.0 / (4 * p.alpha * p.alpha))))), k2))
    inside = b(arith.CmpfOp(k2, b.f(p.k_max * p.k_max * (1 + 1e-12)), "ole"))
    weight = b(arith.SelectOp(inside, gauss, b.f(0.0)))

    # One pass over the particles gives C(k) and S(k) together (one phase per particle), and
    # outside the sphere |k| <= k_max the particle loop is empty: the half-space box of
    # lattice points is about twice the half ball.
    pair_vec = VectorType(f64, [2])
    upper = b(arith.SelectOp(inside, pair.upper, pair.lower))
    inner = Block(arg_types=[IndexType()])
    ib = _At(None, InsertPoint.at_end(inner))
    iv = inner.args[0]
    phase = ib(ham.DotOp(k, ib(ham.LoadOp(position, [iv], vec))))
    unit_c = ib(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(pair_vec, [1.0, 0.0])))
    unit_s = ib(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(pair_vec, [0.0, 1.0])))
    trig = ib(arith.AddfOp(
        ib(arith.MulfOp(ib(ham.BroadcastOp(ib(xmath.CosOp(phase)), pair_vec)), unit_c)),
        ib(arith.MulfOp(ib(ham.BroadcastOp(ib(xmath.SinOp(phase)), pair_vec)), unit_s))))
    charge_i = ib(ham.BroadcastOp(ib(ham.LoadOp(charge, [iv], f64)), pair_vec))
    inner.add_op(ham.YieldOp(ib(arith.MulfOp(charge_i, trig))))
    both = b(ham.SumOp(pair.lower, upper, Region(inner), pair_vec))
    cos_sum, sin_sum = b(ham.ExtractOp(both, 0)), b(ham.ExtractOp(both, 1))
    power = b.add(b.mul(cos_sum, cos_sum), b.mul(sin_sum, sin_sum))
    body.add_op(ham.YieldOp(b.mul(weight, power)))
    lo, hi = at.idx(centre + 1), at.idx(total)
    summed = at(ham.SumOp(lo, hi, Region(body)))
    summed.owner.attributes["ewald"] = StringAttr("reciprocal")
    volume = math.prod(box)
    return at.mul(summed, at.f(4 * math.pi / volume))


def _self_energy(at: _At, pair: ham.PairSumOp, charge: str, p: EwaldParameters) -> SSAValue:
    inner = Block(arg_types=[IndexType()])
    ib = _At(None, InsertPoint.at_end(inner))
    qi = ib(ham.LoadOp(charge, [inner.args[0]], f64))
    inner.add_op(ham.YieldOp(ib.mul(qi, qi)))
    squares = at(ham.SumOp(pair.lower, pair.upper, Region(inner)))
    squares.owner.attributes["ewald"] = StringAttr("self")
    return at.mul(squares, at.f(-p.alpha * INV_SQRT_PI))


@dataclass
class EwaldPattern(RewritePattern):
    notes: dict[ham.SystemOp, list[str]]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PairSumOp, rewriter: PatternRewriter, /):
        if "ewald" in op.attributes or op.result is None or op.result.type != f64:
            return
        system = system_of(op)
        if system is None or system.box is None or not isinstance(op.parent_op(), ham.PartOp):
            return
        position = system.state.names[0]
        fields = {o.sym_name.data: o.shape.shape for o in system.decls(ham.InputOp)}
        found = recognize(op, position, fields)
        if found is None:
            return
        box = system.box_lengths
        rc = system.attributes["cutoff"].value.data if "cutoff" in system.attributes \
            else min(box) / 2
        tolerance = system.attributes["ewald_tolerance"].value.data
        p = EwaldParameters.choose(box, rc, tolerance)
        if p.vectors < 0:
            raise Refusal(op, f"the Ewald sum at tolerance {tolerance:g} with real-space cutoff "
                              f"{rc:g} needs a k lattice of "
                              f"{' x '.join(str(2 * m + 1) for m in p.n)} points (more than "
                              f"{MAX_LATTICE}); use a larger cutoff or a looser tolerance")
        at = _At(rewriter, InsertPoint.before(op))
        memo: dict[SSAValue, SSAValue] = {}
        c = at.f(2.0 if op.kind.data == "ne" else 1.0)
        for factor in found.factors:
            c = at.mul(c, _clone_factor(factor, op.body.block, at, memo))
        real = _real_space(op, found, p)
        grid = cell_grid(box, p.rc)
        if grid is not None:
            real.attributes["cells"] = ArrayAttr([IntegerAttr(g, i64) for g in grid])
        rewriter.insert(real, InsertPoint.before(op))
        recip = _reciprocal(at, op, found.charge, position, len(box), box, p)
        self_e = _self_energy(at, op, found.charge, p)
        total = at.add(real.results[0], at.mul(c, at.add(recip, self_e)))
        rewriter.replace(op, [], [total])
        part = total.owner.parent_op()
        if isinstance(part, ham.PartOp) and _linear_to_yield(total, part):
            part.attributes["ewald_split"] = UnitAttr()
        neutral = system.attributes.get("neutral")
        names = [] if neutral is None else [s.data for s in neutral.data]
        if found.charge not in names:
            system.attributes["neutral"] = ArrayAttr([StringAttr(n) for n in
                                                      names + [found.charge]])
        system.attributes["ewald"] = DictionaryAttr({
            "alpha": FloatAttr(p.alpha, f64), "rc": FloatAttr(p.rc, f64),
            "k_max": FloatAttr(p.k_max, f64), "vectors": IntegerAttr(p.vectors, i64),
            "tolerance": FloatAttr(tolerance, f64),
        })
        self.notes.setdefault(system, []).append(
            f"Ewald sum of the Coulomb pair sum over charges '{found.charge}' at "
            f"{where(op)}: alpha = {p.alpha:.6g}, real-space cutoff {p.rc:.6g}, k_max = "
            f"{p.k_max:.6g} ({p.vectors} k vectors in the half space), tolerance {tolerance:g} "
            "(erfc(alpha rc) and exp(-k_max^2 / 4 alpha^2) at the tolerance); tin-foil "
            "boundary; the cell must be neutral; real-space pairs by "
            + ("a cell list of " + " x ".join(map(str, grid)) + " cells" if grid else
               "all pairs"))


def _linear_to_yield(v: SSAValue, part: ham.PartOp) -> bool:
    """The part's value is v times factors (negations, products, divisions of v): then the
    part is exactly the sum of the same expression of each piece of v."""
    while True:
        uses = list(v.uses)
        if len(uses) != 1:
            return False
        user = uses[0].operation
        if isinstance(user, ham.YieldOp):
            return user.parent_op() is part
        if isinstance(user, arith.NegfOp):
            v = user.result
        elif isinstance(user, arith.MulfOp) and (user.lhs is v) != (user.rhs is v):
            v = user.result
        elif isinstance(user, arith.DivfOp) and user.lhs is v and user.rhs is not v:
            v = user.result
        else:
            return False


def _zero(clone: ham.PartOp, piece: str) -> None:
    """Drop the Ewald piece marked `piece` from a clone of the part (its value becomes 0)."""
    for op in [o for o in clone.walk() if o.attributes.get("ewald") == StringAttr(piece)]:
        zero = arith.ConstantOp(FloatAttr(0.0, f64))
        op.parent_block().insert_op_before(zero, op)
        op.results[0].replace_all_uses_with(zero.result)
        op.detach()
        op.erase()


class SplitEwaldPart(RewritePattern):
    """A part that is (a product of) an Ewald sum becomes two parts: `<name>_real` (real space
    and self energy: short-ranged, the fast forces) and `<name>_recip` (reciprocal space:
    smooth, the slow forces), each with `split_from = "<name>"`, so `respa` can give them
    different steps while an integrator that names the part flows both."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        if "ewald_split" not in op.attributes:
            return
        system = op.parent_op()
        name = op.part_name
        taken = {p.part_name for p in system.parts}
        new = []
        for suffix, drop in (("real", ("reciprocal",)), ("recip", ("real", "self"))):
            clone = op.clone()
            del clone.attributes["ewald_split"]
            clone.sym_name = StringAttr(_fresh(f"{name}_{suffix}", taken))
            clone.attributes["split_from"] = StringAttr(name)
            for piece in drop:
                _zero(clone, piece)
            while region_dce(clone.body):
                pass
            new.append(clone)
        rewriter.insert(new, InsertPoint.after(op))
        h = system.hamiltonian
        h.parts = h.with_part_replaced(name, [x.part_name for x in new])
        rewriter.notify_op_modified(h)
        rewriter.erase(op)


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


@dataclass(frozen=True)
class HamEwaldPass(ModulePass):
    """Rewrite a Coulomb pair sum in a periodic box into its Ewald sum (real, reciprocal, self)."""

    name = "ham-ewald"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        notes: dict[ham.SystemOp, list[str]] = {}
        PatternRewriteWalker(EwaldPattern(notes), apply_recursively=False).rewrite_module(op)
        PatternRewriteWalker(SplitEwaldPart(), apply_recursively=False).rewrite_module(op)
        for system, lines in notes.items():
            add_notes(system, lines)
