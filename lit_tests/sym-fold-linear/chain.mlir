// RUN: tpc opt %s -p sym-fold-linear | filecheck %s
// Input: `tpc compile examples/harmonic_chain.ham --emit=sym --no-fold`. The quadratic chain's
// time loop becomes sym.propagate; the system and the scheme (the one-step code) stay.

// CHECK:      ham.system @HarmonicChain {
// CHECK:        ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = true}
// CHECK:      sym.scheme @leapfrog for @HarmonicChain attributes {{.*}}fsal
// CHECK-NEXT:   sym.kick 5.000000e-01
// CHECK-NEXT:   sym.drift 1.000000e+00
// CHECK-NEXT:   sym.kick 5.000000e-01
// CHECK-NEXT: }
// CHECK-NOT:  sym.evolve
// CHECK-NEXT: sym.propagate @leapfrog save ["q", "p", "H"] method "auto"
// CHECK-NEXT: }

builtin.module {
  ham.system @HarmonicChain {
    ham.param @k = 1.000000e+00
    ham.param @m = 1.000000e+00
    ham.size @N
    ham.state @q, @p : !ham.field<[N]>
    ham.hamiltonian attributes {degree = 2 : i64, quadratic = true, separable = true} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = arith.constant 2.000000e+00 : f64
      %3 = ham.param_ref @m : f64
      %4 = ham.param_ref @k : f64
      %5 = arith.constant 1 : index
      %6 = arith.subi %1, %5 : index
      %7 = ham.sum %8 in %0 to %1 : f64 {
        %9 = ham.load @p[%8] : f64
        %10 = arith.mulf %9, %9 : f64
        ham.yield %10 : f64
      }
      %11 = arith.mulf %2, %3 : f64
      %12 = arith.divf %7, %11 : f64
      %13 = arith.divf %4, %2 : f64
      %14 = ham.sum %15 in %0 to %6 : f64 {
        %16 = arith.addi %15, %5 : index
        %17 = ham.load @q[%16] : f64
        %18 = ham.load @q[%15] : f64
        %19 = arith.subf %17, %18 : f64
        %20 = ham.ipow %19, 2 : f64
        ham.yield %20 : f64
      }
      %21 = ham.load @q[%0] : f64
      %22 = ham.ipow %21, 2 : f64
      %23 = arith.addf %14, %22 : f64
      %24 = ham.load @q[%6] : f64
      %25 = ham.ipow %24, 2 : f64
      %26 = arith.addf %23, %25 : f64
      %27 = arith.mulf %13, %26 : f64
      %28 = arith.addf %12, %27 : f64
      ham.yield %28 : f64
    }
    ham.gradient @q {
      %29 = arith.constant 0 : index
      %30 = ham.dim @N : index
      %31 = arith.constant 2.000000e+00 : f64
      %32 = ham.param_ref @k : f64
      %33 = arith.constant 1 : index
      %34 = arith.subi %30, %33 : index
      %35 = arith.divf %32, %31 : f64
      %36 = ham.load @q[%29] : f64
      %37 = ham.load @q[%34] : f64
      %38 = arith.mulf %31, %37 : f64
      %39 = arith.mulf %35, %38 : f64
      ham.accumulate @q[%34], %39 : f64
      %40 = arith.mulf %31, %36 : f64
      %41 = arith.mulf %35, %40 : f64
      ham.accumulate @q[%29], %41 : f64
      ham.sum %42 in %29 to %34 {
        %43 = arith.addi %42, %33 : index
        %44 = ham.load @q[%43] : f64
        %45 = ham.load @q[%42] : f64
        %46 = arith.subf %44, %45 : f64
        %47 = arith.mulf %31, %46 : f64
        %48 = arith.mulf %35, %47 : f64
        %49 = arith.negf %48 : f64
        ham.accumulate @q[%42], %49 : f64
        ham.accumulate @q[%43], %48 : f64
        ham.yield
      }
      ham.yield
    }
    ham.gradient @p {
      %50 = arith.constant 1.000000e+00 : f64
      %51 = arith.constant 0 : index
      %52 = ham.dim @N : index
      %53 = arith.constant 2.000000e+00 : f64
      %54 = ham.param_ref @m : f64
      %55 = arith.constant 1 : index
      %56 = arith.mulf %53, %54 : f64
      %57 = arith.divf %50, %56 : f64
      ham.sum %58 in %51 to %52 {
        %59 = ham.load @p[%58] : f64
        %60 = arith.mulf %57, %59 : f64
        ham.accumulate @p[%58], %60 : f64
        ham.accumulate @p[%58], %60 : f64
        ham.yield
      }
      ham.yield
    }
  }
  sym.scheme @leapfrog for @HarmonicChain attributes {order = 2 : i64, integrator = "leapfrog", fsal, force_evals = 1 : i64} {
    sym.kick 5.000000e-01
    sym.drift 1.000000e+00
    sym.kick 5.000000e-01
  }
  sym.evolve @leapfrog save ["q", "p", "H"]
}
