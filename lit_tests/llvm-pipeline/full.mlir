// RUN: tpc opt %s -p convert-scf-to-cf,convert-arith-to-llvm,convert-math-to-llvm,convert-memref-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,reconcile-unrealized-casts | filecheck %s

// The whole ladder (what tpc.passes.llvm_pipeline.lower_to_llvm runs): only
// llvm ops remain, every cast pair has been folded away.
func.func @norm(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %x = memref.load %a[%i] : memref<?xf64>
    %sq = arith.mulf %x, %x : f64
    %t = arith.addf %acc, %sq : f64
    scf.yield %t : f64
  }
  %s = math.sqrt %r : f64
  return %s : f64
}

// CHECK:       llvm.func @norm(%a: !llvm.ptr, %n: i64) -> f64 {
// CHECK:         llvm.br ^[[HEAD:.+]](%{{.+}}, %{{.+}} : i64, f64)
// CHECK-NEXT:  ^[[HEAD]](%i: i64, %acc: f64):
// CHECK-NEXT:    %[[C:.+]] = llvm.icmp "slt" %i, %n : i64
// CHECK-NEXT:    llvm.cond_br %[[C]], ^[[BODY:.+]], ^[[EXIT:.+]]
// CHECK-NEXT:  ^[[BODY]]:
// CHECK-NEXT:    %[[P:.+]] = llvm.getelementptr inbounds %a[%i] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT:    %[[X:.+]] = llvm.load %[[P]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT:    %sq = llvm.fmul %[[X]], %[[X]] : f64
// CHECK-NEXT:    %t = llvm.fadd %acc, %sq : f64
// CHECK:         llvm.br ^[[HEAD]]
// CHECK:       ^[[EXIT]]:
// CHECK-NEXT:    %s = llvm.call_intrinsic "llvm.sqrt.f64"(%acc) : (f64) -> f64
// CHECK-NEXT:    llvm.return %s : f64
// CHECK-NOT:   unrealized_conversion_cast
// CHECK-NOT:   {{arith|scf|cf|memref|math|func}}\.
