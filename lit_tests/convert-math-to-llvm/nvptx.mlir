// RUN: tpc opt %s -p 'convert-math-to-llvm{target=nvptx}' | filecheck %s

func.func @m(%x: f64, %y: f64, %k: i64, %s: f32) -> f32 {
  %a = math.sin %x : f64
  %b = math.exp %a : f64
  %c = math.powf %b, %y : f64
  %d = math.sqrt %c : f64
  %e = math.absf %d : f64
  %f = math.fpowi %e, %k : f64, i64
  %g = math.tanh %s : f32
  %h = math.floor %g : f32
  return %h : f32
}

// Transcendentals call libdevice; sqrt/fabs/floor stay intrinsics.
// CHECK:       llvm.func @__nv_sin(f64) -> f64
// CHECK-NEXT:  llvm.func @__nv_exp(f64) -> f64
// CHECK-NEXT:  llvm.func @__nv_pow(f64, f64) -> f64
// CHECK-NEXT:  llvm.func @__nv_powi(f64, i32) -> f64
// CHECK-NEXT:  llvm.func @__nv_tanhf(f32) -> f32
// CHECK-LABEL: func.func @m
// CHECK-NEXT:    %a = llvm.call @__nv_sin(%x) : (f64) -> f64
// CHECK-NEXT:    %b = llvm.call @__nv_exp(%a) : (f64) -> f64
// CHECK-NEXT:    %c = llvm.call @__nv_pow(%b, %y) : (f64, f64) -> f64
// CHECK-NEXT:    %d = llvm.call_intrinsic "llvm.sqrt.f64"(%c) : (f64) -> f64
// CHECK-NEXT:    %e = llvm.call_intrinsic "llvm.fabs.f64"(%d) : (f64) -> f64
// CHECK-NEXT:    %[[N:.+]] = llvm.trunc %k : i64 to i32
// CHECK-NEXT:    %{{.+}} = llvm.call @__nv_powi(%e, %[[N]]) : (f64, i32) -> f64
// CHECK-NEXT:    %g = llvm.call @__nv_tanhf(%s) : (f32) -> f32
// CHECK-NEXT:    %h = llvm.call_intrinsic "llvm.floor.f32"(%g) : (f32) -> f32
// CHECK-NOT:   __tpc_powi
