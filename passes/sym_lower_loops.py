"""sym-lower-loops: `ham` energy/gradients and the `sym` time loop -> func/scf/memref/arith/math.

Algorithm:
  1. Fields live in flat row-major `memref<?xf64>` buffers; a size symbol becomes an `index`
     argument; params are read once from a `params` buffer. Every function takes this same
     environment: (q, p, params, inputs..., sizes...).
  2. Vectors are scalarized: a `vector<3xf64>` value becomes three f64 values, so norm, dot,
     cross, broadcast and reduce turn into plain scalar arithmetic and no vector type reaches
     the LLVM lowering. `x^n` becomes a short multiplication chain.
  3. `ham.sum` becomes `scf.for` with one accumulator per component; `ham.pair_sum` two nested
     loops (j > i for `<`; j < i then j > i for `!=`, so no branch in the inner loop).
  4. Functions: `energy` returns H; `grad_<x>` zeroes its output and lowers the scatter-form
     gradient region; `run` is the time loop of `sym.evolve`: for each snapshot, `stride` steps
     of the scheme's stages (kick: p -= c dt grad_q; drift: q += c dt grad_p; implicit
     midpoint: fixed-point iteration to round-off), a finiteness check after every step, then
     the snapshot (q, p, H) written to the output buffers. For a first-same-as-last scheme the
     closing kick of a step is fused into the opening kick of the next one, and only the
     snapshot boundary applies it separately.
  5. `run` returns -1 when all went well, the step index when the state turned non-finite, and
     -2 - step when an implicit stage failed to converge; snapshots before it are kept.
  6. Precision (pass option `precision`, "f64" by default, or "f32"): the float type T of every
     buffer (state, params, inputs, outputs, scratch: memref<?xT>), of all arithmetic and math,
     of `energy`'s result and of `run`'s dt argument. The ham IR stays f64; its FloatAttr
     constants are rounded to T while lowering. In f32 the implicit-midpoint tolerance is
     raised to max(tol, 4 eps32) and the round-off stall threshold to 64 eps32 (eps32 =
     2^-23): the f64 values (1e-15, 1e-10) are below f32 round-off. The finiteness check
     x * 0 == 0 holds in either type. f64 output is unchanged by the option.
  7. `energy` computes in float64 whatever the precision: it reads the buffers of type T and
     widens every value (the state, params, inputs; the literals rounded to T first, so it is
     the energy of the very system the f32 code integrates), and returns an f64; `run` writes
     it into an f64 `out_H`. A snapshot's H thus carries no f32 evaluation error on top of the
     f32 state's, so the energy error that is reported is that of the trajectory.
  8. Compensated updates (`sym.update ... kahan @buf`, from sym-kahan): the evolve's `carry`
     buffers are extra arguments of `run` after `status` (ABI role `carry:NAME:n`), and each
     element update x += d, d = a * g, becomes (Kahan-Babuska-Neumaier, see sym-kahan)
         y = d + c;  s = x + y;  b = s - x;  c = (x - (s - b)) + (y - b);  x = s
     (`compensated_add`), in that order and without fast-math flags: the plain IEEE operations
     are all LLVM and NVPTX may use, so neither reassociates nor contracts them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import copysign, inf, isfinite

from tpc.dialects import ham, sym
from tpc.passes.abi import ABI_ATTR, abi_table
from tpc.passes.refusal import Refusal
from tpc.passes.sym_shadow import read_shadow
from xdsl.context import Context
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    FloatAttr,
    IndexType,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnitAttr,
    VectorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

BUF = MemRefType(f64, [DYNAMIC_INDEX])
INDEX = IndexType()
FLOAT_TYPES = {"f64": f64, "f32": f32}
EPS32 = 2.0**-23  # float32 machine epsilon

Scalars = list[SSAValue]  # a lowered value: one float per vector component (one for a scalar)


def float_type(precision: str) -> Attribute:
    """The float type of a precision name ("f64" or "f32")."""
    if precision not in FLOAT_TYPES:
        raise PassFailedException(
            f"unknown precision '{precision}' (known: {', '.join(FLOAT_TYPES)})")
    return FLOAT_TYPES[precision]


def buf_type(ft: Attribute = f64) -> MemRefType:
    """The flat buffer type memref<?xft>."""
    return BUF if ft == f64 else MemRefType(ft, [DYNAMIC_INDEX])


def round_to(value: float, ft: Attribute) -> float:
    """`value` rounded to the float type ft (to nearest; beyond f32's range, infinite)."""
    if ft != f32 or not isfinite(value):
        return value
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return copysign(inf, value)


class Emitter:
    """Appends ops to a current block; small helpers keep the lowering readable. `ft` is the
    float type of the code being emitted (f64 or f32): `f` makes constants of it."""

    def __init__(self, block: Block, ft: Attribute = f64):
        self.block = block
        self.ft = ft

    def __call__(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def f(self, value: float) -> SSAValue:
        return self(arith.ConstantOp(FloatAttr(value, self.ft)))

    def i(self, value: int) -> SSAValue:
        return self(arith.ConstantOp(IntegerAttr(value, INDEX)))

    def add(self, a, b):
        return self(arith.AddfOp(a, b))

    def sub(self, a, b):
        return self(arith.SubfOp(a, b))

    def mul(self, a, b):
        return self(arith.MulfOp(a, b))

    def div(self, a, b):
        return self(arith.DivfOp(a, b))

    def iadd(self, a, b):
        return self(arith.AddiOp(a, b))

    def imul(self, a, b):
        return self(arith.MuliOp(a, b))

    def load(self, buf, idx):
        return self(memref.LoadOp.get(buf, [idx]))

    def store(self, value, buf, idx):
        self(memref.StoreOp.get(value, buf, [idx]))

    def for_(self, lo, hi, body: Callable[[Emitter, SSAValue, list[SSAValue]], list[SSAValue]],
             inits: Sequence[SSAValue] = ()) -> list[SSAValue]:
        block = Block(arg_types=[INDEX, *[v.type for v in inits]])
        inner = Emitter(block, self.ft)
        results = body(inner, block.args[0], list(block.args[1:]))
        inner(scf.YieldOp(*results))
        op = scf.ForOp(lo, hi, self.i(1), list(inits), block)
        self(op)
        return list(op.results)

    def if_(self, cond, then: Callable[[Emitter], list[SSAValue]],
            other: Callable[[Emitter], list[SSAValue]], types: Sequence[Attribute]) -> list:
        blocks = []
        for fn in (then, other):
            b = Block()
            e = Emitter(b, self.ft)
            e(scf.YieldOp(*fn(e)))
            blocks.append(b)
        op = scf.IfOp(cond, list(types), Region(blocks[0]), Region(blocks[1]))
        self(op)
        return list(op.results)


@dataclass
class Env:
    """The run-time environment every generated function receives."""

    system: ham.SystemOp
    q: SSAValue
    p: SSAValue
    params: SSAValue
    inputs: dict[str, SSAValue]
    sizes: dict[str, SSAValue]

    @property
    def args(self) -> list[SSAValue]:
        return [self.q, self.p, self.params, *self.inputs.values(), *self.sizes.values()]


def env_types(system: ham.SystemOp, ft: Attribute = f64) -> list[Attribute]:
    n_inputs = len(system.decls(ham.InputOp))
    n_sizes = len(system.decls(ham.SizeOp))
    buf = buf_type(ft)
    return [buf, buf, buf] + [buf] * n_inputs + [INDEX] * n_sizes


def bind_env(system: ham.SystemOp, args: Sequence[SSAValue]) -> Env:
    inputs = [op.sym_name.data for op in system.decls(ham.InputOp)]
    sizes = [op.sym_name.data for op in system.decls(ham.SizeOp)]
    k = 3 + len(inputs)
    return Env(system, args[0], args[1], args[2], dict(zip(inputs, args[3:k])),
               dict(zip(sizes, args[k:k + len(sizes)])))


class RegionLowering:
    """Lowers the ops of a ham region (energy or gradient) into scalar code."""

    def __init__(self, env: Env, emit: Emitter, grad_out: SSAValue | None = None):
        self.env = env
        self.values: dict[SSAValue, Scalars] = {}
        self.emit = emit
        self.grad_out = grad_out
        # The float type of the buffers; the arithmetic (emit.ft) may be wider (energy in f64).
        self.storage = env.params.type.element_type
        params = [op.sym_name.data for op in env.system.decls(ham.ParamOp)]
        self.param_index = {name: k for k, name in enumerate(params)}
        q, p = env.system.state.names
        self.buffers = {q: env.q, p: env.p, **env.inputs}

    def dim(self, d: int | str, e: Emitter) -> SSAValue:
        return e.i(d) if isinstance(d, int) else self.env.sizes[d]

    def flat_index(self, field: str, indices: Sequence[SSAValue], e: Emitter) -> SSAValue:
        """Row-major offset of the first element addressed by `indices`."""
        shape = self.env.system.field_shape(field)
        offset = e.i(0)
        for k, d in enumerate(shape):
            if k > 0:
                offset = e.imul(offset, self.dim(d, e))
            if k < len(indices):
                offset = e.iadd(offset, self.get(indices[k])[0])
        return offset

    def get(self, v: SSAValue) -> Scalars:
        return self.values[v]

    def read(self, buf: SSAValue, idx: SSAValue, e: Emitter) -> SSAValue:
        """buf[idx] as a value of the arithmetic's type (widened when the buffer is narrower)."""
        v = e.load(buf, idx)
        return v if buf.type.element_type == e.ft else e(arith.ExtFOp(v, e.ft))

    def const(self, value: float, e: Emitter) -> SSAValue:
        """A literal of the ham IR (f64) as the generated code sees it: rounded to the buffers'
        type, as every stored value is, then held in the arithmetic's type."""
        return e.f(round_to(value, self.storage))

    def block(self, block: Block, e: Emitter) -> list[Scalars]:
        """Lower every op of `block` into `e`; return the lowered values of its ham.yield."""
        saved, self.emit = self.emit, e
        try:
            for op in block.ops:
                if isinstance(op, ham.YieldOp):
                    return [self.get(v) for v in op.values]
                self.op(op)
        finally:
            self.emit = saved
        return []

    def op(self, op: Operation) -> None:
        e = self.emit
        x = [self.get(o) for o in op.operands]

        def set1(*vals: SSAValue) -> None:
            self.values[op.results[0]] = list(vals)

        def lanes(fn: Callable[..., Operation]) -> None:
            width = max(len(v) for v in x)
            cols = [v * width if len(v) == 1 else v for v in x]
            set1(*[e(fn(*[c[k] for c in cols])) for k in range(width)])

        match op:
            case arith.ConstantOp() if isinstance(op.value, FloatAttr):
                set1(self.const(op.value.value.data, e))
            case arith.ConstantOp() if isinstance(op.value, IntegerAttr):
                set1(e(op.clone()))
            case arith.ConstantOp():
                set1(*[self.const(v, e) for v in op.value.get_values()])
            case arith.AddiOp() | arith.SubiOp() | arith.MuliOp():
                set1(e(type(op)(x[0][0], x[1][0])))
            case arith.AddfOp() | arith.SubfOp() | arith.MulfOp() | arith.DivfOp():
                lanes(type(op))
            case arith.NegfOp() | math.SinOp() | math.CosOp() | math.TanOp() | math.ExpOp() \
                    | math.LogOp() | math.SqrtOp() | math.AbsFOp() | math.SinhOp() \
                    | math.CoshOp() | math.TanhOp():
                lanes(type(op))
            case math.PowFOp() | math.CopySignOp() | math.ErfOp() | ham.ErfcOp() \
                    | math.RoundOp():
                lanes(type(op))
            case arith.CmpfOp():
                set1(e(arith.CmpfOp(x[0][0], x[1][0], op.predicate.value.data)))
            case arith.SelectOp():
                set1(*[e(arith.SelectOp(x[0][0], a, b)) for a, b in zip(x[1], x[2])])
            case arith.DivUIOp() | arith.RemUIOp():
                set1(e(type(op)(x[0][0], x[1][0])))
            case arith.IndexCastOp():
                set1(e(arith.IndexCastOp(x[0][0], op.result.type)))
            case arith.SIToFPOp():
                set1(e(arith.SIToFPOp(x[0][0], e.ft)))
            case ham.ParamRefOp():
                idx = self.param_index[op.param.string_value()]
                set1(self.read(self.env.params, e.i(idx), e))
            case ham.DimOp():
                set1(self.env.sizes[op.size.string_value()])
            case ham.LoadOp():
                name = op.field_name
                base = self.flat_index(name, op.indices, e)
                width = len(self.get_width(op.result.type))
                comps = [base if k == 0 else e.iadd(base, e.i(k)) for k in range(width)]
                set1(*[self.read(self.buffers[name], c, e) for c in comps])
            case ham.AccumulateOp():
                name = op.field.string_value()
                base = self.flat_index(name, op.indices, e)
                for k, val in enumerate(self.get(op.value)):
                    at = base if k == 0 else e.iadd(base, e.i(k))
                    e.store(e.add(e.load(self.grad_out, at), val), self.grad_out, at)
            case ham.IPowOp():
                set1(*[self.ipow(c, op.exponent.value.data, e) for c in x[0]])
            case ham.NormOp():
                set1(e(math.SqrtOp(self.sum_sq(x[0], x[0], e))))
            case ham.DotOp():
                set1(self.sum_sq(x[0], x[1], e))
            case ham.CrossOp():
                a, b = x
                set1(*[e.sub(e.mul(a[i], b[j]), e.mul(a[j], b[i]))
                       for i, j in ((1, 2), (2, 0), (0, 1))])
            case ham.ReduceOp():
                acc = x[0][0]
                for c in x[0][1:]:
                    acc = e.add(acc, c)
                set1(acc)
            case ham.BroadcastOp():
                set1(*(x[0] * op.result.type.get_shape()[0]))
            case ham.ExtractOp():
                set1(x[0][op.position.value.data])
            case ham.SumOp() | ham.PairSumOp():
                self.loop(op, e)
            case _:
                raise Refusal(op, f"sym-lower-loops: cannot lower {op.name}")

    @staticmethod
    def get_width(t: Attribute) -> list[int]:
        return list(range(t.get_shape()[0])) if isinstance(t, VectorType) else [0]

    def sum_sq(self, a: Scalars, b: Scalars, e: Emitter) -> SSAValue:
        acc = e.mul(a[0], b[0])
        for u, v in zip(a[1:], b[1:]):
            acc = e.add(acc, e.mul(u, v))
        return acc

    def ipow(self, x: SSAValue, n: int, e: Emitter) -> SSAValue:
        if n == 0:
            return e.f(1.0)
        if n < 0:
            return e.div(e.f(1.0), self.ipow(x, -n, e))
        result, base = None, x
        while n:
            if n & 1:
                result = base if result is None else e.mul(result, base)
            n >>= 1
            if n:
                base = e.mul(base, base)
        return result

    def loop(self, op: ham.SumOp | ham.PairSumOp, e: Emitter) -> None:
        width = len(self.get_width(op.result.type)) if op.result is not None else 0
        lo, hi = self.get(op.lower)[0], self.get(op.upper)[0]
        src = op.body.block
        zeros = [e.f(0.0) for _ in range(width)]

        def body_at(ivs: list[SSAValue]):
            def body(inner: Emitter, iv: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
                for a, v in zip(src.args, [*ivs, iv]):
                    self.values[a] = [v]
                out = self.block(src, inner)
                return [inner.add(a, v) for a, v in zip(accs, out[0])] if width else []
            return body

        if isinstance(op, ham.SumOp):
            results = e.for_(lo, hi, body_at([]), zeros)
        elif "cells" in op.attributes:
            results = CellList(self, op).loop(lo, hi, body_at, zeros, e)
        else:
            results = pair_loops(e, op, lo, hi, body_at, zeros)
        if width:
            self.values[op.result] = results


def pair_loops(e: Emitter, op: ham.PairSumOp, lo: SSAValue, hi: SSAValue, body_at,
               inits: list[SSAValue]) -> list[SSAValue]:
    """The nested loops of a pair sum without a cell list: j > i for `<`; j < i, then j > i,
    for `!=` (no branch in the inner loop). body_at([i]) makes the inner body."""
    def outer(oe: Emitter, i: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
        accs = oe.for_(oe.iadd(i, oe.i(1)), hi, body_at([i]), accs)
        if op.kind.data == "ne":
            accs = oe.for_(lo, i, body_at([i]), accs)
        return accs
    return e.for_(lo, hi, outer, inits)


@dataclass
class CellList:
    """A cut-off pair sum in a periodic box over a cell list (ham-periodic's `cells` grid,
    each cell at least rc wide, at least 3 per axis): particles are counting-sorted by cell,
    and each cell's pairs are taken with the particles of its neighbour cells, so a sum costs
    O(N) instead of O(N^2). With 3 or more cells per axis the 27 neighbours of a cell are
    distinct, so an i < j sum takes each unordered pair of neighbour cells once (the half
    stencil) and an i != j sum each ordered pair. The scratch lives on the heap (N entries),
    built at every evaluation."""

    lowering: RegionLowering
    op: ham.PairSumOp

    def loop(self, lo, hi, body_at, zeros, e: Emitter) -> list[SSAValue]:
        system = self.lowering.env.system
        grid = [a.value.data for a in self.op.attributes["cells"].data]
        box = system.box_lengths
        position = system.state.names[0]
        axes = len(grid)
        ncell = 1
        for g in grid:
            ncell *= g
        count = e(memref.AllocOp.get(i64, shape=[ncell + 1]))
        cursor = e(memref.AllocOp.get(i64, shape=[ncell + 1]))
        n = e(arith.SubiOp(hi, lo))
        cell_of = e(memref.AllocOp.get(i64, shape=[DYNAMIC_INDEX], dynamic_sizes=[n]))
        order = e(memref.AllocOp.get(i64, shape=[DYNAMIC_INDEX], dynamic_sizes=[n]))
        zero64 = e(arith.ConstantOp(IntegerAttr(0, i64)))
        one64 = e(arith.ConstantOp(IntegerAttr(1, i64)))

        def as_index(v, x):
            return x(arith.IndexCastOp(v, INDEX))

        def as_i64(v, x):
            return x(arith.IndexCastOp(v, i64))

        def clear(x, k, _):
            x.store(zero64, count, k)
            return []

        e.for_(e.i(0), e.i(ncell + 1), clear)
        buf = self.lowering.buffers[position]

        def bin_particle(x: Emitter, i, _):
            cell = x.i(0)
            for d in range(axes):
                at = x.iadd(x.imul(i, x.i(axes)), x.i(d))
                coord = self.lowering.read(buf, at, x)
                frac = x(arith.MulfOp(coord, x.f(1 / box[d])))
                frac = x(arith.SubfOp(frac, x(math.FloorOp(frac))))
                scaled = x(arith.MulfOp(frac, x.f(float(grid[d]))))
                k = x(arith.FPToSIOp(scaled, i64))
                top = x(arith.ConstantOp(IntegerAttr(grid[d] - 1, i64)))
                k = x(arith.MinSIOp(x(arith.MaxSIOp(k, zero64)), top))  # NaN, rounding up
                cell = x.iadd(x.imul(cell, x.i(grid[d])), as_index(k, x))
            slot = x(arith.SubiOp(i, lo))
            x.store(as_i64(cell, x), cell_of, slot)
            nxt = x.iadd(cell, x.i(1))
            x.store(x(arith.AddiOp(x.load(count, nxt), one64)), count, nxt)
            return []

        e.for_(lo, hi, bin_particle)

        def prefix(x: Emitter, c, _):
            nxt = x.iadd(c, x.i(1))
            x.store(x(arith.AddiOp(x.load(count, nxt), x.load(count, c))), count, nxt)
            return []

        e.for_(e.i(0), e.i(ncell), prefix)

        def copy(x: Emitter, c, _):
            x.store(x.load(count, c), cursor, c)
            return []

        e.for_(e.i(0), e.i(ncell), copy)

        def scatter(x: Emitter, s, _):
            c = as_index(x.load(cell_of, s), x)
            at = x.load(cursor, c)
            x.store(as_i64(x.iadd(s, lo), x), order, as_index(at, x))
            x.store(x(arith.AddiOp(at, one64)), cursor, c)
            return []

        e.for_(e.i(0), n, scatter)
        # i < j: the half stencil (the cell itself, pairs in order, and the 13 neighbours
        # after it in offset order: each pair of neighbour cells once), the body called with
        # (min, max); i != j: all 27 neighbours, every ordered pair.
        half = self.op.kind.data == "lt"
        centre = (3 ** axes - 1) // 2

        def per_cell(x: Emitter, c, accs):
            digits, rest = [], c
            for d in reversed(range(axes)):
                digits.append(x(arith.RemUIOp(rest, x.i(grid[d]))))
                rest = x(arith.DivUIOp(rest, x.i(grid[d])))
            digits.reverse()

            def per_neighbour(y: Emitter, o, accs):
                other, rest = y.i(0), o
                shifts = []
                for _ in range(axes):
                    shifts.append(y(arith.RemUIOp(rest, y.i(3))))
                    rest = y(arith.DivUIOp(rest, y.i(3)))
                shifts.reverse()
                for d in range(axes):
                    moved = y.iadd(digits[d], y.iadd(shifts[d], y.i(grid[d] - 1)))
                    other = y.iadd(y.imul(other, y.i(grid[d])),
                                   y(arith.RemUIOp(moved, y.i(grid[d]))))
                first = as_index(y.load(count, c), y)
                last = as_index(y.load(count, y.iadd(c, y.i(1))), y)
                o_first = as_index(y.load(count, other), y)
                o_last = as_index(y.load(count, y.iadd(other, y.i(1))), y)

                def over_i(z: Emitter, s, accs):
                    i = as_index(z.load(order, s), z)

                    def over_j(w: Emitter, t, accs):
                        j = as_index(w.load(order, t), w)
                        types = [a.type for a in accs]
                        if not half:
                            cond = w(arith.CmpiOp(i, j, "ne"))
                            return w.if_(cond, lambda v: body_at([i])(v, j, accs),
                                         lambda v: list(accs), types)
                        before = w(arith.CmpiOp(i, j, "ult"))
                        same_cell = w(arith.CmpiOp(o, w.i(centre), "eq"))
                        yes = w(arith.ConstantOp(IntegerAttr(1, i1)))
                        cond = w(arith.SelectOp(same_cell, before, yes))
                        lo = w(arith.SelectOp(before, i, j))
                        hi = w(arith.SelectOp(before, j, i))
                        return w.if_(cond, lambda v: body_at([lo])(v, hi, accs),
                                     lambda v: list(accs), types)

                    return z.for_(o_first, o_last, over_j, accs)

                return y.for_(first, last, over_i, accs)

            return x.for_(x.i(centre if half else 0), x.i(3 ** axes), per_neighbour, accs)

        results = e.for_(e.i(0), e.i(ncell), per_cell, zeros)
        for scratch in (count, cursor, cell_of, order):
            e(memref.DeallocOp.get(scratch))
        return results


def state_size(env: Env, e: Emitter) -> SSAValue:
    n = e.i(1)
    for d in env.system.state.shape.shape:
        n = e.imul(n, e.i(d) if isinstance(d, int) else env.sizes[d])
    return n


def make_func(name: str, inputs: list[Attribute], outputs: list[Attribute],
              body: Callable[[Emitter, list[SSAValue]], list[SSAValue]],
              private: bool = True, ft: Attribute = f64) -> func.FuncOp:
    block = Block(arg_types=inputs)
    e = Emitter(block, ft)
    results = body(e, list(block.args))
    e(func.ReturnOp(*results))
    fn = func.FuncOp(name, (inputs, outputs), Region(block),
                     visibility=StringAttr("private") if private else None)
    # Every buffer argument is a distinct array (q, p, params, inputs, outputs, scratch).
    fn.attributes["tpc.noalias"] = UnitAttr()
    return fn


def lower_energy(system: ham.SystemOp, ft: Attribute = f64) -> func.FuncOp:
    """energy(env...) = the sum of H's parts, in ham.hamiltonian's order, computed in f64 from
    buffers of type ft (header, step 7)."""
    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args)
        total = None
        for name in system.hamiltonian.part_names:
            (v,) = RegionLowering(env, e).block(system.part(name).body.block, e)[0]
            total = v if total is None else e.add(total, v)
        return [total]

    return make_func("energy", env_types(system, ft), [f64], body, private=False, ft=f64)


def lower_energy_parts(system: ham.SystemOp, ft: Attribute = f64) -> func.FuncOp:
    """energy_parts(env..., out): out[k] = the energy of H's k-th part (ham.hamiltonian's
    order), in f64 like `energy`, so that a non-finite H can be traced to the part that makes
    it so."""
    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-1])
        for k, name in enumerate(system.hamiltonian.part_names):
            (v,) = RegionLowering(env, e).block(system.part(name).body.block, e)[0]
            e.store(v, args[-1], e.i(k))
        return []

    return make_func("energy_parts", [*env_types(system, ft), BUF], [], body, private=False,
                     ft=f64)


def lower_monitors(system: ham.SystemOp, ft: Attribute = f64) -> func.FuncOp:
    """monitors(env..., out): out[k] = the system's k-th ham.monitor (a conserved quantity
    ham-symmetry derived, or a user observable), in f64 like `energy`; the runtime calls it at
    every snapshot. One more monitor is one more region here, no new call site."""
    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-1])
        for k, mon in enumerate(system.monitors):
            (v,) = RegionLowering(env, e).block(mon.body.block, e)[0]
            e.store(v, args[-1], e.i(k))
        return []

    return make_func("monitors", [*env_types(system, ft), BUF], [], body, private=False,
                     ft=f64)


