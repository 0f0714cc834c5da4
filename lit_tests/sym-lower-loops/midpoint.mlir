// RUN: tpc opt %s -p sym-lower-loops | filecheck %s

// The implicit midpoint rule: a fixed-point scf.while nested in the time loop, bounded by
// max_iter = 100 and stopping at the tolerance 1e-15, evaluating both gradients each sweep.

// CHECK-LABEL: func.func @run(
// CHECK:         scf.while
// CHECK:         } do {
// CHECK:           scf.for
// CHECK:             arith.constant 1.000000e-15 : f64
// CHECK:             scf.while
// CHECK:               arith.constant 100 : index
// CHECK:               scf.condition
// CHECK:             } do {
// CHECK:               func.call @grad_p
// CHECK:               func.call @grad_q
// CHECK:               arith.cmpf ole
// CHECK:           func.call @energy
// CHECK:         func.return

builtin.module {
  ham.system @Pendulum {
    ham.param @g = 9.810000e+00
    ham.param @l = 1.000000e+00
    ham.param @m = 1.000000e+00
    ham.state @q, @p : !ham.field<[1]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via math.cos at examples/pendulum.ham:5:46"} {
      %0 = arith.constant 0 : index
      %1 = arith.constant 2.000000e+00 : f64
      %2 = ham.param_ref @m : f64
      %3 = ham.param_ref @l : f64
      %4 = ham.param_ref @g : f64
      %5 = ham.load @p[%0] : f64
      %6 = ham.ipow %5, 2 : f64
      %7 = arith.mulf %1, %2 : f64
      %8 = ham.ipow %3, 2 : f64
      %9 = arith.mulf %7, %8 : f64
      %10 = arith.divf %6, %9 : f64
      %11 = arith.mulf %2, %4 : f64
      %12 = arith.mulf %11, %3 : f64
      %13 = ham.load @q[%0] : f64
      %14 = math.cos %13 : f64
      %15 = arith.mulf %12, %14 : f64
      %16 = arith.subf %10, %15 : f64
      ham.yield %16 : f64
    }
    ham.gradient @q {
      %17 = arith.constant 0 : index
      %18 = ham.param_ref @m : f64
      %19 = ham.param_ref @l : f64
      %20 = ham.param_ref @g : f64
      %21 = arith.mulf %18, %20 : f64
      %22 = arith.mulf %21, %19 : f64
      %23 = ham.load @q[%17] : f64
      %24 = arith.negf %22 : f64
      %25 = math.sin %23 : f64
      %26 = arith.mulf %24, %25 : f64
      %27 = arith.negf %26 : f64
      ham.accumulate @q[%17], %27 : f64
      ham.yield
    }
    ham.gradient @p {
      %28 = arith.constant 1.000000e+00 : f64
      %29 = arith.constant 0 : index
      %30 = arith.constant 2.000000e+00 : f64
      %31 = ham.param_ref @m : f64
      %32 = ham.param_ref @l : f64
      %33 = ham.load @p[%29] : f64
      %34 = arith.mulf %30, %31 : f64
      %35 = ham.ipow %32, 2 : f64
      %36 = arith.mulf %34, %35 : f64
      %37 = arith.divf %28, %36 : f64
      %38 = arith.mulf %30, %33 : f64
      %39 = arith.mulf %37, %38 : f64
      ham.accumulate @p[%29], %39 : f64
      ham.yield
    }
  }
  sym.scheme @midpoint for @Pendulum attributes {order = 2 : i64, integrator = "midpoint", force_evals = 0 : i64} {
    sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol 1.000000e-15
  }
  sym.evolve @midpoint save ["q", "p", "H"]
}
