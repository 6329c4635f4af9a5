// Tracker: best-model selection and early stopping, decided on rank 0.
//
// Fed one value of the monitored metric per evaluation, it says whether the
// value is a new best (then best.h5 is rewritten), whether it enters the
// top-k kept as versioned files, and whether training must stop:
//   - NaN or infinity is never an improvement and stops training (diverged);
//   - early_stop.divergence stops at once when the value is worse than it;
//   - early_stop.patience evaluations without an improvement of at least
//     early_stop.min_delta stop training; with early_stop.baseline, the
//     value must beat the baseline within that patience.
// Pure logic: the state round-trips through checkpoint attributes, so a
// resumed run decides exactly as an uninterrupted one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ringtrain/io/hdf5.hpp"
#include "ringtrain/nn/metrics.hpp"

namespace ringtrain {

// An improvement threshold: absolute ("0.01") or relative to the best value
// ("1%"). UsageError naming `key` when malformed or negative.
struct Delta {
  double value = 0;
  bool relative = false;
  static Delta parse(const std::string& text, const std::string& key);
  std::string str() const;
};

// True when `value` beats `reference` by more than the delta in direction
// `mode`. NaN and infinities never improve.
bool improves(double value, double reference, MetricMode mode, Delta delta);

struct EarlyStopSpec {
  int64_t patience = 0;  // 0: no patience-based stopping
  Delta min_delta;
  std::optional<double> baseline, divergence;
  bool restore_best = false;
};

enum class StopReason { kNone, kPatience, kBaseline, kDivergence, kNonFinite };
const char* stop_reason_name(StopReason r);

struct TrackerDecision {
  bool improved = false;  // new best: rewrite best.h5
  bool keep = false;      // enters the top-k versioned files
  std::vector<int64_t> evicted;  // steps whose versioned files leave the top-k
  StopReason stop = StopReason::kNone;
  std::string message;  // why it stops (empty otherwise)
};

class Tracker {
 public:
  Tracker() = default;
  Tracker(std::string monitor, MetricMode mode, Delta min_delta, EarlyStopSpec early_stop, int keep_best);

  TrackerDecision update(int64_t step, double value);

  const std::string& monitor() const { return monitor_; }
  MetricMode mode() const { return mode_; }
  bool has_best() const { return best_step_ >= 0; }
  double best_value() const { return best_value_; }
  int64_t best_step() const { return best_step_; }
  // Top-k (value, step), best first.
  const std::vector<std::pair<double, int64_t>>& top() const { return top_; }

  Attrs to_attrs() const;
  // Restores from to_attrs(); UsageError naming `context` on missing keys or
  // when the saved monitor/mode differ from this tracker's.
  void load(const Attrs& attrs, const std::string& context);

 private:
  std::string monitor_ = "val_loss";
  MetricMode mode_ = MetricMode::kMin;
  Delta min_delta_;
  EarlyStopSpec es_;
  int keep_best_ = 1;
  double best_value_ = 0;
  int64_t best_step_ = -1;
  bool es_has_best_ = false;
  double es_best_ = 0;
  int64_t wait_ = 0;  // evaluations since the last early-stopping improvement
  std::vector<std::pair<double, int64_t>> top_;
};

}  // namespace ringtrain
