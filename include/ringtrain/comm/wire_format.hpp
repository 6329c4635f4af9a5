// WireFormat: how gradients travel between ranks (comm.compression).
//
// fp32 sends the floats as they are. bf16 and fp16 send 16 bits per value,
// half the bytes, for links where the wire, not memory, is the limit (a
// 1 Gbit/s network between nodes). Accumulation stays in fp32, and so do the
// master weights and the optimizer: a value is rounded to 16 bits only to be
// sent, and widened back before it is added.
//
//   bf16: 8 exponent bits like fp32, so no overflow or underflow that fp32
//         would not have; 8 significant bits (relative rounding 2^-9).
//   fp16: 11 significant bits (2^-12) but 5 exponent bits: magnitudes above
//         65504 become inf (the trainer then stops with "training diverged")
//         and below about 6e-8 become 0.
//
// Rounding is to nearest, ties to even; NaN stays NaN, inf stays inf.
// No <mpi.h>: the conversions are plain functions, tested in unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace ringtrain {

enum class WireFormat { kFp32, kBf16, kFp16 };

// "none" | "bf16" | "fp16" (comm.compression); UsageError otherwise.
WireFormat parse_wire_format(const std::string& name);
const char* wire_format_name(WireFormat w);  // "none", "bf16", "fp16"

#if !defined(__FLT16_MAX__)
#error "ringtrain needs the _Float16 type (GCC 12 or Clang 15 on x86-64 or AArch64) for comm.compression=fp16"
#endif

// 16-bit patterns of x, rounded to nearest even.
inline uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN: keep it quiet, never inf
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline uint16_t to_fp16(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t u;
  std::memcpy(&u, &h, sizeof u);
  return u;
}
inline float from_fp16(uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, sizeof h);
  return static_cast<float>(h);
}

// dst[i] = 16-bit pattern of src[i], for w = kBf16 or kFp16.
void pack_wire(WireFormat w, const float* __restrict src, uint16_t* __restrict dst, std::size_t n);
// dst[i] = widened src[i].
void unpack_wire(WireFormat w, const uint16_t* __restrict src, float* __restrict dst, std::size_t n);
// dst[i] += widened src[i] (the reduce step: accumulation in fp32).
void unpack_add_wire(WireFormat w, const uint16_t* __restrict src, float* __restrict dst, std::size_t n);

}  // namespace ringtrain
