// RUN: tpc opt %s -p sym-lower-loops | filecheck %s

// N-body: four functions over flat memrefs (q, p, params, the input m, then the size N).
// The pair sum becomes an scf.for nest whose inner loop starts at i + 1, with one sqrt per
// pair in the gradient and the force scattered to both particles; the time loop is an
// scf.while that stops at the first non-finite state.

// CHECK-LABEL: func.func @energy(%0: memref<?xf64>, %1: memref<?xf64>, %2: memref<?xf64>, %3: memref<?xf64>, %4: index) -> f64 attributes {tpc.noalias} {
// CHECK:         scf.for %{{[0-9]+}} = %{{[0-9]+}} to %4 step
// CHECK:         scf.for %[[I:[0-9]+]] = %{{[0-9]+}} to %4 step %{{[0-9]+}} iter_args
// CHECK:           %[[IP1:[0-9]+]] = arith.addi %[[I]], %{{[0-9]+}} : index
// CHECK:           scf.for %{{[0-9]+}} = %[[IP1]] to %4 step %{{[0-9]+}} iter_args
// CHECK:             math.sqrt
// CHECK:         func.return

// CHECK-LABEL: func.func @grad_q(%0: memref<?xf64>, %1: memref<?xf64>, %2: memref<?xf64>, %3: memref<?xf64>, %4: index, %5: memref<?xf64>) attributes {tpc.noalias} {
// CHECK:         scf.for %[[Z:[0-9]+]] = %{{[0-9]+}} to %{{[0-9]+}} step %{{[0-9]+}} {
// CHECK-NEXT:      memref.store %{{[0-9]+}}, %5[%[[Z]]] : memref<?xf64>
// CHECK-NEXT:    }
// CHECK:         scf.for %[[I:[0-9]+]] = %{{[0-9]+}} to %4 step %{{[0-9]+}} {
// CHECK:           %[[IP1:[0-9]+]] = arith.addi %[[I]], %{{[0-9]+}} : index
// CHECK:           scf.for %{{[0-9]+}} = %[[IP1]] to %4 step %{{[0-9]+}} {
// CHECK:             math.sqrt
// CHECK-NOT:         math.sqrt
// CHECK-COUNT-6:     memref.store %{{[0-9]+}}, %5[%{{[0-9]+}}] : memref<?xf64>
// CHECK-NOT:         math.sqrt
// CHECK:         func.return

// CHECK-LABEL: func.func @grad_p(
// CHECK-NOT:     math.sqrt
// CHECK:         func.return

// CHECK-LABEL: func.func @run(%0: memref<?xf64>, %1: memref<?xf64>, %2: memref<?xf64>, %3: memref<?xf64>, %4: index, %5: f64, %6: index, %7: index, %8: index, %9: memref<?xf64>, %10: memref<?xf64>, %11: memref<?xf64>, %12: memref<?xf64>, %13: memref<?xf64>) -> i64 attributes {tpc.noalias} {
// CHECK:         scf.while
// CHECK:           scf.condition
// CHECK:         } do {
// CHECK:           scf.for
// CHECK:             func.call @grad_q(%0, %1, %2, %3, %4, %12)
// CHECK:             func.call @grad_p(%0, %1, %2, %3, %4, %12)
// CHECK:             arith.cmpf oeq
// CHECK:           func.call @energy(%0, %1, %2, %3, %4)
// CHECK:         func.return %{{[0-9]+}} : i64

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
        %7 = ham.dot %6, %6 : vector<3xf64>
        %8 = ham.load @m[%5] : f64
        %9 = arith.mulf %2, %8 : f64
        %10 = arith.divf %7, %9 : f64
        ham.yield %10 : f64
      }
      %11 = ham.pair_sum %12 < %13 in %0 to %1 : f64 {
        %14 = ham.load @m[%12] : f64
        %15 = arith.mulf %3, %14 : f64
        %16 = ham.load @m[%13] : f64
        %17 = arith.mulf %15, %16 : f64
        %18 = ham.load @q[%12] : vector<3xf64>
        %19 = ham.load @q[%13] : vector<3xf64>
        %20 = arith.subf %18, %19 : vector<3xf64>
        %21 = ham.norm %20 : vector<3xf64>
        %22 = arith.divf %17, %21 : f64
        ham.yield %22 : f64
      }
      %23 = arith.negf %11 : f64
      %24 = arith.addf %4, %23 : f64
      ham.yield %24 : f64
    }
    ham.gradient @q {
      %25 = arith.constant 0 : index
      %26 = ham.dim @N : index
      %27 = arith.constant 2.000000e+00 : f64
      %28 = ham.param_ref @G : f64
      ham.pair_sum %29 < %30 in %25 to %26 {
        %31 = ham.load @m[%29] : f64
        %32 = arith.mulf %28, %31 : f64
        %33 = ham.load @m[%30] : f64
        %34 = arith.mulf %32, %33 : f64
        %35 = ham.load @q[%29] : vector<3xf64>
        %36 = ham.load @q[%30] : vector<3xf64>
        %37 = arith.subf %35, %36 : vector<3xf64>
        %38 = ham.norm %37 : vector<3xf64>
        %39 = arith.mulf %38, %38 : f64
        %40 = arith.mulf %39, %38 : f64
        %41 = arith.divf %34, %40 : f64
        %42 = ham.broadcast %41 : vector<3xf64>
        %43 = arith.mulf %42, %37 : vector<3xf64>
        %44 = arith.negf %43 : vector<3xf64>
        ham.accumulate @q[%30], %44 : vector<3xf64>
        ham.accumulate @q[%29], %43 : vector<3xf64>
        ham.yield
      }
      ham.yield
    }
    ham.gradient @p {
      %45 = arith.constant 1.000000e+00 : f64
      %46 = arith.constant 0 : index
      %47 = ham.dim @N : index
      %48 = arith.constant 2.000000e+00 : f64
      %49 = ham.param_ref @G : f64
      ham.sum %50 in %46 to %47 {
        %51 = ham.load @p[%50] : vector<3xf64>
        %52 = ham.load @m[%50] : f64
        %53 = arith.mulf %48, %52 : f64
        %54 = arith.divf %45, %53 : f64
        %55 = ham.broadcast %54 : vector<3xf64>
        %56 = arith.mulf %55, %51 : vector<3xf64>
        ham.accumulate @p[%50], %56 : vector<3xf64>
        ham.accumulate @p[%50], %56 : vector<3xf64>
        ham.yield
      }
      ham.yield
    }
  }
  sym.scheme @leapfrog for @NBody attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
