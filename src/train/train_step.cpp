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

// One phase of a step: its seconds added to one of StepTimes' fields, and a
// span on the trace (run.trace) when tracing.
class Phase {
 public:
  Phase(double& seconds, Timeline* tl, const char* name, int64_t step) : seconds_(seconds), scope_(tl, name, 0, step) {}
  ~Phase() { seconds_ += timer_.seconds(); }
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

 private:
  double& seconds_;
  TimelineScope scope_;
  Timer timer_;
};

}  // namespace

// One synchronous step, as the story goes: the rows, forward and backward
// (in micro-batches), the riders, the reduction, the check, the update.
double Trainer::train_step(int64_t step, int64_t step_in_epoch) {
  const StepRows s = step_rows(step_in_epoch);
  Timeline* const tl = tracing(step) ? &timeline_ : nullptr;
  double loss = accumulate_micro_batches(step, s);
  loss += forward_micro_batch(step, s.micro - 1, s, tl);
  load_riders(loss, s.count);
  backward_last(step, s, tl);
  wait_for_slowest_rank(step, tl);
  if (sharded_) return sharded_update(step, tl);
  reduce_gradients(step, tl);
  const Phase update(times_.optimizer, tl, "optimizer", step);
  const float global_loss = read_riders();
  // Every rank sees the same reduced values, so all stop together; the bad
  // update is never applied.
  if (!std::isfinite(global_loss) || !all_finite(grads_, model_->num_params()))
    return std::numeric_limits<double>::quiet_NaN();
  optimizer_->step(model_->params(), grads_, schedule_.at(step), 1.0f / riders()[kCount]);
  return global_loss;
}

Trainer::StepRows Trainer::step_rows(int64_t step_in_epoch) const {
  StepRows s{};
  s.count = sampler_->batch_size(step_in_epoch);
  s.rows = sampler_->batch_rows(step_in_epoch);
  s.b = sampler_->micro_batch();
  s.micro = (s.count + s.b - 1) / s.b;
  return s;
}

double Trainer::forward_micro_batch(int64_t step, int k, const StepRows& s, Timeline* tl) {
  const int64_t* rows = s.rows + std::ptrdiff_t(k) * s.b;
  const int count = k + 1 < s.micro ? s.b : s.count - k * s.b;
  {
    const Phase data(times_.data, tl, "data", step);
    gather_rows(train_, rows, count, batch_x_.data(), batch_labels_.data(), batch_y_.data());
  }
  const Phase forward(times_.compute, tl, "forward", step);
  // Micro-batch 0 keeps the key of a step without accumulation; the others
  // get masks of their own.
  const uint64_t dropout_key = k == 0 ? mix_key(cfg_.seed, 0xD5u, uint64_t(step), uint64_t(comm_.rank()))
                                      : mix_key(cfg_.seed, 0xD5u, uint64_t(step), uint64_t(comm_.rank()), uint64_t(k));
  ConstMatMap out = model_->forward(batch_x_.data(), count, true, dropout_key);
  return cfg_.task == Task::kClassification ? softmax_cross_entropy(out, batch_labels_.data(), dout_.data(), nullptr)
                                            : mean_squared_error(out, batch_y_.data(), dout_.data());
}

double Trainer::accumulate_micro_batches(int64_t step, const StepRows& s) {
  if (s.micro == 1) return 0;
  // The gradient buffer, idle until this step's all-reduce, is the scratch.
  const std::size_t n = model_->num_params();
  const TimelineScope scope(tracing(step) ? &timeline_ : nullptr, "micro-batches (accumulated)", 0, step);
  double loss = 0;
  for (int k = 0; k + 1 < s.micro; ++k) {
    loss += forward_micro_batch(step, k, s, nullptr);
    const Phase backward(times_.compute, nullptr, "backward", step);
    float* const out = k == 0 ? accum_.data() : grads_;
    model_->backward(dout_.data(), out, nullptr);
    if (k > 0)
      for (std::size_t i = 0; i < n; ++i) accum_[i] += grads_[i];
  }
  return loss;
}

void Trainer::load_riders(double loss, int count) {
  // Final before backward starts: they travel in the last bucket, which
  // finish() marks ready.
  float* const r = riders();
  r[kLoss] = static_cast<float>(loss);
  r[kCount] = static_cast<float>(count);
  // Rank 0's flags ride along with the gradients: no extra collective.
  const bool root = comm_.rank() == 0;
  r[kCheckpointDue] = root && cfg_.checkpoint_every_seconds > 0 &&
                      since_checkpoint_.seconds() >= cfg_.checkpoint_every_seconds;
  r[kWriterFailed] = root && files_.active() && !files_.failed().empty();
  r[kStop] = stop_signal() != 0;  // any rank's pre-emption signal stops all
  r[kNonFiniteShard] = 0;         // set by sharded_update
}

void Trainer::backward_last(int64_t step, const StepRows& s, Timeline* tl) {
  // Only now, with the last micro-batch, may the all-reduce start (overlap
  // launches buckets from inside this backward).
  if (!sharded_) reducer_->start_step(step, tl);
  const Phase backward(times_.compute, tl, "backward", step);
  GradientsReady* const reducer = sharded_ ? nullptr : reducer_.get();
  if (s.micro == 1) {
    model_->backward(dout_.data(), grads_, reducer);
    return;
  }
  AddAccumulated add(grads_, accum_.data(), reducer);
  model_->backward(dout_.data(), grads_, &add);
  RT_CHECK(add.done() == model_->num_params(), "backward reported ", add.done(), " of ", model_->num_params(),
           " gradients");
}

void Trainer::wait_for_slowest_rank(int64_t step, Timeline* tl) {
  if (!profiles_wait()) return;
  const Phase wait(times_.wait, tl, "waiting (barrier)", step);
  comm_.barrier();
}

void Trainer::reduce_gradients(int64_t step, Timeline* tl) {
  const Phase reduce(times_.comm, tl, reducer_->overlapped() ? "all-reduce (rest)" : "all-reduce", step);
  reducer_->finish();
}

float Trainer::read_riders() {
  const float* const r = riders();
  checkpoint_flag_ = r[kCheckpointDue];
  writer_failed_flag_ = r[kWriterFailed];
  stop_flag_ = r[kStop];
  return r[kLoss];
}

// The sharded optimizer's half of a step (comm.shard_optimizer): each rank
// reduces, checks and updates only its shard, then the ranks exchange the
// updated parameters. The same arithmetic on every element as the all-reduce
// path, in about 1/p of the optimizer's time.
double Trainer::sharded_update(int64_t step, Timeline* tl) {
  const std::size_t n = model_->num_params();
  const auto [b, e] = shard_;
  {
    const Phase reduce(times_.comm, tl, "reduce-scatter", step);
    comm_.reduce_scatter_gradients(grads_, n);
    // A non-finite shard on any rank stops every rank before any update.
    riders()[kNonFiniteShard] = all_finite(grads_ + b, e - b) ? 0.0f : 1.0f;
    comm_.allreduce_sum(riders(), kTail);
  }
  const float global_loss = read_riders();
  if (!std::isfinite(global_loss) || riders()[kNonFiniteShard] != 0.0f)
    return std::numeric_limits<double>::quiet_NaN();
  {
    const Phase update(times_.optimizer, tl, "optimizer (shard)", step);
    optimizer_->step_shard(model_->params(), grads_, schedule_.at(step), 1.0f / riders()[kCount], b, e);
  }
  {
    const Phase gather(times_.comm, tl, "all-gather (parameters)", step);
    comm_.allgather_shards(model_->params(), n, grads_);
  }
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
