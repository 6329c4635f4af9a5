// Metrics (nn/metrics.hpp): EvalSums bookkeeping and accuracy, Matthews
// correlation (binary formula, one-hot Pearson definition), macro F1, mse/mae.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/util/philox.hpp"

using namespace ringtrain;

namespace {
std::vector<double> confusion(const std::vector<int32_t>& truth, const std::vector<int32_t>& pred, int k) {
  std::vector<double> c(std::size_t(k) * k, 0.0);
  for (std::size_t i = 0; i < truth.size(); ++i) c[std::size_t(truth[i]) * k + pred[i]] += 1.0;
  return c;
}

// MCC as the Pearson correlation of the one-hot encodings of truth and
// predictions (Gorodkin 2004), computed from the samples, not the matrix.
double mcc_by_definition(const std::vector<int32_t>& truth, const std::vector<int32_t>& pred, int k) {
  const double n = double(truth.size());
  std::vector<double> mt(k, 0.0), mp(k, 0.0);
  for (std::size_t i = 0; i < truth.size(); ++i) mt[truth[i]] += 1.0 / n, mp[pred[i]] += 1.0 / n;
  double xy = 0, xx = 0, yy = 0;
  for (std::size_t i = 0; i < truth.size(); ++i)
    for (int c = 0; c < k; ++c) {
      const double x = (truth[i] == c) - mt[c], y = (pred[i] == c) - mp[c];
      xy += x * y, xx += x * x, yy += y * y;
    }
  return xy / std::sqrt(xx * yy);
}
}  // namespace

TEST_CASE("EvalSums: classification sums, accuracy and mean loss") {
  EvalSums sums(3, 3);
  const std::vector<int32_t> t1 = {0, 1, 2, 2}, p1 = {0, 2, 2, 1};
  const std::vector<int32_t> t2 = {1, 0}, p2 = {1, 0};
  sums.add_classification(3.0, t1.data(), p1.data(), 4);
  sums.add_classification(1.5, t2.data(), p2.data(), 2);
  CHECK(sums.count() == 6);
  // Flat layout [loss, count, abs, confusion (truth-major)] is what ranks all-reduce.
  REQUIRE(sums.data().size() == 3 + 9);
  CHECK(sums.data()[0] == 4.5);
  CHECK(sums.data()[3 + 0 * 3 + 0] == 2);  // truth 0, predicted 0
  CHECK(sums.data()[3 + 1 * 3 + 2] == 1);  // truth 1, predicted 2
  CHECK(sums.data()[3 + 2 * 3 + 1] == 1);  // truth 2, predicted 1
  auto m = sums.metrics();
  CHECK(m.at("loss") == doctest::Approx(0.75));
  CHECK(m.at("accuracy") == doctest::Approx(4.0 / 6.0));
  const std::vector<int32_t> t = {0, 1, 2, 2, 1, 0}, p = {0, 2, 2, 1, 1, 0};
  CHECK(m.at("mcc") == doctest::Approx(mcc_by_definition(t, p, 3)));
  CHECK(m.count("macro_f1") == 1);

  // Summing two EvalSums' data (what the all-reduce does) equals one EvalSums over all.
  EvalSums a(3, 3), b(3, 3), all(3, 3);
  a.add_classification(3.0, t1.data(), p1.data(), 4);
  b.add_classification(1.5, t2.data(), p2.data(), 2);
  for (std::size_t i = 0; i < a.data().size(); ++i) a.data()[i] += b.data()[i];
  CHECK(a.metrics() == m);

  sums.clear();
  CHECK(sums.count() == 0);
  CHECK_THROWS(sums.metrics());  // an empty evaluation has no metrics
}

TEST_CASE("matthews_corrcoef: binary case equals (tp*tn - fp*fn) / sqrt(...)") {
  const double tn = 5, fp = 2, fn = 1, tp = 4;
  const std::vector<double> c = {tn, fp, fn, tp};  // [truth][predicted]
  const double want = (tp * tn - fp * fn) / std::sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  CHECK(matthews_corrcoef(c, 2) == doctest::Approx(want));
  CHECK(want == doctest::Approx(18.0 / std::sqrt(1260.0)));
  CHECK(matthews_corrcoef({0, 3, 4, 0}, 2) == doctest::Approx(-1.0));  // always wrong
}

