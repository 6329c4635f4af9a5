// TrainingPlan (see plan.hpp).
#include "ringtrain/train/plan.hpp"

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
  if (evals > p.total_steps)
    throw UsageError(str_cat("train.evals: ", evals, " evaluation points do not fit in ", p.total_steps, " steps"));
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
  // Boundary k sits at the first step whose examples reach k * E / evals.
  __extension__ typedef unsigned __int128 U;  // examples * evals may exceed 64 bits
  const auto index = [&](int64_t s) { return int64_t(U(examples_after(s)) * U(evals) / U(total_examples)); };
  return index(step) > index(step - 1);
}

int64_t TrainingPlan::virtual_epochs() const {
  if (eval_every_steps > 0) return (total_steps + eval_every_steps - 1) / eval_every_steps;
  if (evals > 0) return evals;
  return (total_steps + steps_per_pass - 1) / steps_per_pass;
}

}  // namespace ringtrain
