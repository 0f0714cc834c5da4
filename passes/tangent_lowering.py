"""The tangent map of the time loop: first derivatives of the gradient regions (forward mode).

A step of a splitting scheme is a product of updates  target += a * grad(parts)(state).  Its
derivative along a tangent (dq, dp) is the same product of
    d(target) += a * D(grad parts)[dq, dp]
a Hessian-vector product of the parts: forward-mode differentiation of the reverse-mode
gradient regions that ham-derive built (forward over reverse), so no Hessian is formed and a
tangent step costs a few gradient evaluations. `tgrad_<part>_<field>(env..., dq, dp, g, dg)`
accumulates the gradient into g and its derivative into dg in one pass over the pairs.

Parameters. The extended phase space makes every param and input theta a coordinate with a
conjugate momentum pi_theta, d(pi_theta)/dt = -dH/dtheta: the flows of the parts stay exact
flows there (a kick of V(q, theta) moves pi_theta by -tau dV/dtheta), so the extended step is
still symplectic. Its tangent adds d(pi_theta) += -tau D(dpart/dtheta)[dq, dp] per update,
from the joint regions `ham.gradient @V wrt @"q+G+m"` of ham-derive-params:
`agrad_<part>_<field>(env..., dq, dp, g, dg, dpi, scale)` is tgrad plus that, in the same pass
over the pairs. The tangent of theta itself stays 0 in every use (reverse-mode adjoints
through the symplectic transpose, tpc/derivatives.py), so it is not carried. `run_tangent` is
`run` plus the tangent state, its snapshots and dpi (accumulated only when asked: a forward
tangent run calls tgrad, a reverse-mode pass agrad).

Every float value of a region becomes a dual (value, tangent); a tangent that is zero by
construction (constants, params, inputs) is None and costs nothing. An op without a rule is
refused, never differentiated wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence

from tpc.dialects import ham, sym
from tpc.passes.refusal import Refusal
from tpc.passes.sym_lower_loops import (
    INDEX,
    STUMPFF_TERMS,
    CellList,
    CpuMachine,
    Emitter,
    Env,
    KeplerSolve,
    RegionLowering,
    TimeLoop,
    _factorial,
    bind_env,
    buf_type,
    carry_buffer,
    clear,
    env_types,
    has_avf,
    has_boris,
    kepler_flows,
    linear_flows,
    make_func,
    midpoint_sweep,
    pair_loops,
    run_types,
    state_size,
)
from xdsl.dialects import arith, func, math, scf
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, i1
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

Dual = tuple[SSAValue, SSAValue | None]
TWO_OVER_SQRT_PI = 1.1283791670955126
TANGENT_ATTR = "tangent"


def state_gradients(system: ham.SystemOp) -> list[ham.GradientOp]:
    fields = system.state.names
    return [g for g in system.decls(ham.GradientOp) if g.wrt_name in fields]


def joint_gradients(system: ham.SystemOp) -> list[ham.GradientOp]:
    """The regions wrt @"field+thetas..." (ham-derive-params): a part's force and its
    derivatives with respect to the params and inputs it reads, in one pass."""
    return [g for g in system.decls(ham.GradientOp) if "+" in g.wrt_name]


def joint_field(grad: ham.GradientOp) -> str:
    return grad.wrt_name.split("+")[0]


class DualLowering(RegionLowering):
    """Lowers a gradient region to (value, tangent) pairs; `targets` maps the field an
    accumulate writes to (value buffer or None, tangent buffer, offset, scale)."""

    def __init__(self, env: Env, emit: Emitter, directions: dict[str, SSAValue],
                 targets: dict[str, tuple[SSAValue | None, SSAValue, SSAValue, SSAValue | None]]):
        super().__init__(env, emit)
        self.directions = directions
        self.targets = targets

    # -- dual arithmetic (None: a tangent that is zero by construction) --------------------
    def t_add(self, a, b, sign: float = 1.0):
        e = self.emit
        if b is None:
            return a
        if a is None:
            return b if sign > 0 else e(arith.NegfOp(b))
        return e.add(a, b) if sign > 0 else e.sub(a, b)

    def t_scale(self, t, f):
        return None if t is None else self.emit.mul(f, t)

    def zero_or(self, t):
        return self.emit.f(0.0) if t is None else t

    def d_add(self, a: Dual, b: Dual, sign: float = 1.0) -> Dual:
        e = self.emit
        v = e.add(a[0], b[0]) if sign > 0 else e.sub(a[0], b[0])
        return (v, self.t_add(a[1], b[1], sign))

    def d_mul(self, a: Dual, b: Dual) -> Dual:
        return (self.emit.mul(a[0], b[0]),
                self.t_add(self.t_scale(a[1], b[0]), self.t_scale(b[1], a[0])))

    def d_div(self, a: Dual, b: Dual) -> Dual:
        e = self.emit
        q = e.div(a[0], b[0])
        num = self.t_add(a[1], self.t_scale(b[1], q), -1.0)
        return (q, None if num is None else e.div(num, b[0]))

    def d_chain(self, x: Dual, f0: SSAValue, f1) -> Dual:
        return (f0, None if x[1] is None else self.emit.mul(f1(), x[1]))

    def d_ipow(self, x: Dual, n: int) -> Dual:
        e = self.emit
        if n == 0:
            return (e.f(1.0), None)
        return self.d_chain(x, self.ipow(x[0], n, e),
                            lambda: e.mul(e.f(float(n)), self.ipow(x[0], n - 1, e)))

    def d_dot(self, a: list[Dual], b: list[Dual]) -> Dual:
        acc = self.d_mul(a[0], b[0])
        for u, v in zip(a[1:], b[1:]):
            acc = self.d_add(acc, self.d_mul(u, v))
        return acc

    def d_sqrt(self, x: Dual) -> Dual:
        e = self.emit
        s = e(math.SqrtOp(x[0]))
        return (s, None if x[1] is None else e.div(x[1], e.mul(e.f(2.0), s)))

    def d_unary(self, op: Operation, x: Dual) -> Dual:
        e = self.emit
        v = x[0]
        match op:
            case arith.NegfOp():
                return (e(arith.NegfOp(v)), None if x[1] is None else e(arith.NegfOp(x[1])))
            case math.SqrtOp():
                return self.d_sqrt(x)
            case math.SinOp():
                return self.d_chain(x, e(math.SinOp(v)), lambda: e(math.CosOp(v)))
            case math.CosOp():
                return self.d_chain(x, e(math.CosOp(v)), lambda: e(arith.NegfOp(e(math.SinOp(v)))))
            case math.TanOp():
                t = e(math.TanOp(v))
                return self.d_chain(x, t, lambda: e.add(e.f(1.0), e.mul(t, t)))
            case math.ExpOp():
                ex = e(math.ExpOp(v))
                return self.d_chain(x, ex, lambda: ex)
            case math.LogOp():
                return self.d_chain(x, e(math.LogOp(v)), lambda: e.div(e.f(1.0), v))
            case math.SinhOp():
                return self.d_chain(x, e(math.SinhOp(v)), lambda: e(math.CoshOp(v)))
            case math.CoshOp():
                return self.d_chain(x, e(math.CoshOp(v)), lambda: e(math.SinhOp(v)))
            case math.TanhOp():
                t = e(math.TanhOp(v))
                return self.d_chain(x, t, lambda: e.sub(e.f(1.0), e.mul(t, t)))
            case math.AbsFOp():
                return self.d_chain(x, e(math.AbsFOp(v)),
                                    lambda: e(math.CopySignOp(e.f(1.0), v)))
            case math.RoundOp():  # piecewise constant (a minimum image)
                return (e(math.RoundOp(v)), None)
            case math.ErfOp() | ham.ErfcOp():
                sign = 1.0 if isinstance(op, math.ErfOp) else -1.0
                return self.d_chain(x, e(type(op)(v)), lambda: e.mul(
                    e.f(sign * TWO_OVER_SQRT_PI), e(math.ExpOp(e(arith.NegfOp(e.mul(v, v)))))))
        raise Refusal(op, f"the tangent of {op.name} is not implemented")

    # -- ops ---------------------------------------------------------------------------------
    def op(self, op: Operation) -> None:
        e = self.emit
        if (op.results and all(r.type == IndexType() for r in op.results)
                and not op.regions) or isinstance(
                op, ham.DimOp | arith.IndexCastOp) or (isinstance(op, arith.ConstantOp)
                                                       and isinstance(op.value, IntegerAttr)):
            return super().op(op)  # index arithmetic: as sym-lower-loops lowers it

        def x(k: int) -> list[Dual]:
            return self.get(op.operands[k])

        def set_(*lanes: Dual) -> None:
            self.values[op.results[0]] = list(lanes)

        def lanewise(fn) -> None:
            xs = [self.get(o) for o in op.operands]
            width = max(len(v) for v in xs)
            cols = [v * width if len(v) == 1 else v for v in xs]
            set_(*[fn(*[c[k] for c in cols]) for k in range(width)])

        match op:
            case arith.ConstantOp() if isinstance(op.value, FloatAttr):
                set_((self.const(op.value.value.data, e), None))
            case arith.ConstantOp():
                set_(*[(self.const(v, e), None) for v in op.value.get_values()])
            case arith.SIToFPOp():
                set_((e(arith.SIToFPOp(self.get(op.operands[0])[0], e.ft)), None))
            case arith.CmpfOp():  # a branch condition: a plain value
                self.values[op.result] = [e(arith.CmpfOp(x(0)[0][0], x(1)[0][0],
                                                         op.predicate.value.data))]
            case arith.SelectOp():
                cond = self.get(op.cond)[0]
                lanes = []
                for a, b in zip(self.get(op.lhs), self.get(op.rhs)):
                    t = None
                    if a[1] is not None or b[1] is not None:
                        t = e(arith.SelectOp(cond, self.zero_or(a[1]), self.zero_or(b[1])))
                    lanes.append((e(arith.SelectOp(cond, a[0], b[0])), t))
                set_(*lanes)
            case ham.ParamRefOp():
                idx = self.param_index[op.param.string_value()]
                set_((self.read(self.env.params, e.i(idx), e), None))
            case ham.LoadOp():
                name = op.field_name
                base = self.flat_index(name, op.indices, e)
                width = len(self.get_width(op.result.type))
                comps = [base if k == 0 else e.iadd(base, e.i(k)) for k in range(width)]
                d = self.directions.get(name)
                set_(*[(self.read(self.buffers[name], c, e),
                        None if d is None else self.read(d, c, e)) for c in comps])
            case ham.AccumulateOp():
                self.accumulate(op)
            case arith.AddfOp():
                lanewise(self.d_add)
            case arith.SubfOp():
                lanewise(lambda a, b: self.d_add(a, b, -1.0))
            case arith.MulfOp():
                lanewise(self.d_mul)
            case arith.DivfOp():
                lanewise(self.d_div)
            case math.CopySignOp():
                def copysign(a: Dual, b: Dual) -> Dual:
                    v = e(math.CopySignOp(a[0], b[0]))
                    if a[1] is None:
                        return (v, None)
                    sign = e.mul(e(math.CopySignOp(e.f(1.0), a[0])),
                                 e(math.CopySignOp(e.f(1.0), b[0])))
                    return (v, e.mul(sign, a[1]))
                lanewise(copysign)
            case math.PowFOp():
                def powf(a: Dual, b: Dual) -> Dual:
                    r = e(math.PowFOp(a[0], b[0]))
                    t = None
                    if a[1] is not None:
                        t = e.mul(e.mul(b[0], e.div(r, a[0])), a[1])
                    if b[1] is not None:
                        t = self.t_add(t, e.mul(e.mul(r, e(math.LogOp(a[0]))), b[1]))
                    return (r, t)
                lanewise(powf)
            case ham.IPowOp():
                set_(*[self.d_ipow(c, op.exponent.value.data) for c in x(0)])
            case ham.DotOp():
                set_(self.d_dot(x(0), x(1)))
            case ham.NormOp():
                set_(self.d_sqrt(self.d_dot(x(0), x(0))))
            case ham.CrossOp():
                a, b = x(0), x(1)
                set_(*[self.d_add(self.d_mul(a[i], b[j]), self.d_mul(a[j], b[i]), -1.0)
                       for i, j in ((1, 2), (2, 0), (0, 1))])
            case ham.ReduceOp():
                acc = x(0)[0]
                for c in x(0)[1:]:
                    acc = self.d_add(acc, c)
                set_(acc)
            case ham.BroadcastOp():
                set_(*(x(0) * op.result.type.get_shape()[0]))
            case ham.ExtractOp():
                set_(x(0)[op.position.value.data])
            case ham.SumOp() | ham.PairSumOp():
                self.d_loop(op)
            case _ if len(op.operands) == 1 and len(op.results) == 1:
                set_(*[self.d_unary(op, c) for c in x(0)])
            case _:
                raise Refusal(op, f"the tangent of {op.name} is not implemented")

    def accumulate(self, op: ham.AccumulateOp) -> None:
        e = self.emit
        name = op.field.string_value()
        if name not in self.targets:
            raise Refusal(op, f"tangent lowering: no buffer for the gradient of @{name}")
        value_buf, tangent_buf, offset, scale = self.targets[name]
        base = e.iadd(offset, self.flat_index(name, op.indices, e)) if op.indices else offset
        for k, (v, t) in enumerate(self.get(op.value)):
            at = base if k == 0 else e.iadd(base, e.i(k))
            if value_buf is not None:
                e.store(e.add(e.load(value_buf, at), v), value_buf, at)
            if t is not None:
                if scale is not None:
                    t = e.mul(scale, t)
                e.store(e.add(e.load(tangent_buf, at), t), tangent_buf, at)

    def d_loop(self, op: ham.SumOp | ham.PairSumOp) -> None:
        """A sum: two accumulators per lane (value, tangent); a scatter loop (no result) just
        runs its body; a pair sum marked `cells` runs over the same cell list as the force
        (its neighbours do not move within one evaluation, so the tangent has no term from
        the binning)."""
        e = self.emit
        width = len(self.get_width(op.result.type)) if op.result is not None else 0
        lo, hi = self.get(op.lower)[0], self.get(op.upper)[0]
        src = op.body.block
        zeros = [e.f(0.0) for _ in range(2 * width)]

        def body_at(ivs: list[SSAValue]):
            def body(inner: Emitter, iv: SSAValue, accs: list[SSAValue]) -> list[SSAValue]:
                for a, v in zip(src.args, [*ivs, iv]):
                    self.values[a] = [v]
                out = self.block(src, inner)
                if not width:
                    return []
                saved, self.emit = self.emit, inner
                flat = [c for v, t in out[0] for c in (v, self.zero_or(t))]
                self.emit = saved
                return [inner.add(a, v) for a, v in zip(accs, flat)]
            return body

        if isinstance(op, ham.SumOp):
            res = e.for_(lo, hi, body_at([]), zeros)
        elif "cells" in op.attributes:
            res = CellList(self, op).loop(lo, hi, body_at, zeros, e)
        else:
            res = pair_loops(e, op, lo, hi, body_at, zeros)
        if width:
            self.values[op.result] = [(res[2 * k], res[2 * k + 1]) for k in range(width)]


# ----------------------------------------------------------------------------- functions

def tgrad_name(part: str, wrt: str) -> str:
    return f"tgrad_{part}_{wrt}"


def agrad_name(part: str, wrt: str) -> str:
    return f"agrad_{part}_{wrt}"


def theta_offset(system: ham.SystemOp, env: Env, name: str, e: Emitter) -> SSAValue:
    """Where theta `name` starts in the dpi buffer (params first, then each input flat)."""
    params = [op.sym_name.data for op in system.decls(ham.ParamOp)]
    if name in params:
        return e.i(params.index(name))
    offset = e.i(len(params))
    for op in system.decls(ham.InputOp):
        if op.sym_name.data == name:
            return offset
        size = e.i(1)
        for d in op.shape.shape:
            size = e.imul(size, e.i(d) if isinstance(d, int) else env.sizes[d])
        offset = e.iadd(offset, size)
    raise KeyError(name)


def lower_tgrad(system: ham.SystemOp, grad: ham.GradientOp, ft: Attribute) -> func.FuncOp:
    """tgrad_<part>_<field>(env..., dq, dp, g, dg): g += d(part)/d(field), dg += its
    derivative along (dq, dp)."""
    q, p = system.state.names
    buf = buf_type(ft)

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-4])
        dq, dp, g, dg = args[-4:]
        DualLowering(env, e, {q: dq, p: dp},
                     {grad.wrt_name: (g, dg, e.i(0), None)}).block(grad.body.block, e)
        return []

    return make_func(tgrad_name(grad.part_name, grad.wrt_name),
                     [*env_types(system, ft), buf, buf, buf, buf], [], body, ft=ft)


def lower_agrad(system: ham.SystemOp, grad: ham.GradientOp, ft: Attribute) -> func.FuncOp:
    """agrad_<part>_<field>(env..., dq, dp, g, dg, dpi, scale): tgrad's g and dg, and
    dpi[theta] += scale times the derivative of d(part)/d(theta) along (dq, dp) for every
    param and input theta of the joint region."""
    q, p = system.state.names
    buf = buf_type(ft)
    field, *thetas = grad.wrt_name.split("+")

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-6])
        dq, dp, g, dg, dpi, scale = args[-6:]
        targets = {field: (g, dg, e.i(0), None)}
        targets |= {t: (None, dpi, theta_offset(system, env, t, e), scale) for t in thetas}
        DualLowering(env, e, {q: dq, p: dp}, targets).block(grad.body.block, e)
        return []

    return make_func(agrad_name(grad.part_name, field),
                     [*env_types(system, ft), buf, buf, buf, buf, buf, ft], [], body, ft=ft)


def stumpff45(e: Emitter, z: SSAValue) -> tuple[SSAValue, SSAValue]:
    """c4(z) = (1/2 - c2) / z and c5(z) = (1/6 - c3) / z (continued through z = 0), for the
    derivatives 2 c2' = 2 c4 - c3 and 2 c3' = 3 c5 - c4; Taylor series for |z| < 1, where the
    closed forms cancel."""
    s4, s5 = e.f(0.0), e.f(0.0)
    mz = e(arith.NegfOp(z))
    for k in reversed(range(STUMPFF_TERMS)):  # Horner in -z
        s4 = e.add(e.f(1.0 / _factorial(2 * k + 4)), e.mul(mz, s4))
        s5 = e.add(e.f(1.0 / _factorial(2 * k + 5)), e.mul(mz, s5))
    return s4, s5


class DualMath:
    """Dual-number arithmetic on an emitter (value, tangent), for code written by hand."""

    def __init__(self, e: Emitter):
        self.e = e

    def add(self, a, b):
        return (self.e.add(a[0], b[0]), self.e.add(a[1], b[1]))

    def sub(self, a, b):
        return (self.e.sub(a[0], b[0]), self.e.sub(a[1], b[1]))

    def mul(self, a, b):
        e = self.e
        return (e.mul(a[0], b[0]), e.add(e.mul(a[1], b[0]), e.mul(a[0], b[1])))

    def div(self, a, b):
        e = self.e
        q = e.div(a[0], b[0])
        return (q, e.div(e.sub(a[1], e.mul(q, b[1])), b[0]))

    def const(self, c):
        return (c, self.e.f(0.0))

    def dot(self, a, b):
        acc = self.mul(a[0], b[0])
        for u, w in zip(a[1:], b[1:]):
            acc = self.add(acc, self.mul(u, w))
        return acc


def kepler_tangent(e: Emitter, s: KeplerSolve, x, v, dx, dv):
    """The tangent of kepler_step along (dx, dv): the root chi moves by implicit
    differentiation of Kepler's equation F(chi; sigma0, beta, r0, alpha, t) = 0,
    dchi = -(F_sigma0 dsigma0 + F_beta dbeta + F_r0 dr0 + F_alpha dalpha + F_t dt) / F_chi,
    F_chi = r, and the Lagrange coefficients are differentiated as written (mu is a constant
    of the flow), at the flow's own solve `s`. Returns the tangent of the new (x, v)."""
    d = DualMath(e)
    X, W = list(zip(x, dx)), list(zip(v, dv))
    one = e.f(1.0)
    r0 = d.dot(X, X)
    r0 = (s.r0, e.div(r0[1], e.mul(e.f(2.0), s.r0)))
    rv = d.dot(X, W)
    v2 = d.dot(W, W)
    sqmu, mu_c = d.const(s.sqmu), d.const(s.mu)
    sigma0 = d.div(rv, sqmu)
    alpha = d.sub(d.div(d.const(e.f(2.0)), r0), d.div(v2, mu_c))
    beta = d.sub(d.const(one), d.mul(alpha, r0))
    # t = h - turns * period (elliptic), period = 2 pi / (sqrt(mu) alpha^(3/2))
    dperiod = e.mul(e.f(-1.5), e.div(e.mul(s.period, alpha[1]), s.alpha))
    dt = e(arith.SelectOp(s.elliptic, e(arith.NegfOp(e.mul(s.turns, dperiod))), e.f(0.0)))
    chi, z, c2, c3 = s.chi, s.z, s.c2, s.c3
    chi2 = e.mul(chi, chi)
    c4, c5 = stumpff45(e, z)
    half = e.f(0.5)
    dc2 = e.mul(half, e.sub(e.mul(e.f(2.0), c4), c3))
    dc3 = e.mul(half, e.sub(e.mul(e.f(3.0), c5), c4))
    chi3 = e.mul(chi2, chi)
    f_sigma = e.mul(chi2, c2)
    f_beta = e.mul(chi3, c3)
    f_alpha = e.mul(chi2, e.add(e.mul(sigma0[0], e.mul(chi2, dc2)),
                                e.mul(beta[0], e.mul(chi3, dc3))))
    num = e.add(e.add(e.mul(f_sigma, sigma0[1]), e.mul(f_beta, beta[1])),
                e.add(e.add(e.mul(chi, r0[1]), e.mul(f_alpha, alpha[1])),
                      e(arith.NegfOp(e.mul(s.sqmu, dt)))))
    Chi = (chi, e(arith.NegfOp(e.div(num, s.r))))
    Z = d.mul(alpha, d.mul(Chi, Chi))
    C2 = (c2, e.mul(dc2, Z[1]))
    C3 = (c3, e.mul(dc3, Z[1]))
    T = (s.t, dt)
    Chi2 = d.mul(Chi, Chi)
    R = d.add(d.add(d.mul(sigma0, d.mul(Chi, d.sub(d.const(one), d.mul(Z, C3)))),
                    d.mul(beta, d.mul(Chi2, C2))), r0)
    fm1 = d.div(d.mul(Chi2, C2), r0)
    fm1 = (e(arith.NegfOp(fm1[0])), e(arith.NegfOp(fm1[1])))
    g = d.sub(T, d.div(d.mul(Chi2, d.mul(Chi, C3)), sqmu))
    fd = d.mul(d.div(sqmu, d.mul(R, r0)), d.mul(Chi, d.sub(d.mul(Z, C3), d.const(one))))
    gdm1 = d.div(d.mul(Chi2, C2), R)
    gdm1 = (e(arith.NegfOp(gdm1[0])), e(arith.NegfOp(gdm1[1])))
    dx1 = [d.add(a, d.add(d.mul(fm1, a), d.mul(g, b)))[1] for a, b in zip(X, W)]
    dv1 = [d.add(b, d.add(d.mul(fd, a), d.mul(gdm1, b)))[1] for a, b in zip(X, W)]
    return dx1, dv1


