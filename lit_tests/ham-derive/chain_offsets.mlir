// RUN: tpc opt %s -p ham-derive | filecheck %s

// Harmonic chain: sum(i: (q[i + 1] - q[i])^2) differentiates into a loop of the same range
// that scatters +g to q[i + 1] and -g to q[i]; the wall terms accumulate at q[0] and q[N - 1].

// CHECK-LABEL: ham.gradient @q {
// CHECK-DAG:     %[[ZERO:[0-9]+]] = arith.constant 0 : index
// CHECK-DAG:     %[[N:[0-9]+]] = ham.dim @N : index
// CHECK-DAG:     %[[ONE:[0-9]+]] = arith.constant 1 : index
// CHECK:         %[[LAST:[0-9]+]] = arith.subi %[[N]], %[[ONE]] : index
// CHECK-DAG:     ham.accumulate @q[%[[LAST]]], %{{[0-9]+}} : f64
// CHECK-DAG:     ham.accumulate @q[%[[ZERO]]], %{{[0-9]+}} : f64
// CHECK:         ham.sum %[[I:[0-9]+]] in %[[ZERO]] to %[[LAST]] {
// CHECK:           %[[IP1:[0-9]+]] = arith.addi %[[I]], %[[ONE]] : index
// CHECK:           %[[QN:[0-9]+]] = ham.load @q[%[[IP1]]] : f64
// CHECK:           %[[QC:[0-9]+]] = ham.load @q[%[[I]]] : f64
// CHECK:           arith.subf %[[QN]], %[[QC]] : f64
// CHECK:           %[[NG:[0-9]+]] = arith.negf %[[G:[0-9]+]] : f64
// CHECK-DAG:       ham.accumulate @q[%[[I]]], %[[NG]] : f64
// CHECK-DAG:       ham.accumulate @q[%[[IP1]]], %[[G]] : f64
// CHECK:           ham.yield
// CHECK-NEXT:    }

// CHECK-LABEL: ham.gradient @p {
// CHECK-NOT:     ham.load @q
// CHECK:           ham.load @p[
// CHECK:           ham.accumulate @p[
// CHECK-NOT:     ham.load @q

builtin.module {
  ham.system @HarmonicChain {
    ham.param @k = 1.000000e+00
    ham.param @m = 1.000000e+00
    ham.size @N
    ham.state @q, @p : !ham.field<[N]>
    ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = true} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = arith.constant 2.000000e+00 : f64
      %3 = ham.param_ref @m : f64
      %4 = ham.param_ref @k : f64
      %5 = arith.constant 1 : index
      %6 = arith.subi %1, %5 : index
      %7 = ham.sum %8 in %0 to %1 : f64 {
        %9 = ham.load @p[%8] : f64
        %10 = ham.load @p[%8] : f64
        %11 = arith.mulf %9, %10 : f64
        ham.yield %11 : f64
      }
      %12 = arith.mulf %2, %3 : f64
      %13 = arith.divf %7, %12 : f64
      %14 = arith.divf %4, %2 : f64
      %15 = ham.sum %16 in %0 to %6 : f64 {
        %17 = arith.addi %16, %5 : index
        %18 = ham.load @q[%17] : f64
        %19 = ham.load @q[%16] : f64
        %20 = arith.subf %18, %19 : f64
        %21 = ham.ipow %20, 2 : f64
        ham.yield %21 : f64
      }
      %22 = ham.load @q[%0] : f64
      %23 = ham.ipow %22, 2 : f64
      %24 = arith.addf %15, %23 : f64
      %25 = arith.subi %1, %5 : index
      %26 = ham.load @q[%25] : f64
      %27 = ham.ipow %26, 2 : f64
      %28 = arith.addf %24, %27 : f64
      %29 = arith.mulf %14, %28 : f64
      %30 = arith.addf %13, %29 : f64
      ham.yield %30 : f64
    }
  }
}
