// RUN: tpc opt %s -p sym-fuse-stages | filecheck %s

// The implicit midpoint rule has no kicks: not fsal, no explicit force evaluations.

// CHECK:      sym.scheme @midpoint for @Coupled attributes {order = 2 : i64, integrator = "midpoint", force_evals = 0 : i64} {
// CHECK-NOT:  fsal
// CHECK-NEXT:   sym.implicit_midpoint 1.000000e+00
// CHECK-NEXT: }

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
      %9 = arith.mulf %5, %2 : f64
      %10 = arith.addf %8, %9 : f64
      ham.yield %10 : f64
    }
    ham.gradient @q {
      %11 = arith.constant 0 : index
      %12 = arith.constant 2.000000e+00 : f64
      %13 = ham.load @p[%11] : f64
      %14 = ham.load @q[%11] : f64
      ham.accumulate @q[%11], %13 : f64
      %15 = arith.constant 5.000000e-01 : f64
      %16 = arith.mulf %12, %14 : f64
      %17 = arith.mulf %15, %16 : f64
      ham.accumulate @q[%11], %17 : f64
      ham.yield
    }
    ham.gradient @p {
      %18 = arith.constant 0 : index
      %19 = arith.constant 2.000000e+00 : f64
      %20 = ham.load @p[%18] : f64
      %21 = ham.load @q[%18] : f64
      ham.accumulate @p[%18], %21 : f64
      %22 = arith.constant 5.000000e-01 : f64
      %23 = arith.mulf %19, %20 : f64
      %24 = arith.mulf %22, %23 : f64
      ham.accumulate @p[%18], %24 : f64
      ham.yield
    }
  }
  sym.scheme @midpoint for @Coupled attributes {order = 2 : i64, integrator = "midpoint"} {
    sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol 1.000000e-15
  }
  sym.evolve @midpoint save ["q", "p", "H"]
}
