"""ham-derive-params: d(part)/d(theta) for every param and input theta a part reads.

Parameter adjoints (tpc/derivatives.py) treat each param and input as a coordinate of an
extended phase space whose conjugate momentum moves by -dH/dtheta; the tangent of that
momentum needs these gradients (passes/tangent_lowering.py). They are the same reverse-mode
differentiation as ham-derive's, seeded at the part's value and stopped at the theta reads:
`ham.param_ref @lam` gives `ham.accumulate @lam[], adjoint` (one f64), `ham.load @m[i]` of
an input gives `ham.accumulate @m[i], adjoint`, so an input's gradient has the input's shape.
Which values depend on which theta is a forward dataflow over the region, like ham-degree's
dependence on the state. Run after ham-derive (which replaces all gradients of a part).
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_derive import NO_ADJOINT, _Reverse, merge_divisions
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, ModuleOp, f64
from xdsl.ir import Block, Region, SSAValue
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


def derive_theta(system: ham.SystemOp, part: ham.PartOp, wrt: str,
                 deps: dict[SSAValue, frozenset[str]]) -> ham.GradientOp:
    src = part.body.block
    body = Block()
    rev = _Reverse(wrt, deps, tuple(t for t in NO_ADJOINT if t is not ham.ParamRefOp))
    one = arith.ConstantOp(FloatAttr(1.0, f64))
    body.add_op(one)
    rev.block(src, body, {}, {src.last_op.values[0]: one.result})
    body.add_op(ham.YieldOp())
    grad = ham.GradientOp(part.part_name, wrt, Region(body))
    merge_divisions(grad)
    return grad


class DeriveTheta(RewritePattern):
    """Adds ham.gradient @part wrt @theta for each param and input the part's value depends
    on, replacing older ones."""

    def __init__(self):
        self.done: set[str] = set()

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp) or op.part_name in self.done:
            return
        self.done.add(op.part_name)
        state = set(system.state.names)
        for old in [g for g in system.decls(ham.GradientOp)
                    if g.part_name == op.part_name and g.wrt_name not in state]:
            rewriter.erase(old)
        inputs = frozenset(i.sym_name.data for i in system.decls(ham.InputOp))
        deps = theta_deps(op.body.block, inputs)
        reads = deps.get(op.body.block.last_op.values[0], frozenset())
        thetas = [t.sym_name.data for t in [*system.decls(ham.ParamOp),
                                            *system.decls(ham.InputOp)]]
        for wrt in [t for t in thetas if t in reads]:
            rewriter.insert(derive_theta(system, op, wrt, deps),
                            InsertPoint.at_end(system.body.block))


@dataclass(frozen=True)
class HamDeriveParamsPass(ModulePass):
    """Derive d(part)/d(param) and d(part)/d(input) as ham.gradient regions (for parameter
    adjoints; run after ham-derive)."""

    name = "ham-derive-params"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(DeriveTheta(), apply_recursively=False).rewrite_module(op)
        CommonSubexpressionElimination().apply(ctx, op)
        while region_dce(op.body):
            pass
