// RUN: tpc opt %s -p ham-degree | filecheck %s
// A harmonic oscillator H = p^2/2 + k q^2/2: degree 2, quadratic, separable, no `why`.

builtin.module {
  ham.system @Harmonic {
    ham.param @k = 1.000000e+00
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.param_ref @k : f64
      %3 = ham.load @p[%0] : f64
      %4 = ham.ipow %3, 2 : f64
      %5 = arith.divf %4, %1 : f64
      %6 = ham.load @q[%0] : f64
      %7 = ham.ipow %6, 2 : f64
      %8 = arith.mulf %2, %7 : f64
      %9 = arith.divf %8, %1 : f64
      %10 = arith.addf %5, %9 : f64
      ham.yield %10 : f64
    }
  }
}

// CHECK:      ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = true} {
// CHECK-NOT:  why
// CHECK:      ham.yield
