// RUN: tpc opt %s -p convert-func-to-llvm | filecheck %s
// Facts proved by the front half (`tpc.*` attributes) survive the conversion, so the JIT can
// mark the buffer arguments noalias.

func.func @axpy(%y: memref<?xf64>, %x: memref<?xf64>, %a: f64, %i: index) attributes {tpc.noalias} {
  %xv = memref.load %x[%i] : memref<?xf64>
  %yv = memref.load %y[%i] : memref<?xf64>
  %t = arith.mulf %a, %xv : f64
  %s = arith.addf %yv, %t : f64
  memref.store %s, %y[%i] : memref<?xf64>
  func.return
}

// CHECK:      llvm.func @axpy(
// CHECK-SAME: tpc.noalias
