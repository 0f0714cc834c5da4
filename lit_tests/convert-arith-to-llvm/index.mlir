// RUN: tpc opt %s -p convert-arith-to-llvm | filecheck %s

// index values are i64 in LLVM; casts bridge to ops not yet converted
// (here func.return), and reconcile-unrealized-casts removes them later.
func.func @idx(%i: index, %n: i32, %x: f64) -> index {
  %c3 = arith.constant 3 : index
  %a = arith.addi %i, %c3 : index
  %w = arith.index_cast %n : i32 to index
  %m = arith.maxsi %a, %w : index
  %f = arith.floordivsi %m, %c3 : index
  %k = arith.fptosi %x : f64 to i64
  %kf = arith.sitofp %k : i64 to f64
  %ki = arith.index_cast %k : i64 to index
  %r = arith.muli %f, %ki : index
  return %r : index
}

// CHECK-LABEL: func.func @idx(%i: index, %n: i32, %x: f64) -> index {
// CHECK-NEXT:    %[[C3:.+]] = llvm.mlir.constant(3) : i64
// CHECK:         %[[I:.+]] = builtin.unrealized_conversion_cast %i : index to i64
// CHECK:         llvm.add %[[I]], %{{.+}} : i64
// CHECK:         llvm.sext %n : i32 to i64
// CHECK:         %[[CMP:.+]] = llvm.icmp "sgt" %{{.+}}, %{{.+}} : i64
// CHECK-NEXT:    llvm.select %[[CMP]], %{{.+}}, %{{.+}} : i1, i64
// CHECK:         %[[Q:.+]] = llvm.sdiv %{{.+}}, %{{.+}} : i64
// CHECK-NEXT:    llvm.srem
// CHECK:         llvm.xor %{{.+}}, %{{.+}} : i1
// CHECK:         %[[QM1:.+]] = llvm.sub %[[Q]], %{{.+}} : i64
// CHECK-NEXT:    llvm.select %{{.+}}, %[[QM1]], %[[Q]] : i1, i64
// CHECK:         %[[K:.+]] = llvm.call_intrinsic "llvm.fptosi.sat.i64.f64"(%x) : (f64) -> i64
// CHECK-NEXT:    llvm.sitofp %[[K]] : i64 to f64
// CHECK:         %[[R:.+]] = llvm.mul %{{.+}}, %{{.+}} : i64
// CHECK-NEXT:    %[[RI:.+]] = builtin.unrealized_conversion_cast %[[R]] : i64 to index
// CHECK-NEXT:    func.return %[[RI]] : index
// CHECK-NOT:     arith.
