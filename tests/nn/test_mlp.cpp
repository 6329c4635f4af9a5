// Mlp (nn/mlp.hpp): reverse-order parameter layout, deterministic init,
// forward shapes, dropout on/off semantics, gradient buffer bounds, bad specs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/philox.hpp"

using namespace ringtrain;

namespace {
MlpSpec spec_of(std::vector<int> sizes, Activation act = Activation::kRelu, float dropout = 0.0f) {
  MlpSpec s;
  s.sizes = std::move(sizes);
  s.activation = act;
  s.dropout = dropout;
  return s;
}

std::vector<float> random_input(int n, uint64_t key) {
  const Philox rng(key);
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = 2.0f * rng.uniform(i) - 1.0f;
  return x;
}

std::vector<float> output_of(Mlp& net, const std::vector<float>& x, int batch, bool training,
                             uint64_t key = 0) {
  const ConstMatMap out = net.forward(x.data(), batch, training, key);
  return std::vector<float>(out.data(), out.data() + out.size());
}
}  // namespace

TEST_CASE("mlp: parameters are laid out in reverse layer order") {
  Mlp net(spec_of({5, 7, 4, 3}), 8);
  CHECK(net.num_layers() == 3);
  CHECK(net.input_size() == 5);
  CHECK(net.output_size() == 3);
  CHECK(net.max_batch() == 8);
  CHECK(net.spec().architecture() == "5-7-4-3");
  CHECK(net.num_params() == 5 * 7 + 7 + 7 * 4 + 4 + 4 * 3 + 3);
  const auto& t = net.layout().tensors();
  REQUIRE(t.size() == 6);
  const std::vector<std::string> names = {"dense_2/kernel", "dense_2/bias", "dense_1/kernel",
                                          "dense_1/bias",   "dense_0/kernel", "dense_0/bias"};
  const std::vector<std::vector<std::size_t>> shapes = {{4, 3}, {3}, {7, 4}, {4}, {5, 7}, {7}};
  const std::vector<std::size_t> offsets = {0, 12, 15, 43, 47, 82};
  for (std::size_t i = 0; i < t.size(); ++i) {
    CHECK(t[i].name == names[i]);
    CHECK(t[i].shape == shapes[i]);
    CHECK(t[i].offset == offsets[i]);
  }
  CHECK(net.layout().total() == 89);
}

TEST_CASE("mlp: init is a deterministic function of the seed with zero biases") {
  for (Activation act : {Activation::kRelu, Activation::kTanh}) {
    INFO(activation_name(act));
    Mlp a(spec_of({100, 64, 10}, act), 4), b(spec_of({100, 64, 10}, act), 4), c(spec_of({100, 64, 10}, act), 4);
    std::fill_n(b.params(), b.num_params(), 123.0f);  // init must overwrite everything
    a.init(7);
    b.init(7);
    c.init(8);
    CHECK(std::equal(a.params(), a.params() + a.num_params(), b.params()));
    CHECK_FALSE(std::equal(a.params(), a.params() + a.num_params(), c.params()));
    for (int l = 0; l < 2; ++l) {
      const std::string name = "dense_" + std::to_string(l);
      const TensorSpec& k = a.layout().find(name + "/kernel");
      const TensorSpec& bias = a.layout().find(name + "/bias");
      for (std::size_t i = 0; i < bias.size(); ++i) CHECK(b.params()[bias.offset + i] == 0.0f);
      const double in = double(k.shape[0]), out = double(k.shape[1]);
      const double limit = act == Activation::kRelu ? std::sqrt(6.0 / in) : std::sqrt(6.0 / (in + out));
      double max_abs = 0, sum = 0, sq = 0;
      for (std::size_t i = 0; i < k.size(); ++i) {
        const double w = a.params()[k.offset + i];
        max_abs = std::max(max_abs, std::fabs(w));
        sum += w;
        sq += w * w;
      }
      // Uniform(-limit, limit): mean 0, variance limit^2 / 3.
      CHECK(max_abs <= limit * (1 + 1e-6));
      CHECK(max_abs > 0.9 * limit);
      CHECK(std::fabs(sum / k.size()) < 0.1 * limit);
      CHECK(sq / k.size() == doctest::Approx(limit * limit / 3).epsilon(0.15));
    }
  }
}

