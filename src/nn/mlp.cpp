// Mlp forward/backward over preallocated workspaces (see mlp.hpp).
#include "ringtrain/nn/mlp.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "ringtrain/nn/gemm.hpp"
#include "ringtrain/util/error.hpp"
#include "ringtrain/util/philox.hpp"

namespace ringtrain {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "tanh") return Activation::kTanh;
  throw UsageError(str_cat("model.activation: expected relu or tanh, got '", name, "'"));
}

const char* activation_name(Activation a) { return a == Activation::kRelu ? "relu" : "tanh"; }

std::string MlpSpec::architecture() const {
  std::string s;
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? "-" : "") + std::to_string(sizes[i]);
  return s;
}

std::size_t validate_mlp_spec(const MlpSpec& spec, const std::string& context) {
  if (spec.sizes.size() < 2) throw UsageError(str_cat(context, ": need at least an input and an output size"));
  const std::size_t hidden = spec.sizes.size() - 2;
  if (hidden > std::size_t(kMaxHiddenLayers))
    throw UsageError(str_cat(context, ": ", hidden, " hidden layers, at most ", kMaxHiddenLayers, " are supported"));
  std::size_t total = 0;
  for (std::size_t l = 0; l < spec.sizes.size(); ++l) {
    const int s = spec.sizes[l];
    if (s <= 0 || s > kMaxLayerWidth)
      throw UsageError(str_cat(context, ": layer sizes must lie in [1, ", kMaxLayerWidth, "], got ", s,
                               hidden <= 8 ? " in " + spec.architecture() : std::string()));
    if (l == 0) continue;
    // kernel in x out plus bias out: each term below 2^48, the sum checked
    std::size_t layer = std::size_t(spec.sizes[l - 1]) * std::size_t(s) + std::size_t(s);
    if (__builtin_add_overflow(total, layer, &total) || total > kMaxParams)
      throw UsageError(str_cat(context, ": more than ", kMaxParams, " parameters",
                               hidden <= 8 ? " in " + spec.architecture() : std::string()));
  }
  return total;
}

ParamLayout mlp_layout(const MlpSpec& spec) {
  validate_mlp_spec(spec, "model.hidden");
  ParamLayout layout;
  // Reverse order: the output layer's tensors come first in the flat buffer.
  for (int l = int(spec.sizes.size()) - 2; l >= 0; --l) {
    const std::string name = "dense_" + std::to_string(l);
    layout.add(name + "/kernel", {std::size_t(spec.sizes[l]), std::size_t(spec.sizes[l + 1])});
    layout.add(name + "/bias", {std::size_t(spec.sizes[l + 1])});
  }
  return layout;
}

std::vector<int> parse_architecture(const std::string& text, const std::string& context) {
  std::vector<int> sizes;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t dash = std::min(text.find('-', pos), text.size());
    const std::string item = text.substr(pos, dash - pos);
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0 || v > kMaxLayerWidth)
      throw UsageError(str_cat(context, ": malformed architecture '", text.substr(0, 80),
                               text.size() > 80 ? "...'" : "'"));
    // The layer count is checked as it grows: the text may be huge.
    if (sizes.size() > std::size_t(kMaxHiddenLayers) + 1)
      throw UsageError(str_cat(context, ": architecture with more than ", kMaxHiddenLayers,
                               " hidden layers ('", text.substr(0, 40), "...')"));
    sizes.push_back(int(v));
    pos = dash + 1;
  }
  if (sizes.size() < 2) throw UsageError(str_cat(context, ": malformed architecture '", text.substr(0, 80), "'"));
  return sizes;
}

Mlp::Mlp(MlpSpec spec, int max_batch)
    : spec_(std::move(spec)), max_batch_(max_batch), layout_(mlp_layout(spec_)) {
  if (!(spec_.dropout >= 0.0f && spec_.dropout < 1.0f))
    throw UsageError(str_cat("model.dropout: expected a value in [0, 1), got ", spec_.dropout));
  if (max_batch_ <= 0) throw UsageError(str_cat("batch size must be positive, got ", max_batch_));

  const int n = num_layers();
  layers_.resize(n);
  for (int l = 0; l < n; ++l) {
    Layer& L = layers_[l];
    L.in = spec_.sizes[l];
    L.out = spec_.sizes[l + 1];
    const std::string name = "dense_" + std::to_string(l);
    L.kernel = layout_.find(name + "/kernel").offset;
    L.bias = layout_.find(name + "/bias").offset;
  }
  ready_points_ = gradient_ready_points();
  // Allocate and touch every buffer once, here, never in the step loop.
  params_.assign(layout_.total(), 0.0f);
  for (int l = 0; l < n; ++l) {
    Layer& L = layers_[l];
    const std::size_t sz = std::size_t(max_batch_) * L.out;
    L.z.assign(sz, 0.0f);
    L.dz.assign(sz, 0.0f);
    if (l + 1 < n) {
      L.h.assign(sz, 0.0f);
      if (spec_.dropout > 0.0f) {
        L.scale.assign(sz, 0.0f);
        L.a.assign(sz, 0.0f);
      }
    }
  }
}

