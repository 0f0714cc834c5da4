// RUN: tpc opt %s -p convert-math-to-llvm | filecheck %s

func.func @m(%x: f64, %y: f64, %k: i32, %s: f32) -> f64 {
  %a = math.sin %x : f64
  %b = math.tanh %a : f64
  %c = math.powf %b, %y : f64
  %d = math.sqrt %c : f64
  %e = math.fma %d, %x, %y : f64
  %f = math.fpowi %e, %k : f64, i32
  %g = math.expm1 %f : f64
  %h = math.cos %s : f32
  return %g : f64
}

// libm-only functions are declared; fpowi gets an internal helper.
// CHECK:       llvm.func internal @__tpc_powi_f64(%{{.+}}: f64, %{{.+}}: i64) -> f64 {
// CHECK:         llvm.lshr
// CHECK:         llvm.return
// CHECK:       llvm.func @expm1(f64) -> f64
// CHECK-LABEL: func.func @m
// CHECK-NEXT:    %a = llvm.call_intrinsic "llvm.sin.f64"(%x) : (f64) -> f64
// CHECK-NEXT:    %b = llvm.call_intrinsic "llvm.tanh.f64"(%a) : (f64) -> f64
// CHECK-NEXT:    %c = llvm.call_intrinsic "llvm.pow.f64"(%b, %y) : (f64, f64) -> f64
// CHECK-NEXT:    %d = llvm.call_intrinsic "llvm.sqrt.f64"(%c) : (f64) -> f64
// CHECK-NEXT:    %e = llvm.call_intrinsic "llvm.fma.f64"(%d, %x, %y) : (f64, f64, f64) -> f64
// CHECK-NEXT:    %[[N:.+]] = llvm.sext %k : i32 to i64
// CHECK-NEXT:    %[[F:.+]] = llvm.call @__tpc_powi_f64(%e, %[[N]]) : (f64, i64) -> f64
// CHECK-NEXT:    %g = llvm.call @expm1(%[[F]]) : (f64) -> f64
// CHECK-NEXT:    %h = llvm.call_intrinsic "llvm.cos.f32"(%s) : (f32) -> f32
// CHECK-NOT:   math.
