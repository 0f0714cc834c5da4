// RUN: tpc opt %s -p sym-gpu-kernels,sym-lower-loops,sym-gpu-kernels | filecheck %s

// block_run for the ring of phase oscillators (leapfrog, fsal): member b = ctaid.x owns the
// slices of q, p, params and the snapshot buffers at b; thread k = tid.x owns row k (active when
// k < N). The whole time loop is in the kernel: for each snapshot (run only while status[b] is
// -1), for each step: the fused kick (row k's dH/dq in gather form, with its tile barriers),
// a barrier (everyone has read q), the active threads update p[k], a barrier; the drift
// (row k's dH/dp, barrier, q[k] update, barrier); the finiteness check of row k (status[b] =
// the step), a barrier; after the steps, the closing kick; then the snapshot stores of row k.
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


// CHECK:      func.func @block_run(%[[Q:[0-9]+]]: memref<?xf64>, %[[P:[0-9]+]]: memref<?xf64>, %{{[0-9]+}}: memref<?xf64>, %[[N:[0-9]+]]: index, %{{[0-9]+}}: f64, %[[NS:[0-9]+]]: index, %[[ST:[0-9]+]]: index, %{{[0-9]+}}: index, %[[OQ:[0-9]+]]: memref<?xf64>, %[[OP:[0-9]+]]: memref<?xf64>, %[[STATUS:[0-9]+]]: memref<?xf64>, %{{[0-9]+}}: index) attributes {tpc.kernel} {
// CHECK-NEXT:   llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ctaid.x"() : () -> i32
// CHECK:        llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.tid.x"() : () -> i32
// CHECK:        %[[K:[0-9]+]] = arith.index_cast %{{[0-9]+}} : i64 to index
// CHECK-NEXT:   %[[ACTIVE:[0-9]+]] = arith.cmpi ult, %[[K]], %[[N]] : index
// CHECK:        scf.for %[[S:[0-9]+]] = %{{[0-9]+}} to %[[NS]] step
// CHECK:          memref.load %[[STATUS]]
// CHECK:          scf.for %{{[0-9]+}} = %{{[0-9]+}} to %[[ST]] step
// CHECK:            memref.load %[[STATUS]]
// The fused kick: a tiled gather (two barriers per tile), then barrier / update / barrier.
// CHECK:            llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ntid.x"
// CHECK:              llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK:              llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK:            llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:       scf.if %[[ACTIVE]] {
// CHECK:              memref.store %{{[0-9]+}}, %[[PB:[0-9]+]][%{{[0-9]+}}] : memref<?xf64>
// CHECK:            llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// The drift: dH/dp row k (no pair loop), barrier, q[k] update, barrier.
// CHECK:            arith.mulf
// CHECK:            llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK-NEXT:       scf.if %[[ACTIVE]] {
// CHECK:              memref.store %{{[0-9]+}}, %[[QB:[0-9]+]][%{{[0-9]+}}] : memref<?xf64>
// CHECK:            llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// The finiteness check of row k, then a barrier before the next step reads the status.
// CHECK:            arith.sitofp
// CHECK-NEXT:       scf.if %[[ACTIVE]] {
// CHECK:                memref.store %{{[0-9]+}}, %[[STATUS]][%{{[0-9]+}}] : memref<?xf64>
// CHECK:            llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// The closing kick at the snapshot boundary, then the snapshot of row k.
// CHECK:          memref.load %[[STATUS]]
// CHECK:          llvm.call_intrinsic "llvm.nvvm.read.ptx.sreg.ntid.x"
// CHECK:          scf.if %[[ACTIVE]] {
// CHECK:            memref.store %{{[0-9]+}}, %[[PB]][%{{[0-9]+}}] : memref<?xf64>
// CHECK:          llvm.call_intrinsic "llvm.nvvm.barrier0"() : () -> ()
// CHECK:          %{{[0-9]+}} = arith.muli %[[S]], %{{[0-9]+}} : index
// CHECK:          scf.if %[[ACTIVE]] {
// CHECK:            %[[VQ:[0-9]+]] = memref.load %[[QB]]
// CHECK:            memref.store %[[VQ]], %{{[0-9]+}}[%{{[0-9]+}}] : memref<?xf64>
// CHECK:            %[[VP:[0-9]+]] = memref.load %[[PB]]
// CHECK:            memref.store %[[VP]], %{{[0-9]+}}[%{{[0-9]+}}] : memref<?xf64>
