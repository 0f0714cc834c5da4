// RUN: not tpc opt %s -p sym-fold-linear 2>&1 | filecheck %s
// A quartic H (p^2/2 + k q^4) is not linear dynamics: asked to fold it, the pass fails and
// names the op that raised the degree.

// CHECK: error: sym-fold-linear: cannot fold the time loop of @leapfrog into matrix powers: H has degree 4 via ham.ipow
// CHECK-NOT: sym.propagate

builtin.module {
  ham.system @Quartic {
    ham.param @k = 1.000000e+00
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian attributes {degree = 4 : i64, quadratic = false, separable = true, why = "H has degree 4 via ham.ipow at /tmp/quartic.ham:4:26"} {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.param_ref @k : f64
      %3 = ham.load @p[%0] : f64
      %4 = ham.ipow %3, 2 : f64
      %5 = arith.divf %4, %1 : f64
      %6 = ham.load @q[%0] : f64
      %7 = ham.ipow %6, 4 : f64
      %8 = arith.mulf %2, %7 : f64
      %9 = arith.addf %5, %8 : f64
      ham.yield %9 : f64
    }
    ham.gradient @q {
      %10 = arith.constant 0 : index
      %11 = ham.param_ref @k : f64
      %12 = ham.load @q[%10] : f64
      %13 = ham.ipow %12, 3 : f64
      %14 = arith.constant 4.000000e+00 : f64
      %15 = arith.mulf %14, %13 : f64
      %16 = arith.mulf %11, %15 : f64
      ham.accumulate @q[%10], %16 : f64
      ham.yield
    }
    ham.gradient @p {
      %17 = arith.constant 0 : index
      %18 = arith.constant 2.000000e+00 : f64
      %19 = ham.load @p[%17] : f64
      %20 = arith.constant 5.000000e-01 : f64
      %21 = arith.mulf %18, %19 : f64
      %22 = arith.mulf %20, %21 : f64
      ham.accumulate @p[%17], %22 : f64
      ham.yield
    }
  }
  sym.scheme @leapfrog for @Quartic attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
