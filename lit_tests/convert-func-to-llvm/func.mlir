// RUN: tpc opt %s -p convert-func-to-llvm | filecheck %s

// Bare-pointer ABI: memrefs become !llvm.ptr, index becomes i64. Private
// definitions get internal linkage, public ones and declarations stay external.
func.func private @ext(f64) -> f64
func.func private @helper(%a: memref<?xf64>, %i: index) -> f64 {
  %v = memref.load %a[%i] : memref<?xf64>
  return %v : f64
}
func.func @entry(%a: memref<?xf64>, %n: index) -> index {
  %v = func.call @helper(%a, %n) : (memref<?xf64>, index) -> f64
  %w = func.call @ext(%v) : (f64) -> f64
  return %n : index
}

// CHECK:       llvm.func @ext(f64) -> f64
// CHECK:       llvm.func internal @helper(%[[AP:.+]]: !llvm.ptr, %[[I64:.+]]: i64) -> f64 {
// CHECK-NEXT:    %[[A:.+]] = builtin.unrealized_conversion_cast %[[AP]] : !llvm.ptr to memref<?xf64>
// CHECK-NEXT:    %[[I:.+]] = builtin.unrealized_conversion_cast %[[I64]] : i64 to index
// CHECK-NEXT:    %v = memref.load %[[A]][%[[I]]] : memref<?xf64>
// CHECK-NEXT:    llvm.return %v : f64
// CHECK:       llvm.func @entry(%{{.+}}: !llvm.ptr, %{{.+}}: i64) -> i64 {
// CHECK:         %[[A2:.+]] = builtin.unrealized_conversion_cast %{{.+}} : memref<?xf64> to !llvm.ptr
// CHECK-NEXT:    %[[N2:.+]] = builtin.unrealized_conversion_cast %{{.+}} : index to i64
// CHECK-NEXT:    %[[V:.+]] = llvm.call @helper(%[[A2]], %[[N2]]) : (!llvm.ptr, i64) -> f64
// CHECK-NEXT:    llvm.call @ext(%[[V]]) : (f64) -> f64
// CHECK-NEXT:    %[[R:.+]] = builtin.unrealized_conversion_cast %{{.+}} : index to i64
// CHECK-NEXT:    llvm.return %[[R]] : i64
// CHECK-NOT:     func.
