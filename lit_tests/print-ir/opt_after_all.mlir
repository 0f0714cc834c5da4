// RUN: tpc opt %s -p ham-derive,sym-integrator --print-ir-after-all -o %t 2>&1 | filecheck %s

// Each dump shows the module after the pass that labels it: the gradients appear in the
// dump after ham-derive, the scheme in the dump after sym-integrator, and the last pass
// of the pipeline is dumped too. Exactly one dump per pass, none unlabelled.

// CHECK:       // -----// IR Dump After ham-derive //----- //
// CHECK-NOT:   {{IR Dump|sym.scheme}}
// CHECK:       ham.gradient @q {
// CHECK-NOT:   {{IR Dump|sym.scheme}}
// CHECK:       ham.gradient @p {
// CHECK-NOT:   sym.scheme
// CHECK:       // -----// IR Dump After sym-integrator //----- //
// CHECK-NOT:   IR Dump
// CHECK:       ham.gradient @q {
// CHECK-NOT:   IR Dump
// CHECK:       sym.scheme @leapfrog for @Kepler
// CHECK-NOT:   IR Dump

builtin.module {
  ham.system @Kepler {
    ham.param @mu = 1.000000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @mu : f64
      %2 = ham.load @p[] : vector<3xf64>
      %3 = ham.load @p[] : vector<3xf64>
      %4 = ham.dot %2, %3 : vector<3xf64>
      %5 = arith.divf %4, %0 : f64
      %6 = ham.load @q[] : vector<3xf64>
      %7 = ham.norm %6 : vector<3xf64>
      %8 = arith.divf %1, %7 : f64
      %9 = arith.subf %5, %8 : f64
      ham.yield %9 : f64
    }
  }
}
