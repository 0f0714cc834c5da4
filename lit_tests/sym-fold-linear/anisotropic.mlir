// RUN: tpc opt %s -p sym-fold-linear | filecheck %s
// Input: `tpc compile examples/anisotropic.ham --emit=sym --no-fold`. A non-separable quadratic
// H with a linear term (an affine map) folds too; the midpoint scheme is kept as the step code.

// CHECK:      ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = false}
// CHECK:      sym.scheme @midpoint for @Anisotropic
// CHECK-NEXT:   sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol 1.000000e-15
// CHECK-NEXT: }
// CHECK-NEXT: sym.propagate @midpoint save ["q", "p", "H"] method "auto"
// CHECK-NOT:  sym.evolve

builtin.module {
  ham.system @Anisotropic {
    ham.param @wx = 1.000000e+00
    ham.param @wy = 1.700000e+00
    ham.param @omega = 3.000000e-01
    ham.param @f = 2.000000e-01
    ham.state @q, @p : !ham.field<[2]>
    ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = false} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @wx : f64
      %2 = arith.constant 0 : index
      %3 = ham.param_ref @wy : f64
      %4 = arith.constant 1 : index
      %5 = ham.param_ref @f : f64
      %6 = ham.param_ref @omega : f64
      %7 = ham.load @p[] : vector<2xf64>
      %8 = ham.dot %7, %7 : vector<2xf64>
      %9 = arith.divf %8, %0 : f64
      %10 = ham.ipow %1, 2 : f64
      %11 = ham.load @q[%2] : f64
      %12 = ham.ipow %11, 2 : f64
      %13 = arith.mulf %10, %12 : f64
      %14 = ham.ipow %3, 2 : f64
      %15 = ham.load @q[%4] : f64
      %16 = ham.ipow %15, 2 : f64
      %17 = arith.mulf %14, %16 : f64
      %18 = arith.addf %13, %17 : f64
      %19 = arith.divf %18, %0 : f64
      %20 = arith.mulf %5, %11 : f64
      %21 = arith.addf %19, %20 : f64
      %22 = arith.addf %9, %21 : f64
      %23 = ham.load @p[%4] : f64
      %24 = arith.mulf %11, %23 : f64
      %25 = ham.load @p[%2] : f64
      %26 = arith.mulf %15, %25 : f64
      %27 = arith.subf %24, %26 : f64
      %28 = arith.mulf %6, %27 : f64
      %29 = arith.subf %22, %28 : f64
      ham.yield %29 : f64
    }
    ham.gradient @q {
      %30 = arith.constant 2.000000e+00 : f64
      %31 = ham.param_ref @wx : f64
      %32 = arith.constant 0 : index
      %33 = ham.param_ref @wy : f64
      %34 = arith.constant 1 : index
      %35 = ham.param_ref @f : f64
      %36 = ham.param_ref @omega : f64
      %37 = ham.ipow %31, 2 : f64
      %38 = ham.load @q[%32] : f64
      %39 = ham.ipow %33, 2 : f64
      %40 = ham.load @q[%34] : f64
      %41 = ham.load @p[%34] : f64
      %42 = ham.load @p[%32] : f64
      %43 = arith.negf %36 : f64
      %44 = arith.mulf %36, %42 : f64
      ham.accumulate @q[%34], %44 : f64
      %45 = arith.mulf %43, %41 : f64
      ham.accumulate @q[%32], %45 : f64
      ham.accumulate @q[%32], %35 : f64
      %46 = arith.constant 5.000000e-01 : f64
      %47 = arith.mulf %46, %39 : f64
      %48 = arith.mulf %30, %40 : f64
      %49 = arith.mulf %47, %48 : f64
      ham.accumulate @q[%34], %49 : f64
      %50 = arith.mulf %46, %37 : f64
      %51 = arith.mulf %30, %38 : f64
      %52 = arith.mulf %50, %51 : f64
      ham.accumulate @q[%32], %52 : f64
      ham.yield
    }
    ham.gradient @p {
      %53 = arith.constant 0 : index
      %54 = arith.constant 1 : index
      %55 = ham.param_ref @omega : f64
      %56 = ham.load @p[] : vector<2xf64>
      %57 = ham.load @q[%53] : f64
      %58 = ham.load @q[%54] : f64
      %59 = arith.negf %55 : f64
      %60 = arith.mulf %55, %58 : f64
      ham.accumulate @p[%53], %60 : f64
      %61 = arith.mulf %59, %57 : f64
      ham.accumulate @p[%54], %61 : f64
      %62 = arith.constant 5.000000e-01 : f64
      %63 = ham.broadcast %62 : vector<2xf64>
      %64 = arith.mulf %63, %56 : vector<2xf64>
      ham.accumulate @p[], %64 : vector<2xf64>
      ham.accumulate @p[], %64 : vector<2xf64>
      ham.yield
    }
  }
  sym.scheme @midpoint for @Anisotropic attributes {order = 2 : i64, integrator = "midpoint", force_evals = 0 : i64} {
    sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol 1.000000e-15
  }
  sym.evolve @midpoint save ["q", "p", "H"]
}