def shadow_funcs(system: ham.SystemOp, shadow: dict, ft: Attribute = f64) -> list:
    """For each kicked and drifted part (sym-shadow's brackets), in f64: d2_<part>(env..., dir),
    the second derivative of the part along dir in the field it depends on; for a dt^4 term
    taylor_<part>(env..., dir, out), its derivatives 0..4 along dir, and hvp_<part>(env...,
    dir, out), out += its Hessian times dir."""
    from tpc.passes.jet_lowering import hvp_function, jet_function, taylor_function

    q, p = system.state.names
    out = []
    for name in shadow["kick"] + shadow["drift"]:
        along = q if name in shadow["kick"] else p
        if "dt4" not in shadow:
            out.append(jet_function(f"d2_{name}", system, system.part(name), along, ft))
            continue
        out.append(taylor_function(f"taylor_{name}", system, system.part(name), along, ft, 4))
        for grad in system.gradients(along, [name]):
            out.append(hvp_function(f"hvp_{name}", system, grad, along, ft))
    return out


def part_grad_name(part: str, wrt: str) -> str:
    return f"grad_{part}_{wrt}"


def lower_part_gradient(system: ham.SystemOp, grad: ham.GradientOp,
                        ft: Attribute = f64) -> func.FuncOp:
    """grad_<part>_<field>(env..., out): out += d(part)/d(field) (scatter form, no clearing:
    the gradients of several parts accumulate into one buffer)."""
    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-1])
        RegionLowering(env, e, grad_out=args[-1]).block(grad.body.block, e)
        return []

    return make_func(part_grad_name(grad.part_name, grad.wrt_name),
                     [*env_types(system, ft), buf_type(ft)], [], body, ft=ft)


