// TrainConfig: the resolved, validated settings of one training run.
//
// Filled by app/ from the INI file and command line (option names in
// comments); train/ only reads it. `effective_ini` is the text written to
// <run>/config.ini: every key with the value that was used.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ringtrain/data/dataset.hpp"
#include "ringtrain/nn/mlp.hpp"
#include "ringtrain/optim/lr_schedule.hpp"
#include "ringtrain/optim/optimizer.hpp"

namespace ringtrain {

struct TrainConfig {
  std::string run_dir = "runs/default";  // run.dir
  std::string config_path;               // --config (read, never written; "" without one)

  std::string train_path, val_path, test_path;  // data.train data.val data.test
  double val_fraction = 0.1;                    // data.val_fraction (0: no validation)
  int64_t max_rows = 0;                         // data.max_rows (0: all)
  std::string x_name = "X", y_name = "y";       // data.x_name data.y_name

  Task task = Task::kClassification;  // task
  std::vector<int> hidden{256, 128};  // model.hidden
  Activation activation = Activation::kRelu;
  float dropout = 0.0f;

  OptimSpec optim;                 // optim.name momentum nesterov weight_decay beta1 beta2 eps
  double lr = 0.1;                 // optim.lr (at optim.ref_batch)
  int64_t ref_batch = 256;         // optim.ref_batch
  int64_t warmup_steps = 0;        // optim.warmup_steps
  double warmup_epochs = 0;        // optim.warmup_epochs
  Decay decay = Decay::kNone;      // optim.decay
  double decay_every_epochs = 30;  // optim.decay_every_epochs
  double decay_gamma = 0.1;        // optim.decay_gamma
  double min_lr_factor = 0.0;      // optim.min_lr_factor

  int batch_per_rank = 64;  // train.batch_per_rank
  int accumulate = 1;       // train.accumulate: micro-batches of batch_per_rank per step
  int64_t epochs = 10;      // train.epochs
  uint64_t seed = 42;       // train.seed
  bool shuffle = true;      // train.shuffle
  int64_t max_steps = 0;    // train.max_steps (0: no limit; for tests and benchmarks)

  std::string examples;         // train.examples ("" or "0": train.epochs; "600000" or "14.3x")
  int64_t evals = 0;            // train.evals (0: one per pass' worth of examples)
  std::string init_from;        // train.init_from
  std::vector<std::string> freeze;  // train.freeze
  bool new_head = false;        // train.new_head
  bool allow_reshape = false;   // train.allow_reshape
  int64_t stop_after_steps = 0;  // train.stop_after_steps (0: run to the end)

  int64_t eval_every_steps = 0;  // eval.every_steps (0: every (virtual) epoch)
  int eval_batch = 1024;         // eval.batch_size
  std::string monitor = "auto";  // eval.monitor
  std::string mode = "auto";     // eval.mode auto|min|max
  std::string min_delta = "0";   // eval.min_delta ("0.01" or "1%")
  int keep_best = 1;             // eval.keep_best

  int64_t checkpoint_every_steps = 0;     // checkpoint.every_steps
  double checkpoint_every_seconds = 0;    // checkpoint.every_seconds
  int checkpoint_keep_last = 2;           // checkpoint.keep_last (0: no checkpoints)

  int64_t patience = 0;                // early_stop.patience (0: off)
  std::string es_min_delta = "0";      // early_stop.min_delta
  std::string baseline, divergence;    // early_stop.baseline / divergence ("": none)
  bool restore_best = false;           // early_stop.restore_best

  std::string resume = "none";  // resume: none | auto | PATH

  std::string comm_algorithm = "auto";  // comm.algorithm
  double comm_timeout_seconds = 300;    // comm.timeout_seconds (0: no watchdog)
  std::string comm_compression = "none";  // comm.compression: none | bf16 | fp16
  double comm_bucket_mb = 4;            // comm.bucket_mb (0: one bucket)
  bool comm_overlap = false;            // comm.overlap
  bool comm_shard_optimizer = true;     // comm.shard_optimizer (where the algorithm allows)
  int64_t trace_steps = 0;              // run.trace: steps in trace.json (0: none)
  bool profile = false;                 // run.profile: barrier before the all-reduce, to time the waiting
  bool requeue = false;                 // train.requeue (acted on by app/)
  bool progress = true;                 // run.progress

  std::string effective_ini;
};

}  // namespace ringtrain
