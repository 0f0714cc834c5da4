"""Second directional derivatives of a part of H, lowered from its ham region (forward mode).

d2_<part>(env..., dir) = d^2/de^2 part(state + e * dir) at e = 0, where `dir` perturbs the one
state field the part depends on: for V(q) and a direction v it is v^T V''(q) v, a
Hessian-vector product contracted with v, at the cost of a few evaluations of the part and
without any Hessian. The shadow Hamiltonian's brackets {T,{T,V}} = v^T V'' v (v = dT/dp) and
{V,{V,T}} = g^T T'' g (g = dV/dq) are such terms (passes/sym_shadow.py).

Every float value of the region becomes a jet (value, first, second derivative along dir),
one per vector lane; index values stay as sym-lower-loops lowers them. The rules are the
chain rule to second order: (ab)'' = a''b + 2a'b' + ab'', (a/b)'' through q = a/b, sqrt through
s^2 = x, and so on; an op without a rule is refused, never differentiated wrongly.
"""

from __future__ import annotations

from tpc.dialects import ham
from tpc.passes.refusal import Refusal
from xdsl.dialects import arith, func, math
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr
from xdsl.ir import Operation, SSAValue

Jet = tuple[SSAValue, SSAValue, SSAValue]
TWO_OVER_SQRT_PI = 1.1283791670955126


