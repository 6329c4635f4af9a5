// The training step (see trainer.hpp): the batch, forward, backward, and
// either the gradient all-reduce and the optimizer, or the sharded
// optimizer's reduce-scatter, shard update and all-gather of the parameters.
#include <cmath>
#include <limits>

#include "ringtrain/nn/loss.hpp"
#include "ringtrain/train/trainer.hpp"
#include "ringtrain/util/philox.hpp"
#include "ringtrain/util/stop_signal.hpp"

namespace ringtrain {

double Trainer::train_step(int64_t step, int64_t step_in_epoch) {
  const std::size_t n = model_->num_params();
  const int count = sampler_->batch_size(step_in_epoch);
  Timeline* const tl = tracing(step) ? &timeline_ : nullptr;
  Timer phase;
  {
    const TimelineScope scope(tl, "data", 0, step);
    gather_rows(train_, sampler_->batch_rows(step_in_epoch), count, batch_x_.data(), batch_labels_.data(),
                batch_y_.data());
  }
  data_seconds_ += phase.seconds();
  phase.reset();
  double loss = 0;
  {
    const TimelineScope scope(tl, "forward", 0, step);
    const uint64_t dropout_key = mix_key(cfg_.seed, 0xD5u, uint64_t(step), uint64_t(comm_.rank()));
    ConstMatMap out = model_->forward(batch_x_.data(), count, true, dropout_key);
    loss = cfg_.task == Task::kClassification
               ? softmax_cross_entropy(out, batch_labels_.data(), dout_.data(), nullptr)
               : mean_squared_error(out, batch_y_.data(), dout_.data());
  }
  // The exact sums ride in the last bucket; they are final before backward
  // starts (finish() marks them ready).
  grads_[n] = static_cast<float>(loss);
  grads_[n + 1] = static_cast<float>(count);
  // Rank 0's flags ride along with the gradients: no extra collective.
  const bool root = comm_.rank() == 0;
  grads_[n + 2] = root && cfg_.checkpoint_every_seconds > 0 &&
                  since_checkpoint_.seconds() >= cfg_.checkpoint_every_seconds;
  grads_[n + 3] = root && files_.active() && !files_.failed().empty();
  grads_[n + 4] = stop_signal() != 0;  // any rank's pre-emption signal stops all
  grads_[n + 5] = 0;                   // sharded_update's non-finite shards
  if (!sharded_) reducer_->start_step(step, tl);
  {
    const TimelineScope scope(tl, "backward", 0, step);
    model_->backward(dout_.data(), grads_, sharded_ ? nullptr : reducer_.get());
  }
  compute_seconds_ += phase.seconds();
  if (profiles_wait()) {
    phase.reset();
    const TimelineScope scope(tl, "waiting (barrier)", 0, step);
    comm_.barrier();
    wait_seconds_ += phase.seconds();
  }
  if (sharded_) return sharded_update(step, tl);
  phase.reset();
  {
    const TimelineScope scope(tl, reducer_->overlapped() ? "all-reduce (rest)" : "all-reduce", 0, step);
    reducer_->finish();
  }
  comm_seconds_ += phase.seconds();
  phase.reset();
  const TimelineScope optimizer_scope(tl, "optimizer", 0, step);

  const float global_loss = grads_[n], global_count = grads_[n + 1];
  checkpoint_flag_ = grads_[n + 2];
  writer_failed_flag_ = grads_[n + 3];
  stop_flag_ = grads_[n + 4];
  // Every rank sees the same reduced values, so all stop together; the bad
  // update is never applied.
  if (!std::isfinite(global_loss) || !all_finite(grads_, n))
    return std::numeric_limits<double>::quiet_NaN();
  optimizer_->step(model_->params(), grads_, schedule_.at(step), 1.0f / global_count);
  optimizer_seconds_ += phase.seconds();
  return global_loss;
}

// The sharded optimizer's half of a step (comm.shard_optimizer): each rank
// reduces, checks and updates only its shard, then the ranks exchange the
// updated parameters. The same arithmetic on every element as the all-reduce
// path, in about 1/p of the optimizer's time.
double Trainer::sharded_update(int64_t step, Timeline* tl) {
  const std::size_t n = model_->num_params();
  const auto [b, e] = shard_;
  Timer phase;
  {
    const TimelineScope scope(tl, "reduce-scatter", 0, step);
    comm_.reduce_scatter_gradients(grads_, n);
    // A non-finite shard on any rank stops every rank before any update.
    grads_[n + 5] = all_finite(grads_ + b, e - b) ? 0.0f : 1.0f;
    comm_.allreduce_sum(grads_ + n, kTail);
  }
  comm_seconds_ += phase.seconds();
  const float global_loss = grads_[n], global_count = grads_[n + 1];
  checkpoint_flag_ = grads_[n + 2];
  writer_failed_flag_ = grads_[n + 3];
  stop_flag_ = grads_[n + 4];
  if (!std::isfinite(global_loss) || grads_[n + 5] != 0.0f) return std::numeric_limits<double>::quiet_NaN();
  phase.reset();
  {
    const TimelineScope scope(tl, "optimizer (shard)", 0, step);
    optimizer_->step_shard(model_->params(), grads_, schedule_.at(step), 1.0f / global_count, b, e);
  }
  optimizer_seconds_ += phase.seconds();
  phase.reset();
  {
    const TimelineScope scope(tl, "all-gather (parameters)", 0, step);
    comm_.allgather_shards(model_->params(), n, grads_);
  }
  comm_seconds_ += phase.seconds();
  state_partial_ = true;
  return global_loss;
}

void Trainer::gather_optimizer_state() {
  if (!state_partial_) return;
  // Each rank's slots are current on its shard only; the gradient buffer is
  // dead between steps and carries them.
  for (OptimSlot& slot : optimizer_->slots()) comm_.allgather_shards(slot.values.data(), slot.values.size(), grads_);
  state_partial_ = false;
}

}  // namespace ringtrain