void Mlp::init(uint64_t seed) {
  for (int l = 0; l < num_layers(); ++l) {
    Layer& L = layers_[l];
    const bool relu = spec_.activation == Activation::kRelu;
    const float limit = relu ? std::sqrt(6.0f / L.in) : std::sqrt(6.0f / (L.in + L.out));
    const Philox rng(mix_key(seed, 0x1A17u, static_cast<uint64_t>(l)));
    const std::size_t count = std::size_t(L.in) * L.out;
    for (std::size_t i = 0; i < count; ++i)
      params_[L.kernel + i] = (2.0f * rng.uniform(i) - 1.0f) * limit;
    std::fill_n(params_.begin() + L.bias, L.out, 0.0f);
  }
}

const float* Mlp::layer_input(int l) const {
  if (l == 0) return input_;
  const Layer& P = layers_[l - 1];
  return dropout_active_ ? P.a.data() : P.h.data();
}

ConstMatMap Mlp::forward(const float* x, int batch, bool training, uint64_t dropout_key) {
  RT_CHECK(batch > 0 && batch <= max_batch_, "batch ", batch, " outside (0, ", max_batch_, "]");
  input_ = x;
  batch_ = batch;
  dropout_active_ = training && spec_.dropout > 0.0f;
  const float keep = 1.0f - spec_.dropout;
  const int n = num_layers();
  for (int l = 0; l < n; ++l) {
    Layer& L = layers_[l];
    ConstMatMap in(layer_input(l), batch, L.in);
    ConstMatMap w(params_.data() + L.kernel, L.in, L.out);
    ConstRowVecMap b(params_.data() + L.bias, L.out);
    MatMap z(L.z.data(), batch, L.out);
    matmul(in, w, z);  // (batch, out)
    z.rowwise() += b;
    if (l + 1 == n) break;
    MatMap h(L.h.data(), batch, L.out);
    if (spec_.activation == Activation::kRelu)
      h = z.cwiseMax(0.0f);
    else
      h = z.array().tanh().matrix();
    if (dropout_active_) {
      // Inverted dropout: kept units are scaled by 1/keep so evaluation
      // needs no rescaling. The mask is a pure function of (key, layer, i).
      const Philox rng(dropout_key, static_cast<uint64_t>(l));
      const std::size_t count = std::size_t(batch) * L.out;
      for (std::size_t i = 0; i < count; ++i) {
        L.scale[i] = rng.uniform(i) < keep ? 1.0f / keep : 0.0f;
        L.a[i] = L.h[i] * L.scale[i];
      }
    }
  }
  return ConstMatMap(layers_[n - 1].z.data(), batch, layers_[n - 1].out);
}

std::vector<std::size_t> Mlp::gradient_ready_points() const {
  std::vector<std::size_t> points;
  std::size_t end = 0;
  for (int l = num_layers() - 1; l >= 0; --l) {
    const Layer& L = layers_[l];
    end = std::max({end, L.kernel + std::size_t(L.in) * L.out, L.bias + std::size_t(L.out)});
    points.push_back(end);
  }
  return points;
}

void Mlp::backward(const float* dout, float* grads, GradientsReady* ready) {
  const int n = num_layers();
  const int batch = batch_;
  ConstMatMap dz_last(dout, batch, layers_[n - 1].out);
  for (int l = n - 1; l >= 0; --l) {
    Layer& L = layers_[l];
    ConstMatMap dz = (l == n - 1) ? dz_last : ConstMatMap(L.dz.data(), batch, L.out);
    ConstMatMap in(layer_input(l), batch, L.in);
    MatMap dw(grads + L.kernel, L.in, L.out);
    RowVecMap db(grads + L.bias, L.out);
    matmul_tn(in, dz, dw);  // (in, out)
    // Bias gradient summed row by row, in row order. (Eigen's colwise().sum()
    // peels by address alignment, so its rounding changed between runs.)
    db = dz.row(0);
    for (int i = 1; i < batch; ++i) db += dz.row(i);
    if (ready) ready->gradients_ready(ready_points_[std::size_t(n - 1 - l)]);
    if (l == 0) break;  // no gradient w.r.t. the data
    Layer& P = layers_[l - 1];
    ConstMatMap w(params_.data() + L.kernel, L.in, L.out);
    MatMap dprev(P.dz.data(), batch, P.out);
    matmul_nt(dz, w, dprev);  // (batch, in): dL/d(input of layer l)
    if (dropout_active_) dprev = dprev.cwiseProduct(ConstMatMap(P.scale.data(), batch, P.out));
    ConstMatMap h(P.h.data(), batch, P.out);
    if (spec_.activation == Activation::kRelu)
      dprev = (h.array() > 0.0f).select(dprev, 0.0f);
    else
      dprev = (dprev.array() * (1.0f - h.array().square())).matrix();
  }
}

}  // namespace ringtrain
