// RUN: tpc opt %s -p 'sym-lower-loops{precision=f32}' | filecheck %s
// RUN: tpc opt %s -p 'sym-lower-loops{newton3=false precision=f32}' | filecheck %s
// RUN: tpc opt %S/midpoint.mlir -p 'sym-lower-loops{precision=f32}' | filecheck %s --check-prefix=MID
// RUN: tpc opt %s -p sym-lower-loops | filecheck %s --check-prefix=F64
// RUN: tpc opt %s -p 'sym-lower-loops{precision=f32}' | not grep f64
// RUN: tpc opt %S/midpoint.mlir -p 'sym-lower-loops{precision=f32}' | not grep f64
// RUN: not tpc opt %s -p 'sym-lower-loops{precision=f16}' 2>&1 | filecheck %s --check-prefix=BAD

// precision=f32: every buffer is memref<?xf32>, the ham IR's f64 constants become f32 ones,
// energy returns f32 and run takes dt as f32; nothing f64 is left. (Input: the sym stage of
// examples/kepler.ham, `tpc compile examples/kepler.ham --emit=sym --no-fold`.)

// CHECK-NOT:   f64
// CHECK-LABEL: func.func @energy(%{{.*}}: memref<?xf32>, %{{.*}}: memref<?xf32>, %{{.*}}: memref<?xf32>) -> f32
// CHECK:         arith.constant 2.000000e+00 : f32
// CHECK:         memref.load %{{.*}} : memref<?xf32>
// CHECK:         math.sqrt %{{.*}} : f32
// CHECK:         func.return %{{.*}} : f32
// CHECK-LABEL: func.func @grad_q(
// CHECK-SAME:    memref<?xf32>) attributes {tpc.noalias}
// CHECK-LABEL: func.func @grad_p(
// CHECK:         arith.constant 5.000000e-01 : f32
// CHECK-LABEL: func.func @run(%{{.*}}: memref<?xf32>, %{{.*}}: memref<?xf32>, %{{.*}}: memref<?xf32>, %{{.*}}: f32, %{{.*}}: index
// CHECK:         func.call @grad_q
// CHECK:         arith.mulf %{{.*}}, %{{.*}} : f32
// CHECK:         func.call @energy(%{{.*}}) : ({{.*}}) -> f32
// CHECK-NOT:   f64

// The implicit midpoint tolerance scales with float32 epsilon: max(1e-15, 4 * 2^-23), and the
// round-off stall threshold is 64 * 2^-23 instead of 1e-10.
// MID-NOT:     f64
// MID-LABEL:   func.func @run(
// MID:           arith.constant 4.76837158e-07 : f32
// MID:           scf.while
// MID:           arith.constant 7.62939453e-06 : f32
// MID-NOT:     f64

// BAD: unknown precision 'f16' (known: f64, f32)

// The default stays f64.
// F64-LABEL:   func.func @energy(%{{.*}}: memref<?xf64>, %{{.*}}: memref<?xf64>, %{{.*}}: memref<?xf64>) -> f64
// F64-NOT:     f32

builtin.module {
  ham.system @Kepler {
    ham.param @mu = 1.000000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at examples/kepler.ham:5:30"} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @mu : f64
      %2 = ham.load @p[] : vector<3xf64>
      %3 = ham.dot %2, %2 : vector<3xf64>
      %4 = arith.divf %3, %0 : f64
      %5 = ham.load @q[] : vector<3xf64>
      %6 = ham.norm %5 : vector<3xf64>
      %7 = arith.divf %1, %6 : f64
      %8 = arith.subf %4, %7 : f64
      ham.yield %8 : f64
    }
    ham.gradient @q {
      %9 = ham.param_ref @mu : f64
      %10 = ham.load @q[] : vector<3xf64>
      %11 = ham.norm %10 : vector<3xf64>
      %12 = arith.divf %9, %11 : f64
      %13 = arith.mulf %11, %11 : f64
      %14 = arith.divf %12, %13 : f64
      %15 = ham.broadcast %14 : vector<3xf64>
      %16 = arith.mulf %15, %10 : vector<3xf64>
      ham.accumulate @q[], %16 : vector<3xf64>
      ham.yield
    }
    ham.gradient @p {
      %17 = ham.load @p[] : vector<3xf64>
      %18 = arith.constant 5.000000e-01 : f64
      %19 = ham.broadcast %18 : vector<3xf64>
      %20 = arith.mulf %19, %17 : vector<3xf64>
      %21 = arith.addf %20, %20 : vector<3xf64>
      ham.accumulate @p[], %21 : vector<3xf64>
      ham.yield
    }
  }
  sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
