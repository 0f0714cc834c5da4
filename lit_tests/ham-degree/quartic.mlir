// RUN: tpc opt %s -p ham-degree | filecheck %s
// H = p^2/2 + q^2 + q^4: degree 4; `why` names the first op that leaves the quadratic class (the
// ipow with exponent 4, not the earlier square) and its source location.

builtin.module {
  ham.system @Quartic {
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.load @p[%0] : f64
      %3 = ham.ipow %2, 2 : f64 loc("quartic.ham":3:9)
      %4 = arith.divf %3, %1 : f64
      %5 = ham.load @q[%0] : f64
      %6 = ham.ipow %5, 2 : f64 loc("quartic.ham":3:20)
      %7 = ham.ipow %5, 4 : f64 loc("quartic.ham":3:27)
      %8 = arith.addf %4, %6 : f64
      %9 = arith.addf %8, %7 : f64
      ham.yield %9 : f64
    }
  }
}

// CHECK: ham.hamiltonian attributes {degree = 4 : i64, quadratic = false, separable = true, why = "H has degree 4 via ham.ipow at quartic.ham:3:27"} {
