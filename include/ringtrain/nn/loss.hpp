// Losses: softmax cross-entropy (classification) and mean squared error
// (regression). Each returns the SUM of the per-sample losses of the batch and
// writes the gradient of that sum w.r.t. the model outputs, because the
// data-parallel rule (docs/ARCHITECTURE.md) is: sum per-sample gradients on every rank,
// all-reduce the sums, divide once by the true global sample count.
#pragma once

#include <cstdint>

#include "ringtrain/nn/tensor.hpp"

namespace ringtrain {

// logits: (batch, K); labels in [0, K). dlogits (batch, K) may be null (eval).
// If `predicted` is non-null, writes the argmax class of each row.
double softmax_cross_entropy(const ConstMatMap& logits, const int32_t* labels,
                             float* dlogits, int32_t* predicted);

// Per-sample loss is the mean over the K outputs of (pred - target)^2.
// dpred (batch, K) may be null. Adds sum|pred - target| to *abs_sum if given.
double mean_squared_error(const ConstMatMap& pred, const float* targets, float* dpred,
                          double* abs_sum = nullptr);

}  // namespace ringtrain
