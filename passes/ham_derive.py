"""ham-derive: the gradients of H's parts as IR, by reverse-mode symbolic differentiation.

Algorithm, for each part of H and each state field x in the part's `depends_on` (ham-degree):
  1. Open a `ham.gradient @part wrt @x` region and clone the part's forward computation.
  2. Seed the adjoint of H with 1 and walk the ops backwards, emitting the adjoint of each
     operand that depends on x (a value's dependence on the state is propagated forward
     through the part's region first, so no adjoint is built for what cannot reach x).
  3. A `ham.load @x[idx]` with adjoint a becomes `ham.accumulate @x[idx], a`: the gradient is
     built in scatter form. A `ham.sum` or `ham.pair_sum` with adjoint a becomes a loop of the
     same shape whose body recomputes the forward body and runs step 2 inside it with the
     yielded value seeded by a. For `sum(i < j: f)` each pair is visited once and scatters to
     both i and j: the symmetric, Newton's-third-law form.
  4. Fold multiplications by 1 and additions of nothing while building, then run CSE and DCE:
     the forward recomputation keeps exactly what the adjoints need, and one `ham.norm` per pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_degree import read_facts, value_deps
from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FloatAttr,
    ModuleOp,
    VectorType,
    f64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
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

NO_ADJOINT = (
    arith.ConstantOp, ham.ParamRefOp, ham.DimOp, arith.AddiOp, arith.SubiOp, arith.MuliOp,
    arith.CmpfOp, math.RoundOp,  # piecewise constant: a zero derivative almost everywhere
)
TWO_OVER_SQRT_PI = 1.1283791670955126


class _Builder:
    """Emits into one block, folding the trivial cases so the gradient IR stays small."""

    def __init__(self, block: Block):
        self.block = block

    def emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def const(self, value: float, type: Attribute) -> SSAValue:
        if isinstance(type, VectorType):
            return self.emit(ham.BroadcastOp(self.const(value, f64), type))
        return self.emit(arith.ConstantOp(FloatAttr(value, f64)))

    @staticmethod
    def value_of(v: SSAValue) -> float | None:
        op = v.owner
        if isinstance(op, arith.ConstantOp) and isinstance(op.value, FloatAttr):
            return op.value.value.data
        if isinstance(op, ham.BroadcastOp):
            return _Builder.value_of(op.scalar)
        if isinstance(op, arith.NegfOp) and (v := _Builder.value_of(op.operand)) is not None:
            return -v
        return None

    def folded(self, a: SSAValue, b: SSAValue, fn: Callable[[float, float], float]) -> SSAValue | None:
        x, y = self.value_of(a), self.value_of(b)
        if x is None or y is None or a.type != f64 or b.type != f64:
            return None
        return self.const(fn(x, y), f64)

    def like(self, s: SSAValue, t: Attribute) -> SSAValue:
        """A scalar broadcast to type t when t is a vector."""
        if s.type == t or not isinstance(t, VectorType):
            return s
        return self.emit(ham.BroadcastOp(s, t))

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        t = a.type if isinstance(a.type, VectorType) else b.type
        a, b = self.like(a, t), self.like(b, t)
        if (c := self.folded(a, b, lambda x, y: x * y)) is not None:
            return c
        if self.value_of(a) == 1.0:
            return b
        if self.value_of(b) == 1.0:
            return a
        if self.value_of(a) == -1.0:
            return self.neg(b)
        if self.value_of(b) == -1.0:
            return self.neg(a)
        return self.emit(arith.MulfOp(a, b))

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        t = a.type if isinstance(a.type, VectorType) else b.type
        a, b = self.like(a, t), self.like(b, t)
        if (c := self.folded(a, b, lambda x, y: x / y)) is not None:
            return c
        if self.value_of(b) == 1.0:
            return a
        return self.emit(arith.DivfOp(a, b))

    def neg(self, a: SSAValue) -> SSAValue:
        if a.type == f64 and (v := self.value_of(a)) is not None:
            return self.const(-v, f64)
        if isinstance(a.owner, arith.NegfOp):
            return a.owner.operand
        return self.emit(arith.NegfOp(a))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(arith.AddfOp(a, b))

    def sub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.emit(arith.SubfOp(a, b))


@dataclass
class _Reverse:
    """Reverse-mode differentiation of one block with respect to one field."""

    wrt: str
    deps: dict[SSAValue, frozenset[str]]
    no_adjoint: tuple = NO_ADJOINT

    def depends(self, v: SSAValue) -> bool:
        return self.wrt in self.deps.get(v, frozenset())

    def block(self, src: Block, dst: Block, vmap: dict[SSAValue, SSAValue],
              seeds: dict[SSAValue, SSAValue]) -> None:
        b = _Builder(dst)
        ops = [op for op in src.ops if not isinstance(op, ham.YieldOp)]
        for op in ops:
            dst.add_op(op.clone(vmap))
        adj: dict[SSAValue, list[SSAValue]] = {k: [v] for k, v in seeds.items()}

        def give(v: SSAValue, a: SSAValue) -> None:
            if self.depends(v):
                adj.setdefault(v, []).append(a)

        for op in reversed(ops):
            if not op.results or op.results[0] not in adj or isinstance(op, self.no_adjoint):
                continue
            parts = adj.pop(op.results[0])
            g = parts[0]
            for extra in parts[1:]:
                g = b.add(g, extra)
            self.op_adjoint(op, g, b, vmap, give)

    def op_adjoint(self, op: Operation, g: SSAValue, b: _Builder,
                   vmap: dict[SSAValue, SSAValue], give: Callable) -> None:
        x = [vmap.get(o, o) for o in op.operands]
        r = vmap[op.results[0]]
        match op:
            case ham.LoadOp():
                b.block.add_op(ham.AccumulateOp(op.field_name, x, g))
            case ham.ParamRefOp():  # only when differentiating with respect to a param
                b.block.add_op(ham.AccumulateOp(op.param.string_value(), [], g))
            case arith.AddfOp():
                give(op.lhs, g)
                give(op.rhs, g)
            case arith.SubfOp():
                give(op.lhs, g)
                if self.depends(op.rhs):
                    give(op.rhs, b.neg(g))
            case arith.NegfOp():
                give(op.operand, b.neg(g))
            case arith.MulfOp():
                if self.depends(op.lhs):
                    give(op.lhs, b.mul(g, x[1]))
                if self.depends(op.rhs):
                    give(op.rhs, b.mul(g, x[0]))
            case arith.DivfOp():
                if self.depends(op.lhs):
                    give(op.lhs, b.div(g, x[1]))
                if self.depends(op.rhs):
                    give(op.rhs, b.neg(b.div(b.mul(g, r), x[1])))
            case ham.IPowOp():
                n = op.exponent.value.data
                base = x[0]
                if n == 1:
                    dr = b.const(1.0, base.type)
                elif n == 2:
                    dr = b.mul(b.const(2.0, base.type), base)
                else:
                    lower = b.emit(ham.IPowOp(base, n - 1))
                    dr = b.mul(b.const(float(n), base.type), lower)
                give(op.base, b.mul(g, dr))
            case math.PowFOp():
                if self.depends(op.lhs):
                    give(op.lhs, b.mul(g, b.div(b.mul(x[1], r), x[0])))
                if self.depends(op.rhs):
                    give(op.rhs, b.mul(g, b.mul(r, b.emit(math.LogOp(x[0])))))
            case math.SinOp():
                give(op.operand, b.mul(g, b.emit(math.CosOp(x[0]))))
            case math.CosOp():
                give(op.operand, b.neg(b.mul(g, b.emit(math.SinOp(x[0])))))
            case math.TanOp():
                one = b.const(1.0, r.type)
                give(op.operand, b.mul(g, b.add(one, b.mul(r, r))))
            case math.ExpOp():
                give(op.operand, b.mul(g, r))
            case math.LogOp():
                give(op.operand, b.div(g, x[0]))
            case math.SqrtOp():
                give(op.operand, b.div(b.mul(g, b.const(0.5, r.type)), r))
            case math.AbsFOp():
                sign = b.emit(math.CopySignOp(b.const(1.0, r.type), x[0]))
                give(op.operand, b.mul(g, sign))
            case math.SinhOp():
                give(op.operand, b.mul(g, b.emit(math.CoshOp(x[0]))))
            case math.CoshOp():
                give(op.operand, b.mul(g, b.emit(math.SinhOp(x[0]))))
            case math.TanhOp():
                one = b.const(1.0, r.type)
                give(op.operand, b.mul(g, b.sub(one, b.mul(r, r))))
            case math.ErfOp() | ham.ErfcOp():
                sign = 1.0 if isinstance(op, math.ErfOp) else -1.0
                slope = b.emit(math.ExpOp(b.neg(b.mul(x[0], x[0]))))
                give(op.operands[0], b.mul(g, b.mul(b.const(sign * TWO_OVER_SQRT_PI, r.type),
                                                    slope)))
            case arith.SelectOp():
                zero = b.const(0.0, r.type)
                if self.depends(op.lhs):
                    give(op.lhs, b.emit(arith.SelectOp(x[0], g, zero)))
                if self.depends(op.rhs):
                    give(op.rhs, b.emit(arith.SelectOp(x[0], zero, g)))
            case ham.NormOp():
                give(op.vector, b.mul(b.div(g, r), x[0]))
            case ham.DotOp():
                if self.depends(op.lhs):
                    give(op.lhs, b.mul(g, x[1]))
                if self.depends(op.rhs):
                    give(op.rhs, b.mul(g, x[0]))
            case ham.CrossOp():
                if self.depends(op.lhs):
                    give(op.lhs, b.emit(ham.CrossOp(x[1], g)))
                if self.depends(op.rhs):
                    give(op.rhs, b.emit(ham.CrossOp(g, x[0])))
            case ham.ReduceOp():
                give(op.vector, b.like(g, op.vector.type))
            case ham.BroadcastOp():
                give(op.scalar, b.emit(ham.ReduceOp(g)))
            case ham.ExtractOp():
                vt = op.vector.type
                k = op.position.value.data
                unit = [1.0 if i == k else 0.0 for i in range(vt.get_shape()[0])]
                e_k = b.emit(arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(vt, unit)))
                give(op.vector, b.mul(b.like(g, vt), e_k))
            case ham.SumOp() | ham.PairSumOp():
                self.loop(op, g, b, vmap)
            case _:
                raise NotImplementedError(f"ham-derive: no derivative rule for {op.name}")

    def loop(self, op: ham.SumOp | ham.PairSumOp, g: SSAValue, b: _Builder,
             vmap: dict[SSAValue, SSAValue]) -> None:
        src = op.body.block
        body = Block(arg_types=[a.type for a in src.args])
        inner = dict(vmap) | dict(zip(src.args, body.args))
        self.block(src, body, inner, {src.last_op.values[0]: g})
        body.add_op(ham.YieldOp())
        lo, hi = (vmap.get(v, v) for v in (op.lower, op.upper))
        if isinstance(op, ham.PairSumOp):
            new = ham.PairSumOp(lo, hi, op.kind.data, Region(body), None)
        else:
            new = ham.SumOp(lo, hi, Region(body), None)
        new.location = op.location
        new.attributes |= op.attributes  # the neighbour search (cells) holds for the gradient
        b.block.add_op(new)


def merge_divisions(region_op: Operation) -> None:
    """(x / a) / b -> x / (a * b), also through a negation: one division instead of several.

    Gradients of 1/r potentials chain divisions by r (d/dr of m/r, then d|v|/dv = v/r); a
    division costs several multiplications, and LLVM may not merge them without fast-math.
    """
    changed = True
    while changed:
        changed = False
        for op in list(region_op.walk()):
            if not isinstance(op, arith.DivfOp):
                continue
            inner, negate = op.lhs.owner, False
            if isinstance(inner, arith.NegfOp) and inner.result.has_one_use():
                inner, negate = inner.operand.owner, True
            if not isinstance(inner, arith.DivfOp) or not inner.result.has_one_use():
                continue
            if inner.lhs.type != op.rhs.type or inner.rhs.type != op.rhs.type:
                continue
            block = op.parent_block()
            prod = arith.MulfOp(inner.rhs, op.rhs)
            num = inner.lhs
            new: list[Operation] = [prod]
            if negate and isinstance(num.owner, arith.NegfOp):
                num = num.owner.operand
            elif negate:
                neg = arith.NegfOp(num)
                new.append(neg)
                num = neg.result
            div = arith.DivfOp(num, prod.result)
            new.append(div)
            for n in new:
                block.insert_op_before(n, op)
            op.result.replace_all_uses_with(div.result)
            op.detach()
            op.erase()
            changed = True
            break


def derive(system: ham.SystemOp, part: ham.PartOp, wrt: str) -> ham.GradientOp:
    src = part.body.block
    body = Block()
    h = src.last_op.values[0]
    rev = _Reverse(wrt, value_deps(src, system.state.names))
    vmap: dict[SSAValue, SSAValue] = {}
    if rev.depends(h):
        one = arith.ConstantOp(FloatAttr(1.0, f64))
        body.add_op(one)
        rev.block(src, body, vmap, {h: one.result})
    body.add_op(ham.YieldOp())
    grad = ham.GradientOp(part.part_name, wrt, Region(body))
    merge_divisions(grad)
    return grad


class DerivePart(RewritePattern):
    """Adds d(part)/d(field) for each state field the part depends on (ham-degree's
    `depends_on`), replacing older gradients of the part."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp) or op.part_name in self.done:
            return
        self.done.add(op.part_name)
        for old in [g for g in system.decls(ham.GradientOp) if g.part_name == op.part_name]:
            rewriter.erase(old)
        for wrt in read_facts(op).depends_on:
            rewriter.insert(derive(system, op, wrt), InsertPoint.at_end(system.body.block))

    def __init__(self):
        self.done: set[str] = set()


@dataclass(frozen=True)
class HamDerivePass(ModulePass):
    """Derive d(part)/dq and d(part)/dp of every part of H as ham.gradient regions (scatter
    form, symmetric pair forces)."""

    name = "ham-derive"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        # CSE first: dot(p, p) then reads one value, and its two adjoints meet before the
        # scatter instead of becoming two read-modify-writes of the gradient.
        CommonSubexpressionElimination().apply(ctx, op)
        PatternRewriteWalker(DerivePart(), apply_recursively=False).rewrite_module(op)
        CommonSubexpressionElimination().apply(ctx, op)
        while region_dce(op.body):  # one sweep can leave ops whose only users it removed
            pass