class TangentMachine(CpuMachine):
    """CpuMachine that carries the tangent (dq, dp) and the parameter adjoint dpi with the
    state: every update also moves its tangent, a linear flow applies its matrix to it, a
    Kepler flow its implicit derivative (kepler_tangent)."""

    def setup(self, tq, tp, out_tq, out_tp, tg, dpi, adjoint) -> None:
        self.tq, self.tp, self.out_tq, self.out_tp, self.tg, self.dpi = (
            tq, tp, out_tq, out_tp, tg, dpi)
        self.adjoint = adjoint  # index: 0 skips dpi (a forward tangent run does not need it)

    def update(self, e: Emitter, op: sym.UpdateOp, a: SSAValue) -> None:
        system = self.env.system
        grads = system.gradients(op.wrt_name, op.part_names)
        if not grads:
            return
        n = state_size(self.env, e)
        clear(e, self.g, n)
        clear(e, self.tg, n)
        joint = {g.part_name for g in joint_gradients(system)
                 if joint_field(g) == op.wrt_name and g.part_name in op.part_names}
        base = [*self.env.args, self.tq, self.tp, self.g, self.tg]

        def forward(fe: Emitter) -> list:
            for g in grads:
                fe(func.CallOp(tgrad_name(g.part_name, op.wrt_name), base, []))
            return []

        def adjoint(ae: Emitter) -> list:
            # pi_theta moves by -tau dpart/dtheta: tau = a for a drift (q += a dT/dp), -a for
            # a kick (p += a dV/dq, a = -tau); only its tangent is needed.
            scale = a if op.target_name == self.p_name else ae(arith.NegfOp(a))
            for g in grads:
                if g.part_name in joint:
                    ae(func.CallOp(agrad_name(g.part_name, op.wrt_name),
                                   [*base, self.dpi, scale], []))
                else:
                    ae(func.CallOp(tgrad_name(g.part_name, op.wrt_name), base, []))
            return []

        if joint:
            e.if_(e(arith.CmpiOp(self.adjoint, e.i(0), "ne")), adjoint, forward, [])
        else:
            forward(e)
        self.axpy(e, self.field(op.target_name), a, self.g, carry_buffer(self.carry, op))
        self.axpy(e, self.tq if op.target_name == self.q_name else self.tp, a, self.tg)

    def linear(self, e: Emitter, op: sym.LinearOp, h: SSAValue, k: int) -> None:
        super().linear(e, op, h, k)
        self.linear_on(e, k, self.tq, self.tp, affine=False)

    def kepler_body(self, e: Emitter, idx, x, v, m, solve: KeplerSolve) -> None:
        """The tangent of one body's Kepler flow, from its state before the flow and the
        flow's solve (which CpuMachine.kepler then finishes, bit for bit as in `run`)."""
        dx = [e.load(self.tq, j) for j in idx]
        dv = [e.div(e.load(self.tp, j), m) for j in idx]
        dx1, dv1 = kepler_tangent(e, solve, x, v, dx, dv)
        for j, da, db in zip(idx, dx1, dv1):
            e.store(da, self.tq, j)
            e.store(e.mul(m, db), self.tp, j)

    def at_midpoint(self, e: Emitter, stage: sym.MidpointOp, half_h: SSAValue, tol: SSAValue,
                    max_iter: int) -> None:
        """The tangent of z1 = z0 + h J grad H(M), M = (z0 + z1) / 2, at the converged M (in
        q, p): dM = dz0 + h/2 J H''(M) dM, iterated like the stage itself (it contracts as
        the stage does), then dz1 = 2 dM - dz0; with adjoint, dpi += -h D(dH/dtheta)(M)[dM].
        tg holds [dH_q tangent | dq0 | dp0 | dH_p tangent]."""
        n, g, tg = self.n, self.g, self.tg
        system, parts = self.env.system, stage.part_names
        off_q0, off_p0, off_gp = n, e.imul(n, e.i(2)), e.imul(n, e.i(3))
        tq, tp = self.tq, self.tp

        def keep(inner: Emitter, k: SSAValue, _: list) -> list:
            inner.store(inner.load(tq, k), tg, inner.iadd(k, off_q0))
            inner.store(inner.load(tp, k), tg, inner.iadd(k, off_p0))
            return []

        e.for_(e.i(0), n, keep)

        def hvp(be: Emitter, field: str) -> None:
            """tg[:n] = D(d parts / d field)(M)[dq, dp] (the values go to g, unused)."""
            clear(be, g, n)
            clear(be, tg, n)
            for grad in system.gradients(field, parts):
                be(func.CallOp(tgrad_name(grad.part_name, field),
                               [*self.env.args, tq, tp, g, tg], []))

        def park(inner: Emitter, k: SSAValue, _: list) -> list:
            inner.store(inner.load(tg, k), tg, inner.iadd(k, off_gp))
            return []

        before = Block(arg_types=[INDEX, i1])
        be = Emitter(before, self.ft)
        it, done = before.args
        go = be(arith.AndIOp(be(arith.CmpiOp(it, be.i(max_iter), "slt")),
                             be(arith.XOrIOp(done, be(arith.ConstantOp(IntegerAttr(1, i1)))))))
        be(scf.ConditionOp(go, it, done))
        after = Block(arg_types=[INDEX, i1])
        ae = Emitter(after, self.ft)
        hvp(ae, self.p_name)
        ae.for_(ae.i(0), n, park)
        hvp(ae, self.q_name)

        delta, scale = midpoint_sweep(ae, n, half_h, tq, tp, (tg, off_q0), (tg, off_p0),
                                      (tg, 0), (tg, off_gp))
        small = ae(arith.CmpfOp(delta, ae.mul(tol, ae.add(ae.f(1.0), scale)), "ole"))
        ae(scf.YieldOp(ae.iadd(after.args[0], ae.i(1)), small))
        e(scf.WhileOp([e.i(0), e(arith.ConstantOp(IntegerAttr(0, i1)))], [INDEX, i1],
                      Region(before), Region(after)))
        joint = [grad for grad in joint_gradients(system) if grad.part_name in parts]
        if joint:
            def accumulate(te: Emitter) -> list:
                # one joint region per part: each carries every theta of the part
                scale_h = te.mul(te.f(-2.0), half_h)
                seen: set[str] = set()
                for grad in joint:
                    if grad.part_name in seen:
                        continue
                    seen.add(grad.part_name)
                    clear(te, g, n)
                    te(func.CallOp(agrad_name(grad.part_name, joint_field(grad)),
                                   [*self.env.args, tq, tp, g, tg, self.dpi, scale_h], []))
                return []

            e.if_(e(arith.CmpiOp(self.adjoint, e.i(0), "ne")), accumulate, lambda fe: [], [])

        def finish(inner: Emitter, k: SSAValue, _: list) -> list:
            two = inner.f(2.0)
            inner.store(inner.sub(inner.mul(two, inner.load(tq, k)),
                                  inner.load(tg, inner.iadd(k, off_q0))), tq, k)
            inner.store(inner.sub(inner.mul(two, inner.load(tp, k)),
                                  inner.load(tg, inner.iadd(k, off_p0))), tp, k)
            return []

        e.for_(e.i(0), n, finish)

    def save(self, e: Emitter, s: SSAValue) -> None:
        super().save(e, s)
        base = e.imul(s, self.n)

        def copy(inner: Emitter, k: SSAValue, _: list) -> list:
            at = inner.iadd(base, k)
            inner.store(inner.load(self.tq, k), self.out_tq, at)
            inner.store(inner.load(self.tp, k), self.out_tp, at)
            return []

        e.for_(e.i(0), self.n, copy)


