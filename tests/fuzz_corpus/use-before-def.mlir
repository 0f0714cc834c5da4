// passes: ham-derive
builtin.module {
  ham.system @Kepler {
    ham.param @mu = 1.000000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at /work/wt12/examples/kepler.ham:5:30"} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @mu : f64
      %2 = ham.load @p[] : vector<3xf64>
      %3 = ham.load @p[] : vector<3xf64>
      %4 = ham.dot %2, %3 : vector<3xf64>
      %5 = arith.divf %4, %8 : f64
      %6 = ham.load @q[] : vector<3xf64>
      %7 = ham.norm %6 : vector<3xf64>
      %8 = arith.divf %1, %7 : f64
      %9 = arith.subf %5, %8 : f64
      ham.yield %9 : f64
    }
  }
}
