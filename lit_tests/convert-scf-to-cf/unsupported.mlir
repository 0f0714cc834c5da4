// RUN: not tpc opt %s -p convert-scf-to-cf 2>&1 | filecheck %s

func.func @region() -> index {
  %r = "scf.execute_region"() ({
    %c = arith.constant 1 : index
    scf.yield %c : index
  }) : () -> index
  return %r : index
}

// CHECK: error: convert-scf-to-cf: cannot lower 'scf.execute_region': no lowering to cf