def clear(e: Emitter, buf: SSAValue, n: SSAValue) -> None:
    zero = e.f(0.0)

    def body(inner: Emitter, k: SSAValue, _: list) -> list:
        inner.store(zero, buf, k)
        return []

    e.for_(e.i(0), n, body)


def call_gradient(e: Emitter, env: Env, wrt: str, parts: Sequence[str] | None,
                  out: SSAValue) -> None:
    """out = d(sum of parts)/d(wrt) (all parts when None), through the per-part functions."""
    clear(e, out, state_size(env, e))
    for g in env.system.gradients(wrt, parts):
        e(func.CallOp(part_grad_name(g.part_name, wrt), [*env.args, out], []))


def lower_total_gradient(system: ham.SystemOp, wrt: str, ft: Attribute = f64) -> func.FuncOp:
    """grad_<field>(env..., out): out = dH/d(field), every part's gradient summed."""
    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        call_gradient(e, bind_env(system, args[:-1]), wrt, None, args[-1])
        return []

    return make_func(f"grad_{wrt}", [*env_types(system, ft), buf_type(ft)], [], body,
                     private=False, ft=ft)


# ----------------------------------------------------------------------------- Kepler flow

STUMPFF_TERMS = 14  # the series for |z| < 1: the last term is below 1 / 30!


