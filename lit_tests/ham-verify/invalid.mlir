// RUN: tpc opt %s | filecheck %s --check-prefix=VALID
// RUN: sed -e 's/ham.load @q\[\] : vector<3xf64> \/\/ X/ham.load @x[] : vector<3xf64>/' %s | not tpc opt - 2>&1 | filecheck %s --check-prefix=FIELD
// RUN: sed -e 's/ham.load @q\[\] : vector<3xf64> \/\/ X/ham.load @q[] : vector<2xf64>/' %s | not tpc opt - 2>&1 | filecheck %s --check-prefix=TYPE
// RUN: sed -e 's/@mu : f64/@nu : f64/' %s | not tpc opt - 2>&1 | filecheck %s --check-prefix=PARAM
// RUN: sed -e 's/ham.dim @N/ham.dim @M/' %s | not tpc opt - 2>&1 | filecheck %s --check-prefix=SIZE
// The verifiers of ham ops that name declarations: the field, its shape, the param, the size.

ham.system @K {
  ham.param @mu = 1.000000e+00
  ham.size @N
  ham.input @m : !ham.field<[N]>
  ham.state @q, @p : !ham.field<[3]>
  ham.hamiltonian {
    %mu = ham.param_ref @mu : f64
    %q = ham.load @q[] : vector<3xf64>
    %x = ham.load @q[] : vector<3xf64> // X
    %n = ham.norm %q : vector<3xf64>
    %c = ham.dim @N : index
    %h = arith.divf %mu, %n : f64
    ham.yield %h : f64
  }
}

// VALID: ham.system @K
// FIELD: error: invalid IR: 'x' is not a state or input of @K
// TYPE: error: invalid IR: 'q' indexed 0 time(s) is vector<3xf64>, not vector<2xf64>
// PARAM: error: invalid IR: 'nu' is not a ham.param
// SIZE: error: invalid IR: 'M' is not a ham.size