class JetLowering:
    """Mixed into RegionLowering (see `jet_class`): `along` is the state field dir perturbs."""

    along: str
    direction: SSAValue

    # -- jet arithmetic --------------------------------------------------------------------
    def j_const(self, c: SSAValue) -> Jet:
        z = self.emit.f(0.0)
        return (c, z, z)

    def j_add(self, a: Jet, b: Jet, sign: float = 1.0) -> Jet:
        e = self.emit
        f = e.add if sign > 0 else e.sub
        return (f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]))

    def j_mul(self, a: Jet, b: Jet) -> Jet:
        e = self.emit
        d1 = e.add(e.mul(a[1], b[0]), e.mul(a[0], b[1]))
        d2 = e.add(e.add(e.mul(a[2], b[0]), e.mul(e.f(2.0), e.mul(a[1], b[1]))),
                   e.mul(a[0], b[2]))
        return (e.mul(a[0], b[0]), d1, d2)

    def j_div(self, a: Jet, b: Jet) -> Jet:
        e = self.emit
        q = e.div(a[0], b[0])
        q1 = e.div(e.sub(a[1], e.mul(q, b[1])), b[0])
        q2 = e.div(e.sub(e.sub(a[2], e.mul(e.f(2.0), e.mul(q1, b[1]))), e.mul(q, b[2])), b[0])
        return (q, q1, q2)

    def j_chain(self, x: Jet, f0: SSAValue, f1: SSAValue, f2: SSAValue) -> Jet:
        """f(x) from f, f', f'' at x[0]: (f, f' x', f'' x'^2 + f' x'')."""
        e = self.emit
        return (f0, e.mul(f1, x[1]), e.add(e.mul(f2, e.mul(x[1], x[1])), e.mul(f1, x[2])))

    def j_sqrt(self, x: Jet) -> Jet:
        e = self.emit
        s = e(math.SqrtOp(x[0]))
        two_s = e.mul(e.f(2.0), s)
        s1 = e.div(x[1], two_s)
        s2 = e.div(e.sub(x[2], e.mul(e.f(2.0), e.mul(s1, s1))), two_s)
        return (s, s1, s2)

    def j_ipow(self, x: Jet, n: int) -> Jet:
        e = self.emit
        if n == 0:
            return self.j_const(e.f(1.0))
        f0 = self.ipow(x[0], n, e)
        f1 = e.mul(e.f(float(n)), self.ipow(x[0], n - 1, e))
        f2 = (e.mul(e.f(float(n * (n - 1))), self.ipow(x[0], n - 2, e)) if n != 1
              else e.f(0.0))
        return self.j_chain(x, f0, f1, f2)

    def j_unary(self, op: Operation, x: Jet) -> Jet:
        e = self.emit
        v = x[0]
        match op:
            case arith.NegfOp():
                return tuple(e(arith.NegfOp(c)) for c in x)  # type: ignore[return-value]
            case math.SqrtOp():
                return self.j_sqrt(x)
            case math.SinOp():
                s, c = e(math.SinOp(v)), e(math.CosOp(v))
                return self.j_chain(x, s, c, e(arith.NegfOp(s)))
            case math.CosOp():
                s, c = e(math.SinOp(v)), e(math.CosOp(v))
                return self.j_chain(x, c, e(arith.NegfOp(s)), e(arith.NegfOp(c)))
            case math.ExpOp():
                ex = e(math.ExpOp(v))
                return self.j_chain(x, ex, ex, ex)
            case math.LogOp():
                inv = e.div(e.f(1.0), v)
                return self.j_chain(x, e(math.LogOp(v)), inv, e(arith.NegfOp(e.mul(inv, inv))))
            case math.SinhOp():
                s, c = e(math.SinhOp(v)), e(math.CoshOp(v))
                return self.j_chain(x, s, c, s)
            case math.CoshOp():
                s, c = e(math.SinhOp(v)), e(math.CoshOp(v))
                return self.j_chain(x, c, s, c)
            case math.RoundOp():  # piecewise constant (a minimum image)
                z = e.f(0.0)
                return (e(math.RoundOp(v)), z, z)
            case math.ErfOp() | ham.ErfcOp():
                sign = 1.0 if isinstance(op, math.ErfOp) else -1.0
                f1 = e.mul(e.f(sign * TWO_OVER_SQRT_PI), e(math.ExpOp(e(arith.NegfOp(e.mul(v, v))))))
                f0 = e(type(op)(v))
                return self.j_chain(x, f0, f1, e.mul(e.f(-2.0), e.mul(v, f1)))
            case math.TanhOp():
                t = e(math.TanhOp(v))
                d = e.sub(e.f(1.0), e.mul(t, t))
                return self.j_chain(x, t, d, e.mul(e.f(-2.0), e.mul(t, d)))
        raise Refusal(op, f"the second derivative of {op.name} is not implemented")

    # -- ops ---------------------------------------------------------------------------------
    def op(self, op: Operation) -> None:
        e = self.emit
        if (all(r.type == IndexType() for r in op.results) and not op.regions) or isinstance(
                op, ham.DimOp) or (isinstance(op, arith.ConstantOp)
                                   and isinstance(op.value, IntegerAttr)):
            return super().op(op)  # index arithmetic: as sym-lower-loops lowers it
        x = [self.get(o) for o in op.operands if o.type != IndexType()]

        def set_(*lanes: Jet) -> None:
            self.values[op.results[0]] = list(lanes)

        def lanewise(fn) -> None:
            width = max(len(v) for v in x)
            cols = [v * width if len(v) == 1 else v for v in x]
            set_(*[fn(*[c[k] for c in cols]) for k in range(width)])

        match op:
            case arith.ConstantOp() if isinstance(op.value, FloatAttr):
                set_(self.j_const(self.const(op.value.value.data, e)))
            case arith.IndexCastOp():
                return super().op(op)
            case arith.SIToFPOp():  # a lattice index as a number: no dependence on the state
                set_(self.j_const(e(arith.SIToFPOp(self.get(op.operands[0])[0], e.ft))))
            case arith.CmpfOp():  # a branch condition, not a jet: kept as a plain value
                self.values[op.result] = [e(arith.CmpfOp(x[0][0][0], x[1][0][0],
                                                         op.predicate.value.data))]
            case arith.SelectOp() if op.result.type != IndexType():
                cond = self.get(op.cond)[0]
                set_(*[tuple(e(arith.SelectOp(cond, a[k], b[k])) for k in range(3))
                       for a, b in zip(self.get(op.lhs), self.get(op.rhs))])
            case arith.ConstantOp():
                set_(*[self.j_const(self.const(v, e)) for v in op.value.get_values()])
            case ham.ParamRefOp():
                idx = self.param_index[op.param.string_value()]
                set_(self.j_const(self.read(self.env.params, e.i(idx), e)))
            case ham.LoadOp():
                name = op.field_name
                base = self.flat_index(name, op.indices, e)
                width = len(self.get_width(op.result.type))
                comps = [base if k == 0 else e.iadd(base, e.i(k)) for k in range(width)]
                zero = e.f(0.0)
                set_(*[(self.read(self.buffers[name], c, e),
                        e.load(self.direction, c) if name == self.along else zero, zero)
                       for c in comps])
            case arith.AddfOp():
                lanewise(self.j_add)
            case arith.SubfOp():
                lanewise(lambda a, b: self.j_add(a, b, -1.0))
            case arith.MulfOp():
                lanewise(self.j_mul)
            case arith.DivfOp():
                lanewise(self.j_div)
            case ham.IPowOp():
                set_(*[self.j_ipow(c, op.exponent.value.data) for c in x[0]])
            case ham.DotOp():
                set_(self.j_dot(x[0], x[1]))
            case ham.NormOp():
                set_(self.j_sqrt(self.j_dot(x[0], x[0])))
            case ham.CrossOp():
                a, b = x
                set_(*[self.j_add(self.j_mul(a[i], b[j]), self.j_mul(a[j], b[i]), -1.0)
                       for i, j in ((1, 2), (2, 0), (0, 1))])
            case ham.ReduceOp():
                acc = x[0][0]
                for c in x[0][1:]:
                    acc = self.j_add(acc, c)
                set_(acc)
            case ham.BroadcastOp():
                set_(*(x[0] * op.result.type.get_shape()[0]))
            case ham.ExtractOp():
                set_(x[0][op.position.value.data])
            case ham.SumOp() | ham.PairSumOp():
                self.j_loop(op)
            case _ if len(x) == 1 and len(op.results) == 1:
                set_(*[self.j_unary(op, c) for c in x[0]])
            case _:
                raise Refusal(op, f"the second derivative of {op.name} is not implemented")

    def j_dot(self, a: list[Jet], b: list[Jet]) -> Jet:
        acc = self.j_mul(a[0], b[0])
        for u, v in zip(a[1:], b[1:]):
            acc = self.j_add(acc, self.j_mul(u, v))
        return acc

    def j_loop(self, op: ham.SumOp | ham.PairSumOp) -> None:
        """The sum of the body's jets: three accumulators per lane."""
        e = self.emit
        width = len(self.get_width(op.result.type))
        lo, hi = self.get(op.lower)[0], self.get(op.upper)[0]
        src = op.body.block
        zeros = [e.f(0.0) for _ in range(3 * width)]

        def body_at(ivs: list[SSAValue]):
            def body(inner, iv: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
                for a, v in zip(src.args, [*ivs, iv]):
                    self.values[a] = [v]
                (out,) = self.block(src, inner)
                flat = [c for lane in out for c in lane]
                return [inner.add(a, v) for a, v in zip(accs, flat)]
            return body

        if isinstance(op, ham.SumOp):
            res = e.for_(lo, hi, body_at([]), zeros)
        else:
            def outer(oe, i: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
                accs = oe.for_(oe.iadd(i, oe.i(1)), hi, body_at([i]), accs)
                if op.kind.data == "ne":
                    accs = oe.for_(lo, i, body_at([i]), accs)
                return accs
            res = e.for_(lo, hi, outer, zeros)
        self.values[op.result] = [tuple(res[3 * k:3 * k + 3]) for k in range(width)]


def jet_function(name: str, system: ham.SystemOp, part: ham.PartOp, along: str,
                 ft) -> func.FuncOp:
    """d2_<part>(env..., dir) -> f64 (see the module docstring); built by sym-lower-loops
    (which imports this module only when a scheme asks for it: no import cycle)."""
    from tpc.passes.sym_lower_loops import BUF, RegionLowering, bind_env, env_types, make_func
    from xdsl.dialects.builtin import f64

    cls = type("PartJet", (JetLowering, RegionLowering), {})

    def body(e, args):
        env = bind_env(system, args[:-1])
        low = cls(env, e)
        low.along, low.direction = along, args[-1]
        (jet,) = low.block(part.body.block, e)[0]
        return [jet[2]]

    return make_func(name, [*env_types(system, ft), BUF], [f64], body, private=False, ft=f64)
