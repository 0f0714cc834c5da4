builtin.module {
  %0 = arith.constant 0 : index
  %1 = ham.pair_sum %i = %j in %0 to %0 {
  }
}
