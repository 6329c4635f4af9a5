// Philox4x32-10 (util/philox.hpp): Random123 known answers, determinism,
// separation of keys/streams/indices, ranges of uniform()/below(), mix_key.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "ringtrain/util/philox.hpp"

using ringtrain::mix_key;
using ringtrain::Philox;

namespace {
// Builds the generator whose first block is the Random123 counter `ctr` under `key`:
// counter words are (index lo, index hi, stream lo, stream hi).
Philox::Block kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const Philox rng((uint64_t{k1} << 32) | k0, (uint64_t{c3} << 32) | c2);
  return rng.block((uint64_t{c1} << 32) | c0);
}
}  // namespace

TEST_CASE("philox: Random123 known-answer vectors (tests/kat_vectors, philox4x32 10)") {
  CHECK(kat(0, 0, 0, 0, 0, 0) == Philox::Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(kat(~0u, ~0u, ~0u, ~0u, ~0u, ~0u) ==
        Philox::Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(kat(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u) ==
        Philox::Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("philox: deterministic, and keys, streams and indices give different blocks") {
  const Philox a(42, 7), b(42, 7);
  for (uint64_t i = 0; i < 100; ++i) CHECK(a.block(i) == b.block(i));

  CHECK(Philox(42, 7).block(3) != Philox(43, 7).block(3));
  CHECK(Philox(42, 7).block(3) != Philox(42, 8).block(3));
  CHECK(Philox(uint64_t{1} << 32, 0).block(0) != Philox(0, 0).block(0));  // high key word used
  CHECK(Philox(0, uint64_t{1} << 32).block(0) != Philox(0, 0).block(0));  // high stream word used
  CHECK(a.block(uint64_t{1} << 32) != a.block(0));                         // high index word used

  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 5000; ++i) seen.insert(a.u64(i));
  CHECK(seen.size() == 5000);
}

TEST_CASE("philox: uniform() lies in [0, 1) with mean near 1/2") {
  const Philox rng(123, 4);
  float lo = 1.0f, hi = 0.0f;
  double sum = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = rng.uniform(i);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
  }
  CHECK(lo >= 0.0f);
  CHECK(hi < 1.0f);
  CHECK(lo < 0.001f);
  CHECK(hi > 0.999f);
  CHECK(sum / n == doctest::Approx(0.5).epsilon(0.01));
}

TEST_CASE("philox: below(i, n) < n and is roughly uniform") {
  const Philox rng(99, 1);
  for (uint64_t bound : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{7}, uint64_t{1000},
                         (uint64_t{1} << 40) + 3}) {
    bool ok = true;
    for (uint64_t i = 0; i < 2000; ++i) ok = ok && rng.below(i, bound) < bound;
    CHECK_MESSAGE(ok, "bound ", bound);
  }
  for (uint64_t i = 0; i < 100; ++i) CHECK(rng.below(i, 1) == 0);

  // Chi-square over 10 buckets, 100k draws: 9 degrees of freedom, mean 9; a
  // value above 60 has probability far below 1e-8 for a uniform source.
  const int n = 100000, k = 10;
  std::vector<int> counts(k, 0);
  for (int i = 0; i < n; ++i) ++counts[rng.below(i, k)];
  double chi2 = 0.0;
  for (int c : counts) chi2 += (c - n / double(k)) * (c - n / double(k)) / (n / double(k));
  CHECK(chi2 < 60.0);
  CHECK(*std::min_element(counts.begin(), counts.end()) > 0);
}

TEST_CASE("philox: mix_key is deterministic and separates tuples, seed+epoch included") {
  CHECK(mix_key(5, 6, 7) == mix_key(5, 6, 7));
  CHECK(mix_key(1, 2) != mix_key(2, 1));
  CHECK(mix_key(1, 2, 0) != mix_key(2, 1, 0));
  CHECK(mix_key(0, 0) != mix_key(0));
  std::set<uint64_t> keys;
  for (uint64_t s = 0; s < 30; ++s)
    for (uint64_t e = 0; e < 30; ++e)
      for (uint64_t r = 0; r < 4; ++r) keys.insert(mix_key(s, e, r));
  CHECK(keys.size() == 30 * 30 * 4);
}
