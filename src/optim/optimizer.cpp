// SGD (momentum, Nesterov, L2) and AdamW over flat buffers (see optimizer.hpp).
#include "ringtrain/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

Sgd::Sgd(std::size_t n, double momentum, bool nesterov, double weight_decay)
    : Optimizer(n), momentum_(momentum), weight_decay_(weight_decay), nesterov_(nesterov) {
  if (momentum_ != 0.0) slots_.push_back({"momentum", BigBuffer<float>(n, 0.0f)});
}

void Optimizer::freeze(const std::vector<std::pair<std::size_t, std::size_t>>& frozen) {
  std::vector<char> mask(n_, 1);
  for (const auto& [b, e] : frozen) {
    RT_CHECK(b <= e && e <= n_, "frozen range ", b, "..", e, " of ", n_);
    std::fill(mask.begin() + std::ptrdiff_t(b), mask.begin() + std::ptrdiff_t(e), 0);
  }
  trainable_.clear();
  for (std::size_t i = 0; i < n_;) {
    if (!mask[i]) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < n_ && mask[j]) ++j;
    trainable_.emplace_back(i, j);
    i = j;
  }
}

void Optimizer::step_shard(float* w, const float* g, double lr, float scale, std::size_t begin, std::size_t end) {
  RT_CHECK(begin <= end && end <= n_, "optimizer shard ", begin, "..", end, " of ", n_);
  ++steps_;
  for (const auto& [b, e] : trainable_) {
    const std::size_t lo = std::max(b, begin), hi = std::min(e, end);
    if (lo < hi) update(w, g, lr, scale, lo, hi);
  }
}

void Sgd::update(float* w, const float* g, double lr_d, float scale, std::size_t begin, std::size_t end) {
  // Every constant is a hyper-parameter rounded once; none is derived in
  // float from another rounded value.
  const float lr = static_cast<float>(lr_d), mu = static_cast<float>(momentum_),
              wd = static_cast<float>(weight_decay_);
  if (mu == 0.0f) {
    for (std::size_t i = begin; i < end; ++i) w[i] -= lr * (scale * g[i] + wd * w[i]);
    return;
  }
  float* v = slots_[0].values.data();
  for (std::size_t i = begin; i < end; ++i) {
    const float gi = scale * g[i] + wd * w[i];
    v[i] = mu * v[i] + gi;
    w[i] -= lr * (nesterov_ ? gi + mu * v[i] : v[i]);
  }
}

std::vector<std::pair<std::string, double>> Sgd::hyper_parameters() const {
  return {{"momentum", momentum_}, {"nesterov", nesterov_ ? 1.0 : 0.0}, {"weight_decay", weight_decay_}};
}

std::vector<std::pair<std::string, double>> AdamW::hyper_parameters() const {
  return {{"beta1", beta1_}, {"beta2", beta2_}, {"eps", eps_}, {"weight_decay", weight_decay_}};
}

AdamW::AdamW(std::size_t n, double beta1, double beta2, double eps, double weight_decay)
    : Optimizer(n), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {
  slots_.push_back({"m", BigBuffer<float>(n, 0.0f)});
  slots_.push_back({"v", BigBuffer<float>(n, 0.0f)});
}

void AdamW::update(float* w, const float* g, double lr, float scale, std::size_t begin, std::size_t end) {
  // The complements and products are taken in double from the values as
  // given, then rounded once: 1.0f - 0.999f is 0.00099998713, not 0.001, which
  // would shrink v and make every step larger than the reference's.
  const float b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
  const float one_minus_b1 = static_cast<float>(1.0 - beta1_), one_minus_b2 = static_cast<float>(1.0 - beta2_);
  const double t = double(steps_);
  const float c2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2_, t)));
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(beta1_, t)));
  const float decay = static_cast<float>(lr * weight_decay_);  // w *= 1 - lr*wd, as w -= (lr*wd)*w
  const float eps = static_cast<float>(eps_);
  float* m = slots_[0].values.data();
  float* v = slots_[1].values.data();
  for (std::size_t i = begin; i < end; ++i) {
    const float gi = scale * g[i];
    m[i] = b1 * m[i] + one_minus_b1 * gi;
    v[i] = b2 * v[i] + one_minus_b2 * gi * gi;
    w[i] = (w[i] - decay * w[i]) - step_size * m[i] / (std::sqrt(v[i]) / c2_sqrt + eps);
  }
}

bool all_finite(const float* x, std::size_t n) {
  // Non-finite floats are exactly those whose exponent bits are all ones.
  constexpr uint32_t kExp = 0x7f800000u;
  uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= uint32_t((bits & kExp) == kExp);
  }
  return bad == 0;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimSpec& s, std::size_t n) {
  if (s.name == "sgd") {
    if (s.momentum < 0 || s.momentum >= 1)
      throw UsageError(str_cat("optim.momentum: expected a value in [0, 1), got ", s.momentum));
    if (s.nesterov && s.momentum == 0)
      throw UsageError("optim.nesterov: Nesterov momentum needs optim.momentum > 0");
    if (s.weight_decay < 0) throw UsageError(str_cat("optim.weight_decay: must be >= 0, got ", s.weight_decay));
    return std::make_unique<Sgd>(n, s.momentum, s.nesterov, s.weight_decay);
  }
  if (s.name == "adamw") {
    if (s.weight_decay < 0) throw UsageError(str_cat("optim.weight_decay: must be >= 0, got ", s.weight_decay));
    return std::make_unique<AdamW>(n, s.beta1, s.beta2, s.eps, s.weight_decay);
  }
  throw UsageError(str_cat("optim.name: expected sgd or adamw, got '", s.name, "'"));
}

}  // namespace ringtrain
