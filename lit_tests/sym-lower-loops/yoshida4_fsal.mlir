// RUN: tpc opt %s -p sym-lower-loops | filecheck %s

// Fused yoshida4 (fsal): the stages run in order inside the save stride; the first kick is
// 0.6756... on the stride's first step and the fused 2 * 0.6756... = 1.3512... after it, and
// one closing half kick ends the stride so that snapshots see p at a whole step.

// CHECK-LABEL: func.func @run(
// CHECK:         scf.while
// CHECK:         } do {
// CHECK:           scf.for
// CHECK-DAG:         %[[FIRST:[0-9]+]] = arith.constant 0.67560359597982889 : f64
// CHECK-DAG:         %[[FUSED:[0-9]+]] = arith.constant 1.3512071919596578 : f64
// CHECK:             arith.select %{{[0-9]+}}, %[[FIRST]], %[[FUSED]] : f64
// CHECK-NEXT:        func.call @grad_q
// CHECK:             arith.constant 1.3512071919596578 : f64
// CHECK-NEXT:        func.call @grad_p
// CHECK:             arith.constant -0.17560359597982889 : f64
// CHECK-NEXT:        func.call @grad_q
// CHECK:             arith.constant -1.7024143839193155 : f64
// CHECK-NEXT:        func.call @grad_p
// CHECK:             arith.constant -0.17560359597982889 : f64
// CHECK-NEXT:        func.call @grad_q
// CHECK:             arith.constant 1.3512071919596578 : f64
// CHECK-NEXT:        func.call @grad_p
// CHECK-NOT:         func.call @grad_
// CHECK:           scf.if
// CHECK-NEXT:        arith.constant 0.67560359597982889 : f64
// CHECK-NEXT:        func.call @grad_q
// CHECK:           func.call @energy
// CHECK:         func.return

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
  sym.scheme @yoshida4 for @Kepler attributes {order = 4 : i64, integrator = "yoshida4", fsal, force_evals = 3 : i64} {
    sym.kick 0.67560359597982889
    sym.drift 1.3512071919596578
    sym.kick -0.17560359597982889
    sym.drift -1.7024143839193155
    sym.kick -0.17560359597982889
    sym.drift 1.3512071919596578
    sym.kick 0.67560359597982889
  }
  sym.evolve @yoshida4 save ["q", "p", "H"]
}
