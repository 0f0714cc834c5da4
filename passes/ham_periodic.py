"""ham-periodic: H of a system in a periodic box, as the minimum-image convention defines it.

In a system with `box` (one length per position axis), positions enter H only through
differences q[a] - q[b] (a pair sum's q[i] - q[j], or a bond's q[i + 1] - q[i]); each such
difference d becomes its minimum image d - L * round(d / L), so H is periodic in every
particle's position. A position read any other way (an external field, a trap) has no
periodic meaning and is refused at the read.

A pair sum that reads positions is a short-range interaction: it needs the system's
`cutoff rc` (rc <= L / 2, checked by the front end), and its term f becomes
`r^2 < rc^2 ? f - f_shift : 0`, where f_shift is 0 (`shift = none`) or the term at the same
direction and distance rc (`shift = energy`, so the energy is continuous at rc). A pair sum
without a cutoff is refused, except the real-space part ham-ewald made (it carries its own).
round() has derivative zero almost everywhere, so ham-derive's forces are the minimum-image
forces.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.periodic_common import add_notes, cell_grid, system_of, where
from tpc.passes.refusal import Refusal
from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    UnitAttr,
    VectorType,
    f64,
    i64,
)
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination

IMAGED = "minimum_image"


def _position(system: ham.SystemOp) -> str:
    return system.state.names[0]


def _is_position_load(v: SSAValue, position: str) -> bool:
    return isinstance(v.owner, ham.LoadOp) and v.owner.field_name == position


def _vector_constant(values, vec: VectorType) -> arith.ConstantOp:
    return arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(vec, list(values)))


class MinimumImage(RewritePattern):
    """q[a] - q[b] -> d - L * round(d / L)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SubfOp, rewriter: PatternRewriter, /):
        system = system_of(op)
        if system is None or system.box is None or IMAGED in op.attributes:
            return
        position = _position(system)
        if not (_is_position_load(op.lhs, position) and _is_position_load(op.rhs, position)):
            return
        users = list(op.result.uses)
        vec = op.result.type
        box = system.box_lengths
        length = _vector_constant(box, vec)
        inverse = _vector_constant([1.0 / x for x in box], vec)
        scaled = arith.MulfOp(op.result, inverse.result)
        shifts = math.RoundOp(scaled.result)
        shifts.location = op.location
        back = arith.MulfOp(shifts.result, length.result)
        image = arith.SubfOp(op.result, back.result)
        op.attributes[IMAGED] = UnitAttr()
        rewriter.insert([length, inverse, scaled, shifts, back, image], InsertPoint.after(op))
        for use in users:
            use.operation.operands[use.index] = image.result
        image.attributes["image_of"] = UnitAttr()


class RefuseAbsolutePositions(RewritePattern):
    """A position read other than inside a difference of two positions."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.LoadOp, rewriter: PatternRewriter, /):
        system = system_of(op)
        if system is None or system.box is None or op.field_name != _position(system):
            return
        if _in_reciprocal_sum(op):
            return  # exp(i k.q) with k on the reciprocal lattice is periodic by construction
        for use in op.result.uses:
            user = use.operation
            if isinstance(user, arith.SubfOp) and _is_position_load(user.lhs, op.field_name) \
                    and _is_position_load(user.rhs, op.field_name):
                continue
            raise Refusal(_located(op), f"in a periodic box, positions enter H only as differences "
                              f"{op.field_name}[a] - {op.field_name}[b]; this read of "
                              f"'{op.field_name}' has no periodic meaning")


def _in_reciprocal_sum(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, ham.PartOp):
        attr = parent.attributes.get("ewald")
        if attr is not None and attr.data == "reciprocal":
            return True
        parent = parent.parent_op()
    return False


def _directional(d: SSAValue) -> bool:
    """d is used other than through norm(d) or dot(d, d)."""
    for use in d.uses:
        user = use.operation
        if isinstance(user, ham.NormOp) or (isinstance(user, ham.DotOp) and user.lhs is user.rhs):
            continue
        if "image_of" in user.attributes or isinstance(user, arith.CmpfOp):
            continue
        return True
    return False


def _located(op: Operation) -> Operation:
    """The op, or the nearest enclosing op that has a source location (a load has none)."""
    from xdsl.dialects.builtin import FileLineColLoc

    at: Operation | None = op
    while at is not None and not isinstance(at.location, FileLineColLoc):
        at = at.parent_op()
    return at or op


def _images(block: Block) -> list[SSAValue]:
    return [op.results[0] for op in block.walk() if "image_of" in op.attributes]


def _pair_image(block: Block) -> SSAValue | None:
    """The imaged q[i] - q[j] of the pair's own indices."""
    i, j = block.args
    for v in _images(block):
        d = v.owner.lhs.owner  # image = d - L round(d / L)
        ends = {d.lhs.owner.indices[0], d.rhs.owner.indices[0]} \
            if len(d.lhs.owner.indices) == 1 and len(d.rhs.owner.indices) == 1 else set()
        if ends == {i, j} and v.owner.parent_block() is block:
            return v
    return None


