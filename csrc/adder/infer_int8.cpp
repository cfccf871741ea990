// Driver of the int8 AdderNet inference kernel: lays the input out padded in offset binary
// (x ^ 0x80, so the unsigned |a - b| of (V)PSADBW equals the signed one; padded positions hold
// pad_value ^ 0x80), packs the receptive field of each output position of a chunk as one row of
// K = KH*KW*C bytes (KH copies of KW*C bytes), the row tail (up to a multiple of 32) 0 in both
// operands so it adds |0 - 0| = 0, then runs the ISA's SAD tiles (AVX2, or AVX-512 broadcast
// tiles with the filters repacked once per call).
#include <algorithm>
#include <cstring>

#include "adder/adder.h"
#include "adder/buffer.h"
#include "adder/reference.h"
#include "adder/tiles.h"
#include "common/parallel.h"

namespace onebit::adder {

namespace {

constexpr int64_t kChunkBytes = 96 * 1024;  // packed input rows per chunk: about this many bytes

void xor_copy(uint8_t* dst, const int8_t* src, int64_t n) {
  for (int64_t q = 0; q < n; ++q) dst[q] = static_cast<uint8_t>(src[q]) ^ 0x80u;
}

}  // namespace

void int8_conv2d(const int8_t* x, const int8_t* w, int8_t pad_value, const float* multiplier,
                 const float* bias, float* y, const ConvGeometry& g, int num_threads) {
  check_geometry(g);
  if (!avx2_or_better())
    return ref::int8_conv2d(x, w, pad_value, multiplier, bias, y, g, num_threads);
#if defined(ONEBIT_X86)
  const int nt = num_threads > 0 ? num_threads : default_num_threads();
  const int64_t OH = g.oh(), OW = g.ow(), C = g.c, M = g.cout;
  const int64_t K = g.kh * g.kw * C, kp = (K + 31) / 32 * 32;
  const uint8_t pad_byte = static_cast<uint8_t>(pad_value) ^ 0x80u;

  // the filters in offset binary: rows of kp bytes (AVX2), or in the AVX-512 broadcast tiles'
  // layout (groups of eight side by side)
  // Rows of more than kZmmMaxK bytes stay on the AVX2 tiles: on Zen 4 (1 thread,
  // benchmarks/adder.py) the AVX-512 tiles ran 3x3 convs over 64-256 channels (K <= 2304)
  // 1.1-1.3x faster than AVX2 and the 1x1 layer 1.8x, but 3x3 over 512 channels (K = 4608)
  // 1.2x slower.
  constexpr int64_t kZmmMaxK = 3072;
  const bool zmm = active_isa() == Isa::Avx512 && K <= kZmmMaxK;
  ScratchBuffer<uint8_t> wp(static_cast<size_t>(zmm ? avx512::filters_padded(M) * kp : M * kp));
  if (zmm) {
    avx512::pack_filters(w, M, K, kp, wp.data());
  } else {
    for (int64_t t = 0; t < M; ++t) {
      xor_copy(wp.data() + t * kp, w + t * K, K);
      std::memset(wp.data() + t * kp + K, 0, static_cast<size_t>(kp - K));
    }
  }

  // The input in offset binary with its padding laid out (pad_value ^ 0x80): a kernel row of a
  // receptive field is then KW * C contiguous bytes.
  const int64_t HP = g.h + 2 * g.ph, WP = g.w + 2 * g.pw, row_bytes = WP * C;
  ScratchBuffer<uint8_t> xp(static_cast<size_t>(g.n * HP * row_bytes));
  parallel_for(g.n * HP, nt, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / HP, h = r % HP - g.ph;
      uint8_t* dst = xp.data() + r * row_bytes;
      if (h < 0 || h >= g.h) {
        std::memset(dst, pad_byte, static_cast<size_t>(row_bytes));
        continue;
      }
      std::memset(dst, pad_byte, static_cast<size_t>(g.pw * C));
      xor_copy(dst + g.pw * C, x + (n * g.h + h) * g.w * C, g.w * C);
      std::memset(dst + (g.pw + g.w) * C, pad_byte, static_cast<size_t>(g.pw * C));
    }
  });

  int64_t rows = std::clamp<int64_t>(kChunkBytes / (kp * OW), 1, OH);
  if (g.n < nt) {
    const int64_t want = (nt + g.n - 1) / g.n;
    rows = std::min(rows, std::max<int64_t>(1, (OH + want - 1) / want));
  }
  const int64_t nchunks = (OH + rows - 1) / rows, tap_row = g.kw * C;
  parallel_for(g.n * nchunks, nt, 1, [&](int64_t begin, int64_t end) {
    ScratchBuffer<uint8_t> xc(static_cast<size_t>(rows * OW * kp));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / nchunks, oh0 = (item % nchunks) * rows;
      const int64_t oh1 = std::min(OH, oh0 + rows);
      uint8_t* dst = xc.data();
      for (int64_t oh = oh0; oh < oh1; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow, dst += kp) {
          const uint8_t* src = xp.data() + ((n * HP + oh * g.sh) * WP + ow * g.sw) * C;
          for (int64_t i = 0; i < g.kh; ++i)
            std::memcpy(dst + i * tap_row, src + i * row_bytes, static_cast<size_t>(tap_row));
          std::memset(dst + K, 0, static_cast<size_t>(kp - K));
        }
      if (zmm)
        avx512::sad_chunk(xc.data(), (oh1 - oh0) * OW, wp.data(), M, kp, multiplier, bias,
                          y + (n * OH + oh0) * OW * M, M);
      else
        avx2::sad_chunk(xc.data(), (oh1 - oh0) * OW, wp.data(), M, kp, multiplier, bias,
                        y + (n * OH + oh0) * OW * M, M);
    }
  });
#endif
}

}  // namespace onebit::adder
