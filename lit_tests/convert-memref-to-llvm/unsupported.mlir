// RUN: not tpc opt %s -p convert-memref-to-llvm 2>&1 | filecheck %s

func.func @two_d(%a: memref<4x4xf64>, %i: index) -> f64 {
  %v = memref.load %a[%i, %i] : memref<4x4xf64>
  return %v : f64
}

// CHECK: error: convert-memref-to-llvm: cannot lower 'memref.load': {{.*}}only 1-D memrefs
