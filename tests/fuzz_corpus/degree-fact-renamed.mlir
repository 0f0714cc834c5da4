// passes: ham-degree,ham-derive
builtin.module {
  ham.system @OuterSolarSystem {
    ham.param @G = 0.000295912208286
    ham.param @m0 = 1.00000597682
    ham.size @N
    ham.input @m : !ham.field<[N]>
    ham.state @q, @p : !ham.field<[N, 3]>
    ham.part @Hkep_q attributes {let, split_from = "Hkep", degree = "nonpoly", quadratiiiic = false, separable = true, depends_on = ["q"], why = "H is not a polynomial via ham.norm at /work/main/examples/outer_solar_system_wh.ham:14:78 (part @Hkep_q)", kepler = "potential", invariant_under = ["rotation_x", "rotation_y", "rotation_z"]} {
      %0 = arith.constant 0 : index
      %1 = ham.dim @N : index
      %2 = ham.param_ref @G : f64
      %3 = ham.param_ref @m0 : f64
      %4 = arith.mulf %2, %3 : f64
      %5 = ham.sum %6 in %0 to %1 : f64 {
        %7 = ham.load @q[%6] : vector<3xf64>
        %8 = ham.norm %7 : vector<3xf64>
        %9 = ham.load @m[%6] : f64
        %10 = arith.divf %9, %8 : f64
        ham.yield %10 : f64
      }
      %11 = arith.mulf %4, %5 : f64
      %12 = arith.negf %11 : f64
      ham.yield %12 : f64
    }
    ham.part @Hkep_p attributes {let, split_from = "Hkep", degree = 2 : i64, quadratic = true, separable = true, depends_on = ["p"], kepler = "kinetic", invariant_under = ["translation_x", "translation_y", "translation_z", "rotation_x", "rotation_y", "rotation_z"]} {
      %13 = arith.constant 0 : index
      %14 = ham.dim @N : index
      %15 = arith.constant 2.000000e+00 : f64
      %16 = ham.sum %17 in %13 to %14 : f64 {
        %18 = ham.load @p[%17] : vector<3xf64>
        %19 = ham.load @p[%17] : vector<3xf64>
        %20 = ham.dot %18, %19 : vector<3xf64>
        %21 = ham.load @m[%17] : f64
        %22 = arith.mulf %15, %21 : f64
        %23 = arith.divf %20, %22 : f64
        ham.yield %23 : f64
      }
      ham.yield %16 : f64
    }
    ham.part @Hjump attributes {let, degree = 2 : i64, quadratic = true, separable = true, depends_on = ["p"], invariant_under = ["translation_x", "translation_y", "translation_z", "rotation_x", "rotation_y", "rotation_z"]} {
      %24 = arith.constant 0 : index
      %25 = ham.dim @N : index
      %26 = arith.constant 2.000000e+00 : f64
      %27 = ham.param_ref @m0 : f64
      %28 = ham.sum %29 in %24 to %25 : vector<3xf64> {
        %30 = ham.load @p[%29] : vector<3xf64>
        ham.yield %30 : vector<3xf64>
      }
      %31 = ham.sum %32 in %24 to %25 : vector<3xf64> {
        %33 = ham.load @p[%32] : vector<3xf64>
        ham.yield %33 : vector<3xf64>
      }
      %34 = ham.dot %28, %31 : vector<3xf64>
      %35 = arith.mulf %26, %27 : f64
      %36 = arith.divf %34, %35 : f64
      ham.yield %36 : f64
    }
    ham.part @Hint attributes {let, degree = "nonpoly", quadratic = false, separable = true, depends_on = ["q"], why = "H is not a polynomial via ham.norm at /work/main/examples/outer_solar_system_wh.ham:16:46 (part @Hint)", invariant_under = ["translation_x", "translation_y", "translation_z", "rotation_x", "rotation_y", "rotation_z"]} {
      %37 = ham.param_ref @G : f64
      %38 = arith.constant 0 : index
      %39 = ham.dim @N : index
      %40 = arith.negf %37 : f64
      %41 = ham.pair_sum %42 < %43 in %38 to %39 : f64 {
        %44 = ham.load @m[%42] : f64
        %45 = ham.load @m[%43] : f64
        %46 = arith.mulf %44, %45 : f64
        %47 = ham.load @q[%42] : vector<3xf64>
        %48 = ham.load @q[%43] : vector<3xf64>
        %49 = arith.subf %47, %48 : vector<3xf64>
        %50 = ham.norm %49 : vector<3xf64>
        %51 = arith.divf %46, %50 : f64
        ham.yield %51 : f64
      }
      %52 = arith.mulf %40, %41 : f64
      ham.yield %52 : f64
    }
    ham.hamiltonian = [@Hkep_q, @Hkep_p, @Hjump, @Hint] {degree = "nonpoly", quadratic = false, separable = true, why = "H is not a polynomial via ham.norm at /work/main/examples/outer_solar_system_wh.ham:14:78 (part @Hkep)", symmetries = ["rotation_x", "rotation_y", "rotation_z", "time"], conserved = ["L_x", "L_y", "L_z", "H"], not_symmetric = {translation_x = "part @Hkep_q is not proved invariant under translations along x: the proof stops at ham.norm at /work/main/examples/outer_solar_system_wh.ham:14:78, of a value the translation moves", translation_y = "part @Hkep_q is not proved invariant under translations along y: the proof stops at ham.norm at /work/main/examples/outer_solar_system_wh.ham:14:78, of a value the translation moves", translation_z = "part @Hkep_q is not proved invariant under translations along z: the proof stops at ham.norm at /work/main/examples/outer_solar_system_wh.ham:14:78, of a value the translation moves"}}
    ham.monitor @L_x attributes {quantity = "angular_momentum", symmetry = "rotation_x"} {
      %53 = arith.constant 0 : index
      %54 = ham.dim @N : index
      %55 = ham.sum %56 in %53 to %54 : f64 {
        %57 = arith.constant 1 : index
        %58 = ham.load @q[%56, %57] : f64
        %59 = arith.constant 2 : index
        %60 = ham.load @p[%56, %59] : f64
        %61 = arith.mulf %58, %60 : f64
        %62 = arith.constant 2 : index
        %63 = ham.load @q[%56, %62] : f64
        %64 = arith.constant 1 : index
        %65 = ham.load @p[%56, %64] : f64
        %66 = arith.mulf %63, %65 : f64
        %67 = arith.subf %61, %66 : f64
        ham.yield %67 : f64
      }
      ham.yield %55 : f64
    }
    ham.monitor @L_y attributes {quantity = "angular_momentum", symmetry = "rotation_y"} {
      %68 = arith.constant 0 : index
      %69 = ham.dim @N : index
      %70 = ham.sum %71 in %68 to %69 : f64 {
        %72 = arith.constant 2 : index
        %73 = ham.load @q[%71, %72] : f64
        %74 = arith.constant 0 : index
        %75 = ham.load @p[%71, %74] : f64
        %76 = arith.mulf %73, %75 : f64
        %77 = arith.constant 0 : index
        %78 = ham.load @q[%71, %77] : f64
        %79 = arith.constant 2 : index
        %80 = ham.load @p[%71, %79] : f64
        %81 = arith.mulf %78, %80 : f64
        %82 = arith.subf %76, %81 : f64
        ham.yield %82 : f64
      }
      ham.yield %70 : f64
    }
    ham.monitor @L_z attributes {quantity = "angular_momentum", symmetry = "rotation_z"} {
      %83 = arith.constant 0 : index
      %84 = ham.dim @N : index
      %85 = ham.sum %86 in %83 to %84 : f64 {
        %87 = arith.constant 0 : index
        %88 = ham.load @q[%86, %87] : f64
        %89 = arith.constant 1 : index
        %90 = ham.load @p[%86, %89] : f64
        %91 = arith.mulf %88, %90 : f64
        %92 = arith.constant 1 : index
        %93 = ham.load @q[%86, %92] : f64
        %94 = arith.constant 0 : index
        %95 = ham.load @p[%86, %94] : f64
        %96 = arith.mulf %93, %95 : f64
        %97 = arith.subf %91, %96 : f64
        ham.yield %97 : f64
      }
      ham.yield %85 : f64
    }
  }
}
