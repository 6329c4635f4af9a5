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
// are all-reduced, and every rank derives the same metrics; rank 0 logs them,
// decides (new best? stop?) with its Tracker and broadcasts one decision.
// Rank 0 alone writes best.h5, checkpoints and final.h5, in the background
// (RunFiles); a failed write ends every rank through the next step's
// all-reduce. A checkpoint holds everything the loop depends on, so a run
// resumed from step k continues bit-identically (trainer_state.cpp).
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
#include "ringtrain/comm/bucket_reducer.hpp"
#include "ringtrain/optim/lr_schedule.hpp"
#include "ringtrain/optim/optimizer.hpp"
#include "ringtrain/train/config.hpp"
#include "ringtrain/train/plan.hpp"
#include "ringtrain/train/run_files.hpp"
#include "ringtrain/train/run_log.hpp"
#include "ringtrain/train/tracker.hpp"
#include "ringtrain/util/big_buffer.hpp"
#include "ringtrain/util/timeline.hpp"
#include "ringtrain/util/timer.hpp"

namespace ringtrain {

// One rank's seconds in training steps, by phase.
struct StepTimes {
  double data = 0;       // gathering the batch's rows
  double compute = 0;    // forward, loss and backward
  double wait = 0;       // waiting for the slowest rank (run.profile; otherwise inside comm)
  double comm = 0;       // the gradient all-reduce, or its two halves: what backward did not hide
  double optimizer = 0;  // the update
};

struct TrainResult {
  int64_t steps = 0;
  int64_t examples_seen = 0;
  int64_t trained_examples = 0;             // by this launch (a resumed run counts from its checkpoint)
  std::map<std::string, double> last_eval;  // val_* metrics of the last evaluation
  std::map<std::string, double> test;       // test_* metrics (when data.test is given)
  double samples_per_s = 0;                 // over all training steps
  double train_seconds = 0;                 // time in training steps
  StepTimes step_times;                     // of which, by phase (this rank)
  // Evaluations; handing checkpoints to the writer (rank 0).
  double eval_seconds = 0, checkpoint_seconds = 0;
  StopReason stop = StopReason::kNone;      // why training ended early
  std::string stop_message;
  bool interrupted = false;                 // stopped before the end: resume to go on
  bool preempted = false;                   // ... because of a stop signal (SIGTERM, SIGUSR1)
  int preempted_ranks = 0;                  // how many ranks received one
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
  const TrainingPlan& plan() const { return plan_; }
  const Optimizer& optimizer() const { return *optimizer_; }
  bool sharded() const { return sharded_; }  // comm.shard_optimizer in effect
  int64_t start_step() const { return start_step_; }

 private:
  DataSource source(const std::string& path) const;
  void probe_data();         // shapes and labels of the files; no collectives
  void check_ranks_agree();  // collective: same options and data on every rank
  void read_data();          // this rank's rows; no collectives
  void build_model();
  void plan_training();
  void check_monitor();
  void log_setup() const;
  std::map<std::string, double> evaluate(const Dataset& data, const std::string& prefix);
  // Collective: evaluates (when there is a validation set), logs, resets the
  // window; rank 0 decides and every rank gets the same decision.
  TrackerDecision evaluate_and_decide(int64_t step, TrainResult& result);
  // Rank 0: stage the current state and write it in the background.
  void save(int64_t step, const TrackerDecision& d, bool checkpoint);
  void end_of_training(int64_t step, TrainResult& result);
  // Rank 0: the "end" record of events.jsonl (why, wall time, throughput).
  void record_end(int64_t step, const TrainResult& result) const;
  // Collective: every rank's timeline into rank 0's trace.json (run.trace).
  void write_trace();
  bool tracing(int64_t step) const { return step - start_step_ < cfg_.trace_steps; }
  // run.profile's barrier before the all-reduce (not with overlap: the main
  // thread makes no MPI call while the communication thread works).
  bool profiles_wait() const { return cfg_.profile && !reducer_->overlapped(); }
  // Sharded optimizer: reduce-scatter, this rank's shard of the update,
  // all-gather of the parameters (train_step's second half).
  double sharded_update(int64_t step, Timeline* tl);
  // The verbs of train_step, in order. A step's rows come in micro-batches
  // (train.accumulate) of b rows; the last may be short.
  struct StepRows {
    const int64_t* rows;
    int count, b, micro;  // rows in the step, per micro-batch, micro-batches
  };
  StepRows step_rows(int64_t step_in_epoch) const;
  // Micro-batch k of the step: its rows into the batch buffers, forward and
  // loss, dout_ filled. Returns the loss sum.
  double forward_micro_batch(int64_t step, int k, const StepRows& s, Timeline* tl);
  // Every micro-batch but the last: forward, backward, gradients summed in
  // accum_. Returns their loss sum.
  double accumulate_micro_batches(int64_t step, const StepRows& s);
  // The riders behind the gradients: this rank's loss and count, rank 0's
  // flags, any rank's stop signal.
  void load_riders(double loss, int count);
  // The last micro-batch's backward into grads_ (adding accum_), handing
  // finished prefixes to the bucket reducer unless sharded.
  void backward_last(int64_t step, const StepRows& s, Timeline* tl);
  void wait_for_slowest_rank(int64_t step, Timeline* tl);  // run.profile's barrier
  void reduce_gradients(int64_t step, Timeline* tl);       // the all-reduce's rest
  // The reduced riders: the flags taken; returns the global loss sum.
  float read_riders();
  float* riders() { return grads_ + model_->num_params(); }
  // Collective: every rank's optimizer slots whole again (before a
  // checkpoint, and when run() ends); a no-op unless sharded steps ran.
  void gather_optimizer_state();

