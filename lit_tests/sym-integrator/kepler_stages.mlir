// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=leapfrog}' | filecheck %s --check-prefix=LEAP
// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=yoshida4}' | filecheck %s --check-prefix=Y4
// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=yoshida6}' | filecheck %s --check-prefix=Y6
// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=yoshida8}' | filecheck %s --check-prefix=Y8
// RUN: tpc opt %s -p 'ham-derive,sym-integrator{integrator=midpoint}' | filecheck %s --check-prefix=MID

// The stage sequence of each integrator, unfused. yoshida4 is the triple jump of leapfrogs with
// w1 = 1 / (2 - 2^(1/3)) = 1.3512071919596578 and w0 = 1 - 2 w1 = -1.7024143839193155;
// yoshida6 composes yoshida4 with w1 = 1 / (2 - 2^(1/5)) = 1.1746...; each leapfrog is
// kick(w/2) drift(w) kick(w/2).

// LEAP:      sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64, integrator = "leapfrog"} {
// LEAP-NEXT:   sym.kick 5.000000e-01
// LEAP-NEXT:   sym.drift 1.000000e+00
// LEAP-NEXT:   sym.kick 5.000000e-01
// LEAP-NEXT: }
// LEAP-NEXT: sym.evolve @leapfrog save ["q", "p", "H"]

// Y4:      sym.scheme @yoshida4 for @Kepler attributes {order = 4 : i64, integrator = "yoshida4"} {
// Y4-NEXT:   sym.kick 0.67560359597982889
// Y4-NEXT:   sym.drift 1.3512071919596578
// Y4-NEXT:   sym.kick 0.67560359597982889
// Y4-NEXT:   sym.kick -0.85120719195965777
// Y4-NEXT:   sym.drift -1.7024143839193155
// Y4-NEXT:   sym.kick -0.85120719195965777
// Y4-NEXT:   sym.kick 0.67560359597982889
// Y4-NEXT:   sym.drift 1.3512071919596578
// Y4-NEXT:   sym.kick 0.67560359597982889
// Y4-NEXT: }
// Y4-NEXT: sym.evolve @yoshida4 save ["q", "p", "H"]

// 9 leapfrogs (yoshida8 has 27): w1(6) * w1(4) = 1.1746... * 1.3512... = 1.5872249277222432 first.
// Y6:      sym.scheme @yoshida6 for @Kepler attributes {order = 6 : i64, integrator = "yoshida6"} {
// Y6-NEXT:   sym.kick 0.79361246386112161
// Y6-NEXT:   sym.drift 1.5872249277222432
// Y6-NEXT:   sym.kick 0.79361246386112161
// Y6-NEXT:   sym.kick -0.99988904867756156
// Y6-NEXT:   sym.drift -1.9997780973551231
// Y6-NEXT:   sym.kick -0.99988904867756156
// Y6-NEXT:   sym.kick 0.79361246386112161
// Y6-NEXT:   sym.drift 1.5872249277222432
// Y6-NEXT:   sym.kick 0.79361246386112161
// Y6-NEXT:   sym.kick -0.91162133174241444
// Y6-NEXT:   sym.drift -1.8232426634848289
// Y6-NEXT:   sym.kick -0.91162133174241444
// Y6-NEXT:   sym.kick 1.1485709053954654
// Y6-NEXT:   sym.drift 2.2971418107909307
// Y6-NEXT:   sym.kick 1.1485709053954654
// Y6-COUNT-4: sym.drift
// Y6-NEXT:   sym.kick 0.79361246386112161
// Y6-NEXT: }
// Y6-NEXT: sym.evolve @yoshida6 save ["q", "p", "H"]

// Y8:       sym.scheme @yoshida8 for @Kepler attributes {order = 8 : i64, integrator = "yoshida8"} {
// Y8-COUNT-27: sym.drift
// Y8-NOT:   sym.drift
// Y8:       sym.evolve @yoshida8

// MID:      sym.scheme @midpoint for @Kepler attributes {order = 2 : i64, integrator = "midpoint"} {
// MID-NEXT:   sym.implicit_midpoint 1.000000e+00 max_iter 100 : i64 tol
// MID-NEXT: }
// MID-NEXT: sym.evolve @midpoint save ["q", "p", "H"]

builtin.module {
  ham.system @Kepler {
    ham.param @mu = 1.000000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at examples/kepler.ham:5:30"} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = ham.param_ref @mu : f64
      %2 = ham.load @p[] : vector<3xf64>
      %3 = ham.load @p[] : vector<3xf64>
      %4 = ham.dot %2, %3 : vector<3xf64>
      %5 = arith.divf %4, %0 : f64
      %6 = ham.load @q[] : vector<3xf64>
      %7 = ham.norm %6 : vector<3xf64>
      %8 = arith.divf %1, %7 : f64
      %9 = arith.subf %5, %8 : f64
      ham.yield %9 : f64
    }
  }
}
