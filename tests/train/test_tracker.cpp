// Tracker (train/tracker.hpp): improvement thresholds, the metric direction
// registry, best-model selection, top-k versioned models, early stopping
// (patience, baseline, divergence, non-finite values) and the round trip of
// its state through checkpoint attributes. Pure logic: no MPI involved.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ringtrain/nn/metrics.hpp"
#include "ringtrain/train/tracker.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Delta abs_delta(double v) { return Delta{v, false}; }
Delta rel_delta(double v) { return Delta{v, true}; }

EarlyStopSpec patience_spec(int64_t patience, Delta min_delta = {}) {
  EarlyStopSpec es;
  es.patience = patience;
  es.min_delta = min_delta;
  return es;
}

// Feeds `values` at steps 1, 2, ... and returns the decisions.
std::vector<TrackerDecision> feed(Tracker& t, const std::vector<double>& values, int64_t first_step = 1) {
  std::vector<TrackerDecision> out;
  for (std::size_t i = 0; i < values.size(); ++i) out.push_back(t.update(first_step + int64_t(i), values[i]));
  return out;
}

void check_usage_error_names(const std::string& text, const std::string& key) {
  CAPTURE(text);
  CHECK_THROWS_AS(Delta::parse(text, key), UsageError);
  try {
    Delta::parse(text, key);
  } catch (const UsageError& e) {
    CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
  }
}

}  // namespace

TEST_CASE("tracker: Delta::parse absolute, relative and malformed thresholds") {
  const Delta zero = Delta::parse("0", "eval.min_delta");
  CHECK(zero.value == 0.0);
  CHECK_FALSE(zero.relative);
  const Delta abs = Delta::parse("0.01", "eval.min_delta");
  CHECK(abs.value == doctest::Approx(0.01));
  CHECK_FALSE(abs.relative);
  const Delta rel = Delta::parse("1%", "eval.min_delta");
  CHECK(rel.value == doctest::Approx(0.01));  // a fraction of the best value
  CHECK(rel.relative);
  const Delta rel2 = Delta::parse("2.5%", "early_stop.min_delta");
  CHECK(rel2.value == doctest::Approx(0.025));
  CHECK(rel2.relative);
  // str() gives back a text that parses to the same threshold.
  for (const Delta& d : {zero, abs, rel, rel2}) {
    const Delta again = Delta::parse(d.str(), "k");
    CHECK(again.value == doctest::Approx(d.value));
    CHECK(again.relative == d.relative);
  }
  for (const char* bad : {"-1", "abc", "", "1%%", "%", "1.5x", "nan", "inf", "-0.5%"})
    check_usage_error_names(bad, "early_stop.min_delta");
}

TEST_CASE("tracker: improves() in min and max mode, absolute and relative deltas") {
  // Min mode: lower is better, strictly beyond the margin.
  CHECK(improves(0.9, 1.0, MetricMode::kMin, {}));
  CHECK_FALSE(improves(1.0, 1.0, MetricMode::kMin, {}));
  CHECK_FALSE(improves(1.1, 1.0, MetricMode::kMin, {}));
  CHECK(improves(0.94, 1.0, MetricMode::kMin, abs_delta(0.05)));
  CHECK_FALSE(improves(0.96, 1.0, MetricMode::kMin, abs_delta(0.05)));
  // Relative: 10% of |reference|.
  CHECK(improves(1.79, 2.0, MetricMode::kMin, rel_delta(0.1)));
  CHECK_FALSE(improves(1.81, 2.0, MetricMode::kMin, rel_delta(0.1)));
  CHECK(improves(-2.21, -2.0, MetricMode::kMin, rel_delta(0.1)));  // |reference| for negative values
  CHECK_FALSE(improves(-2.19, -2.0, MetricMode::kMin, rel_delta(0.1)));
  // The same relative delta is a larger absolute margin for a larger reference.
  CHECK(improves(0.095, 0.1, MetricMode::kMin, rel_delta(0.01)));
  CHECK_FALSE(improves(9.95, 10.0, MetricMode::kMin, rel_delta(0.01)));

  // Max mode: higher is better.
  CHECK(improves(0.91, 0.9, MetricMode::kMax, {}));
  CHECK_FALSE(improves(0.9, 0.9, MetricMode::kMax, {}));
  CHECK_FALSE(improves(0.8, 0.9, MetricMode::kMax, {}));
  CHECK(improves(0.92, 0.9, MetricMode::kMax, abs_delta(0.01)));
  CHECK_FALSE(improves(0.905, 0.9, MetricMode::kMax, abs_delta(0.01)));
  CHECK(improves(0.5, 0.4, MetricMode::kMax, rel_delta(0.2)));     // margin 0.08
  CHECK_FALSE(improves(0.47, 0.4, MetricMode::kMax, rel_delta(0.2)));

  // Non-finite values never improve, in either direction.
  for (MetricMode m : {MetricMode::kMin, MetricMode::kMax}) {
    CHECK_FALSE(improves(kNaN, 1.0, m, {}));
    CHECK_FALSE(improves(kInf, 1.0, m, {}));
    CHECK_FALSE(improves(-kInf, 1.0, m, {}));
  }
}

