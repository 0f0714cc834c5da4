// RUN: tpc opt %s -p ham-derive | filecheck %s

// N-body: the pair sum's gradient visits each pair once and scatters the force to both
// particles (Newton's third law), with a single ham.norm per pair body; the kinetic term's
// gradient never touches q and the potential's never touches p.

// CHECK-LABEL: ham.gradient @q {
// CHECK:         ham.pair_sum %[[I:[0-9]+]] < %[[J:[0-9]+]] in %{{[0-9]+}} to %{{[0-9]+}} {
// CHECK-NOT:       ham.load @p
// CHECK:           %[[QI:[0-9]+]] = ham.load @q[%[[I]]] : vector<3xf64>
// CHECK:           %[[QJ:[0-9]+]] = ham.load @q[%[[J]]] : vector<3xf64>
// CHECK:           %[[D:[0-9]+]] = arith.subf %[[QI]], %[[QJ]] : vector<3xf64>
// CHECK:           %[[R:[0-9]+]] = ham.norm %[[D]] : vector<3xf64>
// CHECK-NOT:       ham.norm
// CHECK:           %[[F:[0-9]+]] = arith.mulf %{{[0-9]+}}, %[[D]] : vector<3xf64>
// CHECK:           %[[NF:[0-9]+]] = arith.negf %[[F]] : vector<3xf64>
// CHECK-DAG:       ham.accumulate @q[%[[J]]], %[[NF]] : vector<3xf64>
// CHECK-DAG:       ham.accumulate @q[%[[I]]], %[[F]] : vector<3xf64>
// CHECK-NOT:       ham.norm
// CHECK:           ham.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    ham.yield
// CHECK-NEXT:  }

// CHECK-LABEL: ham.gradient @p {
// CHECK-NOT:     ham.pair_sum
// CHECK-NOT:     ham.load @q
// CHECK:         ham.sum %[[K:[0-9]+]] in
// CHECK:           ham.load @p[%[[K]]] : vector<3xf64>
// CHECK:           ham.load @m[%[[K]]] : f64
// CHECK:           ham.accumulate @p[%[[K]]]
// CHECK-NOT:     ham.pair_sum
// CHECK-NOT:     ham.load @q

builtin.module {
  ham.system @NBody {
    ham.param @G = 1.000000e+00
    ham.size @N
    ham.input @m : !ham.field<[N]>
    ham.state @q, @p : !ham.field<[N, 3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at examples/nbody.ham:8:43"} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = arith.constant 2.000000e+00 : f64
      %3 = ham.param_ref @G : f64
      %4 = ham.sum %5 in %0 to %1 : f64 {
        %6 = ham.load @p[%5] : vector<3xf64>
        %7 = ham.load @p[%5] : vector<3xf64>
        %8 = ham.dot %6, %7 : vector<3xf64>
        %9 = ham.load @m[%5] : f64
        %10 = arith.mulf %2, %9 : f64
        %11 = arith.divf %8, %10 : f64
        ham.yield %11 : f64
      }
      %12 = ham.pair_sum %13 < %14 in %0 to %1 : f64 {
        %15 = ham.load @m[%13] : f64
        %16 = arith.mulf %3, %15 : f64
        %17 = ham.load @m[%14] : f64
        %18 = arith.mulf %16, %17 : f64
        %19 = ham.load @q[%13] : vector<3xf64>
        %20 = ham.load @q[%14] : vector<3xf64>
        %21 = arith.subf %19, %20 : vector<3xf64>
        %22 = ham.norm %21 : vector<3xf64>
        %23 = arith.divf %18, %22 : f64
        ham.yield %23 : f64
      }
      %24 = arith.negf %12 : f64
      %25 = arith.addf %4, %24 : f64
      ham.yield %25 : f64
    }
  }
}
