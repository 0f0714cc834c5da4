// RUN: tpc opt %s -p ham-derive --print-ir-after=ham-derive -o %t 2>&1 | filecheck %s

// A pipeline of one pass: the only dump comes after it, so it already holds the gradients.

// CHECK:       // -----// IR Dump After ham-derive //----- //
// CHECK-NOT:   IR Dump
// CHECK:       ham.hamiltonian
// CHECK-NOT:   IR Dump
// CHECK:       ham.gradient @q {
// CHECK-NOT:   IR Dump
// CHECK:       ham.gradient @p {
// CHECK-NOT:   IR Dump

builtin.module {
  ham.system @Oscillator {
    ham.state @q, @p : !ham.field<[]>
    ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = true} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.load @p[] : f64
      %2 = arith.mulf %1, %1 : f64
      %3 = ham.load @q[] : f64
      %4 = arith.mulf %3, %3 : f64
      %5 = arith.addf %2, %4 : f64
      %6 = arith.divf %5, %0 : f64
      ham.yield %6 : f64
    }
  }
}
