#include "bgemm/panel.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace onebit {

uint8_t* AlignedBuffer::get(size_t bytes) {
  if (bytes > size_ || !data_) {
    const size_t n = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    data_.reset(static_cast<uint8_t*>(::operator new[](n, std::align_val_t(64))));
    size_ = n;
  }
  return data_.get();
}

Scratch& thread_scratch() {
  static thread_local Scratch s;
  return s;
}

void pack_panel(const PopcountKernel& uk, const uint32_t* src, int64_t src_stride, int64_t kw,
                int64_t rows, int64_t padded_rows, int64_t kp, uint8_t* dst) {
  const int64_t rb = panel_row_bytes(uk, kp);
  if (kw == kp) {
    for (int64_t r = 0; r < rows; ++r) uk.pack_row(src + r * src_stride, kp, dst + r * rb);
  } else {
    std::vector<uint32_t> tmp(static_cast<size_t>(kp), 0u);  // words kw.. stay 0
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(tmp.data(), src + r * src_stride, sizeof(uint32_t) * kw);
      uk.pack_row(tmp.data(), kp, dst + r * rb);
    }
  }
  if (padded_rows > rows) std::memset(dst + rows * rb, 0, static_cast<size_t>((padded_rows - rows) * rb));
}

void pack_b_panel(const PopcountKernel& uk, const uint32_t* src, int64_t src_stride, int64_t kw,
                  int64_t rows, int64_t padded_rows, int64_t kp, uint8_t* dst) {
  pack_panel(uk, src, src_stride, kw, rows, padded_rows, kp, dst);
  if (uk.finish_b != nullptr) uk.finish_b(dst, padded_rows, kp);
}

void popcount_block(const PopcountKernel& uk, const uint8_t* a, int64_t m_rows, const uint8_t* b,
                    int64_t n_rows, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t rb = panel_row_bytes(uk, kp);
  for (int64_t j = 0; j < n_rows; j += uk.nr)
    for (int64_t i = 0; i < m_rows; i += uk.mr) uk.tile(a + i * rb, b + j * rb, kp, c + i * ldc + j, ldc);
}

Blocking choose_blocking(const PopcountKernel& uk, int64_t m, int64_t n, int64_t kp, int num_threads) {
  Blocking bl;
  const int64_t m_pad = round_up(m, uk.mr);
  const int64_t rb = panel_row_bytes(uk, kp);
  int64_t mb_max = std::max<int64_t>(uk.mr, (20 * 1024 / rb) / uk.mr * uk.mr);
  mb_max = std::min<int64_t>(mb_max, 256);
  bl.tiles_m = ceil_div(m_pad, mb_max);
  bl.mb = round_up(ceil_div(m_pad, bl.tiles_m), uk.mr);
  bl.tiles_m = ceil_div(m_pad, bl.mb);
  // Split the columns only when there are too few row blocks to keep every thread busy.
  bl.nb = round_up(n, uk.nr);
  bl.tiles_n = 1;
  const int64_t want = 4 * static_cast<int64_t>(std::max(num_threads, 1));
  if (num_threads > 1 && bl.tiles_m < want && n > 32) {
    const int64_t parts = std::min(ceil_div(want, bl.tiles_m), ceil_div(n, 32));
    bl.nb = round_up(ceil_div(n, parts), 32);
    bl.tiles_n = ceil_div(n, bl.nb);
  }
  return bl;
}

const PopcountKernel* popcount_kernel(Isa isa, int64_t kw) {
  switch (isa) {
#if defined(ONEBIT_X86)
    case Isa::Avx512:
      // the broadcast tile: on Zen 4 faster than the chunked AVX-512 tile and every AVX2 tile on
      // each ResNet-18 layer shape (benchmarks/kernels.py); 4 x 32, within 5% of it and ahead on
      // the deeper layers, is a candidate
      (void)kw;
      return &popcount_kernel_avx512_bcast8x16();
    case Isa::Avx2:
      // the broadcast tile: measured fastest on Zen 3 for every row length (1 to 288 words),
      // 1.1x the short tiles on 1x1 convs, 1.3-1.4x the chunked tiles on 3x3 convs over 64-128
      // channels, 1.15x on deep layers; the others stay candidates for measured choice
      (void)kw;
      return &popcount_kernel_avx2_bcast();
#endif
#if defined(ONEBIT_ARM64)
    case Isa::Neon: return &popcount_kernel_neon();
#endif
    default: return nullptr;
  }
}

std::vector<const PopcountKernel*> popcount_kernel_candidates(Isa isa, int64_t kw) {
  std::vector<const PopcountKernel*> out;
  auto add = [&out](const PopcountKernel* k) {
    for (const PopcountKernel* have : out)
      if (have == k) return;
    out.push_back(k);
  };
  if (const PopcountKernel* rule = popcount_kernel(isa, kw)) add(rule);
#if defined(ONEBIT_X86)
  if (isa == Isa::Avx512) {
    add(&popcount_kernel_avx512_bcast4x32());
    add(&popcount_kernel_avx512());
  }
  if ((isa == Isa::Avx512 || isa == Isa::Avx2) && cpu_features().avx2) {
    add(popcount_kernel(Isa::Avx2, kw));  // the AVX2 rule's choice (under AVX-512)
    if (kw <= 2) add(&popcount_kernel_avx2_short2());
    if (kw <= kAvx2ShortMaxWords) add(&popcount_kernel_avx2_short());
    if (kw > 8 && (kw % 8 == 1 || kw % 8 == 2)) add(&popcount_kernel_avx2_tail2());
    add(&popcount_kernel_avx2());
  }
#endif
  return out;
}

}  // namespace onebit
