// ShardSampler (data/sampler.hpp): equal shards, dropped remainder, the
// unshuffled global order rule, and per-(seed, epoch, rank) shuffles.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <set>
#include <vector>

#include "ringtrain/data/sampler.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {
// The whole local order of the current epoch, step by step.
std::vector<int64_t> epoch_order(const ShardSampler& s) {
  std::vector<int64_t> out;
  for (int64_t step = 0; step < s.steps_per_epoch(); ++step) {
    const int64_t* rows = s.batch_rows(step);
    out.insert(out.end(), rows, rows + s.batch_size(step));
  }
  return out;
}

std::vector<int64_t> shuffled_order(int64_t n, int rank, int world, uint64_t seed, int64_t epoch) {
  ShardSampler s(n, rank, world, 7, true, seed);
  s.set_epoch(epoch);
  return epoch_order(s);
}

bool is_permutation_of_iota(std::vector<int64_t> v, int64_t n) {
  if (int64_t(v.size()) != n) return false;
  std::sort(v.begin(), v.end());
  for (int64_t i = 0; i < n; ++i)
    if (v[i] != i) return false;
  return true;
}
}  // namespace

TEST_CASE("sampler: equal shards cover rows [0, p*floor(N/p)) exactly once") {
  for (int p = 1; p <= 5; ++p)
    for (int64_t n : {int64_t(p), int64_t(p + 1), int64_t(10), int64_t(37), int64_t(100)}) {
      for (int b : {1, 3, 8}) {
        INFO("p=", p, " N=", n, " b=", b);
        const int64_t rows = n / p;
        std::vector<int> hits(n, 0);
        for (int r = 0; r < p; ++r) {
          ShardSampler s(n, r, p, b, false, 0);
          CHECK(s.rows_per_rank() == rows);
          CHECK(s.dropped_rows() == n % p);
          CHECK(s.steps_per_epoch() == (rows + b - 1) / b);
          const int64_t last = s.steps_per_epoch() - 1;
          for (int64_t t = 0; t < last; ++t) CHECK(s.batch_size(t) == b);
          CHECK(s.batch_size(last) == rows - last * b);
          CHECK(s.batch_size(last) > 0);
          for (int64_t j : epoch_order(s)) {
            const int64_t g = ShardSampler::global_row(j, r, p);
            REQUIRE(g >= 0);
            REQUIRE(g < n);
            CHECK(g % p == r);  // rank r owns {i : i mod p == r}
            ++hits[g];
          }
        }
        for (int64_t g = 0; g < n; ++g) CHECK(hits[g] == (g < p * rows ? 1 : 0));
      }
    }
}

TEST_CASE("sampler: unshuffled, global step s consumes rows [s*p*b, (s+1)*p*b)") {
  for (int p = 1; p <= 5; ++p)
    for (int64_t n : {int64_t(p), int64_t(p + 1), int64_t(10), int64_t(37), int64_t(100)})
      for (int b : {1, 2, 5}) {
        INFO("p=", p, " N=", n, " b=", b);
        std::vector<ShardSampler> ranks;
        for (int r = 0; r < p; ++r) ranks.emplace_back(n, r, p, b, false, 123);
        const int64_t used = p * (n / p);
        for (int64_t step = 0; step < ranks[0].steps_per_epoch(); ++step) {
          std::vector<int64_t> got;
          for (int r = 0; r < p; ++r) {
            CHECK(ranks[r].batch_size(step) == ranks[0].batch_size(step));  // same on all ranks
            const int64_t* rows = ranks[r].batch_rows(step);
            for (int i = 0; i < ranks[r].batch_size(step); ++i)
              got.push_back(ShardSampler::global_row(rows[i], r, p));
          }
          std::sort(got.begin(), got.end());
          std::vector<int64_t> want(std::min<int64_t>((step + 1) * p * b, used) - step * p * b);
          std::iota(want.begin(), want.end(), step * p * b);
          CHECK(got == want);
        }
      }
}

TEST_CASE("sampler: unshuffled order is the same in every epoch") {
  ShardSampler s(40, 1, 3, 4, false, 9);
  const auto e0 = epoch_order(s);
  s.set_epoch(5);
  CHECK(s.epoch() == 5);
  CHECK(epoch_order(s) == e0);
}

TEST_CASE("sampler: shuffled epochs are permutations that change with the epoch") {
  for (int p : {1, 3, 4})
    for (int64_t n : {int64_t(37), int64_t(100)}) {
      INFO("p=", p, " N=", n);
      ShardSampler s(n, p - 1, p, 7, true, 2024);
      std::set<std::vector<int64_t>> orders;
      for (int64_t epoch = 0; epoch < 6; ++epoch) {
        s.set_epoch(epoch);
        const auto order = epoch_order(s);
        CHECK(is_permutation_of_iota(order, n / p));
        orders.insert(order);
      }
      CHECK(orders.size() == 6);
    }
}

TEST_CASE("sampler: (seed, epoch) pairs never collide, seed+epoch included") {
  // 441 permutations of 50 rows; 50! is so large that any repeat is a keying bug.
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed <= 20; ++seed)
    for (int64_t epoch = 0; epoch <= 20; ++epoch) seen.insert(shuffled_order(50, 0, 1, seed, epoch));
  CHECK(seen.size() == 441);
  CHECK(shuffled_order(50, 0, 1, 1, 2) != shuffled_order(50, 0, 1, 2, 1));
  CHECK(shuffled_order(50, 0, 1, 0, 3) != shuffled_order(50, 0, 1, 3, 0));
}

