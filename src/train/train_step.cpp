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

namespace {

// train.accumulate: the last micro-batch's backward writes its gradients into
// the buffer the all-reduce reads; each prefix it completes gets the earlier
// micro-batches' sum added before it is passed on, so the bucket reducer
// (comm.overlap) launches a bucket only once it holds the whole step's sum.
class AddAccumulated final : public GradientsReady {
 public:
  AddAccumulated(float* grads, const float* accum, GradientsReady* next) : grads_(grads), accum_(accum), next_(next) {}
  void gradients_ready(std::size_t prefix) override {
    for (std::size_t i = done_; i < prefix; ++i) grads_[i] += accum_[i];
    done_ = prefix;
    if (next_ != nullptr) next_->gradients_ready(prefix);
  }
  std::size_t done() const { return done_; }

 private:
  float* grads_;
  const float* accum_;
  GradientsReady* next_;
  std::size_t done_ = 0;
};

}  // namespace

double Trainer::forward_micro_batch(int64_t step, int k, const int64_t* rows, int count, Timeline* tl) {
  Timer phase;
  {
    const TimelineScope scope(tl, "data", 0, step);
    gather_rows(train_, rows, count, batch_x_.data(), batch_labels_.data(), batch_y_.data());
  }
  data_seconds_ += phase.seconds();
  phase.reset();
  double loss = 0;
  {
    const TimelineScope scope(tl, "forward", 0, step);
    // Micro-batch 0 keeps the key of a step without accumulation; the others
    // get masks of their own.
    const uint64_t dropout_key =
        k == 0 ? mix_key(cfg_.seed, 0xD5u, uint64_t(step), uint64_t(comm_.rank()))
               : mix_key(cfg_.seed, 0xD5u, uint64_t(step), uint64_t(comm_.rank()), uint64_t(k));
    ConstMatMap out = model_->forward(batch_x_.data(), count, true, dropout_key);
    loss = cfg_.task == Task::kClassification
               ? softmax_cross_entropy(out, batch_labels_.data(), dout_.data(), nullptr)
               : mean_squared_error(out, batch_y_.data(), dout_.data());
  }
  compute_seconds_ += phase.seconds();
  return loss;
}

double Trainer::train_step(int64_t step, int64_t step_in_epoch) {
  const std::size_t n = model_->num_params();
  // The step's rows (train.accumulate micro-batches of b; the last step of a
  // pass may be short and have fewer), and its micro-batches.
  const int count = sampler_->batch_size(step_in_epoch);
  const int64_t* rows = sampler_->batch_rows(step_in_epoch);
  const int b = sampler_->micro_batch();
  const int micro = (count + b - 1) / b;
  Timeline* const tl = tracing(step) ? &timeline_ : nullptr;
  double loss = 0;
  // Every micro-batch but the last: gradients summed into accum_, with the
  // gradient buffer (idle until this step's all-reduce) as scratch.
  if (micro > 1) {
    const TimelineScope scope(tl, "micro-batches (accumulated)", 0, step);
    for (int k = 0; k + 1 < micro; ++k) {
      loss += forward_micro_batch(step, k, rows + std::ptrdiff_t(k) * b, b, nullptr);
      const Timer phase;
      float* const out = k == 0 ? accum_.data() : grads_;
      model_->backward(dout_.data(), out, nullptr);
      if (k > 0)
        for (std::size_t i = 0; i < n; ++i) accum_[i] += grads_[i];
      compute_seconds_ += phase.seconds();
    }
  }
  const int last = micro - 1;
  loss += forward_micro_batch(step, last, rows + std::ptrdiff_t(last) * b, count - last * b, tl);
  Timer phase;
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
  // Only now, with the last micro-batch, may the all-reduce start (overlap
  // launches buckets from inside this backward).
  if (!sharded_) reducer_->start_step(step, tl);
  {
    const TimelineScope scope(tl, "backward", 0, step);
    GradientsReady* const reducer = sharded_ ? nullptr : reducer_.get();
    if (micro == 1) {
      model_->backward(dout_.data(), grads_, reducer);
    } else {
      AddAccumulated add(grads_, accum_.data(), reducer);
      model_->backward(dout_.data(), grads_, &add);
      RT_CHECK(add.done() == n, "backward reported ", add.done(), " of ", n, " gradients");
    }
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
