// TrainingPlan: how long a run is and where its evaluation points fall,
// counted in examples (virtual epochs), not passes.
//
// One pass over the training data is P = rows_per_rank * p examples in
// `steps_per_pass` steps of B = p * b examples (the last one of a pass may be
// short). Training length is either train.epochs passes or train.examples
// examples; `train.evals` evaluation/checkpoint points are spread evenly over
// it (virtual epochs of E / evals examples), else one per pass. Because the
// points are placed by examples seen, changing the batch or the world size
// keeps them at the same amounts of training.
//
// With gradient accumulation (train.accumulate = k) a step takes k
// micro-batches: `batch` is then k * batch_per_rank, the rows a rank consumes
// per step, and B = p * k * batch_per_rank the true global batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringtrain {

struct TrainingPlan {
  static constexpr int64_t kMaxEvals = 1000000;  // train.evals (eval_points is held all run)
  int64_t pass_examples = 1;   // P
  int64_t steps_per_pass = 1;  // ceil(rows_per_rank / b), b the rows per rank per step
  int64_t global_batch = 1;    // B (micro-batches included)
  int64_t total_examples = 1;  // E
  int64_t total_steps = 1;
  int64_t evals = 0;           // 0: one evaluation per pass
  int64_t eval_every_steps = 0;  // eval.every_steps overrides the virtual epochs
  std::vector<int64_t> eval_points;  // with evals > 0: the `evals` steps evaluated after, ascending

  // examples: "" or "0" -> epochs passes; "600000" -> that many; "14.3x" ->
  // 14.3 passes' worth. UsageError naming train.examples when malformed.
  // batch: rows per rank per step (batch_per_rank x train.accumulate).
  static TrainingPlan make(int64_t rows_per_rank, int world, int batch, int64_t epochs,
                           const std::string& examples, int64_t evals, int64_t eval_every_steps,
                           int64_t max_steps);

  // Examples seen after `steps` steps.
  int64_t examples_after(int64_t steps) const;
  // The first step count whose examples reach `examples`.
  int64_t steps_to_reach(int64_t examples) const;
  // True when an evaluation (and checkpoint) falls after step `step` (1-based
  // count of steps done): a virtual-epoch boundary, or the last step.
  bool is_eval_step(int64_t step) const;
  int64_t virtual_epochs() const;
  // Passes (real epochs) done after `steps` steps, fractional.
  double epoch_at(int64_t steps) const { return double(examples_after(steps)) / double(pass_examples); }
};

}  // namespace ringtrain