def stumpff(e: Emitter, z: SSAValue) -> tuple[SSAValue, SSAValue]:
    """c2(z) = (1 - cos sqrt z) / z, c3(z) = (sqrt z - sin sqrt z) / sqrt z^3, continued to
    z <= 0 by cosh/sinh; Taylor series for |z| < 1, where the closed forms cancel."""
    s2, s3 = e.f(0.0), e.f(0.0)
    fact2 = [1.0 / _factorial(2 * k + 2) for k in range(STUMPFF_TERMS)]
    fact3 = [1.0 / _factorial(2 * k + 3) for k in range(STUMPFF_TERMS)]
    mz = e(arith.NegfOp(z))
    for k in reversed(range(STUMPFF_TERMS)):  # Horner in -z
        s2 = e.add(e.f(fact2[k]), e.mul(mz, s2))
        s3 = e.add(e.f(fact3[k]), e.mul(mz, s3))
    small = e(arith.CmpfOp(e(math.AbsFOp(z)), e.f(1.0), "olt"))
    ft = e.ft

    def closed(ce: Emitter) -> list:
        def ell(te: Emitter) -> list:
            r = te(math.SqrtOp(z))
            return [te.div(te.sub(te.f(1.0), te(math.CosOp(r))), z),
                    te.div(te.sub(r, te(math.SinOp(r))), te.mul(r, z))]

        def hyp(he: Emitter) -> list:
            az = he(arith.NegfOp(z))
            r = he(math.SqrtOp(az))
            return [he.div(he.sub(he(math.CoshOp(r)), he.f(1.0)), az),
                    he.div(he.sub(he(math.SinhOp(r)), r), he.mul(r, az))]

        return ce.if_(ce(arith.CmpfOp(z, ce.f(0.0), "ogt")), ell, hyp, [ft, ft])

    c2, c3 = e.if_(small, lambda se: [s2, s3], closed, [ft, ft])
    return c2, c3


def _factorial(n: int) -> float:
    out = 1.0
    for k in range(2, n + 1):
        out *= k
    return out


@dataclass
class KeplerSolve:
    """The universal-variable solve of one Kepler flow: its inputs (r0, sigma0, alpha, beta,
    the period-reduced time t) and the root chi with z = alpha chi^2, c2(z), c3(z) and
    r = dF/dchi, from which the Lagrange coefficients follow (and their tangents,
    passes/tangent_lowering.py)."""

    mu: SSAValue
    r0: SSAValue
    sqmu: SSAValue
    sigma0: SSAValue
    alpha: SSAValue
    beta: SSAValue
    elliptic: SSAValue
    period: SSAValue
    turns: SSAValue
    t: SSAValue
    chi: SSAValue
    z: SSAValue
    c2: SSAValue
    c3: SSAValue
    r: SSAValue


def kepler_step(e: Emitter, x: Scalars, v: Scalars, mu: SSAValue,
                h: SSAValue) -> tuple[Scalars, Scalars]:
    """The two-body flow for time h of (x, v) about mu, in universal variables (Bate, Mueller
    and White; Danby): solve sigma0 chi^2 c2 + (1 - alpha r0) chi^3 c3 + r0 chi = sqrt(mu) h
    for chi by Laguerre's method (Conway 1986, globally convergent for this equation), then
    the Lagrange coefficients f, g, f', g'. An elliptic orbit's h is first reduced by whole
    periods, which changes nothing but keeps chi small."""
    return kepler_finish(e, x, v, kepler_solve(e, x, v, mu, h))


def kepler_finish(e: Emitter, x: Scalars, v: Scalars, s: KeplerSolve) -> tuple[Scalars, Scalars]:
    """The new (x, v) from a solve: the Lagrange coefficients applied."""
    chi, z, c2, c3, r, r0, t, sqmu = s.chi, s.z, s.c2, s.c3, s.r, s.r0, s.t, s.sqmu
    one = e.f(1.0)
    chi2 = e.mul(chi, chi)
    # f - 1 and g' - 1 directly, and x + (change): rounding 1 - small first would bias the
    # energy by a few ulps per step, which over 1e5 steps is a visible drift of the phase.
    fm1 = e(arith.NegfOp(e.div(e.mul(chi2, c2), r0)))
    g = e.sub(t, e.div(e.mul(chi2, e.mul(chi, c3)), sqmu))
    fd = e.mul(e.div(sqmu, e.mul(r, r0)), e.mul(chi, e.sub(e.mul(z, c3), one)))
    gdm1 = e(arith.NegfOp(e.div(e.mul(chi2, c2), r)))
    x1 = [e.add(a, e.add(e.mul(fm1, a), e.mul(g, b))) for a, b in zip(x, v)]
    v1 = [e.add(b, e.add(e.mul(fd, a), e.mul(gdm1, b))) for a, b in zip(x, v)]
    return x1, v1


def kepler_solve(e: Emitter, x: Scalars, v: Scalars, mu: SSAValue,
                 h: SSAValue) -> KeplerSolve:
    ft = e.ft
    one, zero = e.f(1.0), e.f(0.0)
    r0 = e(math.SqrtOp(e.add(e.add(e.mul(x[0], x[0]), e.mul(x[1], x[1])), e.mul(x[2], x[2]))))
    v2 = e.add(e.add(e.mul(v[0], v[0]), e.mul(v[1], v[1])), e.mul(v[2], v[2]))
    rv = e.add(e.add(e.mul(x[0], v[0]), e.mul(x[1], v[1])), e.mul(x[2], v[2]))
    sqmu = e(math.SqrtOp(mu))
    sigma0 = e.div(rv, sqmu)
    alpha = e.sub(e.div(e.f(2.0), r0), e.div(v2, mu))
    beta = e.sub(one, e.mul(alpha, r0))  # 1 - alpha r0
    elliptic = e(arith.CmpfOp(alpha, zero, "ogt"))
    period = e.div(e.f(2.0 * 3.141592653589793),
                   e.mul(sqmu, e.mul(alpha, e(math.SqrtOp(e(math.AbsFOp(alpha)))))))
    turns = e(math.FloorOp(e.add(e.div(h, period), e.f(0.5))))
    t = e(arith.SelectOp(elliptic, e.sub(h, e.mul(turns, period)), h))
    sqmu_t = e.mul(sqmu, t)
    chi0 = e(arith.SelectOp(elliptic, e.mul(sqmu_t, alpha), e.div(sqmu_t, r0)))

    def fun(b: Emitter, chi: SSAValue):
        z = b.mul(alpha, b.mul(chi, chi))
        c2, c3 = stumpff(b, z)
        chi2 = b.mul(chi, chi)
        f0 = b.add(b.add(b.mul(sigma0, b.mul(chi2, c2)), b.mul(beta, b.mul(chi2, b.mul(chi, c3)))),
                   b.sub(b.mul(r0, chi), sqmu_t))
        f1 = b.add(b.add(b.mul(sigma0, b.mul(chi, b.sub(one, b.mul(z, c3)))),
                         b.mul(beta, b.mul(chi2, c2))), r0)
        f2 = b.add(b.mul(sigma0, b.sub(one, b.mul(z, c2))),
                   b.mul(beta, b.mul(chi, b.sub(one, b.mul(z, c3)))))
        return z, c2, c3, f0, f1, f2

    tol = 4e-16 if ft == f64 else 4 * EPS32
    max_iter = 64
    before = Block(arg_types=[INDEX, ft, i1])
    be = Emitter(before, ft)
    it, chi, done = before.args
    go = be(arith.AndIOp(be(arith.CmpiOp(it, be.i(max_iter), "slt")),
                         be(arith.XOrIOp(done, be(arith.ConstantOp(IntegerAttr(1, i1)))))))
    be(scf.ConditionOp(go, it, chi, done))
    after = Block(arg_types=[INDEX, ft, i1])
    ae = Emitter(after, ft)
    it2, chi2, _ = after.args
    _z, _c2, _c3, f0, f1, f2 = fun(ae, chi2)
    n = 5.0
    disc = ae(math.AbsFOp(ae.sub(ae.mul(ae.f((n - 1) ** 2), ae.mul(f1, f1)),
                                 ae.mul(ae.f(n * (n - 1)), ae.mul(f0, f2)))))
    root = ae(math.SqrtOp(disc))
    denom = ae.add(f1, ae(math.CopySignOp(root, f1)))
    delta = ae.div(ae.mul(ae.f(n), f0), denom)
    new = ae.sub(chi2, delta)
    small = ae(arith.CmpfOp(ae(math.AbsFOp(delta)),
                            ae.mul(ae.f(tol), ae.add(one, ae(math.AbsFOp(new)))), "ole"))
    ae(scf.YieldOp(ae.iadd(it2, ae.i(1)), new, small))
    loop = scf.WhileOp([e.i(0), chi0, e(arith.ConstantOp(IntegerAttr(0, i1)))],
                       [INDEX, ft, i1], Region(before), Region(after))
    e(loop)
    chi = loop.results[1]
    z, c2, c3, _f0, r, _f2 = fun(e, chi)
    return KeplerSolve(mu, r0, sqmu, sigma0, alpha, beta, elliptic, period, turns, t, chi, z, c2,
                       c3, r)


# ----------------------------------------------------------------------------- the time loop

STATUS_OK = -1.0  # status[at] while a run goes well; the failing step's index otherwise


# The stage ops of exact flows and the machine method that runs each.
EXACT_STAGES = {sym.LinearOp: "linear", sym.KeplerOp: "kepler", sym.BorisOp: "boris"}


