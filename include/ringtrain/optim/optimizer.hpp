// Optimizers: one loop over the flat parameter buffer.
//
// State (momentum, Adam's m and v) is held as flat buffers with the same
// layout as the parameters, exposed as named slots so checkpoints can store
// them per tensor. step() never allocates.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ringtrain/util/big_buffer.hpp"

namespace ringtrain {

struct OptimSpec {
  std::string name = "sgd";  // sgd | adamw
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;  // sgd: L2 added to the gradient; adamw: decoupled
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct OptimSlot {
  std::string name;  // "momentum", "m", "v"
  BigBuffer<float> values;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // params -= update(grad_scale * grads). The trainer passes summed
  // gradients and grad_scale = 1 / global sample count, which saves a
  // separate pass over the buffer. The learning rate stays a double: the
  // constants derived from it and from the hyper-parameters (1 - beta,
  // lr * weight_decay, lr / bias correction) are computed in double and
  // rounded to float once, so the update is the reference formula evaluated
  // with the values as given, not with values already rounded to float.
  void step(float* params, const float* grads, double lr, float grad_scale = 1.0f) {
    step_shard(params, grads, lr, grad_scale, 0, n_);
  }
  // One step that updates only [begin, end) of the buffer (and its state):
  // the sharded optimizer (comm.shard_optimizer), where each rank updates its
  // shard and the ranks then exchange parameters. Elementwise, so the shards
  // of p ranks give the same bits as one full step(). Counts one step.
  void step_shard(float* params, const float* grads, double lr, float grad_scale, std::size_t begin,
                  std::size_t end);
  virtual std::string name() const = 0;
  std::vector<OptimSlot>& slots() { return slots_; }
  const std::vector<OptimSlot>& slots() const { return slots_; }
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }  // restoring a checkpoint
  // Hyper-parameters by name, as checkpoints record them.
  virtual std::vector<std::pair<std::string, double>> hyper_parameters() const = 0;

  // Ranges [begin, end) of the flat buffer that step() leaves untouched
  // (frozen layers): no update, no weight decay, no state change.
  void freeze(const std::vector<std::pair<std::size_t, std::size_t>>& frozen);

 protected:
  Optimizer(std::size_t n) : n_(n), trainable_{{0, n}} {}
  std::size_t n_;
  int64_t steps_ = 0;
  std::vector<OptimSlot> slots_;
  std::vector<std::pair<std::size_t, std::size_t>> trainable_;  // sorted, disjoint

 private:
  // After ++steps_: updates [begin, end), all of it trainable.
  virtual void update(float* params, const float* grads, double lr, float grad_scale, std::size_t begin,
                      std::size_t end) = 0;
};

// Matches torch.optim.SGD: g' = g + wd*w; v = mu*v + g';
// update = nesterov ? g' + mu*v : v; w -= lr*update.
class Sgd final : public Optimizer {
 public:
  Sgd(std::size_t n, double momentum, bool nesterov, double weight_decay);
  std::string name() const override { return "sgd"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;

 private:
  void update(float* params, const float* grads, double lr, float grad_scale, std::size_t begin,
              std::size_t end) override;
  double momentum_, weight_decay_;
  bool nesterov_;
};

// Matches torch.optim.AdamW: w *= 1 - lr*wd; m = b1*m + (1-b1)*g;
// v = b2*v + (1-b2)*g^2; w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
// The decay is applied as w -= (lr*wd)*w: rounding the small product lr*wd
// keeps its relative precision, rounding 1 - lr*wd would not.
class AdamW final : public Optimizer {
 public:
  AdamW(std::size_t n, double beta1, double beta2, double eps, double weight_decay);
  std::string name() const override { return "adamw"; }
  std::vector<std::pair<std::string, double>> hyper_parameters() const override;

 private:
  void update(float* params, const float* grads, double lr, float grad_scale, std::size_t begin,
              std::size_t end) override;
  double beta1_, beta2_, eps_, weight_decay_;
};

// False if any value is NaN or infinite. A branch-free pass over the bits
// (vectorised), cheap enough to run on the reduced gradients every step.
bool all_finite(const float* x, std::size_t n);

// UsageError naming optim.name when it is unknown.
std::unique_ptr<Optimizer> make_optimizer(const OptimSpec& spec, std::size_t num_params);

}  // namespace ringtrain
