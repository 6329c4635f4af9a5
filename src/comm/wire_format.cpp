// Gradient wire formats (see wire_format.hpp).
#include "ringtrain/comm/wire_format.hpp"

#include "ringtrain/util/error.hpp"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace ringtrain {

WireFormat parse_wire_format(const std::string& name) {
  if (name == "none") return WireFormat::kFp32;
  if (name == "bf16") return WireFormat::kBf16;
  if (name == "fp16") return WireFormat::kFp16;
  throw UsageError(str_cat("comm.compression: expected none, bf16 or fp16, got '", name, "'"));
}

const char* wire_format_name(WireFormat w) {
  switch (w) {
    case WireFormat::kBf16:
      return "bf16";
    case WireFormat::kFp16:
      return "fp16";
    default:
      return "none";
  }
}

// One loop per format, so each inner loop is a plain conversion the compiler
// vectorises (bf16 is integer arithmetic). GCC leaves the _Float16 casts
// scalar, 3x slower than the whole ring step on the default model, so with
// F16C (x86-64 since 2012; -march=native) fp16 goes 8 values at a time,
// rounding to nearest even like the cast.
namespace {
std::size_t fp16_vector_part(std::size_t n) {
#if defined(__F16C__)
  return n - n % 8;
#else
  (void)n;
  return 0;
#endif
}
}  // namespace

void pack_wire(WireFormat w, const float* __restrict src, uint16_t* __restrict dst, std::size_t n) {
  if (w == WireFormat::kBf16) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
    return;
  }
  const std::size_t v = fp16_vector_part(n);
#if defined(__F16C__)
  for (std::size_t i = 0; i < v; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (std::size_t i = v; i < n; ++i) dst[i] = to_fp16(src[i]);
}

void unpack_wire(WireFormat w, const uint16_t* __restrict src, float* __restrict dst, std::size_t n) {
  if (w == WireFormat::kBf16) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = from_bf16(src[i]);
    return;
  }
  const std::size_t v = fp16_vector_part(n);
#if defined(__F16C__)
  for (std::size_t i = 0; i < v; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (std::size_t i = v; i < n; ++i) dst[i] = from_fp16(src[i]);
}

void unpack_add_wire(WireFormat w, const uint16_t* __restrict src, float* __restrict dst, std::size_t n) {
  if (w == WireFormat::kBf16) {
    for (std::size_t i = 0; i < n; ++i) dst[i] += from_bf16(src[i]);
    return;
  }
  const std::size_t v = fp16_vector_part(n);
#if defined(__F16C__)
  for (std::size_t i = 0; i < v; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), x));
  }
#endif
  for (std::size_t i = v; i < n; ++i) dst[i] += from_fp16(src[i]);
}

}  // namespace ringtrain
