// RUN: tpc opt %s -p ham-degree | filecheck %s --check-prefix=BEFORE
// RUN: tpc opt %s -p ham-degree,ham-split-parts | filecheck %s
// A separable let that reads q and p (through a sum and a constant factor) becomes @E_q, @E_p;
// the constant term goes with q.

builtin.module {
  ham.system @S {
    ham.param @k = 2.000000e+00
    ham.size @N
    ham.state @q, @p : !ham.field<[N]>
    ham.part @E attributes {let} {
      %0 = arith.constant 5.000000e-01 : f64
      %1 = arith.constant 0 : index
      %2 = ham.dim @N : index
      %3 = ham.param_ref @k : f64
      %4 = arith.constant 3.000000e+00 : f64
      %5 = ham.sum %6 in %1 to %2 : f64 {
        %7 = ham.load @p[%6] : f64
        %8 = ham.ipow %7, 2 : f64
        %9 = ham.load @q[%6] : f64
        %10 = ham.ipow %9, 2 : f64
        %11 = arith.mulf %3, %10 : f64
        %12 = arith.addf %8, %11 : f64
        ham.yield %12 : f64
      }
      %13 = arith.mulf %0, %5 : f64
      %14 = arith.subf %13, %4 : f64
      ham.yield %14 : f64
    }
    ham.hamiltonian = [@E]
  }
}

// BEFORE: ham.part @E attributes {let, degree = 2 : i64, quadratic = true, separable = true, depends_on = ["q", "p"]}
// BEFORE: ham.hamiltonian = [@E]

// CHECK-NOT: ham.part @E attributes
// CHECK: ham.part @E_q attributes {let, split_from = "E", {{.*}}depends_on = ["q"]}
// CHECK: ham.sum
// CHECK-NOT: ham.load @p
// CHECK: arith.mulf %{{.*}}, %{{.*}} : f64
// CHECK: ham.yield
// CHECK: arith.subf
// CHECK: ham.part @E_p attributes {let, split_from = "E", {{.*}}depends_on = ["p"]}
// CHECK: ham.sum
// CHECK-NOT: ham.load @q
// CHECK: ham.yield
// CHECK-NOT: arith.subf
// CHECK: ham.hamiltonian = [@E_q, @E_p]