  // trainer_state.cpp: what checkpoints hold, resuming, init_from, freeze.
  void stage_model(SavedModel& m, int64_t step) const;
  void stage_checkpoint(SavedCheckpoint& c, int64_t step) const;
  void init_from_file();   // no collectives
  void apply_freeze();     // no collectives
  void refuse_inputs_in_run_files() const;  // rank 0: no data file is one of the run's own
  void find_resume_point();  // rank 0: picks and validates the checkpoint; no collectives
  // rank 0: the checkpoint's step, data and best model fit this run's plan.
  void check_resume_plan(const SavedCheckpoint& c, const std::string& path) const;
  // Why --resume auto may not start the run in run.dir over ("" = it may: no
  // checkpoint file, unfinished, config.ini with these settings).
  std::string why_not_restart(const RunDirContents& found) const;
  // Training rows before sharding (every rank's, dropped remainder included).
  int64_t train_rows() const { return sampler_->rows_per_rank() * comm_.size() + dropped_rows_; }
  void restore_resumed();    // collective: every rank takes rank 0's checkpoint state
  std::string resume_config() const;  // the effective INI minus keys a resume may change

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
  TrainingPlan plan_;
  int64_t total_steps_ = 0;
  StepTimes times_;  // this launch's steps, by phase
  double eval_seconds_ = 0;
  double save_seconds_ = 0;  // rank 0's time in save(): waiting for the writer and copying the state
  Timer wall_, since_checkpoint_;
  Timer since_launch_;  // from construction: set-up (data, model, resume) included
  MetricMode monitor_mode_ = MetricMode::kMin;
  std::string monitor_;
  Tracker tracker_;  // meaningful on rank 0
  RunFiles files_;
  std::vector<std::pair<std::size_t, std::size_t>> frozen_;

  // Loop state a checkpoint carries.
  int64_t start_step_ = 0;
  int64_t examples_seen_ = 0;
  TrainWindow window_;
  std::map<std::string, double> last_metrics_;  // of the last evaluation (train_loss, val_*)
  int64_t last_eval_step_ = 0, last_eval_examples_ = 0;
  std::unique_ptr<SavedCheckpoint> resume_;     // rank 0, between find and restore
  std::string resume_path_;

  // Flags rank 0 adds to the gradient all-reduce (0 or 1 after the sum),
  // and the number of ranks that received a stop signal (pre-emption).
  float checkpoint_flag_ = 0, writer_failed_flag_ = 0, stop_flag_ = 0;

  // The values that ride behind the gradients (riders()[i]), summed with
  // them as exact fp32: loss sum, sample count, the checkpoint-now,
  // writer-failed and stop flags, and (sharded optimizer) the ranks whose
  // shard of the reduced gradients is not finite.
  enum Rider : std::size_t { kLoss, kCount, kCheckpointDue, kWriterFailed, kStop, kNonFiniteShard, kRiders };
  static constexpr std::size_t kTail = kRiders;
  // Step buffers, allocated once.
  // num_params gradients + the kTail values above: the communicator's shared
  // buffer when it has one (reduced in place), else ours.
  float* grads_ = nullptr;
  std::size_t grads_n_ = 0;
  BigBuffer<float> grads_storage_;
  std::unique_ptr<BucketReducer> reducer_;  // all-reduces grads_ (comm.bucket_mb, comm.overlap)
  // comm.shard_optimizer in effect: this rank updates params [shard_) only,
  // and its optimizer slots are current there only while state_partial_.
  bool sharded_ = false, state_partial_ = false;
  std::pair<std::size_t, std::size_t> shard_{0, 0};
  Timeline timeline_;                       // run.trace
  BigBuffer<float> batch_x_, batch_y_, dout_;
  // train.accumulate > 1: the summed gradients of a step's micro-batches
  // before the last (num_params floats; empty otherwise).
  BigBuffer<float> accum_;
  std::vector<int32_t> batch_labels_, predicted_;
};

}  // namespace ringtrain
