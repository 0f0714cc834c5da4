"""The Lie-derivative proof of ham-symmetry: {part, G} = 0 as an exact polynomial identity.

For a state of fixed size (no size symbols), a part's region is expanded into a polynomial in
the state's components with exact rational coefficients (params and inputs are symbols, loops
with constant bounds unrolled). A subexpression that is not polynomial (a norm, a quotient by
the state, a sine) becomes an opaque symbol when the Lie derivative of every operand is zero:
then, by the chain rule, so is its own, and the symbol may be treated as a constant. Anything
else fails the proof (None): the result is never a guess.

The generators: P_a = sum_i p_ia (translations along a), L_a = sum_i q_ib p_ic - q_ic p_ib
(rotations about a, (a, b, c) cyclic; in the plane L = q_x p_y - q_y p_x). {F, G} =
sum_k dF/dq_k dG/dp_k - dF/dp_k dG/dq_k, expanded exactly; zero polynomial = proved.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product

from tpc.dialects import ham
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, VectorType
from xdsl.ir import Block, Operation, SSAValue

MAX_TERMS = 4000  # a polynomial larger than this is not expanded (the proof gives up)
MAX_UNROLL = 1024  # loop iterations unrolled per part
MAX_STATE = 64  # components of q (and of p): larger fixed-size states use the structural proof only

Mono = tuple  # sorted ((variable, exponent), ...)
Poly = dict  # Mono -> Fraction


class GiveUp(Exception):
    pass


def const(c: Fraction) -> Poly:
    return {(): c} if c else {}


def var(v) -> Poly:
    return {((v, 1),): Fraction(1)}


def add(a: Poly, b: Poly, sign: int = 1) -> Poly:
    out = dict(a)
    for m, c in b.items():
        out[m] = out.get(m, 0) + sign * c
        if not out[m]:
            del out[m]
    return out


def _mono_mul(x: Mono, y: Mono) -> Mono:
    d = dict(x)
    for v, e in y:
        d[v] = d.get(v, 0) + e
    return tuple(sorted(d.items(), key=repr))


def mul(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for (m1, c1), (m2, c2) in product(a.items(), b.items()):
        m = _mono_mul(m1, m2)
        out[m] = out.get(m, 0) + c1 * c2
        if not out[m]:
            del out[m]
    if len(out) > MAX_TERMS:
        raise GiveUp
    return out


def deriv(a: Poly, v) -> Poly:
    out: Poly = {}
    for m, c in a.items():
        for k, (w, e) in enumerate(m):
            if w == v:
                rest = m[:k] + (((w, e - 1),) if e > 1 else ()) + m[k + 1:]
                out[rest] = out.get(rest, 0) + c * e
    return {m: c for m, c in out.items() if c}


class Expander:
    """Polynomials of a part's values; `bracket` gives {value, G} for the generator."""

    def __init__(self, system: ham.SystemOp, generator: Poly, n: int):
        self.system = system
        self.q, self.p = system.state.names
        self.shape = system.state.shape.shape
        self.gen, self.n = generator, n
        self.vals: dict[SSAValue, list[Poly]] = {}
        self.ints: dict[SSAValue, int] = {}
        self.opaque = 0
        self.unrolled = 0

    def bracket(self, f: Poly) -> Poly:
        out: Poly = {}
        for k in range(self.n):
            qk, pk = (self.q, k), (self.p, k)
            out = add(out, mul(deriv(f, qk), deriv(self.gen, pk)))
            out = add(out, mul(deriv(f, pk), deriv(self.gen, qk)), -1)
        return out

    def state_free(self, a: Poly) -> bool:
        return all(v[0] not in (self.q, self.p) for m in a for v, _ in m)

    def flat(self, field: str, idx: list[int]) -> int:
        shape = self.system.field_shape(field)
        off = 0
        for k, d in enumerate(shape):
            if not isinstance(d, int):
                raise GiveUp  # an input sized at run time
            off = off * d + (idx[k] if k < len(idx) else 0)
        return off

    def load(self, op: ham.LoadOp) -> list[Poly]:
        name = op.field_name
        idx = [self.ints[i] for i in op.indices]
        width = op.result.type.get_shape()[0] if isinstance(op.result.type, VectorType) else 1
        base = self.flat(name, idx)
        tag = name if name in (self.q, self.p) else ("input", name)
        return [var((tag, base + k)) for k in range(width)]

    def run(self, block: Block) -> None:
        for op in block.ops:
            if isinstance(op, ham.YieldOp):
                return
            self.op(op)

    def op(self, op: Operation) -> None:
        if op.results and op.results[0].type == IndexType():
            self.index(op)
            return
        x = [self.vals[o] for o in op.operands if o.type != IndexType()]

        def set_(lanes: list[Poly]) -> None:
            self.vals[op.results[0]] = lanes

        def lanewise(fn) -> None:
            width = max(len(v) for v in x)
            cols = [v * width if len(v) == 1 else v for v in x]
            set_([fn(*[c[k] for c in cols]) for k in range(width)])

        match op:
            case arith.ConstantOp() if isinstance(op.value, FloatAttr):
                set_([const(Fraction(op.value.value.data))])
            case ham.ParamRefOp():
                set_([var(("param", op.param.string_value()))])
            case ham.LoadOp():
                set_(self.load(op))
            case arith.AddfOp():
                lanewise(add)
            case arith.SubfOp():
                lanewise(lambda a, b: add(a, b, -1))
            case arith.NegfOp():
                set_([{m: -c for m, c in a.items()} for a in x[0]])
            case arith.MulfOp():
                lanewise(mul)
            case arith.DivfOp() if all(set(b) <= {()} and b for b in x[1]):
                lanewise(lambda a, b: {m: c / b[()] for m, c in a.items()})
            case arith.DivfOp() if all(self.state_free(b) and b for b in x[1]):
                # 1/b of params and inputs alone: a symbol the generator does not move
                lanewise(lambda a, b: mul(a, var(("recip", repr(sorted(b.items(), key=repr))))))
            case ham.IPowOp() if op.exponent.value.data >= 0:
                def power(a: Poly, n: int = op.exponent.value.data) -> Poly:
                    out = const(Fraction(1))
                    for _ in range(n):
                        out = mul(out, a)
                    return out
                set_([power(a) for a in x[0]])
            case ham.DotOp():
                acc: Poly = {}
                for a, b in zip(x[0], x[1]):
                    acc = add(acc, mul(a, b))
                set_([acc])
            case ham.CrossOp():
                a, b = x
                set_([add(mul(a[i], b[j]), mul(a[j], b[i]), -1)
                      for i, j in ((1, 2), (2, 0), (0, 1))])
            case ham.ReduceOp():
                acc = {}
                for a in x[0]:
                    acc = add(acc, a)
                set_([acc])
            case ham.BroadcastOp():
                set_(x[0] * op.result.type.get_shape()[0])
            case ham.ExtractOp():
                set_([x[0][op.position.value.data]])
            case ham.SumOp() | ham.PairSumOp():
                set_(self.loop(op))
            case _ if not op.regions and len(op.results) == 1:
                # Not a polynomial: an opaque constant if the generator fixes its operands.
                if any(self.bracket(a) for v in x for a in v):
                    raise GiveUp
                width = op.results[0].type.get_shape()[0] if isinstance(
                    op.results[0].type, VectorType) else 1
                self.opaque += 1
                set_([var(("opaque", self.opaque, k)) for k in range(width)])
            case _:
                raise GiveUp

    def index(self, op: Operation) -> None:
        match op:
            case arith.ConstantOp() if isinstance(op.value, IntegerAttr):
                self.ints[op.results[0]] = op.value.value.data
            case arith.AddiOp():
                self.ints[op.results[0]] = self.ints[op.lhs] + self.ints[op.rhs]
            case arith.SubiOp():
                self.ints[op.results[0]] = self.ints[op.lhs] - self.ints[op.rhs]
            case arith.MuliOp():
                self.ints[op.results[0]] = self.ints[op.lhs] * self.ints[op.rhs]
            case _:
                raise GiveUp  # a size symbol or an index op these rules do not know

    def loop(self, op: ham.SumOp | ham.PairSumOp) -> list[Poly]:
        lo, hi = self.ints[op.lower], self.ints[op.upper]
        block = op.body.block
        width = op.result.type.get_shape()[0] if isinstance(op.result.type, VectorType) else 1
        acc: list[Poly] = [{} for _ in range(width)]
        if isinstance(op, ham.SumOp):
            points = [(i,) for i in range(lo, hi)]
        elif op.kind.data == "lt":
            points = [(i, j) for i in range(lo, hi) for j in range(i + 1, hi)]
        else:
            points = [(i, j) for i in range(lo, hi) for j in range(lo, hi) if i != j]
        self.unrolled += len(points)
        if self.unrolled > MAX_UNROLL:
            raise GiveUp
        for pt in points:
            for arg, v in zip(block.args, pt):
                self.ints[arg] = v
            self.run(block)
            y = self.vals[block.last_op.values[0]]
            acc = [add(a, b) for a, b in zip(acc, y)]
        return acc


