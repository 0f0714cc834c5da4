// RUN: tpc opt %s -p convert-arith-to-llvm | filecheck %s

// Float arithmetic maps one to one and never gains fast-math flags, even when
// the input carries some (compensated sums depend on it).
func.func @kahan_step(%s: f64, %c: f64, %x: f64) -> f64 {
  %y = arith.subf %x, %c : f64
  %t = arith.addf %s, %y fastmath<fast> : f64
  %d = arith.subf %t, %s : f64
  %n = arith.subf %d, %y : f64
  %m = arith.mulf %n, %t : f64
  %q = arith.divf %m, %x : f64
  %g = arith.negf %q : f64
  %mx = arith.maximumf %g, %x : f64
  %mn = arith.minimumf %mx, %s : f64
  %lt = arith.cmpf olt, %mn, %x : f64
  %un = arith.cmpf une, %mn, %x : f64
  %tr = arith.cmpf true, %mn, %x : f64
  %b = arith.andi %lt, %un : i1
  %b2 = arith.ori %b, %tr : i1
  %r = arith.select %b2, %mn, %x : f64
  return %r : f64
}

// CHECK-LABEL: func.func @kahan_step
// CHECK-NOT:     fastmath
// CHECK:         %y = llvm.fsub %x, %c : f64
// CHECK-NEXT:    %t = llvm.fadd %s, %y : f64
// CHECK-NEXT:    %d = llvm.fsub %t, %s : f64
// CHECK-NEXT:    %n = llvm.fsub %d, %y : f64
// CHECK-NEXT:    %m = llvm.fmul %n, %t : f64
// CHECK-NEXT:    %q = llvm.fdiv %m, %x : f64
// CHECK-NEXT:    %g = llvm.fneg %q : f64
// CHECK-NEXT:    %mx = llvm.call_intrinsic "llvm.maximum.f64"(%g, %x) : (f64, f64) -> f64
// CHECK-NEXT:    %mn = llvm.call_intrinsic "llvm.minimum.f64"(%mx, %s) : (f64, f64) -> f64
// CHECK-NEXT:    %lt = llvm.fcmp "olt" %mn, %x : f64
// CHECK-NEXT:    %un = llvm.fcmp "une" %mn, %x : f64
// CHECK-NEXT:    %tr = llvm.mlir.constant(true) : i1
// CHECK-NEXT:    %b = llvm.and %lt, %un : i1
// CHECK-NEXT:    %b2 = llvm.or %b, %tr : i1
// CHECK-NEXT:    %r = llvm.select %b2, %mn, %x : i1, f64
// CHECK-NEXT:    func.return %r : f64
// CHECK-NOT:     fastmath
