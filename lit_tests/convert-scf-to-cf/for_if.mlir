// RUN: tpc opt %s -p convert-scf-to-cf | filecheck %s

// for with iter_args and an if with results, nested: handled by the reused xDSL patterns.
func.func @count_pos(%a: memref<?xf64>, %n: index) -> index {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%k = %c0) -> (index) {
    %x = memref.load %a[%i] : memref<?xf64>
    %pos = arith.cmpf ogt, %x, %z : f64
    %k2 = scf.if %pos -> (index) {
      %k1 = arith.addi %k, %c1 : index
      scf.yield %k1 : index
    } else {
      scf.yield %k : index
    }
    scf.yield %k2 : index
  }
  return %r : index
}

// CHECK-LABEL: func.func @count_pos
// CHECK:         cf.br ^[[HEAD:.+]](%c0, %c0 : index, index)
// CHECK-NEXT:  ^[[HEAD]](%i: index, %k: index):
// CHECK-NEXT:    %[[C:.+]] = arith.cmpi slt, %i, %n : index
// CHECK-NEXT:    cf.cond_br %[[C]], ^[[BODY:.+]], ^[[EXIT:.+]]
// CHECK-NEXT:  ^[[BODY]]:
// CHECK:         cf.cond_br %pos, ^[[THEN:.+]], ^[[ELSE:.+]]
// CHECK-NEXT:  ^[[THEN]]:
// CHECK-NEXT:    %k1 = arith.addi %k, %c1 : index
// CHECK-NEXT:    cf.br ^[[JOIN:.+]](%k1 : index)
// CHECK-NEXT:  ^[[ELSE]]:
// CHECK-NEXT:    cf.br ^[[JOIN]](%k : index)
// CHECK-NEXT:  ^[[JOIN]](%k2: index):
// CHECK:         cf.br ^[[HEAD]]
// CHECK:       ^[[EXIT]]:
// CHECK-NEXT:    func.return %k : index
// CHECK-NOT:   scf.