TEST_CASE("sampler: ranks get different permutations; (seed, epoch, rank) reproduces") {
  const auto r0 = shuffled_order(100, 0, 2, 5, 1), r1 = shuffled_order(100, 1, 2, 5, 1);
  CHECK(is_permutation_of_iota(r0, 50));
  CHECK(is_permutation_of_iota(r1, 50));
  CHECK(r0 != r1);
  CHECK(shuffled_order(100, 1, 2, 5, 1) == r1);
  CHECK(shuffled_order(100, 1, 2, 6, 1) != r1);  // the seed matters

  // Resuming: going back to an epoch on the same object gives its order again.
  ShardSampler s(100, 1, 2, 7, true, 5);
  s.set_epoch(1);
  const auto first = epoch_order(s);
  s.set_epoch(4);
  s.set_epoch(1);
  CHECK(epoch_order(s) == first);
  CHECK(first == r1);
  // Shuffling actually reorders (50 rows staying sorted has probability 1/50!).
  std::vector<int64_t> sorted(50);
  std::iota(sorted.begin(), sorted.end(), 0);
  CHECK(first != sorted);
}

TEST_CASE("sampler: too few rows or a non-positive batch are usage errors") {
  CHECK_THROWS_AS(ShardSampler(3, 0, 4, 8, false, 0), UsageError);
  CHECK_THROWS_AS(ShardSampler(0, 0, 1, 8, false, 0), UsageError);
  CHECK_THROWS_AS(ShardSampler(100, 0, 2, 0, false, 0), UsageError);
  CHECK_THROWS_AS(ShardSampler(100, 0, 2, -3, true, 0), UsageError);
  CHECK_NOTHROW(ShardSampler(4, 3, 4, 8, false, 0));
}

TEST_CASE("sampler: train.accumulate makes a step of k micro-batches, the same order as batch k*b") {
  // 23 rows per rank, b = 4, k = 3: steps of 12 rows, the last one of 11.
  for (const bool shuffle : {false, true}) {
    CAPTURE(shuffle);
    ShardSampler acc(46, 1, 2, 4, shuffle, 9), whole(46, 1, 2, 12, shuffle, 9);
    acc.set_accumulate(3);
    CHECK(acc.accumulate() == 3);
    CHECK(acc.micro_batch() == 4);
    CHECK(acc.step_rows() == 12);
    CHECK(acc.steps_per_epoch() == whole.steps_per_epoch());
    CHECK(acc.steps_per_epoch() == 2);
    for (int64_t e = 0; e < 2; ++e) {
      acc.set_epoch(e);
      whole.set_epoch(e);
      for (int64_t s = 0; s < 2; ++s) {
        CHECK(acc.batch_size(s) == whole.batch_size(s));
        CHECK(std::equal(acc.batch_rows(s), acc.batch_rows(s) + acc.batch_size(s), whole.batch_rows(s)));
      }
    }
    CHECK(acc.batch_size(1) == 11);
  }
  ShardSampler one(46, 0, 2, 4, false, 9);
  one.set_accumulate(1);
  CHECK(one.steps_per_epoch() == 6);  // k = 1: as before
  CHECK_THROWS_WITH_AS(one.set_accumulate(0), "train.accumulate: must be >= 1, got 0", UsageError);
  CHECK_THROWS_WITH_AS(one.set_accumulate(6), doctest::Contains("train.accumulate: 6 micro-batches x "
                                                                "train.batch_per_rank 4 = 24 rows per step, more "
                                                                "than the 23 training rows"),
                       UsageError);
  one.set_accumulate(5);  // 20 of 23 rows: fits
  CHECK(one.steps_per_epoch() == 2);
}

TEST_CASE("shuffle_in_place: a deterministic, key-dependent, uniform permutation") {
  std::vector<int64_t> a(30), b;
  std::iota(a.begin(), a.end(), 0);
  b = a;
  shuffle_in_place(a, 77);
  shuffle_in_place(b, 77);
  CHECK(a == b);
  CHECK(is_permutation_of_iota(a, 30));
  std::vector<int64_t> c(30);
  std::iota(c.begin(), c.end(), 0);
  shuffle_in_place(c, 78);
  CHECK(c != a);

  // All 6 orders of 3 elements appear with frequency near 1/6 (a Sattolo-style
  // off-by-one would produce only the 2 cyclic ones).
  std::vector<std::vector<int64_t>> perms;
  std::vector<int> counts(6, 0);
  const int trials = 6000;
  for (uint64_t key = 0; key < uint64_t(trials); ++key) {
    std::vector<int64_t> v = {0, 1, 2};
    shuffle_in_place(v, key);
    auto it = std::find(perms.begin(), perms.end(), v);
    if (it == perms.end()) {
      perms.push_back(v);
      it = perms.end() - 1;
    }
    REQUIRE(perms.size() <= 6);
    ++counts[it - perms.begin()];
  }
  CHECK(perms.size() == 6);
  for (int c6 : counts) CHECK(std::abs(c6 - trials / 6) < 150);  // ~5 sigma
}
