// passes: sym-lower-loops
builtin.module {
  ham.system @NBod {
    ham.param @G = 1.000000e+00
    ham.size @N
    ham.input @m : !ham.field<[N]>
    ham.state @q, @p : !ham.field<[N, 3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at /work/wt12/examples/nbody.ham:8:43"} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = arith.constant 2.000000e+00 : f64
      %3 = ham.param_ref @G : f64
      %4 = ham.sum %5 in %0 to %1 : f64 {
        %6 = ham.load @p[%5] : vector<3xf64>
        %7 = ham.dot %6, %6 : vector<3xf64>
        %8 = ham.load @m[%5] : f64
        %9 = arith.mulf %2, %8 : f64
        %10 = arith.divf %7, %9 : f64
        ham.yield %10 : f64
      }
      %11 = ham.pair_sum %12 < %13 in %0 to %1 : f64 {
        %14 = ham.load @m[%12] : f64
        %15 = arith.mulf %3, %14 : f64
        %16 = ham.load @m[%13] : f64
        %17 = arith.mulf %15, %16 : f64
        %18 = ham.load @q[%12] : vector<3xf64>
        %19 = ham.load @q[%13] : vector<3xf64>
        %20 = arith.subf %18, %19 : vector<3xf64>
        %21 = ham.norm %20 : vector<3xf64>
        %22 = arith.divf %17, %21 : f64
        ham.yield %22 : f64
      }
      %23 = arith.negf %11 : f64
      %24 = arith.addf %4, %23 : f64
      ham.yield %24 : f64
    }
    ham.gradient @q {
      %25 = arith.constant 0 : index
      %26 = ham.dim @N : index
      %27 = ham.param_ref @G : f64
      ham.pair_sum %28 < %29 in %25 to %26 {
        %30 = ham.load @m[%28] : f64
        %31 = arith.mulf %27, %30 : f64
        %32 = ham.load @m[%29] : f64
        %33 = arith.mulf %31, %32 : f64
        %34 = ham.load @q[%28] : vector<3xf64>
        %35 = ham.load @q[%29] : vector<3xf64>
        %36 = arith.subf %34, %35 : vector<3xf64>
        %37 = ham.norm %36 : vector<3xf64>
        %38 = arith.mulf %37, %37 : f64
        %39 = arith.mulf %38, %37 : f64
        %40 = arith.divf %33, %39 : f64
        %41 = ham.broadcast %40 : vector<3xf64>
        %42 = arith.mulf %41, %36 : vector<3xf64>
        %43 = arith.negf %42 : vector<3xf64>
        ham.accumulate @q[%29], %43 : vector<3xf64>
        ham.accumulate @q[%28], %42 : vector<3xf64>
        ham.yield
      }
      ham.yield
    }
    ham.gradient @p {
      %44 = arith.constant 1.000000e+00 : f64
      %45 = arith.constant 0 : index
      %46 = ham.dim @N : index
      %47 = arith.constant 2.000000e+00 : f64
      ham.sum %48 in %45 to %46 {
        %49 = ham.load @p[%48] : vector<3xf64>
        %50 = ham.load @m[%48] : f64
        %51 = arith.mulf %47, %50 : f64
        %52 = arith.divf %44, %51 : f64
        %53 = ham.broadcast %52 : vector<3xf64>
        %54 = arith.mulf %53, %49 : vector<3xf64>
        %55 = arith.addf %54, %54 : vector<3xf64>
        ham.accumulate @p[%48], %55 : vector<3xf64>
        ham.yield
      }
      ham.yield
    }
  }
  sym.scheme @leapfrog for @NBody attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