class TimeLoop:
    """The one lowering of a time loop (`sym.evolve` / the stepped code of `sym.propagate`):
    for each of nsnap snapshots, `stride` steps of the scheme, a finiteness check after every
    step, then the snapshot. The execution model (`machine`) says how an update, the
    finiteness check and a snapshot run: over the whole state on one CPU thread
    (`CpuMachine`, the `run` function) or row by row across the threads of a GPU block (the
    `block_run` kernel of sym-gpu-kernels). Everything else is this class:

    - stages: `sym.update` (target += c dt grad), `sym.midpoint`, `sym.repeat` (an scf.for);
    - first-same-as-last schemes fuse the closing kick (or Kepler flow) of a step with the
      opening one of the next (time a + b); the closing one is applied alone only at snapshot
      boundaries. A step's result exists only once its closing stage has run, so its check
      comes after the fused stage (or, at a snapshot boundary, after the closing one) and
      names that step;
    - the status: a float in memory, STATUS_OK (-1) while all is well, else the index of the
      step that turned the state non-finite, or -2 - step when an implicit stage did not
      converge. Steps and snapshots start only while it is STATUS_OK, so the snapshot that
      holds the bad step is written and no later one; a fused closing kick is not applied
      after a bad step, so the bad state is the one the check saw.
    """

    def __init__(self, scheme: sym.SchemeOp, machine):
        self.scheme, self.m = scheme, machine

    def healthy(self, e: Emitter) -> SSAValue:
        return e(arith.CmpfOp(e.load(self.m.status, self.m.at),
                              e(arith.ConstantOp(FloatAttr(STATUS_OK, f64))), "oeq"))

    def fail(self, e: Emitter, code: SSAValue) -> None:
        """status = code (an index), unless a failure is already recorded."""
        def mark(te: Emitter) -> list:
            te.store(te(arith.SIToFPOp(te(arith.IndexCastOp(code, i64)), f64)),
                     self.m.status, self.m.at)
            return []
        e.if_(self.healthy(e), mark, lambda fe: [], [])

    def exact(self, e: Emitter, op: Operation, h: SSAValue) -> None:
        """An exact flow for time h (h carrying the sign of a kick): the update op, or the
        machine's method for a stage op, given the op's position among its kind in the scheme
        (the k-th linear or Kepler flow reads the k-th block of its run-time buffer)."""
        if isinstance(op, sym.UpdateOp):
            self.m.update(e, op, h)
            return
        method = getattr(self.m, EXACT_STAGES[type(op)], None)
        if method is None:
            raise PassFailedException(
                f"{self.m.__class__.__name__}: {op.name} of {op.parts} is not lowered for this "
                "target yet")
        k = [o for o in self.scheme.walk() if type(o) is type(op)].index(op)
        method(e, op, h, k)

    def stages(self, e: Emitter, stages: Sequence[Operation], gstep: SSAValue) -> SSAValue:
        """Emit the stages; an i1 that is false when an implicit stage did not converge."""
        ok = e(arith.ConstantOp(IntegerAttr(1, i1)))
        for st in stages:
            if isinstance(st, sym.UpdateOp):
                self.m.update(e, st, e.mul(e.f(st.c), self.dt))
            elif isinstance(st, tuple(EXACT_STAGES)):
                self.exact(e, st, e.mul(e.f(st.c), self.dt))
            elif isinstance(st, sym.MidpointOp):
                conv = self.m.midpoint(e, st, self.dt)
                e.if_(conv, lambda te: [],
                      lambda fe: (self.fail(fe, fe(arith.SubiOp(fe.i(-2), gstep))), [])[1], [])
                ok = e(arith.AndIOp(ok, conv))
            elif isinstance(st, sym.RepeatOp):
                (inner,) = e.for_(e.i(0), e.i(st.n), lambda ie, _k, acc, st=st: [
                    ie(arith.AndIOp(acc[0], self.stages(ie, st.stages, gstep)))], [ok])
                ok = inner
            else:
                raise Refusal(
                    st, f"sym-lower-loops: cannot step {st.name} {getattr(st, 'kind', '')} "
                    "(run sym-lower-flows; an exact flow runs only folded)")
        return ok

    def emit(self, e: Emitter, dt, nsnap, stride, step0) -> None:
        """The loops carry `ok` (the status is STATUS_OK) as a value, so a step reads no
        memory to know it may run; the status itself is written only when a step fails."""
        self.dt = dt
        stages = self.scheme.stages
        fsal = "fsal" in self.scheme.attributes
        first_up, last_up = stages[0], stages[-1]
        h0 = None
        if "project" in self.scheme.attributes:
            if not hasattr(self.m, "project"):
                raise PassFailedException(f"{self.m.__class__.__name__}: project = energy is "
                                          "not lowered for this target")
            h0 = self.m.start_energy(e)

        def one_step(se: Emitter, gstep: SSAValue, first: SSAValue) -> SSAValue:
            if not fsal:
                converged = self.stages(se, stages, gstep)
                if h0 is not None:
                    self.m.project(se, h0)
                return se(arith.AndIOp(converged, self.m.check(se, self, gstep)))
            a, b = first_up.c, last_up.c
            c = se(arith.SelectOp(first, se.f(a), se.f(a + b)))
            self.exact(se, first_up, se.mul(c, dt))
            # A fused stage holds the closing stage of the previous step: only after it is that
            # step's result known, so the check here is the previous step's. Checking before
            # it would name the next step when the closing stage is what goes non-finite. The
            # first step of a snapshot follows a checked snapshot and has nothing to check.
            true = se(arith.ConstantOp(IntegerAttr(1, i1)))
            (ok,) = se.if_(first, lambda te: [true], lambda fe: [
                self.m.check(fe, self, fe(arith.SubiOp(gstep, fe.i(1))))], [i1])
            (ok,) = se.if_(ok, lambda te: [self.stages(te, stages[1:-1], gstep)],
                           lambda fe: [ok], [i1])
            return ok

        def keep(fe: Emitter, ok: SSAValue) -> list:
            return [ok]

        def snapshot(se: Emitter, s: SSAValue, ok: SSAValue) -> SSAValue:
            def step(ie: Emitter, kk: SSAValue, acc: list) -> list:
                gstep = ie.iadd(step0, ie.iadd(ie.imul(s, stride), kk))
                first = ie(arith.CmpiOp(kk, ie.i(0), "eq"))
                return ie.if_(acc[0], lambda te: [one_step(te, gstep, first)],
                              lambda fe: keep(fe, acc[0]), [i1])

            (ok,) = se.for_(se.i(0), stride, step, [ok])
            if fsal:
                # The closing kick completes the last step: check it as part of that step.
                last = se.iadd(step0, se.iadd(se.imul(s, stride),
                                              se(arith.SubiOp(stride, se.i(1)))))

                def close(te: Emitter) -> list:
                    self.exact(te, last_up, te.mul(te.f(last_up.c), dt))
                    return [self.m.check(te, self, last)]

                (ok,) = se.if_(ok, close, lambda fe, ok=ok: keep(fe, ok), [i1])
            self.m.save(se, s)
            return ok

        # Snapshots stop once a step has failed: a while loop over s.
        before = Block(arg_types=[INDEX, i1])
        be = Emitter(before, self.m.ft)
        s, ok = before.args
        be(scf.ConditionOp(be(arith.AndIOp(be(arith.CmpiOp(s, nsnap, "slt")), ok)), s, ok))
        after = Block(arg_types=[INDEX, i1])
        ae = Emitter(after, self.m.ft)
        ok_after = snapshot(ae, after.args[0], after.args[1])
        ae(scf.YieldOp(ae.iadd(after.args[0], ae.i(1)), ok_after))
        e(scf.WhileOp([e.i(0), self.healthy(e)], [INDEX, i1], Region(before), Region(after)))


def midpoint_sweep(e: Emitter, n: SSAValue, half_h: SSAValue, q: SSAValue, p: SSAValue,
                   q0, p0, gq, gp) -> tuple[SSAValue, SSAValue]:
    """One fixed-point sweep of a midpoint equation, in place: q <- q0 + half_h gp,
    p <- p0 - half_h gq (each a (buffer, offset) pair); returns the largest change and the
    largest |new value|, from which the caller judges convergence."""
    def at(inner: Emitter, where, k: SSAValue) -> SSAValue:
        buf, off = where
        return inner.load(buf, k if isinstance(off, int) and off == 0 else inner.iadd(k, off))

    def update(inner: Emitter, k: SSAValue, acc: list) -> list:
        q_new = inner.add(at(inner, q0, k), inner.mul(half_h, at(inner, gp, k)))
        p_new = inner.sub(at(inner, p0, k), inner.mul(half_h, at(inner, gq, k)))
        dq = inner(math.AbsFOp(inner.sub(q_new, inner.load(q, k))))
        dp = inner(math.AbsFOp(inner.sub(p_new, inner.load(p, k))))
        inner.store(q_new, q, k)
        inner.store(p_new, p, k)
        delta = inner(arith.MaximumfOp(acc[0], inner(arith.MaximumfOp(dq, dp))))
        scale = inner(arith.MaximumfOp(acc[1], inner(arith.MaximumfOp(
            inner(math.AbsFOp(q_new)), inner(math.AbsFOp(p_new))))))
        return [delta, scale]

    delta, scale = e.for_(e.i(0), n, update, [e.f(0.0), e.f(0.0)])
    return delta, scale


def compensated_add(e: Emitter, x: SSAValue, d: SSAValue,
                    c: SSAValue) -> tuple[SSAValue, SSAValue]:
    """(s, c') with s + c' = x + (d + c) up to the rounding of d + c: the increment and the
    compensation are summed, added to x, and the exact error of that addition (Knuth's
    TwoSum, whatever the magnitudes) becomes the new compensation. Plain IEEE operations, no
    fast-math flags: the order below is the order executed on every target."""
    y = e.add(d, c)
    s = e.add(x, y)
    b = e.sub(s, x)
    err = e.add(e.sub(x, e.sub(s, b)), e.sub(y, b))
    return s, err


def nonfinite_probe(e: Emitter, env: Env, k: SSAValue, zero: SSAValue) -> SSAValue:
    """q[k] * 0 + p[k] * 0: 0 exactly when both are finite, NaN otherwise (sums of probes
    stay 0 only when every term is)."""
    return e.add(e.mul(e.load(env.q, k), zero), e.mul(e.load(env.p, k), zero))