def build_run_tangent(system: ham.SystemOp, scheme: sym.SchemeOp, ft: Attribute,
                      carry: Sequence[str] = ()) -> func.FuncOp:
    """run_tangent(run's arguments..., tq, tp, out_tq, out_tp, tg, dpi, adjoint): `run` that
    also carries the tangent (tq, tp, in place, saved at snapshots into out_tq/out_tp) and,
    when adjoint != 0, accumulates the tangent of the parameters' conjugate momenta into dpi."""
    maps, bodies = bool(linear_flows(scheme)), bool(kepler_flows(scheme))
    boris, avf = has_boris(scheme), has_avf(scheme)
    types = run_types(system, ft, maps, bodies, boris, len(carry), avf)
    buf = buf_type(ft)
    types += [buf] * 6 + [INDEX]

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        k = len(env_types(system, ft))
        env = bind_env(system, args[:k])
        dt, nsnap, stride, step0, out_q, out_p, out_h, g, work, status = args[k:k + 10]
        extra = k + 10 + int(maps)
        machine = TangentMachine(env, ft, g, work, out_q, out_p, out_h, status, e,
                                 dict(zip(carry, args[extra:extra + len(carry)])))
        machine.maps = args[k + 10] if maps else None
        machine.bodies = args[k + 10 + int(maps)] if bodies else None
        machine.setup(*args[-7:])
        TimeLoop(scheme, machine).emit(e, dt, nsnap, stride, step0)
        return []

    return make_func("run_tangent", types, [], body, private=False, ft=ft)


def tangent_funcs(system: ham.SystemOp, scheme: sym.SchemeOp, ft: Attribute,
                  carry: Sequence[str] = ()) -> list[func.FuncOp]:
    """The functions a scheme marked `tangent` (sym-tangent) adds to the lowered module."""
    funcs = [lower_tgrad(system, g, ft) for g in state_gradients(system)]
    funcs += [lower_agrad(system, g, ft) for g in joint_gradients(system)]
    funcs.append(build_run_tangent(system, scheme, ft, carry))
    return funcs

