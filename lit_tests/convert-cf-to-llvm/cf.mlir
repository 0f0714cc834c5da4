// RUN: tpc opt %s -p convert-cf-to-llvm | filecheck %s

// Non-entry block arguments become phis, so index ones are retyped to i64.
func.func @loop(%n: index, %x: f64) -> f64 {
  %c0 = arith.constant 0 : index
  cf.br ^head(%c0, %x : index, f64)
^head(%i: index, %acc: f64):
  %go = arith.cmpi slt, %i, %n : index
  cf.cond_br %go, ^body, ^exit(%acc : f64)
^body:
  %c1 = arith.constant 1 : index
  %j = arith.addi %i, %c1 : index
  %y = arith.addf %acc, %x : f64
  cf.br ^head(%j, %y : index, f64)
^exit(%r: f64):
  return %r : f64
}

// CHECK-LABEL: func.func @loop(%n: index, %x: f64) -> f64 {
// CHECK:         %[[C0:.+]] = builtin.unrealized_conversion_cast %c0 : index to i64
// CHECK-NEXT:    llvm.br ^[[HEAD:.+]](%[[C0]], %x : i64, f64)
// CHECK-NEXT:  ^[[HEAD]](%[[I64:.+]]: i64, %acc: f64):
// CHECK-NEXT:    %[[I:.+]] = builtin.unrealized_conversion_cast %[[I64]] : i64 to index
// CHECK-NEXT:    %go = arith.cmpi slt, %[[I]], %n : index
// CHECK-NEXT:    llvm.cond_br %go, ^[[BODY:.+]], ^[[EXIT:.+]](%acc : f64)
// CHECK-NEXT:  ^[[BODY]]:
// CHECK:         %[[J:.+]] = builtin.unrealized_conversion_cast %j : index to i64
// CHECK-NEXT:    llvm.br ^[[HEAD]](%[[J]], %y : i64, f64)
// CHECK-NEXT:  ^[[EXIT]](%r: f64):
// CHECK-NEXT:    func.return %r : f64
// CHECK-NOT:     cf.
