// Losses (nn/loss.hpp): softmax cross-entropy and MSE values on hand-computed
// examples, numerical stability, argmax, and finite-difference gradients.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ringtrain/nn/loss.hpp"
#include "ringtrain/util/philox.hpp"

using namespace ringtrain;

TEST_CASE("softmax_cross_entropy: hand-computed values and gradient") {
  // Row 0: logits [0, ln 2, 0], label 1: softmax [1/4, 1/2, 1/4], loss ln 2.
  // Row 1: logits [ln 3, 0, 0], label 2: softmax [3/5, 1/5, 1/5], loss ln 5.
  const float ln2 = std::log(2.0f), ln3 = std::log(3.0f);
  std::vector<float> logits = {0.0f, ln2, 0.0f, ln3, 0.0f, 0.0f};
  const int32_t labels[] = {1, 2};
  std::vector<float> d(6, 99.0f);
  int32_t pred[2] = {-1, -1};
  const double loss = softmax_cross_entropy(ConstMatMap(logits.data(), 2, 3), labels, d.data(), pred);
  CHECK(loss == doctest::Approx(std::log(2.0) + std::log(5.0)).epsilon(1e-6));
  const std::vector<double> want = {0.25, -0.5, 0.25, 0.6, 0.2, 0.2 - 1.0};
  for (int i = 0; i < 6; ++i) CHECK(d[i] == doctest::Approx(want[i]).epsilon(1e-6));
  CHECK(pred[0] == 1);
  CHECK(pred[1] == 0);

  // Two classes [0, ln 2], label 1: ln 1.5; label 0: ln 3. Null outputs are fine.
  std::vector<float> two = {0.0f, ln2, 0.0f, ln2};
  const int32_t lab2[] = {1, 0};
  CHECK(softmax_cross_entropy(ConstMatMap(two.data(), 2, 2), lab2, nullptr, nullptr) ==
        doctest::Approx(std::log(1.5) + std::log(3.0)).epsilon(1e-6));
}

TEST_CASE("softmax_cross_entropy: stable for huge logits") {
  std::vector<float> logits = {1000.0f, 1000.0f, 1000.0f,   // uniform: ln 3
                               1000.0f, -1000.0f, 0.0f,     // label 1: 2000
                               -1000.0f, -1000.0f, -999.0f};  // label 2: ln(1 + 2/e)
  const int32_t labels[] = {0, 1, 2};
  std::vector<float> d(9);
  int32_t pred[3];
  const double loss = softmax_cross_entropy(ConstMatMap(logits.data(), 3, 3), labels, d.data(), pred);
  CHECK(std::isfinite(loss));
  CHECK(loss == doctest::Approx(std::log(3.0) + 2000.0 + std::log(1.0 + 2.0 / std::exp(1.0))).epsilon(1e-6));
  for (float v : d) CHECK(std::isfinite(v));
  // Each row of the gradient sums to 0. The tolerance allows for log_z being a
  // float near 1000 (ulp 6e-5), which shifts exp(row - log_z) by ~3e-5 relative.
  for (int r = 0; r < 3; ++r) CHECK(d[3 * r] + d[3 * r + 1] + d[3 * r + 2] == doctest::Approx(0.0).epsilon(1e-4));
  CHECK(d[0] == doctest::Approx(1.0 / 3 - 1.0));
  CHECK(d[3 + 1] == doctest::Approx(-1.0));
  CHECK(pred[1] == 0);
  CHECK(pred[2] == 2);
}

TEST_CASE("softmax_cross_entropy: predicted is the argmax of each row") {
  std::vector<float> logits = {0.1f, -2.0f, 0.3f, 0.2f,
                               5.0f, 4.9f, -1.0f, 0.0f,
                               -3.0f, -2.0f, -1.5f, -1.6f};
  const int32_t labels[] = {0, 0, 0};
  int32_t pred[3] = {-1, -1, -1};
  softmax_cross_entropy(ConstMatMap(logits.data(), 3, 4), labels, nullptr, pred);
  CHECK(pred[0] == 2);
  CHECK(pred[1] == 0);
  CHECK(pred[2] == 2);
}

TEST_CASE("softmax_cross_entropy: dlogits match central differences") {
  const int batch = 3, k = 5;
  const Philox rng(11);
  std::vector<float> logits(batch * k);
  for (int i = 0; i < batch * k; ++i) logits[i] = 4.0f * rng.uniform(i) - 2.0f;
  const int32_t labels[] = {4, 0, 2};
  std::vector<float> d(batch * k);
  softmax_cross_entropy(ConstMatMap(logits.data(), batch, k), labels, d.data(), nullptr);
  const float eps = 1e-2f;
  for (int i = 0; i < batch * k; ++i) {
    std::vector<float> p = logits, m = logits;
    p[i] += eps;
    m[i] -= eps;
    const double num = (softmax_cross_entropy(ConstMatMap(p.data(), batch, k), labels, nullptr, nullptr) -
                        softmax_cross_entropy(ConstMatMap(m.data(), batch, k), labels, nullptr, nullptr)) /
                       (double(p[i]) - double(m[i]));
    INFO("logit ", i);
    CHECK(std::fabs(num - d[i]) <= 1e-2 * std::fabs(d[i]) + 1e-4);
  }
}

TEST_CASE("mean_squared_error: hand-computed value, gradient and abs_sum") {
  // diffs [[1, 0], [2, 4]]: per-sample means 0.5 and 10, sum 10.5.
  std::vector<float> pred = {1.0f, 2.0f, 3.0f, 5.0f}, targets = {0.0f, 2.0f, 1.0f, 1.0f};
  std::vector<float> d(4, 99.0f);
  double abs_sum = 1.0;  // accumulated into, not overwritten
  const double loss = mean_squared_error(ConstMatMap(pred.data(), 2, 2), targets.data(), d.data(), &abs_sum);
  CHECK(loss == doctest::Approx(10.5));
  CHECK(abs_sum == doctest::Approx(1.0 + 7.0));
  // d/dpred of sum_samples mean_k diff^2 = 2 diff / K = diff here.
  CHECK(d == std::vector<float>{1.0f, 0.0f, 2.0f, 4.0f});

  // K = 1 and negative differences; null outputs are fine.
  std::vector<float> p1 = {-1.0f, 2.5f}, t1 = {1.0f, 2.0f};
  CHECK(mean_squared_error(ConstMatMap(p1.data(), 2, 1), t1.data(), nullptr) == doctest::Approx(4.25));
}

TEST_CASE("mean_squared_error: dpred matches central differences") {
  const int batch = 4, k = 3;
  const Philox rng(12);
  std::vector<float> pred(batch * k), targets(batch * k);
  for (int i = 0; i < batch * k; ++i) {
    pred[i] = 2.0f * rng.uniform(2 * i) - 1.0f;
    targets[i] = 2.0f * rng.uniform(2 * i + 1) - 1.0f;
  }
  std::vector<float> d(batch * k);
  mean_squared_error(ConstMatMap(pred.data(), batch, k), targets.data(), d.data());
  const float eps = 1e-2f;
  for (int i = 0; i < batch * k; ++i) {
    std::vector<float> p = pred, m = pred;
    p[i] += eps;
    m[i] -= eps;
    const double num = (mean_squared_error(ConstMatMap(p.data(), batch, k), targets.data(), nullptr) -
                        mean_squared_error(ConstMatMap(m.data(), batch, k), targets.data(), nullptr)) /
                       (double(p[i]) - double(m[i]));
    INFO("output ", i);
    CHECK(std::fabs(num - d[i]) <= 1e-2 * std::fabs(d[i]) + 1e-4);
  }
}