TEST_CASE("tracker: metric_direction registry") {
  for (const char* name : {"val_loss", "train_loss", "val_error", "val_mse", "val_mae", "loss"}) {
    CAPTURE(name);
    REQUIRE(metric_direction(name).has_value());
    CHECK(*metric_direction(name) == MetricMode::kMin);
  }
  for (const char* name : {"val_accuracy", "val_mcc", "val_macro_f1", "train_accuracy"}) {
    CAPTURE(name);
    REQUIRE(metric_direction(name).has_value());
    CHECK(*metric_direction(name) == MetricMode::kMax);
  }
  for (const char* name : {"val_bogus", "", "val_lossy", "valloss", "f1"}) {
    CAPTURE(name);
    CHECK_FALSE(metric_direction(name).has_value());
  }
  CHECK(std::string(metric_mode_name(MetricMode::kMin)) == "min");
  CHECK(std::string(metric_mode_name(MetricMode::kMax)) == "max");
}

TEST_CASE("tracker: the first finite value is a new best, later ones must beat min_delta") {
  Tracker t("val_loss", MetricMode::kMin, abs_delta(0.1), {}, 1);
  CHECK_FALSE(t.has_best());
  const TrackerDecision d1 = t.update(10, 1.0);
  CHECK(d1.improved);
  CHECK(d1.keep);
  CHECK(d1.stop == StopReason::kNone);
  CHECK(d1.message.empty());
  CHECK(t.has_best());
  CHECK(t.best_value() == 1.0);
  CHECK(t.best_step() == 10);

  const TrackerDecision d2 = t.update(20, 0.95);  // better, but not by 0.1
  CHECK_FALSE(d2.improved);
  CHECK(d2.stop == StopReason::kNone);
  CHECK(t.best_value() == 1.0);
  CHECK(t.best_step() == 10);

  const TrackerDecision d3 = t.update(30, 0.85);  // beats 1.0 - 0.1
  CHECK(d3.improved);
  CHECK(t.best_value() == 0.85);
  CHECK(t.best_step() == 30);

  // Max mode, relative delta 10%: 0.5 -> needs more than 0.55.
  Tracker m("val_accuracy", MetricMode::kMax, rel_delta(0.1), {}, 1);
  CHECK(m.update(1, 0.5).improved);
  CHECK_FALSE(m.update(2, 0.54).improved);
  CHECK(m.update(3, 0.56).improved);
  CHECK(m.best_step() == 3);
}

