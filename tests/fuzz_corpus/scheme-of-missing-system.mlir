// passes: sym-lower-loops
builtin.module {
  ham.system @Anissotropic {
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
      %45 = arith.mulf %43, %41 : f64
      %46 = arith.constant 5.000000e-01 : f64
      %47 = arith.mulf %46, %39 : f64
      %48 = arith.mulf %30, %40 : f64
      %49 = arith.mulf %47, %48 : f64
      %50 = arith.addf %44, %49 : f64
      ham.accumulate @q[%34], %50 : f64
      %51 = arith.mulf %46, %37 : f64
      %52 = arith.mulf %30, %38 : f64
      %53 = arith.mulf %51, %52 : f64
      %54 = arith.addf %45, %35 : f64
      %55 = arith.addf %54, %53 : f64
      ham.accumulate @q[%32], %55 : f64
      ham.yield
    }
    ham.gradient @p {
      %56 = arith.constant 0 : index
      %57 = arith.constant 1 : index
      %58 = ham.param_ref @omega : f64
      %59 = ham.load @p[] : vector<2xf64>
      %60 = ham.load @q[%56] : f64
      %61 = ham.load @q[%57] : f64
      %62 = arith.negf %58 : f64
      %63 = arith.mulf %58, %61 : f64
      ham.accumulate @p[%56], %63 : f64
      %64 = arith.mulf %62, %60 : f64
      ham.accumulate @p[%57], %64 : f64
      %65 = arith.constant 5.000000e-01 : f64
      %66 = ham.broadcast %65 : vector<2xf64>
      %67 = arith.mulf %66, %59 : vector<2xf64>
      %68 = arith.addf %67, %67 : vector<2xf64>
      ham.accumulate @p[], %68 : vector<2xf64>
      ham.yield
    }
  }
  sym.scheme @midpoint for @Anisotropic attributes {order = 2 : i64, integrator = "midpoint", force_evals = 0 : i64} {
    sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol 1.000000e-15
  }
  sym.propagate @midpoint save ["q", "p", "H"] method "auto"
}