def generator(system: ham.SystemOp, dims: int, rows: bool, candidate: str) -> Poly | None:
    """The charge of `candidate` as a polynomial in the flat state components."""
    shape = system.state.shape.shape
    if not all(isinstance(d, int) for d in shape):
        return None
    q, p = system.state.names
    n = 1
    for d in shape:
        n *= d
    bodies = n // dims if dims > 1 else n
    kind, _, axis = candidate.partition("_")

    def at(field: str, i: int, k: int) -> Poly:
        return var((field, i * dims + k if dims > 1 else i))

    g: Poly = {}
    for i in range(bodies):
        if kind == "translation":
            g = add(g, at(p, i, "xyz".index(axis) if axis else 0))
        else:
            a = "xyz".index(axis) if axis else 2
            b, c = ((a + 1) % 3, (a + 2) % 3) if axis else (0, 1)
            g = add(g, add(mul(at(q, i, b), at(p, i, c)), mul(at(q, i, c), at(p, i, b)), -1))
    return g


def lie_proves(system: ham.SystemOp, part: ham.PartOp | list[ham.PartOp], dims: int,
               rows: bool, candidate: str) -> bool:
    """{part, G} = 0 exactly (see the module docstring); False when it is not, or unknown.
    Given a list of parts, the bracket of their sum (H invariant while its parts are not)."""
    parts = part if isinstance(part, list) else [part]
    g = generator(system, dims, rows, candidate)
    if g is None:
        return False
    n = 1
    for d in system.state.shape.shape:
        n *= d
    if n > MAX_STATE:
        return False
    ex = Expander(system, g, n)
    try:
        total: Poly = {}
        for pt in parts:
            ex.run(pt.body.block)
            (h,) = ex.vals[pt.body.block.last_op.values[0]]
            total = add(total, h)
        return not ex.bracket(total)
    except (GiveUp, KeyError, ZeroDivisionError, TypeError, IndexError, ValueError):
        return False  # not a claim: the proof gives up
