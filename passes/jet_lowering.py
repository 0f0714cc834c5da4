"""Directional derivatives of a part of H, lowered from its ham region (forward mode).

d2_<part>(env..., dir) = d^2/de^2 part(state + e * dir) at e = 0, where `dir` perturbs the one
state field the part depends on: for V(q) and a direction v it is v^T V''(q) v, a
Hessian-vector product contracted with v, at the cost of a few evaluations of the part and
without any Hessian. The shadow Hamiltonian's brackets {T,{T,V}} = v^T V'' v (v = dT/dp) and
{V,{V,T}} = g^T T'' g (g = dV/dq) are such terms (passes/sym_shadow.py).

Every float value of the region becomes a jet (value, first, second derivative along dir),
one per vector lane; index values stay as sym-lower-loops lowers them. The rules are the
chain rule to second order: (ab)'' = a''b + 2a'b' + ab'', (a/b)'' through q = a/b, sqrt through
s^2 = x, and so on; an op without a rule is refused, never differentiated wrongly.

The shadow Hamiltonian's dt^4 term needs derivatives up to 4 and Hessian-vector products.
`TaylorLowering` carries jets of any order as Taylor coefficients (x(e) = sum_k x_k e^k):
products are truncated Cauchy products, quotients and square roots the usual recurrences
(q_k = (a_k - sum_(j<k) q_j b_(k-j)) / b_0, s_k = (x_k - sum_(0<j<k) s_j s_(k-j)) / (2 s_0)),
and every unary function one composition rule, f(x_0 + d) = sum_m f^(m)(x_0) d^m / m!, from
its derivatives at x_0 (tanh's as polynomials in tanh, erf's as Hermite polynomials times
exp(-x^2)). taylor_<part>(env, dir, out) stores k! x_k, the k-th directional derivative;
hvp_<part>(env, dir, out) runs the part's gradient region (ham.accumulate) with first-order
jets and accumulates the first-order parts, d/de grad(state + e dir) = part'' dir.
"""

from __future__ import annotations

from tpc.dialects import ham
from tpc.passes.refusal import Refusal
from xdsl.dialects import arith, func, math
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, f64
from xdsl.ir import Operation, SSAValue

Jet = tuple[SSAValue, SSAValue, SSAValue]
TWO_OVER_SQRT_PI = 1.1283791670955126


