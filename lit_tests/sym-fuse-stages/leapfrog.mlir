// RUN: tpc opt %s -p sym-fuse-stages | filecheck %s

// Leapfrog has nothing to merge inside a step, but it is fsal: one force evaluation per step.
// The ham.gradient regions are untouched.

// CHECK:      ham.gradient @q {
// CHECK:      ham.gradient @p {
// CHECK:      sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
// CHECK-NEXT:   sym.kick 5.000000e-01
// CHECK-NEXT:   sym.drift 1.000000e+00
// CHECK-NEXT:   sym.kick 5.000000e-01
// CHECK-NEXT: }

builtin.module {
  ham.system @Kepler {
    ham.param @mu = 1.000000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at examples/kepler.ham:5:30"} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @mu : f64
      %2 = ham.load @p[] : vector<3xf64>
      %3 = ham.dot %2, %2 : vector<3xf64>
      %4 = arith.divf %3, %0 : f64
      %5 = ham.load @q[] : vector<3xf64>
      %6 = ham.norm %5 : vector<3xf64>
      %7 = arith.divf %1, %6 : f64
      %8 = arith.subf %4, %7 : f64
      ham.yield %8 : f64
    }
    ham.gradient @q {
      %9 = ham.param_ref @mu : f64
      %10 = ham.load @q[] : vector<3xf64>
      %11 = ham.norm %10 : vector<3xf64>
      %12 = arith.divf %9, %11 : f64
      %13 = arith.mulf %11, %11 : f64
      %14 = arith.divf %12, %13 : f64
      %15 = ham.broadcast %14 : vector<3xf64>
      %16 = arith.mulf %15, %10 : vector<3xf64>
      ham.accumulate @q[], %16 : vector<3xf64>
      ham.yield
    }
    ham.gradient @p {
      %17 = ham.load @p[] : vector<3xf64>
      %18 = arith.constant 5.000000e-01 : f64
      %19 = ham.broadcast %18 : vector<3xf64>
      %20 = arith.mulf %19, %17 : vector<3xf64>
      ham.accumulate @p[], %20 : vector<3xf64>
      ham.accumulate @p[], %20 : vector<3xf64>
      ham.yield
    }
  }
  sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64, integrator = "leapfrog"} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
