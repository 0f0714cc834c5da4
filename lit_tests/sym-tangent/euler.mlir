// RUN: tpc opt %s -p sym-tangent | filecheck %s
// Symplectic Euler (kick, then drift) does not read the same backwards: marked for its
// tangent map, but not reversible (its step with -dt is not its inverse).
builtin.module {
  ham.system @Pendulum {
    ham.param @g = 9.810000e+00
    ham.state @q, @p : !ham.field<[1]>
    ham.part @T attributes {degree = 2 : i64, quadratic = true, separable = true, depends_on = ["p"], invariant_under = ["translation"]} {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.load @p[%0] : f64
      %3 = ham.ipow %2, 2 : f64
      %4 = arith.divf %3, %1 : f64
      ham.yield %4 : f64
    }
    ham.part @V attributes {degree = "nonpoly", quadratic = false, separable = true, depends_on = ["q"], why = "H is not a polynomial via math.cos at pendulum.ham:4:26 (part @V)", invariant_under = []} {
      %5 = ham.param_ref @g : f64
      %6 = arith.constant 0 : index
      %7 = ham.load @q[%6] : f64
      %8 = math.cos %7 : f64
      %9 = arith.mulf %5, %8 : f64
      %10 = arith.negf %9 : f64
      ham.yield %10 : f64
    }
    ham.hamiltonian = [@T, @V] {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via math.cos at pendulum.ham:4:26 (part @V)", symmetries = ["time"], conserved = ["H"], not_symmetric = {translation = "part @V is not proved invariant under translations along the line: the proof stops at math.cos at pendulum.ham:4:26, of a value the translation moves"}}
    ham.gradient @T wrt @p {
      %11 = arith.constant 0 : index
      %12 = arith.constant 2.000000e+00 : f64
      %13 = ham.load @p[%11] : f64
      %14 = arith.constant 5.000000e-01 : f64
      %15 = arith.mulf %12, %13 : f64
      %16 = arith.mulf %14, %15 : f64
      ham.accumulate @p[%11], %16 : f64
      ham.yield
    }
    ham.gradient @V wrt @q {
      %17 = ham.param_ref @g : f64
      %18 = arith.constant 0 : index
      %19 = ham.load @q[%18] : f64
      %20 = arith.negf %17 : f64
      %21 = math.sin %19 : f64
      %22 = arith.mulf %20, %21 : f64
      %23 = arith.negf %22 : f64
      ham.accumulate @q[%18], %23 : f64
      ham.yield
    }
  }
  sym.scheme @euler for @Pendulum attributes {order = 1 : i64, integrator = "euler", force_evals = 1 : i64} {
    sym.update @p, -1.000000e+00, [@V] wrt @q
    sym.update @q, 1.000000e+00, [@T] wrt @p
  }
  sym.evolve @euler save ["q", "p", "H"] {not_folded = "matrix-power folding disabled by --no-fold"}
}
// CHECK: sym.scheme @euler for @Pendulum attributes {order = 1 : i64, integrator = "euler", force_evals = 1 : i64} {
// CHECK-NEXT: sym.update @p, -1.000000e+00, [@V] wrt @q
// CHECK-NEXT: sym.update @q, 1.000000e+00, [@T] wrt @p
// CHECK-NEXT: }
// CHECK: sym.evolve @euler save ["q", "p", "H"] {not_folded = "matrix-power folding disabled by --no-fold", tangent}