class JetLowering:
    """Mixed into RegionLowering (see `jet_class`): `along` is the state field dir perturbs."""

    along: str
    direction: SSAValue
    order = 2  # a jet holds the value and this many derivatives
    grad_out: SSAValue | None = None

    # -- jet arithmetic --------------------------------------------------------------------
    def j_const(self, c: SSAValue) -> Jet:
        z = self.emit.f(0.0)
        return (c, *[z] * self.order)

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
        if (all(r.type == IndexType() for r in op.results) and not op.regions
                and not isinstance(op, ham.AccumulateOp)) or isinstance(
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
                set_(*[tuple(e(arith.SelectOp(cond, a[k], b[k])) for k in range(self.order + 1))
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
                        e.load(self.direction, c) if name == self.along else zero,
                        *[zero] * (self.order - 1)) for c in comps])
            case ham.AccumulateOp() if self.grad_out is not None:
                # a gradient region along dir: its first derivative is a Hessian-vector product
                base = self.flat_index(op.field.string_value(), op.indices, e)
                for k, jet in enumerate(x[0]):
                    at = base if k == 0 else e.iadd(base, e.i(k))
                    e.store(e.add(e.load(self.grad_out, at), jet[1]), self.grad_out, at)
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
        """The sum of the body's jets: one accumulator per lane and derivative (none for a
        gradient region's loop, which accumulates into the output instead)."""
        e = self.emit
        n = self.order + 1
        width = len(self.get_width(op.result.type)) if op.result is not None else 0
        lo, hi = self.get(op.lower)[0], self.get(op.upper)[0]
        src = op.body.block
        zeros = [e.f(0.0) for _ in range(n * width)]

        def body_at(ivs: list[SSAValue]):
            def body(inner, iv: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
                for a, v in zip(src.args, [*ivs, iv]):
                    self.values[a] = [v]
                out = self.block(src, inner)
                if not width:
                    return []
                flat = [c for lane in out[0] for c in lane]
                return [inner.add(a, v) for a, v in zip(accs, flat)]
            return body

        if isinstance(op, ham.SumOp):
            res = e.for_(lo, hi, body_at([]), zeros)
        else:
            from tpc.passes.sym_lower_loops import pair_loops

            res = pair_loops(e, op, lo, hi, body_at, zeros)
        if width:
            self.values[op.result] = [tuple(res[n * k:n * k + n]) for k in range(width)]


def jet_function(name: str, system: ham.SystemOp, part: ham.PartOp, along: str,
                 ft) -> func.FuncOp:
    """d2_<part>(env..., dir) -> f64 (see the module docstring); built by sym-lower-loops
    (which imports this module only when a scheme asks for it: no import cycle)."""
    from tpc.passes.sym_lower_loops import BUF, RegionLowering, bind_env, env_types, make_func

    cls = type("PartJet", (JetLowering, RegionLowering), {})

    def body(e, args):
        env = bind_env(system, args[:-1])
        low = cls(env, e)
        low.along, low.direction = along, args[-1]
        (jet,) = low.block(part.body.block, e)[0]
        return [jet[2]]

    return make_func(name, [*env_types(system, ft), BUF], [f64], body, private=False, ft=f64)


class TaylorLowering(JetLowering):
    """Jets of any order: Taylor coefficients x_k (x(e) = sum_k x_k e^k) instead of
    derivatives, so a product is a truncated Cauchy product and every unary function is one
    composition rule, f(x0 + d) = sum_k f^(k)(x0) d^k / k!, from its derivatives at x0."""

    def j_add(self, a: Jet, b: Jet, sign: float = 1.0) -> Jet:
        f = self.emit.add if sign > 0 else self.emit.sub
        return tuple(f(u, v) for u, v in zip(a, b))  # type: ignore[return-value]

    def cauchy(self, a, b, k: int):
        e = self.emit
        acc = None
        for j in range(k + 1):
            t = e.mul(a[j], b[k - j])
            acc = t if acc is None else e.add(acc, t)
        return acc

    def j_mul(self, a: Jet, b: Jet) -> Jet:
        return tuple(self.cauchy(a, b, k) for k in range(self.order + 1))  # type: ignore

    def j_div(self, a: Jet, b: Jet) -> Jet:
        e = self.emit
        q: list[SSAValue] = []
        for k in range(self.order + 1):
            acc = a[k]
            for j in range(k):
                acc = e.sub(acc, e.mul(q[j], b[k - j]))
            q.append(e.div(acc, b[0]))
        return tuple(q)  # type: ignore[return-value]

    def j_sqrt(self, x: Jet) -> Jet:
        e = self.emit
        s = [e(math.SqrtOp(x[0]))]
        two_s = e.mul(e.f(2.0), s[0])
        for k in range(1, self.order + 1):
            acc = x[k]
            for j in range(1, k):
                acc = e.sub(acc, e.mul(s[j], s[k - j]))
            s.append(e.div(acc, two_s))
        return tuple(s)  # type: ignore[return-value]

    def j_ipow(self, x: Jet, n: int) -> Jet:
        if n < 0:
            return self.j_div(self.j_const(self.emit.f(1.0)), self.j_ipow(x, -n))
        result, base = self.j_const(self.emit.f(1.0)), x
        first = True
        while n:
            if n & 1:
                result = base if first else self.j_mul(result, base)
                first = False
            n >>= 1
            if n:
                base = self.j_mul(base, base)
        return result

    def j_compose(self, x: Jet, derivs: list[SSAValue]) -> Jet:
        """f(x) from f, f', ..., f^(order) at x[0]."""
        e = self.emit
        z = e.f(0.0)
        d = (z, *x[1:])
        out = [derivs[0]] + [z] * self.order
        power = d
        fact = 1.0
        for m in range(1, self.order + 1):
            fact *= m
            c = derivs[m] if m == 1 else e.div(derivs[m], e.f(fact))
            for k in range(m, self.order + 1):  # d^m starts at e^m
                out[k] = e.add(out[k], e.mul(c, power[k]))
            if m < self.order:
                power = (z,) * (m + 1) + tuple(self.cauchy(power, d, k)
                                               for k in range(m + 1, self.order + 1))
        return tuple(out)  # type: ignore[return-value]

    def j_unary(self, op: Operation, x: Jet) -> Jet:
        e = self.emit
        v = x[0]
        order = self.order

        def cycle(vals: list[SSAValue]) -> list[SSAValue]:
            return [vals[k % len(vals)] for k in range(order + 1)]

        def neg(a):
            return e(arith.NegfOp(a))

        def poly(coeffs: list[float], t: SSAValue) -> SSAValue:  # Horner, highest first
            acc = e.f(coeffs[0])
            for c in coeffs[1:]:
                acc = e.add(e.mul(acc, t), e.f(c))
            return acc

        match op:
            case arith.NegfOp():
                return tuple(neg(c) for c in x)  # type: ignore[return-value]
            case math.SqrtOp():
                return self.j_sqrt(x)
            case math.SinOp():
                s, c = e(math.SinOp(v)), e(math.CosOp(v))
                return self.j_compose(x, cycle([s, c, neg(s), neg(c)]))
            case math.CosOp():
                s, c = e(math.SinOp(v)), e(math.CosOp(v))
                return self.j_compose(x, cycle([c, neg(s), neg(c), s]))
            case math.ExpOp():
                return self.j_compose(x, cycle([e(math.ExpOp(v))]))
            case math.SinhOp():
                return self.j_compose(x, cycle([e(math.SinhOp(v)), e(math.CoshOp(v))]))
            case math.CoshOp():
                return self.j_compose(x, cycle([e(math.CoshOp(v)), e(math.SinhOp(v))]))
            case math.LogOp():
                inv = e.div(e.f(1.0), v)
                derivs, pw, fact = [e(math.LogOp(v))], inv, 1.0
                for k in range(1, order + 1):  # (-1)^(k+1) (k-1)! / x^k
                    derivs.append(e.mul(e.f((-1.0) ** (k + 1) * fact), pw))
                    fact *= k
                    pw = e.mul(pw, inv)
                return self.j_compose(x, derivs)
            case math.RoundOp():  # piecewise constant (a minimum image)
                return self.j_const(e(math.RoundOp(v)))
            case math.TanhOp():
                t = e(math.TanhOp(v))
                return self.j_compose(x, [poly(c, t) for c in tanh_derivatives(order)])
            case math.ErfOp() | ham.ErfcOp():
                # d^k/dx^k erf = (2/sqrt(pi)) (-1)^(k-1) H_{k-1}(x) exp(-x^2), H the Hermite
                # polynomials (physicists')
                sign = 1.0 if isinstance(op, math.ErfOp) else -1.0
                g = e.mul(e.f(sign * TWO_OVER_SQRT_PI), e(math.ExpOp(neg(e.mul(v, v)))))
                derivs = [e(type(op)(v))]
                for k in range(1, order + 1):
                    h = [(-1.0) ** (k - 1) * c for c in hermite(k - 1)]
                    derivs.append(e.mul(poly(h, v), g))
                return self.j_compose(x, derivs)
        raise Refusal(op, f"derivative {order} of {op.name} is not implemented")


def tanh_derivatives(order: int) -> list[list[float]]:
    """Coefficients (highest power first) of P_k(t) with d^k tanh / dx^k = P_k(tanh x):
    P_0 = t, P_(k+1) = P_k'(t) (1 - t^2)."""
    polys = [[0.0, 1.0]]  # lowest power first while building
    for _ in range(order):
        p = polys[-1]
        dp = [k * p[k] for k in range(1, len(p))] or [0.0]
        nxt = [0.0] * (len(dp) + 2)
        for k, c in enumerate(dp):
            nxt[k] += c
            nxt[k + 2] -= c
        polys.append(nxt)
    return [list(reversed(p)) for p in polys]


def hermite(n: int) -> list[float]:
    """Physicists' Hermite polynomial H_n, highest power first (H_(n+1) = 2x H_n - H_n')."""
    h = [1.0]  # lowest power first while building
    for _ in range(n):
        nxt = [0.0] * (len(h) + 1)
        for k, c in enumerate(h):
            nxt[k + 1] += 2 * c
            if k:
                nxt[k - 1] -= k * c
        h = nxt
    return list(reversed(h))


def taylor_function(name: str, system: ham.SystemOp, part: ham.PartOp, along: str, ft,
                    order: int) -> func.FuncOp:
    """<name>(env..., dir, out): out[k] = d^k/de^k part(state + e * dir) at e = 0, k = 0 ..
    order (the directional derivatives the dt^4 term of the shadow Hamiltonian contracts)."""
    from tpc.passes.sym_lower_loops import BUF, RegionLowering, bind_env, env_types, make_func

    cls = type("PartTaylor", (TaylorLowering, RegionLowering), {})

    def body(e, args):
        env = bind_env(system, args[:-2])
        low = cls(env, e)
        low.order, low.along, low.direction = order, along, args[-2]
        (jet,) = low.block(part.body.block, e)[0]
        fact = 1.0
        for k, c in enumerate(jet):
            fact *= max(k, 1)
            e.store(c if k < 2 else e.mul(e.f(fact), c), args[-1], e.i(k))
        return []

    return make_func(name, [*env_types(system, ft), BUF, BUF], [], body, private=False,
                     ft=f64)


def hvp_function(name: str, system: ham.SystemOp, grad: ham.GradientOp, along: str,
                 ft) -> func.FuncOp:
    """<name>(env..., dir, out): out += d/de grad(part)(state + e * dir) at e = 0, the
    Hessian-vector product part'' dir of a part that reads the field dir perturbs, as a
    first-order jet through the part's gradient region (forward over reverse)."""
    from tpc.passes.sym_lower_loops import BUF, RegionLowering, bind_env, env_types, make_func

    cls = type("PartHvp", (TaylorLowering, RegionLowering), {})

    def body(e, args):
        env = bind_env(system, args[:-2])
        low = cls(env, e, grad_out=args[-1])
        low.order, low.along, low.direction = 1, along, args[-2]
        low.block(grad.body.block, e)
        return []

    return make_func(name, [*env_types(system, ft), BUF, BUF], [], body, private=False,
                     ft=f64)
