"""ham-derive-params: gradients of each part with respect to its state field and, in the same
region, every param and input it reads.

Parameter adjoints (tpc/derivatives.py) treat each param and input as a coordinate theta of an
extended phase space whose conjugate momentum moves by -dH/dtheta; the backward tangent run
needs, at every update of a part, the derivative of its force and of its dpart/dtheta along the
tangent (passes/tangent_lowering.py). One reverse sweep over the part's region gives both: the
sweep of ham-derive seeded at the part's value, continued through the theta reads as well,
`ham.param_ref @lam` giving `ham.accumulate @lam[], adjoint` (one f64) and `ham.load @m[i]`
of an input `ham.accumulate @m[i], adjoint`. The region is `ham.gradient @V wrt @"q+G+m"`:
the field and the thetas it accumulates into, so a pair sum is one loop for all of them: the
forward sum a param multiplies (d(G S)/dG = S) is fused with the force's scatter loop when
the scatter does not depend on it (`fuse_loops`).
Which values depend on which theta is a forward dataflow over the region, like ham-degree's
dependence on the state. Run after ham-derive (which replaces all gradients of a part); a
part that reads no param or input gets nothing (its ham-derive gradient serves).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_degree import read_facts, value_deps
from tpc.passes.ham_derive import NO_ADJOINT, _Reverse, merge_divisions
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, ModuleOp, f64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
from xdsl.transforms.dead_code_elimination import region_dce


def theta_deps(block: Block, inputs: frozenset[str]) -> dict[SSAValue, frozenset[str]]:
    """The params and inputs each value of `block` depends on."""
    deps: dict[SSAValue, frozenset[str]] = {}

    def run(b: Block) -> None:
        for op in b.ops:
            for r in op.regions:
                for inner in r.blocks:
                    run(inner)
            if not op.results:
                continue
            if isinstance(op, ham.ParamRefOp):
                d = frozenset({op.param.string_value()})
            elif isinstance(op, ham.LoadOp) and op.field_name in inputs:
                d = frozenset({op.field_name})
            else:
                d = frozenset().union(*(deps.get(o, frozenset()) for o in op.operands))
                if isinstance(op, ham.SumOp | ham.PairSumOp):
                    d |= deps.get(op.body.block.last_op.values[0], frozenset())
            for res in op.results:
                deps[res] = d

    run(block)
    return deps


@dataclass
class _SetReverse(_Reverse):
    """Reverse mode with respect to several names at once (`wrt` joined by '+')."""

    def depends(self, v: SSAValue) -> bool:
        return bool(self.deps.get(v, frozenset()) & set(self.wrt.split("+")))


def _same_loop(a: Operation, b: Operation) -> bool:
    return (type(a) is type(b) and a.lower == b.lower and a.upper == b.upper
            and getattr(a, "kind", None) == getattr(b, "kind", None)
            and a.attributes == b.attributes)


def _outer_uses(loop: Operation) -> set[SSAValue]:
    """Values defined outside `loop` that its operands or body use."""
    inside = {r for op in loop.walk() for r in op.results}
    inside |= {a for op in loop.walk() for r in op.regions for b in r.blocks for a in b.args}
    return {o for op in loop.walk() for o in op.operands if o not in inside}


def fuse_loops(block: Block) -> None:
    """Merge a scatter loop into an earlier loop over the same index space that it does not
    depend on: the joint region's forward sum of a param's factor (d(G S)/dG = S) and the
    force's scatter become one pass over the pairs. What the scatter needs from between the
    two moves before the first; the scatter's body runs after the first body's ops."""
    changed = True
    while changed:
        changed = False
        loops = [op for op in block.ops if isinstance(op, ham.SumOp | ham.PairSumOp)]
        for a in loops:
            for b in loops:
                if b is a or not _same_loop(a, b) or b.result is not None:
                    continue
                ops = list(block.ops)
                ia, ib = ops.index(a), ops.index(b)
                if ib < ia:
                    continue
                between = ops[ia + 1:ib]
                tainted = {r for r in a.results}
                for op in between:
                    if any(o in tainted for o in op.operands) or any(
                            o in tainted for o in _outer_uses(op) if op.regions):
                        tainted |= set(op.results)
                need = _outer_uses(b)
                moved = []
                for op in reversed(between):
                    if any(r in need for r in op.results):
                        need |= set(op.operands) | (_outer_uses(op) if op.regions else set())
                        moved.append(op)
                if any(v in tainted for v in need):
                    continue
                for op in reversed(moved):
                    op.detach()
                    block.insert_op_before(op, a)
                body_a, body_b = a.body.block, b.body.block
                vmap = dict(zip(body_b.args, body_a.args))
                end = body_a.last_op
                for op in list(body_b.ops):
                    if isinstance(op, ham.YieldOp):
                        continue
                    body_a.insert_op_before(op.clone(vmap), end)
                b.detach()
                b.erase()
                changed = True
                break
            if changed:
                break


def derive_joint(part: ham.PartOp, names: list[str],
                 deps: dict[SSAValue, frozenset[str]]) -> ham.GradientOp:
    src = part.body.block
    body = Block()
    rev = _SetReverse("+".join(names), deps,
                      tuple(t for t in NO_ADJOINT if t is not ham.ParamRefOp))
    one = arith.ConstantOp(FloatAttr(1.0, f64))
    body.add_op(one)
    rev.block(src, body, {}, {src.last_op.values[0]: one.result})
    body.add_op(ham.YieldOp())
    fuse_loops(body)
    grad = ham.GradientOp(part.part_name, rev.wrt, Region(body))
    merge_divisions(grad)
    return grad


class DeriveJoint(RewritePattern):
    """Adds ham.gradient @part wrt @"field+thetas..." for each state field the part depends
    on, when it reads a param or input; replaces older joint gradients of the part."""

    def __init__(self):
        self.done: set[str] = set()

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp) or op.part_name in self.done:
            return
        self.done.add(op.part_name)
        for old in [g for g in system.decls(ham.GradientOp)
                    if g.part_name == op.part_name and "+" in g.wrt_name]:
            rewriter.erase(old)
        block = op.body.block
        inputs = frozenset(i.sym_name.data for i in system.decls(ham.InputOp))
        deps = theta_deps(block, inputs)
        state = value_deps(block, system.state.names)
        for v, d in state.items():
            deps[v] = deps.get(v, frozenset()) | d
        reads = deps.get(block.last_op.values[0], frozenset())
        thetas = [t.sym_name.data for t in [*system.decls(ham.ParamOp),
                                            *system.decls(ham.InputOp)]
                  if t.sym_name.data in reads]
        if not thetas:
            return
        for field in read_facts(op).depends_on:
            rewriter.insert(derive_joint(op, [field, *thetas], deps),
                            InsertPoint.at_end(system.body.block))


@dataclass(frozen=True)
class HamDeriveParamsPass(ModulePass):
    """Derive each part's joint gradient: its field, params and inputs, in one region.

    For parameter adjoints (tpc/derivatives.py); run after ham-derive."""

    name = "ham-derive-params"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(DeriveJoint(), apply_recursively=False).rewrite_module(op)
        CommonSubexpressionElimination().apply(ctx, op)
        while region_dce(op.body):
            pass
