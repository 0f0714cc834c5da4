// RUN: tpc opt %s -p convert-memref-to-llvm | filecheck %s

func.func @axpy(%x: memref<?xf64>, %y: memref<?xf64>, %i: index, %a: f64, %m: index) {
  %s = memref.alloca() : memref<4xf64>
  %d = memref.alloca(%m) : memref<?xi64>
  %xv = memref.load %x[%i] : memref<?xf64>
  %t = arith.mulf %a, %xv : f64
  memref.store %t, %s[%i] : memref<4xf64>
  memref.store %t, %y[%i] : memref<?xf64>
  return
}

// CHECK-LABEL: func.func @axpy
// Static allocas move to the entry block start; dynamic ones stay put.
// CHECK-NEXT:    %[[FOUR:.+]] = llvm.mlir.constant(4) : i64
// CHECK-NEXT:    %[[SP:.+]] = llvm.alloca %[[FOUR]] x f64 {alignment = 8 : i64} : (i64) -> !llvm.ptr
// CHECK-NEXT:    %[[S:.+]] = builtin.unrealized_conversion_cast %[[SP]] : !llvm.ptr to memref<4xf64>
// CHECK-NEXT:    %[[M:.+]] = builtin.unrealized_conversion_cast %m : index to i64
// CHECK-NEXT:    llvm.alloca %[[M]] x i64 {alignment = 8 : i64} : (i64) -> !llvm.ptr
// CHECK-NEXT:    %[[XP:.+]] = builtin.unrealized_conversion_cast %x : memref<?xf64> to !llvm.ptr
// CHECK-NEXT:    %[[I:.+]] = builtin.unrealized_conversion_cast %i : index to i64
// CHECK-NEXT:    %[[XA:.+]] = llvm.getelementptr inbounds %[[XP]][%[[I]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT:    %[[XV:.+]] = llvm.load %[[XA]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT:    %t = arith.mulf %a, %[[XV]] : f64
// CHECK-NEXT:    %[[SB:.+]] = builtin.unrealized_conversion_cast %[[S]] : memref<4xf64> to !llvm.ptr
// CHECK-NEXT:    %[[I2:.+]] = builtin.unrealized_conversion_cast %i : index to i64
// CHECK-NEXT:    %[[SA:.+]] = llvm.getelementptr inbounds %[[SB]][%[[I2]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT:    llvm.store %t, %[[SA]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK:         llvm.getelementptr inbounds
// CHECK-NEXT:    llvm.store %t
// CHECK-NOT:     memref.