def carry_buffer(carry: dict[str, SSAValue], op: sym.UpdateOp) -> SSAValue | None:
    """The compensation buffer of an update (None for a plain one)."""
    name = op.comp_name
    if name is None:
        return None
    if name not in carry:
        raise PassFailedException(
            f"sym-lower-loops: the update of @{op.target_name} is compensated in @{name}, "
            "which the sym.evolve does not carry")
    return carry[name]


class CpuMachine:
    """The time loop on one CPU thread over the whole flat state."""

    def __init__(self, env: Env, ft: Attribute, g, work, out_q, out_p, out_h, status, e,
                 carry: dict[str, SSAValue] | None = None):
        self.env, self.ft, self.g, self.work = env, ft, g, work
        self.out_q, self.out_p, self.out_h = out_q, out_p, out_h
        self.status, self.at = status, e.i(0)
        self.carry = carry or {}
        self.n = state_size(env, e)
        self.q_name, self.p_name = env.system.state.names

    def field(self, name: str) -> SSAValue:
        return self.env.q if name == self.q_name else self.env.p

    def axpy(self, e: Emitter, y: SSAValue, a: SSAValue, x: SSAValue,
             comp: SSAValue | None = None) -> None:
        """y += a * x over the state (compensated in `comp` when given)."""
        def body(inner: Emitter, k: SSAValue, _: list) -> list:
            d = inner.mul(a, inner.load(x, k))
            if comp is None:
                inner.store(inner.add(inner.load(y, k), d), y, k)
                return []
            s, c = compensated_add(inner, inner.load(y, k), d, inner.load(comp, k))
            inner.store(s, y, k)
            inner.store(c, comp, k)
            return []

        e.for_(e.i(0), self.n, body)

    def update(self, e: Emitter, op: sym.UpdateOp, a: SSAValue) -> None:
        if not self.env.system.gradients(op.wrt_name, op.part_names):
            return  # the parts do not depend on the field: nothing moves
        call_gradient(e, self.env, op.wrt_name, op.part_names, self.g)
        self.axpy(e, self.field(op.target_name), a, self.g, carry_buffer(self.carry, op))

    def check(self, e: Emitter, loop: TimeLoop, gstep: SSAValue) -> SSAValue:
        """Record gstep when some q or p is not finite; an i1 that is true when all are."""
        zero = e.f(0.0)

        def body(inner: Emitter, k: SSAValue, acc: list) -> list:
            return [inner.add(acc[0], nonfinite_probe(inner, self.env, k, zero))]

        (total,) = e.for_(e.i(0), self.n, body, [zero])
        fin = e(arith.CmpfOp(total, zero, "oeq"))
        e.if_(fin, lambda te: [], lambda fe: (loop.fail(fe, gstep), [])[1], [])
        return fin

    def save(self, e: Emitter, s: SSAValue) -> None:
        base = e.imul(s, self.n)

        def copy(inner: Emitter, k: SSAValue, _: list) -> list:
            at = inner.iadd(base, k)
            inner.store(inner.load(self.env.q, k), self.out_q, at)
            inner.store(inner.load(self.env.p, k), self.out_p, at)
            return []

        e.for_(e.i(0), self.n, copy)
        h = e(func.CallOp("energy", self.env.args, [f64]))
        e.store(h, self.out_h, s)

    def midpoint(self, e: Emitter, stage: sym.MidpointOp, dt: SSAValue) -> SSAValue:
        """One implicit midpoint stage; an i1 that is true when the iteration converged."""
        n, work, g = self.n, self.work, self.g
        q, p = self.env.q, self.env.p
        parts = stage.part_names
        half_h = e.mul(e.f(0.5 * stage.c), dt)
        off_p0, off_gp = n, e.imul(n, e.i(2))

        def save(inner: Emitter, k: SSAValue, _: list) -> list:
            inner.store(inner.load(q, k), work, k)
            inner.store(inner.load(p, k), work, inner.iadd(k, off_p0))
            return []

        e.for_(e.i(0), n, save)
        max_iter = stage.max_iter.value.data
        tol_value, stall_value = stage.tol.value.data, 1e-10
        if self.ft == f32:  # f64's round-off targets are below f32's: scale with eps32
            tol_value, stall_value = max(tol_value, 4 * EPS32), 64 * EPS32
        tol = e.f(tol_value)

        # while (it < max_iter && !converged): q,p <- midpoint guess from grads at current q,p
        before = Block(arg_types=[INDEX, i1, self.ft])
        be = Emitter(before, self.ft)
        it, done, _prev = before.args
        more = be(arith.CmpiOp(it, be.i(max_iter), "slt"))
        go = be(arith.AndIOp(more, be(arith.XOrIOp(done, be(arith.ConstantOp(
            IntegerAttr(1, i1)))))))
        be(scf.ConditionOp(go, it, done, _prev))

        after = Block(arg_types=[INDEX, i1, self.ft])
        ae = Emitter(after, self.ft)
        it2, _, prev = after.args
        gp_buf = work
        if stage.n_nodes > 1:
            self.avf_gradients(ae, stage, off_gp)
        else:
            call_gradient(ae, self.env, self.p_name, parts, g)

            def keep_gp(inner: Emitter, k: SSAValue, _: list) -> list:
                inner.store(inner.load(g, k), gp_buf, inner.iadd(k, off_gp))
                return []

            ae.for_(ae.i(0), n, keep_gp)
            call_gradient(ae, self.env, self.q_name, parts, g)

        delta, scale = midpoint_sweep(ae, n, half_h, q, p, (work, 0), (work, off_p0),
                                      (g, 0), (gp_buf, off_gp))
        small = ae(arith.CmpfOp(delta, ae.mul(tol, ae.add(ae.f(1.0), scale)), "ole"))
        # Round-off floor: once the update stops shrinking, more iterations cannot help.
        stalled = ae(arith.AndIOp(
            ae(arith.CmpfOp(delta, prev, "oge")),
            ae(arith.CmpfOp(delta, ae.mul(ae.f(stall_value), ae.add(ae.f(1.0), scale)), "ole")),
        ))
        ae(scf.YieldOp(ae.iadd(it2, ae.i(1)), ae(arith.OrIOp(small, stalled)), delta))
        loop = scf.WhileOp([e.i(0), e(arith.ConstantOp(IntegerAttr(0, i1))),
                            e.f(float("inf"))], [INDEX, i1, self.ft], Region(before),
                           Region(after))
        e(loop)
        self.at_midpoint(e, stage, half_h, tol, max_iter)

        def finish(inner: Emitter, k: SSAValue, _: list) -> list:
            kp = inner.iadd(k, off_p0)
            two = inner.f(2.0)
            if stage.n_nodes > 1:
                # z1 = z0 + c dt J (mean grad H) in one rounding (not 2 M - z0, which rounds M
                # first): the energy error of a discrete gradient is this round-off alone
                h = inner.mul(two, half_h)
                inner.store(inner.add(inner.load(work, k), inner.mul(h, inner.load(
                    gp_buf, inner.iadd(k, off_gp)))), q, k)
                inner.store(inner.sub(inner.load(work, kp), inner.mul(h, inner.load(g, k))), p, k)
                return []
            inner.store(inner.sub(inner.mul(two, inner.load(q, k)), inner.load(work, k)), q, k)
            inner.store(inner.sub(inner.mul(two, inner.load(p, k)), inner.load(work, kp)), p, k)
            return []

        e.for_(e.i(0), n, finish)
        return loop.results[1]


    def at_midpoint(self, e: Emitter, stage: sym.MidpointOp, half_h: SSAValue, tol: SSAValue,
                    max_iter: int) -> None:
        """Called with the state at the converged midpoint (a tangent map moves there)."""

    def start_energy(self, e: Emitter) -> SSAValue:
        return e(func.CallOp("energy", self.env.args, [f64]))

    def project(self, e: Emitter, h0: SSAValue, newton: int = 2) -> None:
        """z <- z - (H(z) - h0) / |grad H|^2 grad H, `newton` times (project = energy): dH/dq
        into g, dH/dp into work[0:n] (free between stages)."""
        n, g, work = self.n, self.g, self.work
        q, p = self.env.q, self.env.p
        for _ in range(newton):
            h = e(func.CallOp("energy", self.env.args, [f64]))
            call_gradient(e, self.env, self.q_name, None, g)
            call_gradient(e, self.env, self.p_name, None, work)

            def norm2(inner: Emitter, k: SSAValue, acc: list) -> list:
                a, b = inner.load(g, k), inner.load(work, k)
                return [inner.add(acc[0], inner.add(inner.mul(a, a), inner.mul(b, b)))]

            (s2,) = e.for_(e.i(0), n, norm2, [e.f(0.0)])
            gap = e.sub(h, h0) if self.ft == f64 else e(arith.TruncFOp(e.sub(h, h0), self.ft))
            # at a critical point of H (grad H = 0) there is no direction to move along
            lam = e(arith.SelectOp(e(arith.CmpfOp(s2, e.f(0.0), "ogt")), e.div(gap, s2),
                                   e.f(0.0)))

            def move(inner: Emitter, k: SSAValue, _: list, lam=lam) -> list:
                inner.store(inner.sub(inner.load(q, k), inner.mul(lam, inner.load(g, k))), q, k)
                inner.store(inner.sub(inner.load(p, k), inner.mul(lam, inner.load(work, k))),
                            p, k)
                return []

            e.for_(e.i(0), n, move)

    def avf_gradients(self, e: Emitter, stage: sym.MidpointOp, off_gp: SSAValue) -> None:
        """The averages of dH/dp (into work[2n:3n]) and dH/dq (into g) along the segment from
        z0 (work[0:2n]) to z1 = 2 M - z0, M the iterate in q, p: sum_j w_j grad H(z0 + c_j
        (z1 - z0)) over Gauss-Legendre nodes. q, p are moved in place from node to node
        (z0 + 2 c (M - z0) is affine in c) and back to M, so the stage needs one more buffer
        (`avf`, the dH/dq sum) than the midpoint rule."""
        import numpy as np

        n, work, g, acc_q = self.n, self.work, self.g, self.avf
        q, p = self.env.q, self.env.p
        x, w = np.polynomial.legendre.leggauss(stage.n_nodes)
        nodes = [(float((xj + 1) / 2), float(wj / 2)) for xj, wj in zip(x, w)]
        parts = stage.part_names
        zero = e.f(0.0)

        def clear_accs(inner: Emitter, k: SSAValue, _: list) -> list:
            inner.store(zero, work, inner.iadd(k, off_gp))
            inner.store(zero, acc_q, k)
            return []

        e.for_(e.i(0), n, clear_accs)

        def move(ratio: float) -> None:
            r = e.f(ratio)

            def body(inner: Emitter, k: SSAValue, _: list) -> list:
                for buf, at in ((q, k), (p, inner.iadd(k, n))):
                    z0 = inner.load(work, at)
                    inner.store(inner.add(z0, inner.mul(r, inner.sub(inner.load(buf, k), z0))),
                                buf, k)
                return []

            e.for_(e.i(0), n, body)

        at_c = 0.5  # M is the point at c = 1/2 of the segment
        for c, weight in nodes:
            move(c / at_c)
            at_c = c
            wt = e.f(weight)
            call_gradient(e, self.env, self.p_name, parts, g)

            def add_p(inner: Emitter, k: SSAValue, _: list, wt=wt) -> list:
                at = inner.iadd(k, off_gp)
                inner.store(inner.add(inner.load(work, at), inner.mul(wt, inner.load(g, k))),
                            work, at)
                return []

            e.for_(e.i(0), n, add_p)
            call_gradient(e, self.env, self.q_name, parts, g)

            def add_q(inner: Emitter, k: SSAValue, _: list, wt=wt) -> list:
                inner.store(inner.add(inner.load(acc_q, k), inner.mul(wt, inner.load(g, k))),
                            acc_q, k)
                return []

            e.for_(e.i(0), n, add_q)
        move(0.5 / at_c)

        def to_g(inner: Emitter, k: SSAValue, _: list) -> list:
            inner.store(inner.load(acc_q, k), g, k)
            return []

        e.for_(e.i(0), n, to_g)

    def linear(self, e: Emitter, op: sym.LinearOp, h: SSAValue, k: int) -> None:
        """z <- M z + b with M the k-th augmented (2n+1)^2 matrix of `maps` (row-major): each
        new row from the old state into `work`, then copied back."""
        self.linear_on(e, k, self.env.q, self.env.p)

    def linear_on(self, e: Emitter, k: int, q: SSAValue, p: SSAValue,
                  affine: bool = True) -> None:
        """(q, p) <- M (q, p) (+ b when affine): the k-th linear flow on any pair of buffers
        (a tangent moves by M alone)."""
        n, work, maps = self.n, self.work, self.maps
        two_n = e.imul(n, e.i(2))
        width = e.iadd(two_n, e.i(1))
        base = e.imul(e.i(k), e.imul(width, width))

        def row(re: Emitter, i: SSAValue, _: list) -> list:
            at = re.iadd(base, re.imul(i, width))

            def over(field: SSAValue, offset: SSAValue):
                def dot(de: Emitter, j: SSAValue, acc: list) -> list:
                    m = de.load(maps, de.iadd(at, de.iadd(offset, j)))
                    return [de.add(acc[0], de.mul(m, de.load(field, j)))]
                return dot

            start = re.load(maps, re.iadd(at, two_n)) if affine else re.f(0.0)
            (acc,) = re.for_(re.i(0), n, over(q, re.i(0)), [start])
            (acc,) = re.for_(re.i(0), n, over(p, n), [acc])
            re.store(acc, work, i)
            return []

        e.for_(e.i(0), two_n, row)

        def back(be: Emitter, j: SSAValue, _: list) -> list:
            be.store(be.load(work, j), q, j)
            be.store(be.load(work, be.iadd(j, n)), p, j)
            return []

        e.for_(e.i(0), n, back)


    def kepler(self, e: Emitter, op: sym.KeplerOp, h: SSAValue, k: int) -> None:
        """Each body (row of 3) on its conic for time h: (m_i, mu_i) from the k-th block of
        `bodies`, the universal-variable solve of kepler_step."""
        q, p, bodies = self.env.q, self.env.p, self.bodies
        rows = e(arith.DivUIOp(self.n, e.i(3)))
        base = e.imul(e.i(k), e.imul(rows, e.i(2)))

        def body(be: Emitter, i: SSAValue, _: list) -> list:
            at = be.imul(i, be.i(3))
            m = be.load(bodies, be.iadd(base, be.imul(i, be.i(2))))
            mu = be.load(bodies, be.iadd(base, be.iadd(be.imul(i, be.i(2)), be.i(1))))
            idx = [be.iadd(at, be.i(c)) for c in range(3)]
            x = [be.load(q, j) for j in idx]
            v = [be.div(be.load(p, j), m) for j in idx]
            solve = kepler_solve(be, x, v, mu, h)
            self.kepler_body(be, idx, x, v, m, solve)
            x1, v1 = kepler_finish(be, x, v, solve)
            for j, a, b in zip(idx, x1, v1):
                be.store(a, q, j)
                be.store(be.mul(m, b), p, j)
            return []

        e.for_(e.i(0), rows, body)

    def kepler_body(self, e: Emitter, idx, x, v, m, solve: KeplerSolve) -> None:
        """Called for each body of a Kepler flow with its state before the flow and its solve
        (a tangent map moves along)."""


    def boris(self, e: Emitter, op: sym.BorisOp, h: SSAValue, k: int) -> None:
        """One Boris step (see sym.BorisOp). The fields come from the magnetic part's
        gradients, exact for its form: dK/dp = (p - eA)/m gives -eA/m at p = 0 and 1/m from a
        unit p; at p = eA + m u_k, dK/dq = -d(eA_k)/dq, three of which give eB = curl eA.
        work holds -eA/m, 1/m, v; the `boris` buffer p probes, eB."""
        n, g, work, bw = self.n, self.g, self.work, self.bwork
        q_name, p_name = self.q_name, self.p_name
        kin, *pot = op.part_names
        env = self.env
        probe = Env(env.system, env.q, bw, env.params, env.inputs, env.sizes)
        two_n = e.imul(n, e.i(2))

        def fill(value: Callable[[Emitter, SSAValue], SSAValue], buf, off=None) -> None:
            def body(be: Emitter, j: SSAValue, _: list) -> list:
                be.store(value(be, j), buf, j if off is None else be.iadd(j, off))
                return []
            e.for_(e.i(0), n, body)

        fill(lambda be, j: be.f(0.0), bw)
        call_gradient(e, probe, p_name, [kin], g)
        fill(lambda be, j: be.load(g, j), work)  # -eA/m
        fill(lambda be, j: be.f(1.0), bw)
        call_gradient(e, probe, p_name, [kin], g)
        fill(lambda be, j: be.sub(be.load(g, j), be.load(work, j)), work, n)  # 1/m
        call_gradient(e, env, p_name, [kin], g)
        fill(lambda be, j: be.load(g, j), work, two_n)  # v
        fill(lambda be, j: be.f(0.0), bw, n)  # eB
        rows = e(arith.DivUIOp(n, e.i(3)))
        # curl: component k of d(eA_k)/dq_c feeds B_(k+1) with c = k+2, B_(k+2) with c = k+1
        for k in range(3):
            def probe_k(be: Emitter, j: SSAValue, k=k) -> SSAValue:
                comp = be(arith.RemUIOp(j, be.i(3)))
                unit = be(arith.SelectOp(be(arith.CmpiOp(comp, be.i(k), "eq")), be.f(1.0),
                                         be.f(0.0)))
                return be.div(be.sub(unit, be.load(work, j)), be.load(work, be.iadd(j, n)))

            fill(probe_k, bw)
            call_gradient(e, probe, q_name, [kin], g)

            def curl(be: Emitter, r: SSAValue, _: list, k=k) -> list:
                at = be.imul(r, be.i(3))
                b1, c1 = (k + 1) % 3, (k + 2) % 3
                # B_b1 += D_k[c1], B_c1 -= D_k[b1], with D_k = -g
                for comp, src, sign in ((b1, c1, -1.0), (c1, b1, 1.0)):
                    slot = be.iadd(n, be.iadd(at, be.i(comp)))
                    d = be.load(g, be.iadd(at, be.i(src)))
                    be.store(be.add(be.load(bw, slot), be.mul(be.f(sign), d)), bw, slot)
                return []

            e.for_(e.i(0), rows, curl)
        if pot:
            call_gradient(e, env, q_name, pot, g)  # -e E
        half = e.mul(e.f(0.5), h)
        q = env.q

        def push(be: Emitter, r: SSAValue, _: list) -> list:
            at = be.imul(r, be.i(3))
            idx = [be.iadd(at, be.i(c)) for c in range(3)]
            inv_m = be.load(work, be.iadd(idx[0], n))
            v = [be.load(work, be.iadd(j, two_n)) for j in idx]
            acc = [be.mul(be(arith.NegfOp(be.load(g, j))), inv_m) if pot else be.f(0.0)
                   for j in idx]
            t = [be.mul(be.mul(be.load(bw, be.iadd(j, n)), inv_m), half) for j in idx]
            vm = [be.add(a, be.mul(half, b)) for a, b in zip(v, acc)]
            tt = be.add(be.add(be.mul(t[0], t[0]), be.mul(t[1], t[1])), be.mul(t[2], t[2]))
            scale = be.div(be.f(2.0), be.add(be.f(1.0), tt))
            sv = [be.mul(scale, x) for x in t]
            vp = [be.add(a, b) for a, b in zip(vm, _cross(be, vm, t))]
            vplus = [be.add(a, b) for a, b in zip(vm, _cross(be, vp, sv))]
            vn = [be.add(a, be.mul(half, b)) for a, b in zip(vplus, acc)]
            for j, x in zip(idx, vn):
                be.store(x, work, be.iadd(j, two_n))
                be.store(be.add(be.load(q, j), be.mul(h, x)), q, j)
            return []

        e.for_(e.i(0), rows, push)
        fill(lambda be, j: be.f(0.0), bw)
        call_gradient(e, probe, p_name, [kin], g)  # -eA/m at the new q
        fill(lambda be, j: be.div(be.sub(be.load(work, be.iadd(j, two_n)), be.load(g, j)),
                                  be.load(work, be.iadd(j, n))), env.p)


