// RUN: tpc opt %s -p ham-degree,ham-symmetry | filecheck %s
// Henon-Heiles has a three-fold symmetry only: neither P nor L; its kinetic part alone is
// invariant under everything (p-only terms).
// CHECK: ham.part @T attributes {{{.*}}invariant_under = ["translation_x", "translation_y", "rotation"]}
// CHECK: ham.part @V attributes {{{.*}}invariant_under = []}
// CHECK: symmetries = ["time"], conserved = ["H"], not_symmetric = {translation_x = {{.*}}, translation_y = {{.*}}, rotation = "part @V is not proved invariant under rotations about the normal of the plane: the proof stops at ham.load
// CHECK-NOT: ham.monitor
builtin.module {
  ham.system @HenonHeiles {
    ham.param @lam = 1.000000e+00
    ham.state @q, @p : !ham.field<[2]>
    ham.part @T {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.load @p[] : vector<2xf64>
      %2 = ham.load @p[] : vector<2xf64>
      %3 = ham.dot %1, %2 : vector<2xf64>
      %4 = arith.divf %3, %0 : f64
      ham.yield %4 : f64
    }
    ham.part @V {
      %5 = arith.constant 0 : index
      %6 = arith.constant 1 : index
      %7 = arith.constant 2.000000e+00 : f64
      %8 = ham.param_ref @lam : f64
      %9 = arith.constant 3.000000e+00 : f64
      %10 = ham.load @q[%5] : f64
      %11 = ham.ipow %10, 2 : f64
      %12 = ham.load @q[%6] : f64
      %13 = ham.ipow %12, 2 : f64
      %14 = arith.addf %11, %13 : f64
      %15 = arith.divf %14, %7 : f64
      %16 = ham.load @q[%5] : f64
      %17 = ham.ipow %16, 2 : f64
      %18 = ham.load @q[%6] : f64
      %19 = arith.mulf %17, %18 : f64
      %20 = ham.load @q[%6] : f64
      %21 = ham.ipow %20, 3 : f64
      %22 = arith.divf %21, %9 : f64
      %23 = arith.subf %19, %22 : f64
      %24 = arith.mulf %8, %23 : f64
      %25 = arith.addf %15, %24 : f64
      ham.yield %25 : f64
    }
    ham.hamiltonian = [@T, @V]
  }
}