TEST_CASE("mlp: forward returns (batch, outputs) and rows are independent") {
  Mlp net(spec_of({5, 7, 4, 3}, Activation::kTanh), 6);
  net.init(3);
  const std::vector<float> x = random_input(4 * 5, 1);
  const ConstMatMap out = net.forward(x.data(), 4, false);
  CHECK(out.rows() == 4);
  CHECK(out.cols() == 3);
  const std::vector<float> all(out.data(), out.data() + out.size());
  for (int r = 0; r < 4; ++r) {
    const ConstMatMap one = net.forward(x.data() + 5 * r, 1, false);
    for (int j = 0; j < 3; ++j) CHECK(one(0, j) == doctest::Approx(all[3 * r + j]).epsilon(1e-6));
  }
  std::vector<float> big = random_input(6 * 5, 2);
  CHECK(net.forward(big.data(), 6, false).rows() == 6);  // max_batch is allowed
  CHECK_THROWS(net.forward(big.data(), 7, false));       // beyond the workspaces
  CHECK_THROWS(net.forward(big.data(), 0, false));
}

TEST_CASE("mlp: dropout only acts in training, deterministically per key") {
  Mlp drop(spec_of({6, 16, 16, 3}, Activation::kRelu, 0.5f), 5);
  Mlp plain(spec_of({6, 16, 16, 3}, Activation::kRelu, 0.0f), 5);
  drop.init(11);
  std::copy(drop.params(), drop.params() + drop.num_params(), plain.params());
  const std::vector<float> x = random_input(5 * 6, 9);

  const auto eval = output_of(drop, x, 5, false, 1234);
  CHECK(eval == output_of(plain, x, 5, false));
  CHECK(eval == output_of(plain, x, 5, true, 77));  // dropout 0: training changes nothing

  const auto t1 = output_of(drop, x, 5, true, 1);
  CHECK(t1 != eval);
  CHECK(output_of(drop, x, 5, true, 1) == t1);  // same key, same masks
  CHECK(output_of(drop, x, 5, true, 2) != t1);
  CHECK(output_of(drop, x, 5, false, 2) == eval);  // eval after training: no leftover masks
}

TEST_CASE("mlp: inverted dropout keeps the expected output of the last hidden layer") {
  // With one hidden layer the output is linear in the dropped activations, so
  // its mean over masks equals the evaluation output (kept units scaled 1/keep).
  Mlp net(spec_of({3, 50, 2}, Activation::kRelu, 0.5f), 1);
  net.init(4);
  const std::vector<float> x = {0.9f, -0.4f, 0.7f};
  const auto eval = output_of(net, x, 1, false);
  std::vector<double> mean(2, 0.0);
  const int keys = 4000;
  for (int k = 0; k < keys; ++k) {
    const auto out = output_of(net, x, 1, true, uint64_t(k));
    mean[0] += out[0] / keys;
    mean[1] += out[1] / keys;
  }
  CHECK(mean[0] == doctest::Approx(eval[0]).epsilon(0.1));
  CHECK(mean[1] == doctest::Approx(eval[1]).epsilon(0.1));
}

TEST_CASE("mlp: backward writes exactly grads[0, num_params)") {
  Mlp net(spec_of({5, 7, 4, 3}), 4);
  net.init(1);
  const std::vector<float> x = random_input(4 * 5, 3);
  const std::vector<float> dout = random_input(4 * 3, 4);
  const float sentinel = -777.0f;
  std::vector<float> grads(net.num_params() + 8, std::numeric_limits<float>::quiet_NaN());
  std::fill(grads.begin() + net.num_params(), grads.end(), sentinel);
  net.forward(x.data(), 4, true);
  net.backward(dout.data(), grads.data());
  bool finite = true;
  for (std::size_t i = 0; i < net.num_params(); ++i) finite = finite && std::isfinite(grads[i]);
  CHECK(finite);  // every NaN placeholder was overwritten
  for (std::size_t i = net.num_params(); i < grads.size(); ++i) CHECK(grads[i] == sentinel);
}

TEST_CASE("mlp: invalid specs are usage errors") {
  CHECK_THROWS_AS(Mlp(spec_of({5}), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({}), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 0, 3}), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 7, -3}), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 3}, Activation::kRelu, 1.0f), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 3}, Activation::kRelu, -0.1f), 4), UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 3}, Activation::kRelu, std::numeric_limits<float>::quiet_NaN()), 4),
                  UsageError);
  CHECK_THROWS_AS(Mlp(spec_of({5, 3}), 0), UsageError);
  CHECK_NOTHROW(Mlp(spec_of({5, 3}, Activation::kTanh, 0.99f), 1));
}

TEST_CASE("mlp: parse_activation and activation_name") {
  CHECK(parse_activation("relu") == Activation::kRelu);
  CHECK(parse_activation("tanh") == Activation::kTanh);
  CHECK(std::string(activation_name(Activation::kTanh)) == "tanh");
  CHECK_THROWS_AS(parse_activation("sigmoid"), UsageError);
  CHECK_THROWS_AS(parse_activation("ReLU"), UsageError);
}