TEST_CASE("tracker: NaN or infinity stops with kNonFinite and never becomes the best") {
  for (double bad : {kNaN, kInf, -kInf}) {
    CAPTURE(bad);
    Tracker fresh("val_loss", MetricMode::kMin, {}, {}, 1);
    const TrackerDecision d = fresh.update(5, bad);
    CHECK(d.stop == StopReason::kNonFinite);
    CHECK_FALSE(d.improved);
    CHECK_FALSE(d.keep);
    CHECK_FALSE(d.message.empty());
    CHECK_FALSE(fresh.has_best());
    CHECK(fresh.top().empty());

    Tracker t("val_loss", MetricMode::kMin, {}, {}, 2);
    REQUIRE(t.update(1, 2.0).improved);
    const TrackerDecision e = t.update(2, bad);
    CHECK(e.stop == StopReason::kNonFinite);
    CHECK_FALSE(e.improved);
    CHECK_FALSE(e.keep);
    CHECK(e.evicted.empty());
    CHECK(t.best_value() == 2.0);
    CHECK(t.best_step() == 1);
    CHECK(t.top().size() == 1);
  }
  // Max mode too: +inf accuracy is not a record.
  Tracker m("val_accuracy", MetricMode::kMax, {}, {}, 1);
  CHECK(m.update(1, kInf).stop == StopReason::kNonFinite);
  CHECK_FALSE(m.has_best());
}

TEST_CASE("tracker: early_stop.divergence stops at once, in min and max mode") {
  EarlyStopSpec es;
  es.divergence = 10.0;
  es.patience = 100;
  Tracker t("val_loss", MetricMode::kMin, {}, es, 1);
  CHECK(t.update(1, 5.0).stop == StopReason::kNone);
  CHECK(t.update(2, 10.0).stop == StopReason::kNone);  // equal: not worse than the threshold
  const TrackerDecision d = t.update(3, 10.5);
  CHECK(d.stop == StopReason::kDivergence);
  CHECK(d.message.find("divergence") != std::string::npos);
  CHECK(t.best_step() == 1);

  // Stops even on the very first evaluation, without any patience.
  EarlyStopSpec first;
  first.divergence = 1.0;
  Tracker f("val_loss", MetricMode::kMin, {}, first, 1);
  CHECK(f.update(1, 3.0).stop == StopReason::kDivergence);

  EarlyStopSpec acc;
  acc.divergence = 0.2;
  Tracker m("val_accuracy", MetricMode::kMax, {}, acc, 1);
  CHECK(m.update(1, 0.5).stop == StopReason::kNone);
  CHECK(m.update(2, 0.25).stop == StopReason::kNone);  // worse, but above the threshold
  CHECK(m.update(3, 0.2).stop == StopReason::kNone);
  const TrackerDecision dm = m.update(4, 0.15);
  CHECK(dm.stop == StopReason::kDivergence);
  CHECK(std::string(stop_reason_name(dm.stop)) == "divergence");
}

TEST_CASE("tracker: patience stops after exactly `patience` evaluations without improvement") {
  for (int64_t patience : {1, 2, 3, 5}) {
    CAPTURE(patience);
    Tracker t("val_loss", MetricMode::kMin, {}, patience_spec(patience), 1);
    CHECK(t.update(1, 1.0).stop == StopReason::kNone);
    for (int64_t i = 1; i <= patience; ++i) {
      const TrackerDecision d = t.update(1 + i, 1.0 + 0.1 * double(i));
      if (i < patience) {
        CHECK(d.stop == StopReason::kNone);
      } else {
        CHECK(d.stop == StopReason::kPatience);
        CHECK(std::string(stop_reason_name(d.stop)) == "patience");
        CHECK_FALSE(d.message.empty());
      }
    }
  }
  // An improvement resets the count.
  Tracker t("val_loss", MetricMode::kMin, {}, patience_spec(3), 1);
  const auto d = feed(t, {1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0});
  for (std::size_t i = 0; i + 1 < d.size(); ++i) CHECK_MESSAGE(d[i].stop == StopReason::kNone, "evaluation ", i);
  CHECK(d[3].improved);
  CHECK(d.back().stop == StopReason::kPatience);
  // Equal values are not improvements.
  Tracker eq("val_accuracy", MetricMode::kMax, {}, patience_spec(2), 1);
  const auto e = feed(eq, {0.5, 0.5, 0.5});
  CHECK(e[1].stop == StopReason::kNone);
  CHECK(e[2].stop == StopReason::kPatience);
  // Patience 0: no patience-based stopping at all.
  Tracker never("val_loss", MetricMode::kMin, {}, patience_spec(0), 1);
  for (const TrackerDecision& x : feed(never, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})) CHECK(x.stop == StopReason::kNone);
}

