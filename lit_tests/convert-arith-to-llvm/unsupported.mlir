// RUN: not tpc opt %s -p convert-arith-to-llvm 2>&1 | filecheck %s

func.func @u(%a: i64) -> f64 {
  %f = arith.uitofp %a : i64 to f64
  return %f : f64
}

// CHECK: error: convert-arith-to-llvm: cannot lower 'arith.uitofp'
