// split_rows (data/sampler.hpp): the seeded train/validation split used when no
// validation file is given: sizes, disjointness, coverage, determinism, errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#include "ringtrain/data/sampler.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

TEST_CASE("split_rows: sizes, disjoint, sorted, and together exactly [0, N)") {
  struct Case {
    int64_t n;
    double f;
    int64_t val;
  };
  // val = round(f * N), halves rounded away from zero.
  for (const Case c : {Case{100, 0.1, 10}, Case{7, 0.5, 4}, Case{10, 0.25, 3}, Case{1000, 0.333, 333},
                       Case{2, 0.5, 1}, Case{60000, 1.0 / 12, 5000}}) {
    INFO("N=", c.n, " f=", c.f);
    const RowSplit s = split_rows(c.n, c.f, 42);
    CHECK(int64_t(s.val.size()) == c.val);
    CHECK(int64_t(s.train.size()) == c.n - c.val);
    CHECK(std::is_sorted(s.val.begin(), s.val.end()));
    CHECK(std::is_sorted(s.train.begin(), s.train.end()));
    std::vector<int64_t> all = s.train;
    all.insert(all.end(), s.val.begin(), s.val.end());
    std::sort(all.begin(), all.end());
    bool covers = int64_t(all.size()) == c.n;
    for (int64_t i = 0; covers && i < c.n; ++i) covers = all[i] == i;
    CHECK(covers);  // disjoint (no repeats) and complete
  }
}

TEST_CASE("split_rows: deterministic per seed, different across seeds") {
  const RowSplit a = split_rows(500, 0.2, 7), b = split_rows(500, 0.2, 7);
  CHECK(a.val == b.val);
  CHECK(a.train == b.train);
  const RowSplit c = split_rows(500, 0.2, 8);
  CHECK(c.val != a.val);
  // Not a trivial prefix/suffix split: the validation rows are spread out.
  CHECK(a.val.front() < 100);
  CHECK(a.val.back() > 400);
}

TEST_CASE("split_rows: every row is about equally likely to be held out") {
  const int64_t n = 20;
  std::vector<int> held(n, 0);
  const int seeds = 2000;
  for (int seed = 0; seed < seeds; ++seed)
    for (int64_t r : split_rows(n, 0.25, uint64_t(seed)).val) ++held[r];
  // Expected 500 per row, binomial sd ~19.4.
  for (int64_t r = 0; r < n; ++r) CHECK(std::abs(held[r] - 500) < 100);
}

TEST_CASE("split_rows: bad fractions are usage errors") {
  for (double f : {0.0, 1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()})
    CHECK_THROWS_AS(split_rows(100, f, 0), UsageError);
  CHECK_THROWS_AS(split_rows(10, 0.01, 0), UsageError);  // rounds to 0 validation rows
  CHECK_THROWS_AS(split_rows(10, 0.99, 0), UsageError);  // rounds to 0 training rows
  CHECK_THROWS_AS(split_rows(1, 0.5, 0), UsageError);
}
