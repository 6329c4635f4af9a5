// Gradient wire formats: rounding of bf16/fp16 (to nearest, ties to even,
// NaN and inf kept, fp16's range), and the vector loops against the scalar
// conversions.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ringtrain/comm/wire_format.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {
float bf16(float x) { return from_bf16(to_bf16(x)); }
float fp16(float x) { return from_fp16(to_fp16(x)); }
}  // namespace

TEST_CASE("bf16 keeps exact values and rounds to nearest, ties to even") {
  for (float x : {0.0f, 1.0f, -2.5f, 0.15625f, 256.0f, -65536.0f, 1.5f}) CHECK(bf16(x) == x);
  CHECK(std::signbit(bf16(-0.0f)));
  // 8 significant bits: 1 + 2^-7 is the next value after 1.
  CHECK(bf16(1.0f + 0x1p-8f) == 1.0f);                           // tie: to the even neighbour 1
  CHECK(bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);             // tie: to the even neighbour 1 + 2^-6
  CHECK(bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);      // above the tie: up
  CHECK(bf16(1e-30f) == doctest::Approx(1e-30f).epsilon(0.01));  // fp32's range: no underflow
  CHECK(std::isnan(bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(bf16(-std::numeric_limits<float>::signaling_NaN())));
  CHECK(bf16(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(bf16(-std::numeric_limits<float>::infinity()) == -std::numeric_limits<float>::infinity());
  CHECK(std::isinf(bf16(std::numeric_limits<float>::max())));  // rounds past bf16's largest
}

TEST_CASE("fp16 rounds to nearest even and saturates to inf above 65504") {
  for (float x : {0.0f, 1.0f, -2.5f, 65504.0f, 0x1p-24f}) CHECK(fp16(x) == x);
  CHECK(fp16(1.0f + 0x1p-11f) == 1.0f);                // tie: to even
  CHECK(fp16(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f);  // tie: to even
  CHECK(std::isinf(fp16(65520.0f)));
  CHECK(std::isinf(fp16(-1e6f)));
  CHECK(fp16(1e-9f) == 0.0f);  // below fp16's smallest subnormal
  CHECK(std::isnan(fp16(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("pack, unpack and unpack-add agree with the scalar conversions at every length") {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 30.0f);
  for (WireFormat w : {WireFormat::kBf16, WireFormat::kFp16}) {
    for (std::size_t n : {0, 1, 7, 8, 9, 31, 1000, 1003}) {
      CAPTURE(wire_format_name(w));
      CAPTURE(n);
      std::vector<float> x(n), back(n), acc(n, 0.5f);
      for (auto& v : x) v = dist(gen);
      std::vector<uint16_t> packed(n);
      pack_wire(w, x.data(), packed.data(), n);
      unpack_wire(w, packed.data(), back.data(), n);
      unpack_add_wire(w, packed.data(), acc.data(), n);
      bool same = true;
      for (std::size_t i = 0; i < n; ++i) {
        const uint16_t want = w == WireFormat::kBf16 ? to_bf16(x[i]) : to_fp16(x[i]);
        const float wide = w == WireFormat::kBf16 ? from_bf16(want) : from_fp16(want);
        same = same && packed[i] == want && back[i] == wide && acc[i] == 0.5f + wide;
      }
      CHECK(same);
    }
  }
}

TEST_CASE("comm.compression names") {
  CHECK(parse_wire_format("none") == WireFormat::kFp32);
  CHECK(parse_wire_format("bf16") == WireFormat::kBf16);
  CHECK(parse_wire_format("fp16") == WireFormat::kFp16);
  CHECK(std::string(wire_format_name(WireFormat::kFp16)) == "fp16");
  CHECK_THROWS_AS(parse_wire_format("fp8"), UsageError);
}
