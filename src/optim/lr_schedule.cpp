// LrSchedule::at and validation (see lr_schedule.hpp).
#include "ringtrain/optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

Decay parse_decay(const std::string& name) {
  if (name == "none") return Decay::kNone;
  if (name == "step") return Decay::kStep;
  if (name == "cosine") return Decay::kCosine;
  throw UsageError(str_cat("optim.decay: expected none, step or cosine, got '", name, "'"));
}

const char* decay_name(Decay d) {
  switch (d) {
    case Decay::kStep: return "step";
    case Decay::kCosine: return "cosine";
    default: return "none";
  }
}

void LrSchedule::validate() const {
  if (!(base_lr > 0 && std::isfinite(base_lr)))
    throw UsageError(str_cat("optim.lr: must be a positive number, got ", base_lr));
  if (ref_batch <= 0) throw UsageError(str_cat("optim.ref_batch: must be positive, got ", ref_batch));
  if (warmup_steps < 0) throw UsageError(str_cat("optim.warmup_steps: must be >= 0, got ", warmup_steps));
  if (decay == Decay::kStep && decay_every_steps <= 0)
    throw UsageError("optim.decay_every_epochs: step decay needs a period of at least one step");
  if (!(decay_gamma > 0 && decay_gamma <= 1))
    throw UsageError(str_cat("optim.decay_gamma: expected a value in (0, 1], got ", decay_gamma));
  if (!(min_factor >= 0 && min_factor <= 1))
    throw UsageError(str_cat("optim.min_lr_factor: expected a value in [0, 1], got ", min_factor));
}

double LrSchedule::at(int64_t step) const {
  const double top = peak();
  if (step < warmup_steps) {
    const double start = std::min(base_lr, top);
    return start + (top - start) * double(step) / double(warmup_steps);
  }
  const int64_t since = step - warmup_steps;
  switch (decay) {
    case Decay::kStep:
      return top * std::pow(decay_gamma, double(step / decay_every_steps));
    case Decay::kCosine: {
      const int64_t span = total_steps - warmup_steps;
      const double t = span > 0 ? std::min(1.0, double(since) / double(span)) : 1.0;
      const double floor = top * min_factor;
      return floor + (top - floor) * 0.5 * (1.0 + std::cos(M_PI * t));
    }
    default:
      return top;
  }
}

}  // namespace ringtrain
