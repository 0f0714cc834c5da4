"""ham-kepler: mark the parts that are the two halves of a sum of Kepler problems.

A Kepler part is K = sum over bodies i of |p_i|^2 / (2 m_i) - k_i / |q_i|, for states of
shape [3] (one body) or [N, 3] (N bodies), with m_i, k_i any expressions free of the state
(params, inputs, constants, indexed by the body). Its flow is the exact two-body motion, which
sym-flow-kinds picks (`kepler`) for a flow of a `kinetic` part and a `potential` part (a user
part split by ham-split-parts, such as Wisdom-Holman's H_kep, gives exactly that).

Algorithm, for each part that depends on one field only (ham-degree's `depends_on`):
  1. Walk its value through additions and subtractions (a term may also be free of the
     state: it moves nothing), negations, products and quotients by state-free values and
     `ham.sum` over the body index.
  2. Kinetic (p alone): every state term is `ham.dot(p[i], p[i])` of one body row, i the sum's
     index (or `p[]` for a [3] state). Potential (q alone): every state term is
     `free / ham.norm(q[i])`.
  3. Attach `kepler = "kinetic"` or `kepler = "potential"`. The masses and strengths are read
     by the run-time from the parts' gradients at unit states (the form above makes that
     exact) and checked there at a generic state.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_degree import read_facts, value_deps
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp, StringAttr, VectorType
from xdsl.ir import BlockArgument, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


class _Matcher:
    def __init__(self, deps, field: str, body_rows: bool):
        self.deps, self.field, self.rows = deps, field, body_rows

    def free(self, v: SSAValue) -> bool:
        return not self.deps.get(v)

    def row(self, v: SSAValue, index) -> bool:
        """v is the whole row of the field for the current body."""
        op = v.owner
        if not isinstance(op, ham.LoadOp) or op.field.string_value() != self.field:
            return False
        if not isinstance(v.type, VectorType) or v.type.get_shape() != (3,):
            return False
        idx = list(op.indices)
        return idx == ([index] if self.rows else []) and (index is not None) == self.rows

    def term(self, v: SSAValue, index, leaf) -> bool:
        if self.free(v):
            return True
        op = v.owner
        if isinstance(op, arith.AddfOp | arith.SubfOp):
            return self.term(op.lhs, index, leaf) and self.term(op.rhs, index, leaf)
        if isinstance(op, arith.NegfOp):
            return self.term(op.operand, index, leaf)
        if isinstance(op, arith.MulfOp):
            if self.free(op.lhs):
                return self.term(op.rhs, index, leaf)
            if self.free(op.rhs):
                return self.term(op.lhs, index, leaf)
            return False
        if isinstance(op, arith.DivfOp) and self.free(op.rhs):
            return self.term(op.lhs, index, leaf)
        if isinstance(op, ham.SumOp) and index is None and self.rows:
            (iv,) = op.body.block.args
            return self.term(op.body.block.last_op.values[0], iv, leaf)
        return leaf(v, index)

    def kinetic(self, v: SSAValue, index) -> bool:
        op = v.owner
        return (isinstance(op, ham.DotOp) and self.row(op.lhs, index)
                and self.row(op.rhs, index))

    def potential(self, v: SSAValue, index) -> bool:
        op = v.owner
        if not (isinstance(op, arith.DivfOp) and self.free(op.lhs)):
            return False
        norm = op.rhs.owner
        return isinstance(norm, ham.NormOp) and self.row(norm.vector, index)


def kepler_role(part: ham.PartOp, system: ham.SystemOp) -> str | None:
    shape = system.state.shape.shape
    if len(shape) not in (1, 2) or shape[-1] != 3:
        return None
    q, p = system.state.names
    deps = read_facts(part).depends_on
    if deps not in ((q,), (p,)):
        return None
    block = part.body.block
    value = block.last_op.values[0]
    if isinstance(value, BlockArgument):
        return None
    field = deps[0]
    m = _Matcher(value_deps(block, (q, p)), field, len(shape) == 2)
    leaf = m.kinetic if field == p else m.potential
    if m.free(value) or not m.term(value, None, leaf):
        return None
    return "kinetic" if field == p else "potential"


class MarkKeplerPart(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp) or "kepler" in op.attributes:
            return
        role = kepler_role(op, system)
        if role is not None:
            op.attributes["kepler"] = StringAttr(role)
            rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class HamKeplerPass(ModulePass):
    """Mark parts of the Kepler form (sum of |p_i|^2/(2 m_i), or of -k_i/|q_i|)."""

    name = "ham-kepler"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(MarkKeplerPart(), apply_recursively=False).rewrite_module(op)
