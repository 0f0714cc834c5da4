// RUN: tpc opt %s -p ham-derive | filecheck %s

// One derivative rule per term: sin -> cos, cos -> -sin, exp -> exp (reused), log -> 1/x,
// sqrt -> 0.5/sqrt, x^-2 -> -2 x^-3, x^a -> a x^a / x, tanh -> 1 - tanh^2.

// CHECK-LABEL: ham.gradient @q {
// CHECK-DAG:     %[[ONE:[0-9]+]] = arith.constant 1.000000e+00 : f64
// CHECK-DAG:     %[[A:[0-9]+]] = ham.param_ref @a : f64
// CHECK-DAG:     %[[Q0:[0-9]+]] = ham.load @q[%[[I0:[0-9]+]]] : f64
// CHECK-DAG:     %[[Q1:[0-9]+]] = ham.load @q[%[[I1:[0-9]+]]] : f64
// CHECK-DAG:     %[[Q2:[0-9]+]] = ham.load @q[%[[I2:[0-9]+]]] : f64
// CHECK-DAG:     %[[EXP:[0-9]+]] = math.exp %[[Q2]] : f64
// CHECK-DAG:     %[[SQRT:[0-9]+]] = math.sqrt %[[Q1]] : f64
// CHECK-DAG:     %[[POW:[0-9]+]] = math.powf %[[Q0]], %[[A]] : f64
// CHECK-DAG:     %[[TANH:[0-9]+]] = math.tanh %[[Q1]] : f64
// CHECK-DAG:     %[[T2:[0-9]+]] = arith.mulf %[[TANH]], %[[TANH]] : f64
// CHECK-DAG:     %[[DTANH:[0-9]+]] = arith.subf %[[ONE]], %[[T2]] : f64
// CHECK-DAG:     %[[APOW:[0-9]+]] = arith.mulf %[[A]], %[[POW]] : f64
// CHECK-DAG:     %[[DPOW:[0-9]+]] = arith.divf %[[APOW]], %[[Q0]] : f64
// CHECK-DAG:     %[[M3:[0-9]+]] = ham.ipow %[[Q2]], -3 : f64
// CHECK-DAG:     %[[M2:[0-9]+]] = arith.constant -2.000000e+00 : f64
// CHECK-DAG:     %[[DIPOW:[0-9]+]] = arith.mulf %[[M2]], %[[M3]] : f64
// CHECK-DAG:     %[[HALF:[0-9]+]] = arith.constant 5.000000e-01 : f64
// CHECK-DAG:     %[[DSQRT:[0-9]+]] = arith.divf %[[HALF]], %[[SQRT]] : f64
// CHECK-DAG:     %[[DLOG:[0-9]+]] = arith.divf %[[ONE]], %[[Q0]] : f64
// The loads are CSE'd before differentiation, so the partials of one element meet in a sum
// and each element gets a single scatter.
// CHECK-DAG:     %[[G2:[0-9]+]] = arith.addf %[[DIPOW]], %[[EXP]] : f64
// CHECK-DAG:     ham.accumulate @q[%[[I2]]], %[[G2]] : f64
// CHECK-DAG:     %[[SIN:[0-9]+]] = math.sin %[[Q1]] : f64
// CHECK-DAG:     %[[DCOS:[0-9]+]] = arith.negf %[[SIN]] : f64
// CHECK-DAG:     %[[G1A:[0-9]+]] = arith.addf %[[DTANH]], %[[DSQRT]] : f64
// CHECK-DAG:     %[[G1:[0-9]+]] = arith.addf %[[G1A]], %[[DCOS]] : f64
// CHECK-DAG:     ham.accumulate @q[%[[I1]]], %[[G1]] : f64
// CHECK-DAG:     %[[COS:[0-9]+]] = math.cos %[[Q0]] : f64
// CHECK-DAG:     %[[G0A:[0-9]+]] = arith.addf %[[DPOW]], %[[DLOG]] : f64
// CHECK-DAG:     %[[G0:[0-9]+]] = arith.addf %[[G0A]], %[[COS]] : f64
// CHECK-DAG:     ham.accumulate @q[%[[I0]]], %[[G0]] : f64
// CHECK:         ham.yield
// CHECK-NEXT:  }

// CHECK-LABEL: ham.gradient @p {
// CHECK-NOT:     math.
// CHECK:         ham.accumulate @p[]

builtin.module {
  ham.system @Rules {
    ham.param @a = 1.500000e+00
    ham.state @q, @p : !ham.field<[3]>
    ham.hamiltonian attributes {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via math.sin at /tmp/lit/rules.ham:4:26"} {
      %0 = arith.constant 2.000000e+00 : f64
      %1 = arith.constant 0 : index
      %2 = arith.constant 1 : index
      %3 = arith.constant 2 : index
      %4 = ham.param_ref @a : f64
      %5 = ham.load @p[] : vector<3xf64>
      %6 = ham.load @p[] : vector<3xf64>
      %7 = arith.mulf %5, %6 : vector<3xf64>
      %8 = ham.reduce %7 : vector<3xf64>
      %9 = arith.divf %8, %0 : f64
      %10 = ham.load @q[%1] : f64
      %11 = math.sin %10 : f64
      %12 = arith.addf %9, %11 : f64
      %13 = ham.load @q[%2] : f64
      %14 = math.cos %13 : f64
      %15 = arith.addf %12, %14 : f64
      %16 = ham.load @q[%3] : f64
      %17 = math.exp %16 : f64
      %18 = arith.addf %15, %17 : f64
      %19 = ham.load @q[%1] : f64
      %20 = math.log %19 : f64
      %21 = arith.addf %18, %20 : f64
      %22 = ham.load @q[%2] : f64
      %23 = math.sqrt %22 : f64
      %24 = arith.addf %21, %23 : f64
      %25 = ham.load @q[%3] : f64
      %26 = ham.ipow %25, -2 : f64
      %27 = arith.addf %24, %26 : f64
      %28 = ham.load @q[%1] : f64
      %29 = math.powf %28, %4 : f64
      %30 = arith.addf %27, %29 : f64
      %31 = ham.load @q[%2] : f64
      %32 = math.tanh %31 : f64
      %33 = arith.addf %30, %32 : f64
      ham.yield %33 : f64
    }
  }
}