TEST_CASE("tracker: early_stop.min_delta is separate from eval.min_delta") {
  // Every value is a new best (eval.min_delta 0), but none beats the
  // early-stopping best by 0.1: patience runs out.
  Tracker a("val_loss", MetricMode::kMin, {}, patience_spec(3, abs_delta(0.1)), 1);
  const auto da = feed(a, {1.0, 0.95, 0.92, 0.91});
  for (const auto& d : da) CHECK(d.improved);
  CHECK(da[2].stop == StopReason::kNone);
  CHECK(da[3].stop == StopReason::kPatience);
  CHECK(a.best_value() == 0.91);

  // Conversely: no new best after the first (eval.min_delta 0.5), but each
  // value improves for early stopping, which therefore never fires.
  Tracker b("val_loss", MetricMode::kMin, abs_delta(0.5), patience_spec(2), 1);
  const auto db = feed(b, {1.0, 0.9, 0.8, 0.7, 0.6});
  CHECK(db[0].improved);
  for (std::size_t i = 1; i < db.size(); ++i) {
    CHECK_FALSE(db[i].improved);
    CHECK(db[i].stop == StopReason::kNone);
  }
  CHECK(b.best_step() == 1);
}

TEST_CASE("tracker: early_stop.baseline must be beaten within patience") {
  EarlyStopSpec es = patience_spec(3);
  es.baseline = 0.5;
  {
    Tracker t("val_loss", MetricMode::kMin, {}, es, 1);
    const auto d = feed(t, {0.6, 0.7, 0.55});
    CHECK(d[0].improved);  // the best model is still tracked
    CHECK(d[0].stop == StopReason::kNone);
    CHECK(d[1].stop == StopReason::kNone);
    CHECK(d[2].stop == StopReason::kBaseline);
    CHECK(std::string(stop_reason_name(d[2].stop)) == "baseline");
    CHECK(d[2].message.find("baseline") != std::string::npos);
  }
  {
    Tracker t("val_loss", MetricMode::kMin, {}, es, 1);
    const auto d = feed(t, {0.6, 0.7, 0.45, 0.5, 0.5});
    for (const auto& x : d) CHECK(x.stop == StopReason::kNone);
    // Once beaten, ordinary patience applies from the new best.
    CHECK(t.update(6, 0.5).stop == StopReason::kPatience);
  }
  {
    // Equal to the baseline is not beating it.
    Tracker t("val_loss", MetricMode::kMin, {}, es, 1);
    const auto d = feed(t, {0.5, 0.5, 0.5});
    CHECK(d[2].stop == StopReason::kBaseline);
  }
  {
    // Max mode.
    EarlyStopSpec acc = patience_spec(2);
    acc.baseline = 0.8;
    Tracker t("val_accuracy", MetricMode::kMax, {}, acc, 1);
    const auto d = feed(t, {0.7, 0.79});
    CHECK(d[1].stop == StopReason::kBaseline);
    Tracker u("val_accuracy", MetricMode::kMax, {}, acc, 1);
    const auto e = feed(u, {0.7, 0.81, 0.8});
    CHECK(e[1].stop == StopReason::kNone);
    CHECK(e[2].stop == StopReason::kNone);
  }
}

