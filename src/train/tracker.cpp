// Tracker (see tracker.hpp).
#include "ringtrain/train/tracker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "ringtrain/util/error.hpp"

namespace ringtrain {

Delta Delta::parse(const std::string& text, const std::string& key) {
  Delta d;
  std::string num = text;
  if (!num.empty() && num.back() == '%') {
    d.relative = true;
    num.pop_back();
  }
  char* end = nullptr;
  d.value = std::strtod(num.c_str(), &end);
  if (num.empty() || *end != '\0' || !std::isfinite(d.value) || d.value < 0)
    throw UsageError(str_cat(key, ": expected a non-negative number or percentage (0.01, 1%), got '", text, "'"));
  if (d.relative) d.value /= 100.0;
  return d;
}

std::string Delta::str() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, relative ? "%.17g%%" : "%.17g", relative ? value * 100.0 : value);
  return buf;
}

bool improves(double value, double reference, MetricMode mode, Delta delta) {
  if (!std::isfinite(value)) return false;
  const double margin = delta.relative ? delta.value * std::abs(reference) : delta.value;
  return mode == MetricMode::kMin ? value < reference - margin : value > reference + margin;
}

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kPatience: return "patience";
    case StopReason::kBaseline: return "baseline";
    case StopReason::kDivergence: return "divergence";
    case StopReason::kNonFinite: return "non-finite";
    default: return "none";
  }
}

Tracker::Tracker(std::string monitor, MetricMode mode, Delta min_delta, EarlyStopSpec early_stop, int keep_best)
    : monitor_(std::move(monitor)), mode_(mode), min_delta_(min_delta), es_(early_stop),
      keep_best_(std::max(1, keep_best)) {
  if (es_.baseline) {
    es_has_best_ = true;
    es_best_ = *es_.baseline;
  }
}

TrackerDecision Tracker::update(int64_t step, double value) {
  TrackerDecision d;
  const char* dir = mode_ == MetricMode::kMin ? "above" : "below";
  if (!std::isfinite(value)) {
    d.stop = StopReason::kNonFinite;
    d.message = str_cat("training diverged: ", monitor_, " is ", value, " at step ", step);
    return d;
  }
  // Best model and top-k (plain comparison for the top-k ranking).
  d.improved = !has_best() || improves(value, best_value_, mode_, min_delta_);
  if (d.improved) {
    best_value_ = value;
    best_step_ = step;
  }
  const auto better = [&](double a, double b) { return mode_ == MetricMode::kMin ? a < b : a > b; };
  if (int(top_.size()) < keep_best_ || better(value, top_.back().first) || d.improved) {
    d.keep = true;
    top_.emplace_back(value, step);
    // Stable: among equal values the earlier evaluation ranks first.
    std::stable_sort(top_.begin(), top_.end(), [&](const auto& a, const auto& b) { return better(a.first, b.first); });
    // The current best (best.h5) is never evicted, even if a later value
    // within min_delta ranks above it.
    while (int(top_.size()) > keep_best_) {
      auto victim = top_.end() - 1;
      if (victim->second == best_step_) --victim;
      d.evicted.push_back(victim->second);
      top_.erase(victim);
    }
    d.keep = std::none_of(d.evicted.begin(), d.evicted.end(), [&](int64_t s) { return s == step; });
  }
  // Early stopping.
  if (es_.divergence && (mode_ == MetricMode::kMin ? value > *es_.divergence : value < *es_.divergence)) {
    d.stop = StopReason::kDivergence;
    d.message = str_cat("training diverged: ", monitor_, " = ", value, " at step ", step, " is ", dir,
                        " early_stop.divergence = ", *es_.divergence);
    return d;
  }
  if (!es_has_best_ || improves(value, es_best_, mode_, es_.min_delta)) {
    es_has_best_ = true;
    es_best_ = value;
    wait_ = 0;
  } else {
    ++wait_;
  }
  if (es_.patience > 0 && wait_ >= es_.patience) {
    const bool never_beat_baseline = es_.baseline && es_best_ == *es_.baseline;
    d.stop = never_beat_baseline ? StopReason::kBaseline : StopReason::kPatience;
    d.message = never_beat_baseline
                    ? str_cat("early stopping: ", monitor_, " did not beat early_stop.baseline = ", *es_.baseline,
                              " within ", es_.patience, " evaluations (step ", step, ")")
                    : str_cat("early stopping: ", monitor_, " has not improved on ", es_best_, " for ", wait_,
                              " evaluations (step ", step, ")");
  }
  return d;
}

Attrs Tracker::to_attrs() const {
  std::ostringstream top;
  top.precision(17);
  for (const auto& [v, s] : top_) top << (top.tellp() > 0 ? "," : "") << s << ":" << v;
  return Attrs{{"monitor", monitor_},
               {"mode", std::string(metric_mode_name(mode_))},
               {"min_delta", min_delta_.str()},
               {"best_value", best_value_},
               {"best_step", best_step_},
               {"early_stop_has_best", int64_t(es_has_best_)},
               {"early_stop_best", es_best_},
               {"early_stop_wait", wait_},
               {"early_stop_patience", es_.patience},
               {"top_k", top.str()},
               {"keep_best", int64_t(keep_best_)}};
}

namespace {
template <typename T>
T get(const Attrs& a, const std::string& key, const std::string& context) {
  const auto it = a.find(key);
  if (it == a.end() || !std::holds_alternative<T>(it->second))
    throw UsageError(str_cat(context, ": tracker state lacks '", key, "'"));
  return std::get<T>(it->second);
}
}  // namespace

void Tracker::load(const Attrs& a, const std::string& context) {
  const std::string monitor = get<std::string>(a, "monitor", context);
  const std::string mode = get<std::string>(a, "mode", context);
  if (monitor != monitor_ || mode != metric_mode_name(mode_))
    throw UsageError(str_cat(context, ": saved with eval.monitor = ", monitor, " (", mode, "), this run monitors ",
                             monitor_, " (", metric_mode_name(mode_), ")"));
  best_value_ = get<double>(a, "best_value", context);
  best_step_ = get<int64_t>(a, "best_step", context);
  es_has_best_ = get<int64_t>(a, "early_stop_has_best", context) != 0;
  es_best_ = get<double>(a, "early_stop_best", context);
  wait_ = get<int64_t>(a, "early_stop_wait", context);
  top_.clear();
  std::stringstream ss(get<std::string>(a, "top_k", context));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) throw UsageError(str_cat(context, ": malformed tracker top_k '", item, "'"));
    top_.emplace_back(std::strtod(item.c_str() + colon + 1, nullptr), std::strtoll(item.c_str(), nullptr, 10));
  }
  // A resumed run may keep fewer versioned models than the saved one did.
  while (int(top_.size()) > keep_best_) top_.pop_back();
}

}  // namespace ringtrain
