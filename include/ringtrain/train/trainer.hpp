// Trainer: the synchronous data-parallel training loop.
//
// Every rank holds a full replica of the model and its own shard of the
// training data. One step: gather the local batch, forward, backward into the
// flat gradient buffer (summed over the batch), append [loss sum, sample
// count], all-reduce the whole buffer, divide by the global count, and let
// the optimizer take one loop over the flat parameters. All buffers are
// allocated in the constructor; the step loop never allocates.
//
// Evaluation: each rank evaluates its shard of the validation set, the sums
// are all-reduced, and every rank derives the same metrics; rank 0 logs them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ringtrain/comm/communicator.hpp"
#include "ringtrain/data/dataset.hpp"
#include "ringtrain/data/sampler.hpp"
#include "ringtrain/io/data_reader.hpp"
#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/optim/lr_schedule.hpp"
#include "ringtrain/optim/optimizer.hpp"
#include "ringtrain/train/config.hpp"
#include "ringtrain/train/run_log.hpp"
#include "ringtrain/util/big_buffer.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

struct TrainResult {
  int64_t steps = 0;
  int64_t examples_seen = 0;
  std::map<std::string, double> last_eval;  // val_* metrics of the last evaluation
  std::map<std::string, double> test;       // test_* metrics (when data.test is given)
  double samples_per_s = 0;                 // over all training steps
  double train_seconds = 0;                 // time in training steps
  double comm_seconds = 0;                  // of which in the gradient all-reduce
};

// Training progress since the last evaluation.
struct TrainWindow {
  double loss_sum = 0;   // summed per-sample losses, all ranks
  int64_t examples = 0;  // all ranks
  double seconds = 0;    // in training steps
};

class Trainer {
 public:
  // Collective: every rank must construct it. Loads this rank's data, builds
  // the model and broadcasts rank 0's initial parameters. Bad input on any
  // rank throws CollectiveError on every rank.
  Trainer(TrainConfig cfg, Communicator& comm);
  TrainResult run();

  // One synchronous step: local batch, forward, backward, all-reduce,
  // optimizer. Returns the global loss sum. Public for tests and benchmarks;
  // run() is the training loop.
  double train_step(int64_t step, int64_t step_in_epoch);

  const Mlp& model() const { return *model_; }
  Mlp& model() { return *model_; }
  // Collective: throws CollectiveError on every rank if any rank's
  // parameters differ from rank 0's. Run at every evaluation.
  void check_replicas(int64_t step);
  const ShardSampler& sampler() const { return *sampler_; }
  const LrSchedule& schedule() const { return schedule_; }

 private:
  DataSource source(const std::string& path) const;
  void probe_data();         // shapes and labels of the files; no collectives
  void check_ranks_agree();  // collective: same options and data on every rank
  void read_data();          // this rank's rows; no collectives
  void build_model();
  void log_setup() const;
  std::map<std::string, double> evaluate(const Dataset& data, const std::string& prefix);
  // Evaluates (when there is a validation set), logs and resets the window.
  void log_evaluation(int64_t step, TrainWindow& window, TrainResult& result);

  TrainConfig cfg_;
  Communicator& comm_;
  RunLog log_;
  SourceInfo train_info_, val_info_, test_info_;
  int64_t outputs_ = 0;
  int64_t dropped_rows_ = 0;
  Dataset train_, val_, test_;
  bool has_val_ = false, has_test_ = false;
  std::unique_ptr<ShardSampler> sampler_;
  std::unique_ptr<Mlp> model_;
  std::unique_ptr<Optimizer> optimizer_;
  LrSchedule schedule_;
  int64_t total_steps_ = 0;
  double comm_seconds_ = 0;
  Timer wall_;

  // Step buffers, allocated once.
  BigBuffer<float> grads_;  // num_params gradients + [loss sum, sample count]
  BigBuffer<float> batch_x_, batch_y_, dout_;
  std::vector<int32_t> batch_labels_, predicted_;
};

}  // namespace ringtrain
