// Loss functions (see loss.hpp). Numerically stable log-sum-exp per row.
#include "ringtrain/nn/loss.hpp"

#include <cmath>

namespace ringtrain {

double softmax_cross_entropy(const ConstMatMap& logits, const int32_t* labels,
                             float* dlogits, int32_t* predicted) {
  const Eigen::Index batch = logits.rows(), k = logits.cols();
  double total = 0.0;
  for (Eigen::Index i = 0; i < batch; ++i) {
    const float* row = logits.data() + i * k;
    float mx = row[0];
    Eigen::Index arg = 0;
    for (Eigen::Index j = 1; j < k; ++j)
      if (row[j] > mx) mx = row[j], arg = j;
    // Shift by the max so exp never overflows; probabilities are e_j / sum
    // (not exp(x - log_z), which loses digits when |logits| is large).
    float* d = dlogits ? dlogits + i * k : nullptr;
    float sum = 0.0f;
    for (Eigen::Index j = 0; j < k; ++j) {
      const float e = std::exp(row[j] - mx);
      sum += e;
      if (d) d[j] = e;
    }
    total += static_cast<double>(std::log(sum) - (row[labels[i]] - mx));
    if (predicted) predicted[i] = static_cast<int32_t>(arg);
    if (d) {
      const float inv = 1.0f / sum;
      for (Eigen::Index j = 0; j < k; ++j) d[j] *= inv;
      d[labels[i]] -= 1.0f;
    }
  }
  return total;
}

double mean_squared_error(const ConstMatMap& pred, const float* targets, float* dpred,
                          double* abs_sum) {
  const Eigen::Index n = pred.size();
  const float inv_k = 1.0f / static_cast<float>(pred.cols());
  double total = 0.0, abs_total = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const float diff = pred.data()[i] - targets[i];
    total += static_cast<double>(diff * diff * inv_k);
    abs_total += std::fabs(static_cast<double>(diff));
    if (dpred) dpred[i] = 2.0f * diff * inv_k;
  }
  if (abs_sum) *abs_sum += abs_total;
  return total;
}

}  // namespace ringtrain
