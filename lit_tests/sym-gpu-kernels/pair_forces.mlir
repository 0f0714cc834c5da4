// RUN: tpc opt %s -p sym-gpu-kernels,sym-lower-loops,sym-gpu-kernels | filecheck %s

// pair_forces for a ring of phase oscillators (H = sum p^2/2 - K sum(i < j: cos(q[i] - q[j]))).
// The first sym-gpu-kernels run sees the ham IR and stashes the gather kernel in a module
// attribute, sym-lower-loops keeps it, the second run merges it next to ensemble_run.
// Thread k reads its index from the special registers, clamps it to N - 1, hoists q[k] out of
// the j loop, and tiles j: each tile (step ntid.x) loads q[t0 + tid] (guarded by < N) into
// the addrspace(3) array, barrier, gathers body(k, j) for j > k (the accumulate to the FIRST
// index: -(-K sin(q[k] - q[j]))) and body(j, k) for j < k (the one to the SECOND index:
// -K sin(q[j] - q[k])), barrier; only threads with k < N store their row.
builtin.module {
  ham.system @Ring {
    ham.param @K = 1.500000e+00
    ham.size @N
    ham.state @q, @p : !ham.field<[N]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = arith.constant 2.000000e+00 : f64
      %3 = ham.param_ref @K : f64
      %4 = ham.sum %5 in %0 to %1 : f64 {
        %6 = ham.load @p[%5] : f64
        %7 = ham.ipow %6, 2 : f64
        %8 = arith.divf %7, %2 : f64
        ham.yield %8 : f64
      }
      %9 = ham.pair_sum %10 < %11 in %0 to %1 : f64 {
        %12 = ham.load @q[%10] : f64
        %13 = ham.load @q[%11] : f64
        %14 = arith.subf %12, %13 : f64
        %15 = math.cos %14 : f64
        ham.yield %15 : f64
      }
      %16 = arith.mulf %3, %9 : f64
      %17 = arith.subf %4, %16 : f64
      ham.yield %17 : f64
    }
    ham.gradient @q {
      %18 = arith.constant 0 : index
      %19 = ham.dim @N : index
      %20 = ham.param_ref @K : f64
      %21 = arith.negf %20 : f64
      ham.pair_sum %22 < %23 in %18 to %19 {
        %24 = ham.load @q[%22] : f64
        %25 = ham.load @q[%23] : f64
        %26 = arith.subf %24, %25 : f64
        %27 = math.sin %26 : f64
        %28 = arith.mulf %21, %27 : f64
        %29 = arith.negf %28 : f64
        ham.accumulate @q[%23], %28 : f64
        ham.accumulate @q[%22], %29 : f64
        ham.yield
      }
      ham.yield
    }
    ham.gradient @p {
      %30 = arith.constant 0 : index
      %31 = ham.dim @N : index
      %32 = arith.constant 2.000000e+00 : f64
      ham.sum %33 in %30 to %31 {
        %34 = ham.load @p[%33] : f64
        %35 = arith.constant 5.000000e-01 : f64
        %36 = arith.mulf %32, %34 : f64
        %37 = arith.mulf %35, %36 : f64
        ham.accumulate @p[%33], %37 : f64
        ham.yield
      }
      ham.yield
    }
  }
  sym.scheme @leapfrog for @Ring attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}

// CHECK:      llvm.mlir.global internal @__tpc_tile_q() {addr_space = 3 : i32, alignment = 8 : i64} : !llvm.array<256 x f64>
// CHECK:      func.func @pair_forces(%[[Q:.+]]: memref<?xf64>, %{{.+}}: memref<?xf64>, %[[PAR:.+]]: memref<?xf64>, %[[N:.+]]: index, %[[OUT:.+]]: memref<?xf64>) attributes {tpc.kernel} {
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.tid.x"() : () -> i32
// CHECK:        %[[TID:.+]] = arith.index_cast %{{.+}} : i64 to index
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ctaid.x"() : () -> i32
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ntid.x"() : () -> i32
// CHECK:        %[[K:.+]] = arith.addi %{{.+}}, %[[TID]] : index
// CHECK-NEXT:   %[[ACTIVE:.+]] = arith.cmpi ult, %[[K]], %[[N]] : index
// CHECK:        %[[KC:.+]] = arith.select %[[ACTIVE]], %[[K]], %{{.+}} : index
// CHECK:        %[[QK:.+]] = memref.load %[[Q]][%[[KC]]] : memref<?xf64>
// CHECK:        %[[STEP:.+]] = arith.index_cast %{{.+}} : i64 to index
// CHECK:        %[[G:.+]] = scf.for %[[T0:.+]] = %{{.+}} to %[[N]] step %[[STEP]] iter_args(%[[ACC:.+]] = %{{.+}}) -> (f64) {
// CHECK-NEXT:     %[[JT:.+]] = arith.addi %[[T0]], %[[TID]] : index
// CHECK-NEXT:     %[[INB:.+]] = arith.cmpi ult, %[[JT]], %[[N]] : index
// CHECK-NEXT:     scf.if %[[INB]] {
// CHECK-NEXT:       %[[QJ:.+]] = memref.load %[[Q]][%[[JT]]] : memref<?xf64>
// CHECK-NEXT:       llvm.mlir.addressof @__tpc_tile_q : !llvm.ptr<3>
// CHECK:            llvm.store %[[QJ]], %{{.+}} : f64, !llvm.ptr<3>
// CHECK:          llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:     %[[LEFT:.+]] = arith.subi %[[N]], %[[T0]] : index
// CHECK-NEXT:     %[[CNT:.+]] = arith.minui %[[STEP]], %[[LEFT]] : index
// CHECK-NEXT:     %[[INNER:.+]] = scf.for %[[JJ:.+]] = %{{.+}} to %[[CNT]] step %{{.+}} iter_args(%{{.+}} = %[[ACC]]) -> (f64) {
// CHECK-NEXT:       %[[J:.+]] = arith.addi %[[T0]], %[[JJ]] : index
// CHECK-NEXT:       %[[GT:.+]] = arith.cmpi ugt, %[[J]], %[[KC]] : index
// CHECK-NEXT:       scf.if %[[GT]] -> (f64) {
// CHECK:              %[[T1:.+]] = llvm.load %{{.+}} : !llvm.ptr<3> -> f64
// CHECK-NEXT:         %[[D1:.+]] = arith.subf %[[QK]], %[[T1]] : f64
// CHECK-NEXT:         math.sin %[[D1]] : f64
// CHECK:            } else {
// CHECK-NEXT:         %[[LT:.+]] = arith.cmpi ult, %[[J]], %[[KC]] : index
// CHECK-NEXT:         scf.if %[[LT]] -> (f64) {
// CHECK:                %[[T2:.+]] = llvm.load %{{.+}} : !llvm.ptr<3> -> f64
// CHECK-NEXT:           arith.subf %[[T2]], %{{.+}} : f64
// CHECK:          llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:     scf.yield %[[INNER]] : f64
// CHECK-NEXT:   }
// CHECK-NEXT:   scf.if %[[ACTIVE]] {
// CHECK-NEXT:     memref.store %[[G]], %[[OUT]][%[[K]]] : memref<?xf64>
// CHECK:        func.func @row_grad_p(
// CHECK:        func.func @axpy(
// CHECK:        func.func @ensemble_run(
