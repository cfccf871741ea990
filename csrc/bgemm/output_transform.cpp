// The output transform (output_transform.h). The loops (output_transform_impl.h) are written so
// that compilers vectorise them (no per-element branches; the optional terms are template
// parameters); this file compiles them for the baseline ISA, output_transform_avx2.cpp for AVX2.
// Both evaluate the same float expressions in the same order without contraction, so every
// variant agrees bit for bit. output_transform_avx512.cpp has a hand-written Float pass.
#define ONEBIT_OT_NAME apply_output_transform_base
#include "bgemm/output_transform_impl.h"
#undef ONEBIT_OT_NAME

#include "dispatch.h"

namespace onebit {

#if defined(ONEBIT_X86)
void apply_output_transform_avx2(const OutputTransform& t, const int32_t* acc, int64_t ld,
                                 int64_t row0, int64_t rows, int64_t col0, int64_t cols);
void apply_output_transform_avx512(const OutputTransform& t, const int32_t* acc, int64_t ld,
                                   int64_t row0, int64_t rows, int64_t col0, int64_t cols);
#endif

#if defined(ONEBIT_X86)
bool apply_float_popcounts_avx512(const OutputTransform& t, const int32_t* pc, int64_t ld,
                                  int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                                  int32_t k_total, const int32_t* const* corr);
#endif

void apply_output_transform_popcounts(const OutputTransform& t, int32_t* pc, int64_t ld,
                                      int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                                      int32_t k_total, const int32_t* const* corr) {
#if defined(ONEBIT_X86)
  if (active_isa() == Isa::Avx512 &&
      apply_float_popcounts_avx512(t, pc, ld, row0, rows, col0, cols, k_total, corr))
    return;
#endif
  for (int64_t i = 0; i < rows; ++i) {
    int32_t* a = pc + i * ld;
    if (const int32_t* c = corr[i]) {
      for (int64_t j = 0; j < cols; ++j) a[j] = k_total - 2 * a[j] - c[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) a[j] = k_total - 2 * a[j];
    }
  }
  apply_output_transform(t, pc, ld, row0, rows, col0, cols);
}

void apply_output_transform(const OutputTransform& t, const int32_t* acc, int64_t ld, int64_t row0,
                            int64_t rows, int64_t col0, int64_t cols) {
#if defined(ONEBIT_X86)
  if (active_isa() == Isa::Avx512)
    return apply_output_transform_avx512(t, acc, ld, row0, rows, col0, cols);
  if (avx2_or_better()) return apply_output_transform_avx2(t, acc, ld, row0, rows, col0, cols);
#endif
  apply_output_transform_base(t, acc, ld, row0, rows, col0, cols);
}

}  // namespace onebit