RUN_ARGS = ("dt", "nsnap", "stride", "step0", "out_q", "out_p", "out_H", "g", "work", "status")


def linear_flows(scheme: sym.SchemeOp) -> list[sym.LinearOp]:
    """The scheme's exact linear flows, in order: the k-th uses the k-th matrix of `maps`."""
    return [op for op in scheme.walk() if isinstance(op, sym.LinearOp)]


def kepler_flows(scheme: sym.SchemeOp) -> list[sym.KeplerOp]:
    """The scheme's Kepler flows, in order: the k-th reads the k-th block of `bodies`."""
    return [op for op in scheme.walk() if isinstance(op, sym.KeplerOp)]


def has_boris(scheme: sym.SchemeOp) -> bool:
    return any(isinstance(op, sym.BorisOp) for op in scheme.walk())


def has_avf(scheme: sym.SchemeOp) -> bool:
    return any(isinstance(op, sym.MidpointOp) and op.n_nodes > 1 for op in scheme.walk())


def _cross(e: Emitter, a: Scalars, b: Scalars) -> Scalars:
    return [e.sub(e.mul(a[1], b[2]), e.mul(a[2], b[1])),
            e.sub(e.mul(a[2], b[0]), e.mul(a[0], b[2])),
            e.sub(e.mul(a[0], b[1]), e.mul(a[1], b[0]))]


