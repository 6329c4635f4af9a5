// Learning-rate schedule: linear scaling with the global batch, linear
// warm-up, then no decay, step decay or cosine decay (Goyal et al. 2017).
//
//   peak = base_lr * global_batch / ref_batch
//   start = min(base_lr, peak)   (a warm-up never starts above its target:
//                                 with global_batch < ref_batch it is flat)
//   step < warmup:  lr = start + (peak - start) * step / warmup
//   afterwards:     none   -> peak
//                   step   -> peak * gamma^floor(step / every)  (counted from
//                             step 0, as in Goyal et al.: decay at epochs
//                             30, 60, 80 whatever the warm-up)
//                   cosine -> floor + (peak - floor) * (1 + cos(pi * t)) / 2,
//                             t = (step - warmup) / (total - warmup),
//                             floor = peak * min_factor
// A pure function of the step, so it needs no state to resume.
#pragma once

#include <cstdint>
#include <string>

namespace ringtrain {

enum class Decay { kNone, kStep, kCosine };
Decay parse_decay(const std::string& name);  // UsageError if unknown
const char* decay_name(Decay d);

struct LrSchedule {
  double base_lr = 0.1;
  int64_t global_batch = 256;
  int64_t ref_batch = 256;
  int64_t warmup_steps = 0;
  Decay decay = Decay::kNone;
  int64_t total_steps = 1;
  int64_t decay_every_steps = 1;  // step decay period
  double decay_gamma = 0.1;       // step decay factor
  double min_factor = 0.0;        // cosine floor as a fraction of peak

  double peak() const { return base_lr * double(global_batch) / double(ref_batch); }
  double at(int64_t step) const;
  void validate() const;  // UsageError naming the optim.* key that is wrong
};

}  // namespace ringtrain
