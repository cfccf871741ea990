// What happens to the integer accumulators of a binary GEMM / conv after accumulation, kept apart
// from the accumulation loops (one implementation shared by every ISA, so the results of all
// variants agree bit for bit).
//
// The accumulator of output (row r, channel c) is acc = sum_k a_k * b_k over {+1, -1} operands
// (= K - 2 * popcount(a XOR b), with the zero-padding correction already applied for convs).
//
//   Int32: out[r, c] = acc                                   (int32 [rows, channels])
//   Float: out[r, c] = (((float(acc) * row_scale[r]) * multiplier[c]) + bias[c]) + residual[r, c]
//                                                            (float32 [rows, channels])
//          and, where sign_out is given, also the signs of those values packed as for Bits:
//          bit (r, c) = 1 iff out[r, c] < 0 (uint32 [rows, words_for(channels)]), the input a
//          following binary layer needs (a residual block's output: Bi-Real Net).
//   Bits:  v = the Float value above (float(acc) itself when row_scale, multiplier and bias are
//          all absent);
//          bit (r, c) = 1 (i.e. -1) iff v < thresholds[c], or iff v > thresholds[c] where flip[c]
//          is nonzero; otherwise 0 (+1). Equality gives 0 (+1) both ways, as sign(0) = +1.
//          (uint32 [rows, words_for(channels)], channel c in word c / 32, bit c % 32, tail bits 0)
//
// An absent array (null) skips its term (the same value as row_scale = 1, multiplier = 1, bias =
// 0, except that a skipped bias keeps the sign of a zero); absent flip = 0. float(acc) is exact
// for |acc| < 2^24, so integer thresholds compare exactly with the raw accumulator.
#pragma once
#include <cstdint>

namespace onebit {

enum class OutputKind : int { Int32 = 0, Float = 1, Bits = 2 };

struct OutputTransform {
  OutputKind kind = OutputKind::Int32;
  int64_t channels = 0;                // columns of the output (C_out / N)
  const float* row_scale = nullptr;    // [rows] (XNOR K map, one value per output position)
  const float* multiplier = nullptr;   // [channels]
  const float* bias = nullptr;         // [channels]
  const float* thresholds = nullptr;   // [channels], required for Bits
  const uint8_t* flip = nullptr;       // [channels]
  const float* residual = nullptr;     // [rows, channels], Float only (not the same memory as out)
  uint32_t* sign_out = nullptr;        // [rows, words_for(channels)], Float only
  void* out = nullptr;                 // see the table above
};

// Applies the transform to acc[i * ld + j] for i < rows, j < cols, which hold the accumulators of
// output rows row0 + i and channels col0 + j. For Bits and sign_out, col0 must be a multiple of
// 32 and col0 + cols a multiple of 32 or equal to channels (each call writes whole words).
void apply_output_transform(const OutputTransform& t, const int32_t* acc, int64_t ld, int64_t row0,
                            int64_t rows, int64_t col0, int64_t cols);

// The same from raw popcounts: acc[i, j] = k_total - 2 * pc[i * ld + j] - corr[i][j] (corr[i] null:
// no term; corr[i] points at channel col0 of row i's correction) is formed first, then the
// transform above applies. The AVX-512 Float pass forms it in registers (one pass over pc);
// otherwise pc is rewritten in place (pc is scratch) and apply_output_transform runs. Identical
// results either way: the integer acc is exact (|acc| < 2^24).
void apply_output_transform_popcounts(const OutputTransform& t, int32_t* pc, int64_t ld,
                                      int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                                      int32_t k_total, const int32_t* const* corr);

}  // namespace onebit
