// RUN: not tpc opt %s -p 'ham-derive,sym-integrator{integrator=leapfrog}' 2>&1 | filecheck %s
// RUN: not tpc opt %s -p 'ham-derive,sym-integrator{integrator=yoshida4}' 2>&1 | filecheck %s
// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=midpoint}' | filecheck %s --check-prefix=MID

// H = p^2/2 + q^2/2 + q p couples q and p: explicit splittings are refused with the reason;
// the implicit midpoint rule is accepted.

// CHECK: error: integrator '{{leapfrog|yoshida4}}' is an explicit splitting, but H is not separable into T(p) + V(q)
// CHECK-SAME: use integrator = midpoint

// MID:      ham.gradient @q {
// MID:        ham.load @p
// MID:      ham.gradient @p {
// MID:        ham.load @q
// MID:      sym.scheme @midpoint for @Coupled attributes {order = 2 : i64, integrator = "midpoint"} {
// MID-NEXT:   sym.implicit_midpoint 1.000000e+00
// MID-NEXT: }

builtin.module {
  ham.system @Coupled {
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = false} {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.load @p[%0] : f64
      %3 = ham.ipow %2, 2 : f64
      %4 = arith.divf %3, %1 : f64
      %5 = ham.load @q[%0] : f64
      %6 = ham.ipow %5, 2 : f64
      %7 = arith.divf %6, %1 : f64
      %8 = arith.addf %4, %7 : f64
      %9 = ham.load @q[%0] : f64
      %10 = ham.load @p[%0] : f64
      %11 = arith.mulf %9, %10 : f64
      %12 = arith.addf %8, %11 : f64
      ham.yield %12 : f64
    }
  }
}
