// TrainingPlan (see plan.hpp).
#include "ringtrain/train/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

TrainingPlan TrainingPlan::make(int64_t rows_per_rank, int world, int batch, int64_t epochs,
                                const std::string& examples, int64_t evals, int64_t eval_every_steps,
                                int64_t max_steps) {
  TrainingPlan p;
  p.global_batch = int64_t(batch) * world;
  p.pass_examples = rows_per_rank * world;
  p.steps_per_pass = (rows_per_rank + batch - 1) / batch;
  p.evals = evals;
  p.eval_every_steps = eval_every_steps;
  if (examples.empty() || examples == "0") {
    if (epochs <= 0) throw UsageError(str_cat("train.epochs: must be positive, got ", epochs));
    p.total_examples = epochs * p.pass_examples;
  } else {
    const bool passes = examples.back() == 'x';
    const std::string num = passes ? examples.substr(0, examples.size() - 1) : examples;
    char* end = nullptr;
    const double v = std::strtod(num.c_str(), &end);
    if (num.empty() || *end != '\0' || !std::isfinite(v) || v <= 0 || v > 9e15 ||
        (!passes && v != std::floor(v)))
      throw UsageError(str_cat("train.examples: expected a positive count (600000) or passes' worth (14.3x), got '",
                               examples, "'"));
    p.total_examples = passes ? int64_t(std::llround(v * double(p.pass_examples))) : int64_t(v);
    if (p.total_examples < 1)
      throw UsageError(str_cat("train.examples: ", examples, " of ", p.pass_examples, " rows is no example at all"));
  }
  p.total_steps = p.steps_to_reach(p.total_examples);
  if (max_steps > 0 && max_steps < p.total_steps) {
    p.total_steps = max_steps;
    p.total_examples = p.examples_after(max_steps);
  }
  // The points are a list held all run long (8 bytes each).
  if (evals > TrainingPlan::kMaxEvals)
    throw UsageError(str_cat("train.evals: ", evals, " evaluation points: at most ", TrainingPlan::kMaxEvals));
  if (evals > p.total_steps)
    throw UsageError(str_cat("train.evals: ", evals, " evaluation points do not fit in ", p.total_steps, " steps"));
  if (evals > 0 && eval_every_steps <= 0) {
    // Point k at the first step whose examples reach ceil(k * E / evals).
    // A short batch, or virtual epochs shorter than a step, can put two
    // points on one step: move them apart (forward, then back from the last
    // step) so that exactly `evals` distinct points remain.
    __extension__ typedef unsigned __int128 U;  // k * E may exceed 64 bits
    p.eval_points.resize(std::size_t(evals));
    int64_t prev = 0;
    for (int64_t k = 1; k <= evals; ++k) {
      const int64_t target = int64_t((U(k) * U(p.total_examples) + U(evals) - 1) / U(evals));
      prev = std::max(p.steps_to_reach(target), prev + 1);
      p.eval_points[std::size_t(k - 1)] = prev;
    }
    int64_t next = p.total_steps + 1;
    for (auto it = p.eval_points.rbegin(); it != p.eval_points.rend(); ++it) next = *it = std::min(*it, next - 1);
  }
  return p;
}

int64_t TrainingPlan::examples_after(int64_t steps) const {
  const int64_t full = steps / steps_per_pass, rest = steps % steps_per_pass;
  return full * pass_examples + rest * global_batch;  // rest < steps_per_pass: never the short batch
}

int64_t TrainingPlan::steps_to_reach(int64_t examples) const {
  const int64_t full = examples / pass_examples, rem = examples % pass_examples;
  return full * steps_per_pass + (rem + global_batch - 1) / global_batch;
}

bool TrainingPlan::is_eval_step(int64_t step) const {
  if (step >= total_steps) return true;
  if (eval_every_steps > 0) return step % eval_every_steps == 0;
  if (evals <= 0) return step % steps_per_pass == 0;
  return std::binary_search(eval_points.begin(), eval_points.end(), step);
}

int64_t TrainingPlan::virtual_epochs() const {
  if (eval_every_steps > 0) return (total_steps + eval_every_steps - 1) / eval_every_steps;
  if (evals > 0) return evals;
  return (total_steps + steps_per_pass - 1) / steps_per_pass;
}

}  // namespace ringtrain
