// Philox4x32-10: a counter-based random generator (Salmon et al., SC'11).
//
// Why counter-based: every random number is a pure function of (key, counter),
// so a shuffle keyed by (seed, epoch, rank) or a dropout mask keyed by
// (seed, step, rank, layer) can be recomputed after a resume without storing
// generator state, and distinct keys never share a stream the way seed+epoch
// schemes do (seed 1 epoch 2 == seed 2 epoch 1).
#pragma once

#include <array>
#include <cstdint>

namespace ringtrain {

class Philox {
 public:
  using Block = std::array<uint32_t, 4>;

  // The key is 64 bits; the remaining 64 bits of "stream" go into the
  // counter's upper words so callers can separate purposes (shuffle, dropout).
  explicit Philox(uint64_t key, uint64_t stream = 0)
      : key_{static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)},
        stream_(stream) {}

  // Four 32-bit random words for position `index` of this stream.
  Block block(uint64_t index) const {
    Block ctr{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
              static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)};
    std::array<uint32_t, 2> k = key_;
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = uint64_t{0xD2511F53u} * ctr[0];
      const uint64_t p1 = uint64_t{0xCD9E8D57u} * ctr[2];
      ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ k[0], static_cast<uint32_t>(p1),
             static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ k[1], static_cast<uint32_t>(p0)};
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    return ctr;
  }

  uint64_t u64(uint64_t index) const {
    const Block b = block(index);
    return (uint64_t{b[0]} << 32) | b[1];
  }

  // Uniform in [0, 1) with 24 random bits (exact in float).
  float uniform(uint64_t index) const {
    return static_cast<float>(block(index)[0] >> 8) * (1.0f / 16777216.0f);
  }

  // Uniform integer in [0, bound) (Lemire's multiply; bias below 2^-32 for
  // any bound that fits the data sizes we shuffle).
  uint64_t below(uint64_t index, uint64_t bound) const {
    __extension__ using U128 = unsigned __int128;
    return static_cast<uint64_t>((static_cast<U128>(u64(index)) * bound) >> 64);
  }

 private:
  std::array<uint32_t, 2> key_;
  uint64_t stream_;
};

// Mixes several 64-bit values into one key (splitmix64 finaliser per step),
// so (seed, epoch, rank) tuples map to unrelated keys.
inline uint64_t mix_key(uint64_t h) {
  h += 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}
template <typename... Rest>
uint64_t mix_key(uint64_t first, uint64_t second, Rest... rest) {
  return mix_key(mix_key(first) ^ (second * 0xD6E8FEB86659FD93ull + 1), rest...);
}

}  // namespace ringtrain
