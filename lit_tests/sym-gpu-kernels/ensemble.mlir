// RUN: tpc opt %s -p sym-gpu-kernels | filecheck %s

// A two-component system after sym-lower-loops: the pass adds the ensemble_run kernel, which
// reads the member index from the NVVM special registers, guards it with the count, offsets
// every per-member buffer and calls `run`, storing its status.
func.func @energy(%q: memref<?xf64>, %p: memref<?xf64>, %par: memref<?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %x = memref.load %q[%c0] : memref<?xf64>
  func.return %x : f64
}
func.func @grad_q(%q: memref<?xf64>, %p: memref<?xf64>, %par: memref<?xf64>, %g: memref<?xf64>) {
  func.return
}
func.func @run(%q: memref<?xf64>, %p: memref<?xf64>, %par: memref<?xf64>, %dt: f64, %ns: index, %st: index, %s0: index, %oq: memref<?xf64>, %op: memref<?xf64>, %oh: memref<?xf64>, %g: memref<?xf64>, %w: memref<?xf64>) -> i64 {
  %ok = arith.constant -1 : i64
  func.return %ok : i64
}

// CHECK:      func.func @run(
// CHECK:      func.func @ensemble_run(%[[Q:.+]]: memref<?xf64>, %{{.+}}: memref<?xf64>, %{{.+}}: memref<?xf64>, %{{.+}}: f64, %[[NS:.+]]: index, %{{.+}}: index, %{{.+}}: index, %{{.+}}: memref<?xf64>, %{{.+}}: memref<?xf64>, %{{.+}}: memref<?xf64>, %{{.+}}: memref<?xf64>, %{{.+}}: memref<?xf64>, %[[STATUS:.+]]: memref<?xf64>, %[[COUNT:.+]]: index, %[[PSTRIDE:.+]]: index, %[[N:.+]]: index) attributes {tpc.kernel} {
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ctaid.x"() : () -> i32
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ntid.x"() : () -> i32
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.tid.x"() : () -> i32
// CHECK:        %[[B:.+]] = arith.addi
// CHECK-NEXT:   %[[IN:.+]] = arith.cmpi ult, %[[B]], %[[COUNT]] : index
// CHECK-NEXT:   scf.if %[[IN]] {
// CHECK-NEXT:     %[[BN:.+]] = arith.muli %[[B]], %[[N]] : index
// CHECK:          %[[QP:.+]] = builtin.unrealized_conversion_cast %[[Q]] : memref<?xf64> to !llvm.ptr
// CHECK-NEXT:     %[[OFF:.+]] = arith.index_cast %[[BN]] : index to i64
// CHECK-NEXT:     %{{.+}} = llvm.getelementptr inbounds %[[QP]][%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK:          %[[ST:.+]] = func.call @run(
// CHECK-NEXT:     %[[F:.+]] = arith.sitofp %[[ST]] : i64 to f64
// CHECK-NEXT:     memref.store %[[F]], %[[STATUS]][%[[B]]] : memref<?xf64>
// CHECK:        func.return