TEST_CASE("tracker: keep_best top-k keeps, evicts in order and never evicts the best") {
  {
    // k = 2, min mode: 5, 4, 6, 3, 3.5, 7
    Tracker t("val_loss", MetricMode::kMin, {}, {}, 2);
    const auto d = feed(t, {5, 4, 6, 3, 3.5, 7});
    CHECK(d[0].keep);
    CHECK(d[0].evicted.empty());
    CHECK(d[1].keep);
    CHECK(d[1].evicted.empty());
    CHECK_FALSE(d[2].keep);  // 6 is worse than both kept
    CHECK(d[2].evicted.empty());
    CHECK(d[3].keep);
    CHECK(d[3].evicted == std::vector<int64_t>{1});  // 5 leaves
    CHECK(d[4].keep);
    CHECK_FALSE(d[4].improved);
    CHECK(d[4].evicted == std::vector<int64_t>{2});  // 4 leaves, 3.5 enters
    CHECK_FALSE(d[5].keep);
    CHECK(d[5].evicted.empty());
    REQUIRE(t.top().size() == 2);
    CHECK(t.top()[0] == std::pair<double, int64_t>{3.0, 4});
    CHECK(t.top()[1] == std::pair<double, int64_t>{3.5, 5});
    CHECK(t.best_step() == 4);
  }
  {
    // Max mode, k = 3.
    Tracker t("val_accuracy", MetricMode::kMax, {}, {}, 3);
    const auto d = feed(t, {0.5, 0.7, 0.6, 0.8, 0.55, 0.65});
    CHECK(d[3].evicted == std::vector<int64_t>{1});
    CHECK_FALSE(d[4].keep);
    CHECK(d[5].keep);
    CHECK(d[5].evicted == std::vector<int64_t>{3});
    REQUIRE(t.top().size() == 3);
    CHECK(t.top()[0].second == 4);
    CHECK(t.top()[1].second == 2);
    CHECK(t.top()[2].second == 6);
  }
  {
    // With eval.min_delta, a slightly better value ranks above the best in
    // the top-k but does not replace it: the best is never evicted.
    Tracker t("val_loss", MetricMode::kMin, abs_delta(0.5), {}, 2);
    const auto d = feed(t, {5.0, 4.8, 4.7, 4.6});
    CHECK(d[0].improved);
    for (std::size_t i = 1; i < d.size(); ++i) {
      CHECK_FALSE(d[i].improved);
      CHECK(d[i].keep);
      for (int64_t s : d[i].evicted) CHECK(s != t.best_step());
    }
    CHECK(d[2].evicted == std::vector<int64_t>{2});
    CHECK(d[3].evicted == std::vector<int64_t>{3});
    CHECK(t.best_step() == 1);
    REQUIRE(t.top().size() == 2);
    CHECK(std::any_of(t.top().begin(), t.top().end(), [](const auto& p) { return p.second == 1; }));
  }
  {
    // k = 1 with min_delta: the near-improvement enters and leaves at once.
    Tracker t("val_loss", MetricMode::kMin, abs_delta(0.5), {}, 1);
    CHECK(t.update(1, 5.0).keep);
    const TrackerDecision d = t.update(2, 4.8);
    CHECK_FALSE(d.improved);
    CHECK_FALSE(d.keep);
    CHECK((d.evicted.empty() || d.evicted == std::vector<int64_t>{2}));
    const TrackerDecision e = t.update(3, 4.0);
    CHECK(e.improved);
    CHECK(e.keep);
    CHECK(e.evicted == std::vector<int64_t>{1});
    REQUIRE(t.top().size() == 1);
    CHECK(t.top()[0].second == 3);
  }
  {
    // Invariants over a long pseudo-random sequence: the best is always in the
    // top-k, the top-k never exceeds k, every kept step is listed, evicted
    // steps were kept before.
    Tracker t("val_loss", MetricMode::kMin, rel_delta(0.01), {}, 3);
    std::vector<int64_t> kept;
    uint32_t state = 12345;
    for (int64_t step = 1; step <= 200; ++step) {
      state = state * 1664525u + 1013904223u;
      const double v = 1.0 + double(state >> 8) / double(1u << 24) - 0.004 * double(step);
      const TrackerDecision d = t.update(step, v);
      if (d.keep) kept.push_back(step);
      for (int64_t s : d.evicted) {
        if (s == step) {  // entered and left at once: it was never kept
          CHECK_FALSE(d.keep);
          continue;
        }
        const auto it = std::find(kept.begin(), kept.end(), s);
        CHECK_MESSAGE(it != kept.end(), "evicted step ", s, " was never kept");
        if (it != kept.end()) kept.erase(it);
        CHECK(s != t.best_step());
      }
      CHECK(int(t.top().size()) <= 3);
      CHECK(kept.size() == t.top().size());
      CHECK(std::any_of(t.top().begin(), t.top().end(), [&](const auto& p) { return p.second == t.best_step(); }));
    }
  }
}

