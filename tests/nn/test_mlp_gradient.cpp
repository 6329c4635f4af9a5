// Mlp backward against central finite differences of the summed loss, for
// every parameter: relu/tanh, cross-entropy/MSE, and dropout with a fixed key.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ringtrain/nn/loss.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/util/philox.hpp"

using namespace ringtrain;

namespace {
struct Problem {
  int batch = 4;
  std::vector<float> x;          // (batch, in)
  std::vector<int32_t> labels;   // cross-entropy
  std::vector<float> targets;    // MSE, (batch, out)
  bool cross_entropy = true;
  bool training = false;
  uint64_t key = 0;
};

Problem make_problem(const Mlp& net, uint64_t seed, bool ce) {
  const Philox rng(seed, 1);
  Problem p;
  p.cross_entropy = ce;
  uint64_t c = 0;
  for (int i = 0; i < p.batch * net.input_size(); ++i) p.x.push_back(2.0f * rng.uniform(c++) - 1.0f);
  for (int i = 0; i < p.batch; ++i) p.labels.push_back(int32_t(rng.below(c++, net.output_size())));
  for (int i = 0; i < p.batch * net.output_size(); ++i) p.targets.push_back(2.0f * rng.uniform(c++) - 1.0f);
  return p;
}

// He/Glorot kernels from init(), plus non-zero biases so their use is tested too.
void init_with_biases(Mlp& net, uint64_t seed) {
  net.init(seed);
  const Philox rng(seed, 2);
  for (int l = 0; l < net.num_layers(); ++l) {
    const TensorSpec& b = net.layout().find("dense_" + std::to_string(l) + "/bias");
    for (std::size_t i = 0; i < b.size(); ++i) net.params()[b.offset + i] = rng.uniform(100 * l + i) - 0.5f;
  }
}

// Double-precision forward (no dropout); returns the outputs and, via
// min_hidden, the smallest |pre-activation| of any hidden unit.
std::vector<double> reference_forward(const Mlp& net, const std::vector<float>& x, int batch,
                                      double* min_hidden) {
  std::vector<double> in(x.begin(), x.end());
  *min_hidden = 1e300;
  for (int l = 0; l < net.num_layers(); ++l) {
    const std::string name = "dense_" + std::to_string(l);
    const TensorSpec& k = net.layout().find(name + "/kernel");
    const TensorSpec& b = net.layout().find(name + "/bias");
    const std::size_t n_in = k.shape[0], n_out = k.shape[1];
    std::vector<double> z(batch * n_out);
    for (int r = 0; r < batch; ++r)
      for (std::size_t j = 0; j < n_out; ++j) {
        double s = net.params()[b.offset + j];
        for (std::size_t i = 0; i < n_in; ++i) s += in[r * n_in + i] * net.params()[k.offset + i * n_out + j];
        z[r * n_out + j] = s;
      }
    if (l + 1 == net.num_layers()) return z;
    for (double& v : z) {
      *min_hidden = std::min(*min_hidden, std::fabs(v));
      v = net.spec().activation == Activation::kRelu ? std::max(v, 0.0) : std::tanh(v);
    }
    in = std::move(z);
  }
  return in;
}

double loss_at(Mlp& net, const Problem& p) {
  const ConstMatMap out = net.forward(p.x.data(), p.batch, p.training, p.key);
  return p.cross_entropy ? softmax_cross_entropy(out, p.labels.data(), nullptr, nullptr)
                         : mean_squared_error(out, p.targets.data(), nullptr);
}

// Compares backward() with central differences for every parameter. Error
// measure per parameter: |num - ana| / (1e-2 * max(|num|, |ana|) + 2e-4),
// i.e. 1% relative error, with an absolute floor for float round-off in the
// loss (about 1e-6 / (2 eps)). Must stay <= 1 for every parameter.
void check_gradients(Mlp& net, const Problem& p) {
  const ConstMatMap out = net.forward(p.x.data(), p.batch, p.training, p.key);
  std::vector<float> dout(out.size());
  if (p.cross_entropy)
    softmax_cross_entropy(out, p.labels.data(), dout.data(), nullptr);
  else
    mean_squared_error(out, p.targets.data(), dout.data());
  std::vector<float> grads(net.num_params());
  net.backward(dout.data(), grads.data());

  const float eps = 1e-2f;
  float* w = net.params();
  for (const TensorSpec& t : net.layout().tensors()) {
    double worst = 0.0, worst_num = 0.0, worst_ana = 0.0;
    std::size_t worst_i = 0, significant = 0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::size_t idx = t.offset + i;
      const float saved = w[idx];
      w[idx] = saved + eps;
      const double wp = w[idx], lp = loss_at(net, p);
      w[idx] = saved - eps;
      const double wm = w[idx], lm = loss_at(net, p);
      w[idx] = saved;
      const double num = (lp - lm) / (wp - wm), ana = grads[idx];
      const double err = std::fabs(num - ana) / (1e-2 * std::max(std::fabs(num), std::fabs(ana)) + 2e-4);
      if (err > worst) worst = err, worst_i = i, worst_num = num, worst_ana = ana;
      if (std::fabs(ana) > 1e-3) ++significant;
    }
    INFO(t.name, ": worst element ", worst_i, " numeric ", worst_num, " analytic ", worst_ana);
    CHECK(worst <= 1.0);
    CHECK(significant > 0);  // the tensor really takes part in the loss
  }
}

