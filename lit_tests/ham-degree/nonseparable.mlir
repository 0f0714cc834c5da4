// RUN: tpc opt %s -p ham-degree | filecheck %s
// A q*p cross term: still quadratic, but not separable. A constant factor in front of a term
// (2 * q * p) does not hide it. Without locations, `why` names just the op.

builtin.module {
  ham.system @Coupled {
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.load @q[%0] : f64
      %3 = ham.load @p[%0] : f64
      %4 = arith.mulf %2, %3 : f64
      %5 = arith.mulf %1, %4 : f64
      %6 = ham.ipow %3, 2 : f64
      %7 = arith.addf %6, %5 : f64
      ham.yield %7 : f64
    }
  }
  ham.system @Cubic {
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian {
      %0 = arith.constant 0 : index
      %1 = ham.load @q[%0] : f64
      %2 = ham.load @p[%0] : f64
      %3 = arith.mulf %1, %2 : f64
      %4 = arith.mulf %3, %2 : f64
      ham.yield %4 : f64
    }
  }
}

// CHECK-LABEL: ham.system @Coupled
// CHECK:       ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = false} {
// CHECK-LABEL: ham.system @Cubic
// CHECK:       ham.hamiltonian attributes {degree = 3 : i64, quadratic = false, separable = false, why = "H has degree 3 via arith.mulf"} {
