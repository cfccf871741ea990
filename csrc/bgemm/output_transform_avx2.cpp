// The output transform compiled for AVX2 (8 floats per vector in the affine and residual loops).
// No FMA contraction: the products and sums round one by one, as in the baseline build, so the
// results are bit-identical (tests compare every ISA with the reference).
#pragma GCC optimize("fp-contract=off")
#define ONEBIT_OT_NAME apply_output_transform_avx2
#include "bgemm/output_transform_impl.h"