TEST_CASE("tracker: to_attrs/load round trip decides identically") {
  EarlyStopSpec es = patience_spec(3, rel_delta(0.02));
  es.baseline = 2.0;
  es.divergence = 50.0;
  const auto make = [&] { return Tracker("val_loss", MetricMode::kMin, abs_delta(0.01), es, 2); };
  const std::vector<double> head = {2.5, 1.9, 0.1 + 0.2, 1.0 / 3.0, 0.31};
  const std::vector<double> tail = {0.3, 0.299, 0.2999999, 0.33, 0.34, 0.35, 0.1, 0.1, 0.1, 0.1, 60.0};

  for (std::size_t cut = 0; cut <= head.size(); ++cut) {
    CAPTURE(cut);
    Tracker original = make();
    const std::vector<double> before(head.begin(), head.begin() + cut);
    feed(original, before);
    Tracker resumed = make();
    resumed.load(original.to_attrs(), "ckpt-5.h5");
    CHECK(resumed.has_best() == original.has_best());
    CHECK(resumed.best_value() == original.best_value());
    CHECK(resumed.best_step() == original.best_step());
    CHECK(resumed.top() == original.top());

    std::vector<double> rest(head.begin() + cut, head.end());
    rest.insert(rest.end(), tail.begin(), tail.end());
    const int64_t first = int64_t(cut) + 1;
    for (std::size_t i = 0; i < rest.size(); ++i) {
      const TrackerDecision a = original.update(first + int64_t(i), rest[i]);
      const TrackerDecision b = resumed.update(first + int64_t(i), rest[i]);
      CAPTURE(i);
      CHECK(a.improved == b.improved);
      CHECK(a.keep == b.keep);
      CHECK(a.evicted == b.evicted);
      CHECK(a.stop == b.stop);
      CHECK(a.message == b.message);
    }
    CHECK(resumed.top() == original.top());
    CHECK(resumed.to_attrs() == original.to_attrs());
  }
}

TEST_CASE("tracker: load rejects another monitor, another mode or missing keys") {
  Tracker saved("val_loss", MetricMode::kMin, {}, patience_spec(2), 1);
  saved.update(1, 1.0);
  const Attrs attrs = saved.to_attrs();

  Tracker other_monitor("val_accuracy", MetricMode::kMax, {}, patience_spec(2), 1);
  CHECK_THROWS_AS(other_monitor.load(attrs, "ckpt-1.h5"), UsageError);
  try {
    other_monitor.load(attrs, "ckpt-1.h5");
  } catch (const UsageError& e) {
    CHECK_MESSAGE(std::string(e.what()).find("ckpt-1.h5") != std::string::npos, e.what());
    CHECK_MESSAGE(std::string(e.what()).find("val_loss") != std::string::npos, e.what());
  }
  Tracker other_name("train_loss", MetricMode::kMin, {}, patience_spec(2), 1);
  CHECK_THROWS_AS(other_name.load(attrs, "ckpt-1.h5"), UsageError);
  Tracker other_mode("val_loss", MetricMode::kMax, {}, patience_spec(2), 1);
  CHECK_THROWS_AS(other_mode.load(attrs, "ckpt-1.h5"), UsageError);

  for (const char* key : {"best_value", "best_step", "early_stop_wait", "top_k", "monitor"}) {
    CAPTURE(key);
    Attrs missing = attrs;
    missing.erase(key);
    Tracker t("val_loss", MetricMode::kMin, {}, patience_spec(2), 1);
    CHECK_THROWS_AS(t.load(missing, "ckpt-1.h5"), UsageError);
  }
  Attrs wrong_type = attrs;
  wrong_type["best_step"] = std::string("seven");
  Tracker t("val_loss", MetricMode::kMin, {}, patience_spec(2), 1);
  CHECK_THROWS_AS(t.load(wrong_type, "ckpt-1.h5"), UsageError);

  Tracker same("val_loss", MetricMode::kMin, {}, patience_spec(2), 1);
  CHECK_NOTHROW(same.load(attrs, "ckpt-1.h5"));
  CHECK(same.best_step() == 1);
}