def run_types(system: ham.SystemOp, ft: Attribute = f64, maps: bool = False,
              bodies: bool = False, boris: bool = False, ncarry: int = 0,
              avf: bool = False) -> list[Attribute]:
    buf = buf_type(ft)
    extra = [buf] * (int(maps) + int(bodies) + int(boris) + int(avf) + ncarry)
    return [*env_types(system, ft), ft, INDEX, INDEX, INDEX, buf, buf, BUF, buf, buf, BUF, *extra]


def build_run(system: ham.SystemOp, scheme: sym.SchemeOp, ft: Attribute = f64,
              carry: Sequence[str] = ()) -> func.FuncOp:
    """run(env..., dt, nsnap, stride, step0, out_q, out_p, out_H, g, work, status[, maps]
    [, bodies][, boris], carry...): the time loop on the CPU (dt and every buffer in the precision's
    float type but out_H and status, f64; one buffer per name of the evolve's `carry`)."""
    maps, bodies = bool(linear_flows(scheme)), bool(kepler_flows(scheme))
    boris, avf = has_boris(scheme), has_avf(scheme)
    types = run_types(system, ft, maps, bodies, boris, len(carry), avf)

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        k = len(env_types(system, ft))
        env = bind_env(system, args[:k])
        dt, nsnap, stride, step0, out_q, out_p, out_h, g, work, status = args[k:k + 10]
        extra = k + 10 + int(maps) + int(bodies) + int(boris) + int(avf)
        machine = CpuMachine(env, ft, g, work, out_q, out_p, out_h, status, e,
                             dict(zip(carry, args[extra:])))
        machine.maps = args[k + 10] if maps else None
        machine.bodies = args[k + 10 + int(maps)] if bodies else None
        machine.bwork = args[k + 10 + int(maps) + int(bodies)] if boris else None
        machine.avf = args[k + 10 + int(maps) + int(bodies) + int(boris)] if avf else None
        TimeLoop(scheme, machine).emit(e, dt, nsnap, stride, step0)
        return []

    return make_func("run", types, [], body, private=False, ft=ft)


def steppable(scheme: sym.SchemeOp) -> bool:
    return all(not isinstance(op, sym.FlowOp) for op in scheme.walk())


def flow_gradient_funcs(system: ham.SystemOp, scheme: sym.SchemeOp,
                        ft: Attribute = f64) -> list[func.FuncOp]:
    """linear_<k>_<field>(env..., out): out = d(parts of the k-th linear flow)/d(field), from
    which the run-time builds that flow's matrix (the gradient of a quadratic is affine);
    kepler_<k>_<field> likewise, from which it reads each body's m_i and k_i."""
    funcs = []
    for prefix, flows in (("linear", linear_flows(scheme)), ("kepler", kepler_flows(scheme))):
        for k, op in enumerate(flows):
            for wrt in system.state.names:
                def body(e: Emitter, args: list[SSAValue], wrt=wrt, op=op) -> list[SSAValue]:
                    call_gradient(e, bind_env(system, args[:-1]), wrt, op.part_names, args[-1])
                    return []

                funcs.append(make_func(f"{prefix}_{k}_{wrt}",
                                       [*env_types(system, ft), buf_type(ft)], [], body,
                                       private=False, ft=ft))
    return funcs


def gradient_funcs(system: ham.SystemOp, newton3: bool, ft: Attribute = f64) -> list:
    """Per-part gradient functions (scatter form, each pair once, Newton's third law; or,
    when asked and possible, the gather form: each particle sums its own force, twice the
    pair work, no scattered writes) and the total grad_<field> of each state field."""
    funcs: list[Operation] = []
    for grad in system.decls(ham.GradientOp):
        if grad.wrt_name not in system.state.names:
            continue  # joint with params and inputs: only the tangent map reads these (agrad_*)
        if not newton3:
            from tpc.passes.sym_gpu_kernels import gather_accumulate_host

            if (fn := gather_accumulate_host(system, grad, ft)) is not None:
                funcs.append(fn)
                continue
        funcs.append(lower_part_gradient(system, grad, ft))
    funcs += [lower_total_gradient(system, w, ft) for w in system.state.names]
    return funcs


def lower_module(module: ModuleOp, newton3: bool = True, precision: str = "f64") -> ModuleOp:
    ft = float_type(precision)
    systems = {s.sym_name.data: s for s in module.ops if isinstance(s, ham.SystemOp)}
    schemes = {s.sym_name.data: s for s in module.ops if isinstance(s, sym.SchemeOp)}
    funcs: list[Operation] = []
    fold = None
    carry: list[str] = []
    for op in module.ops:
        if isinstance(op, (sym.EvolveOp, sym.PropagateOp)):
            scheme = schemes[op.scheme.string_value()]
            system = systems[scheme.system.string_value()]
            if isinstance(op, sym.PropagateOp):
                fold = {"method": op.method.data, "reason": op.reason.data}
            elif "not_folded" in op.attributes:
                fold = {"method": "", "reason": op.attributes["not_folded"].data}
            funcs += [lower_energy(system, ft), lower_energy_parts(system, ft),
                      *gradient_funcs(system, newton3, ft)]
            if system.monitors:
                funcs.append(lower_monitors(system, ft))
            if (shadow := read_shadow(scheme)) is not None:
                funcs += shadow_funcs(system, shadow, ft)
            if isinstance(op, sym.EvolveOp):
                carry = op.carry_names
            if steppable(scheme):
                funcs += flow_gradient_funcs(system, scheme, ft)
                funcs.append(build_run(system, scheme, ft, carry))
                if isinstance(op, sym.EvolveOp) and "tangent" in op.attributes:
                    from tpc.passes.tangent_lowering import tangent_funcs

                    funcs += tangent_funcs(system, scheme, ft, carry)
            elif isinstance(op, sym.EvolveOp) and "exact" in scheme.attributes:
                raise Refusal(op, f"sym-lower-loops: scheme @{scheme.sym_name.data} has an exact "
                              "flow, which only the folded time loop (sym.propagate) can run")
            elif isinstance(op, sym.EvolveOp):
                raise Refusal(op, f"sym-lower-loops: scheme @{scheme.sym_name.data} still has "
                              "sym.flow stages (run sym-lower-flows first)")
            abi = abi_table(system, [f.sym_name.data for f in funcs], precision, fold, scheme,
                            carry)
    if not funcs:
        raise PassFailedException("sym-lower-loops: no sym.evolve to lower (run sym-integrator)")
    out = ModuleOp(funcs)
    out.attributes[ABI_ATTR] = abi
    return out


@dataclass(frozen=True)
class SymLowerLoopsPass(ModulePass):
    """Lower ham energy/gradients and sym.evolve to func/scf/memref/arith/math loops."""

    name = "sym-lower-loops"
    newton3: bool = True
    precision: str = "f64"  # "f64" or "f32": the float type of buffers and arithmetic

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        new = lower_module(op, self.newton3, self.precision)
        # Functions already at the func level (GPU kernels built from this module's ham and
        # sym IR by sym-gpu-kernels) stay; the ham and sym ops are replaced.
        defined = {f.sym_name.data for f in new.body.block.ops if isinstance(f, func.FuncOp)}
        for old in list(op.body.block.ops):
            declared = (isinstance(old, func.FuncOp) and old.is_declaration
                        and old.sym_name.data in defined)
            if declared or isinstance(old, ham.SystemOp | sym.SchemeOp | sym.EvolveOp
                                      | sym.PropagateOp):
                old.detach()
                old.erase()
        for f in list(new.body.block.ops):
            f.detach()
            op.body.block.add_op(f)
        op.attributes[ABI_ATTR] = new.attributes[ABI_ATTR]
