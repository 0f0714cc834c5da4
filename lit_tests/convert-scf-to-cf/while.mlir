// RUN: tpc opt %s -p convert-scf-to-cf | filecheck %s

// scf.while is what xDSL's own convert-scf-to-cf lacks.
func.func @halve(%n0: i64) -> i64 {
  %c1 = arith.constant 1 : i64
  %r = scf.while (%n = %n0) : (i64) -> i64 {
    %go = arith.cmpi sgt, %n, %c1 : i64
    scf.condition(%go) %n : i64
  } do {
  ^bb0(%m: i64):
    %h = arith.shrsi %m, %c1 : i64
    scf.yield %h : i64
  }
  return %r : i64
}

// CHECK-LABEL: func.func @halve(%n0: i64) -> i64 {
// CHECK:         %c1 = arith.constant 1 : i64
// CHECK-NEXT:    cf.br ^[[BEFORE:.+]](%n0 : i64)
// CHECK-NEXT:  ^[[BEFORE]](%n: i64):
// CHECK-NEXT:    %go = arith.cmpi sgt, %n, %c1 : i64
// CHECK-NEXT:    cf.cond_br %go, ^[[AFTER:.+]](%n : i64), ^[[EXIT:.+]]
// CHECK-NEXT:  ^[[AFTER]](%m: i64):
// CHECK-NEXT:    %h = arith.shrsi %m, %c1 : i64
// CHECK-NEXT:    cf.br ^[[BEFORE]](%h : i64)
// CHECK-NEXT:  ^[[EXIT]]:
// CHECK-NEXT:    func.return %n : i64
// CHECK-NOT:   scf.