MlpSpec spec_of(Activation act, float dropout = 0.0f) {
  MlpSpec s;
  s.sizes = {5, 7, 4, 3};
  s.activation = act;
  s.dropout = dropout;
  return s;
}

// For ReLU, picks inputs whose hidden pre-activations are all at least 0.05
// away from the kink; a +-0.01 step then never crosses it.
Problem kink_free_problem(const Mlp& net, bool ce) {
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Problem p = make_problem(net, seed, ce);
    double min_hidden = 0.0;
    reference_forward(net, p.x, p.batch, &min_hidden);
    if (net.spec().activation != Activation::kRelu || min_hidden > 0.05) return p;
  }
  FAIL("no kink-free input found");
  return {};
}
}  // namespace

TEST_CASE("mlp gradient: forward matches a double-precision reference") {
  for (Activation act : {Activation::kRelu, Activation::kTanh}) {
    Mlp net(spec_of(act), 4);
    init_with_biases(net, 21);
    const Problem p = make_problem(net, 5, true);
    double min_hidden = 0.0;
    const std::vector<double> want = reference_forward(net, p.x, p.batch, &min_hidden);
    const ConstMatMap out = net.forward(p.x.data(), p.batch, false);
    REQUIRE(std::size_t(out.size()) == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(out.data()[i] == doctest::Approx(want[i]).epsilon(1e-5));
  }
}

TEST_CASE("mlp gradient: relu with softmax cross-entropy") {
  Mlp net(spec_of(Activation::kRelu), 4);
  init_with_biases(net, 1);
  check_gradients(net, kink_free_problem(net, true));
}

TEST_CASE("mlp gradient: relu with mean squared error") {
  Mlp net(spec_of(Activation::kRelu), 4);
  init_with_biases(net, 2);
  check_gradients(net, kink_free_problem(net, false));
}

TEST_CASE("mlp gradient: tanh with softmax cross-entropy") {
  Mlp net(spec_of(Activation::kTanh), 4);
  init_with_biases(net, 3);
  check_gradients(net, make_problem(net, 3, true));
}

TEST_CASE("mlp gradient: tanh with mean squared error") {
  Mlp net(spec_of(Activation::kTanh), 4);
  init_with_biases(net, 4);
  check_gradients(net, make_problem(net, 4, false));
}

TEST_CASE("mlp gradient: dropout in training with a fixed key") {
  // The masks are a pure function of the key, so every evaluation of the loss
  // below sees the same masks and the finite differences are well defined.
  for (bool ce : {true, false}) {
    INFO((ce ? "cross-entropy" : "mse"));
    Mlp net(spec_of(Activation::kTanh, 0.3f), 4);
    init_with_biases(net, 5);
    Problem p = make_problem(net, 6, ce);
    p.training = true;
    p.key = 0xD40F;
    CHECK(loss_at(net, p) == loss_at(net, p));
    Problem eval = p;
    eval.training = false;
    CHECK(loss_at(net, p) != loss_at(net, eval));  // the masks do act
    check_gradients(net, p);
  }
}
