// Gradients must not depend on where buffers happen to sit in memory: bit-exact
// resume and replicas that stay identical need every reduction in a fixed
// order. (Eigen's colwise().sum() peels by alignment and once broke this.)
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "ringtrain/nn/loss.hpp"
#include "ringtrain/nn/mlp.hpp"

using namespace ringtrain;

TEST_CASE("forward and backward are bit-identical for any buffer alignment") {
  MlpSpec spec;
  spec.sizes = {37, 24, 16, 5};
  spec.dropout = 0.25f;
  std::vector<float> reference;
  for (int shift = 0; shift < 16; ++shift) {
    CAPTURE(shift);
    Mlp m(spec, 19);
    m.init(11);
    std::vector<float> x(19 * 37 + shift), g(m.num_params() + shift), d(19 * 5);
    for (std::size_t i = 0; i < 19 * 37; ++i) x[i + shift] = float((i * 37) % 101) / 50.0f - 1.0f;
    std::vector<int32_t> labels(19);
    for (int i = 0; i < 19; ++i) labels[i] = i % 5;
    ConstMatMap out = m.forward(x.data() + shift, 19, true, 1234);
    softmax_cross_entropy(out, labels.data(), d.data(), nullptr);
    m.backward(d.data(), g.data() + shift);
    std::vector<float> grads(g.begin() + shift, g.end());
    if (reference.empty()) reference = grads;
    CHECK(std::memcmp(grads.data(), reference.data(), grads.size() * sizeof(float)) == 0);
  }
}