TEST_CASE("matthews_corrcoef: perfect prediction is 1, undefined cases are 0") {
  CHECK(matthews_corrcoef({3, 0, 0, 0, 2, 0, 0, 0, 5}, 3) == doctest::Approx(1.0));
  CHECK(matthews_corrcoef({4, 0, 0, 0, 0, 0, 0, 0, 0}, 3) == 0.0);  // one class only
  CHECK(matthews_corrcoef({2, 0, 0, 3, 0, 0, 1, 0, 0}, 3) == 0.0);  // constant prediction
  CHECK(matthews_corrcoef(std::vector<double>(9, 0.0), 3) == 0.0);
}

TEST_CASE("matthews_corrcoef: multi-class equals the one-hot correlation definition") {
  const Philox rng(5);
  for (int trial = 0; trial < 5; ++trial) {
    const int k = 3 + trial;
    std::vector<int32_t> truth, pred;
    for (int i = 0; i < 200; ++i) {
      truth.push_back(int32_t(rng.below(uint64_t(trial * 1000 + 2 * i), k)));
      // 60% correct, the rest random: a clearly partial correlation.
      const bool right = rng.uniform(uint64_t(trial * 1000 + 2 * i + 1)) < 0.6f;
      pred.push_back(right ? truth.back() : int32_t(rng.below(uint64_t(500000 + trial * 1000 + i), k)));
    }
    INFO("classes ", k);
    const double mcc = matthews_corrcoef(confusion(truth, pred, k), k);
    CHECK(mcc == doctest::Approx(mcc_by_definition(truth, pred, k)).epsilon(1e-9));
    CHECK(mcc > 0.3);
    CHECK(mcc < 0.9);
  }
}

TEST_CASE("macro_f1: hand-computed example, absent classes skipped") {
  // truth [0,0,1,1,2,2], pred [0,1,1,1,2,0]:
  // F1_0 = 2*1/(2+2) = 0.5, F1_1 = 2*2/(2+3) = 0.8, F1_2 = 2*1/(2+1) = 2/3.
  const std::vector<int32_t> t = {0, 0, 1, 1, 2, 2}, p = {0, 1, 1, 1, 2, 0};
  const double want = (0.5 + 0.8 + 2.0 / 3.0) / 3.0;
  CHECK(macro_f1(confusion(t, p, 3), 3) == doctest::Approx(want));
  // A fourth class that occurs nowhere does not count (sklearn's average="macro").
  CHECK(macro_f1(confusion(t, p, 4), 4) == doctest::Approx(want));
  // A class that is only predicted counts with F1 = 0.
  const std::vector<int32_t> p3 = {0, 3, 1, 1, 2, 0};
  // F1_0 = 2*1/(2+2) = 0.5, F1_1 = 2*2/(2+2) = 1, F1_2 = 2/3, F1_3 = 0 (predicted once, never true).
  CHECK(macro_f1(confusion(t, p3, 4), 4) == doctest::Approx((0.5 + 1.0 + 2.0 / 3.0 + 0.0) / 4.0));
  CHECK(macro_f1(confusion(t, t, 3), 3) == doctest::Approx(1.0));
}

TEST_CASE("EvalSums: regression mse and mae") {
  // Two samples, two outputs, diffs [[1, 0], [2, 4]]: loss sum 0.5 + 10, abs sum 7.
  EvalSums sums(0, 2);
  sums.add_regression(10.5, 7.0, 2);
  auto m = sums.metrics();
  CHECK(m.at("loss") == doctest::Approx(5.25));
  CHECK(m.at("mse") == doctest::Approx(5.25));  // mean of diff^2 over all 4 values
  CHECK(m.at("mae") == doctest::Approx(1.75));  // mean |diff| over all 4 values
  CHECK(m.count("accuracy") == 0);
  sums.add_regression(0.0, 1.0, 2);
  m = sums.metrics();
  CHECK(m.at("mse") == doctest::Approx(10.5 / 4));
  CHECK(m.at("mae") == doctest::Approx(8.0 / 8));
}