@dataclass
class Cutoff(RewritePattern):
    notes: dict[ham.SystemOp, list[str]]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PairSumOp, rewriter: PatternRewriter, /):
        system = system_of(op)
        if system is None or system.box is None or "ewald" in op.attributes \
                or "cutoff_applied" in op.attributes or op.result is None:
            return
        block = op.body.block
        if not _images(block):
            return  # reads no positions: not an interaction through space
        if "cutoff" not in system.attributes:
            raise Refusal(op, "a pair sum in a periodic box needs a cutoff (declare "
                              "'cutoff rc = ...' in the system), unless it is a Coulomb sum "
                              "c * Q[i] * Q[j] / norm(q[i] - q[j]), which becomes an Ewald sum")
        d = _pair_image(block)
        if d is None:
            raise Refusal(op, "a pair sum in a periodic box must read the pair's "
                              "difference q[i] - q[j]")
        rc = system.attributes["cutoff"].value.data
        shift = system.attributes["cutoff_shift"].data
        y_op = block.last_op
        y = y_op.values[0]
        if op.result.type != f64:
            raise Refusal(op, "a cut-off pair sum must have a scalar value")

        def emit(new: Operation) -> SSAValue:
            block.insert_op_before(new, y_op)
            return new.results[0]

        def f(x: float) -> SSAValue:
            return emit(arith.ConstantOp(FloatAttr(x, f64)))

        term = y
        if shift == "energy":
            term = emit(arith.SubfOp(y, self.term_at_cutoff(block, y_op, rc, emit)))
        r2 = emit(ham.DotOp(d, d))
        inside = emit(arith.CmpfOp(r2, f(rc * rc), "olt"))
        y_op.operands[0] = emit(arith.SelectOp(inside, term, f(0.0)))
        op.attributes["cutoff_applied"] = UnitAttr()
        grid = cell_grid(system.box_lengths, rc)
        how = "all pairs (fewer than 3 cells of width rc per axis)"
        if grid is not None:
            op.attributes["cells"] = ArrayAttr([IntegerAttr(g, i64) for g in grid])
            how = "a cell list of " + " x ".join(map(str, grid)) + " cells"
        self.notes.setdefault(system, []).append(
            f"pair sum at {where(op)}: minimum image, cut at rc = {rc:g}"
            + (" and shifted to zero there" if shift == "energy" else " (not shifted)")
            + f"; pairs found by {how}")

    @staticmethod
    def term_at_cutoff(block: Block, y_op: Operation, rc: float, emit) -> SSAValue:
        """The pair term with every imaged difference scaled to length rc (its direction kept).
        Where a difference enters only through its norm (or its square), the norm is rc: the
        shift is then the same for every pair of the same particles (a constant for LJ)."""
        images = set(_images(block))
        changed: dict[SSAValue, SSAValue] = {}
        for old in [o for o in block.ops if o is not y_op]:
            if isinstance(old, ham.NormOp) and old.vector in images:
                changed[old.result] = emit(arith.ConstantOp(FloatAttr(rc, f64)))
            elif isinstance(old, ham.DotOp) and old.lhs is old.rhs and old.lhs in images:
                changed[old.result] = emit(arith.ConstantOp(FloatAttr(rc * rc, f64)))
            elif old.results and old.results[0] in images and _directional(old.results[0]):
                d = old.results[0]
                r = emit(ham.NormOp(d))
                ratio = emit(arith.DivfOp(emit(arith.ConstantOp(FloatAttr(rc, f64))), r))
                changed[d] = emit(arith.MulfOp(d, emit(ham.BroadcastOp(ratio, d.type))))
            elif any(v in changed for v in old.operands):
                new = old.clone(dict(changed))
                block.insert_op_before(new, y_op)
                changed |= dict(zip(old.results, new.results))
        return changed.get(y_op.values[0], y_op.values[0])


@dataclass(frozen=True)
class HamPeriodicPass(ModulePass):
    """Minimum-image position differences in a periodic box; cut short-range pair sums at rc."""

    name = "ham-periodic"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not any(isinstance(s, ham.SystemOp) and s.box is not None for s in op.walk()):
            return
        # one load and one difference per distinct q[a] - q[b], so each is imaged once
        CommonSubexpressionElimination().apply(ctx, op)
        PatternRewriteWalker(RefuseAbsolutePositions(), apply_recursively=False) \
            .rewrite_module(op)
        PatternRewriteWalker(MinimumImage(), apply_recursively=False).rewrite_module(op)
        notes: dict[ham.SystemOp, list[str]] = {}
        PatternRewriteWalker(GreedyRewritePatternApplier([Cutoff(notes)]),
                             apply_recursively=False).rewrite_module(op)
        for system, lines in notes.items():
            add_notes(system, lines)
