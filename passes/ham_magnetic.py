"""ham-magnetic: mark a part of the form of a charge in a magnetic field, sum over particles
of c_i |p_i - X_i(q_i)|^2 with X_i a vector expression of the particle's own position
(X = e A(q): the vector potential), for states of shape [3] or [N, 3].

The Boris integrator (`integrator = boris`) needs it: with a potential part e phi(q) beside it,
H = |p - e A(q)|^2 / (2 m) + e phi(q) is a charge in the fields E = -grad phi, B = curl A.

Algorithm, for each part that depends on q and p (ham-degree's `depends_on`): walk its value
through sums, negations, products and quotients by state-free values and `ham.sum` over the
particle index (as ham-kepler does); every state term must be `ham.dot(w, w)` with w =
`p[i] - X` or `X - p[i]`, X depending on q only. Attach `magnetic = "kinetic"`. The run-time
code reads m_i, e A and e B = curl(e A) from the part's gradients, which this form makes exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_degree import read_facts, value_deps
from tpc.passes.ham_kepler import _Matcher
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import BlockArgument, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


class _Magnetic(_Matcher):
    def __init__(self, deps, q: str, p: str, body_rows: bool):
        super().__init__(deps, p, body_rows)
        self.q, self.p = q, p

    def only_q(self, v: SSAValue) -> bool:
        return self.deps.get(v, frozenset()) <= {self.q}

    def shifted(self, v: SSAValue, index) -> bool:
        op = v.owner
        if not isinstance(op, arith.SubfOp):
            return False
        return ((self.row(op.lhs, index) and self.only_q(op.rhs))
                or (self.row(op.rhs, index) and self.only_q(op.lhs)))

    def leaf(self, v: SSAValue, index) -> bool:
        op = v.owner
        if not isinstance(op, ham.DotOp) or op.lhs is not op.rhs and not _same(op.lhs, op.rhs):
            return False
        return self.shifted(op.lhs, index) and self.shifted(op.rhs, index)


def _same(a: SSAValue, b: SSAValue) -> bool:
    """Two values computed by the same op on the same operands (irgen may repeat a let)."""
    if a is b:
        return True
    x, y = a.owner, b.owner
    if isinstance(x, BlockArgument) or isinstance(y, BlockArgument):
        return False
    if type(x) is not type(y) or x.properties != y.properties or len(x.operands) != len(
            y.operands):
        return False
    return all(_same(u, w) for u, w in zip(x.operands, y.operands))


def is_magnetic(part: ham.PartOp, system: ham.SystemOp) -> bool:
    shape = system.state.shape.shape
    if len(shape) not in (1, 2) or shape[-1] != 3:
        return False
    q, p = system.state.names
    if set(read_facts(part).depends_on) != {q, p}:
        return False
    block = part.body.block
    value = block.last_op.values[0]
    if isinstance(value, BlockArgument):
        return False
    m = _Magnetic(value_deps(block, (q, p)), q, p, len(shape) == 2)
    return not m.free(value) and m.term(value, None, m.leaf)


class MarkMagneticPart(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp) or "magnetic" in op.attributes:
            return
        if is_magnetic(op, system):
            op.attributes["magnetic"] = StringAttr("kinetic")
            rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class HamMagneticPass(ModulePass):
    """Mark parts of the form sum c_i |p_i - e A(q_i)|^2 (a charge in a magnetic field)."""

    name = "ham-magnetic"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(MarkMagneticPart(), apply_recursively=False).rewrite_module(op)
