// TrainingPlan (train/plan.hpp): training length in passes or examples,
// short last batches, virtual-epoch evaluation points that stay at the same
// amounts of training when the world size or batch changes, eval.every_steps
// and train.max_steps. Pure arithmetic: no MPI involved.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "ringtrain/train/plan.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {

std::vector<int64_t> eval_steps(const TrainingPlan& p) {
  std::vector<int64_t> out;
  for (int64_t s = 1; s <= p.total_steps; ++s)
    if (p.is_eval_step(s)) out.push_back(s);
  return out;
}

void check_rejects(const std::string& examples, const std::string& key, int64_t evals = 0) {
  CAPTURE(examples);
  CAPTURE(evals);
  CHECK_THROWS_AS(TrainingPlan::make(10, 2, 4, 3, examples, evals, 0, 0), UsageError);
  try {
    TrainingPlan::make(10, 2, 4, 3, examples, evals, 0, 0);
  } catch (const UsageError& e) {
    CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
  }
}

}  // namespace

TEST_CASE("plan: epochs mode counts the short last batch of every pass") {
  // 10 rows per rank, batch 4, 2 ranks: steps of 8, 8, 4 examples per pass.
  const TrainingPlan p = TrainingPlan::make(10, 2, 4, 3, "", 0, 0, 0);
  CHECK(p.steps_per_pass == 3);
  CHECK(p.pass_examples == 20);
  CHECK(p.global_batch == 8);
  CHECK(p.total_examples == 60);
  CHECK(p.total_steps == 9);
  CHECK(p.examples_after(0) == 0);
  CHECK(p.examples_after(1) == 8);
  CHECK(p.examples_after(2) == 16);
  CHECK(p.examples_after(3) == 20);  // the short batch of 2 per rank
  CHECK(p.examples_after(4) == 28);
  CHECK(p.examples_after(9) == 60);
  CHECK(p.steps_to_reach(16) == 2);
  CHECK(p.steps_to_reach(17) == 3);
  CHECK(p.steps_to_reach(20) == 3);
  CHECK(p.steps_to_reach(21) == 4);
  CHECK(p.epoch_at(3) == doctest::Approx(1.0));
  CHECK(p.epoch_at(6) == doctest::Approx(2.0));
  CHECK(p.epoch_at(1) == doctest::Approx(0.4));
  // One evaluation per pass by default.
  CHECK(eval_steps(p) == std::vector<int64_t>{3, 6, 9});
  CHECK(p.virtual_epochs() == 3);

  // Batch dividing the rows exactly: no short batch.
  const TrainingPlan q = TrainingPlan::make(12, 3, 4, 2, "0", 0, 0, 0);
  CHECK(q.steps_per_pass == 3);
  CHECK(q.total_steps == 6);
  CHECK(q.total_examples == 72);
  // Batch larger than the shard: one short step per pass.
  const TrainingPlan r = TrainingPlan::make(5, 2, 64, 4, "", 0, 0, 0);
  CHECK(r.steps_per_pass == 1);
  CHECK(r.total_steps == 4);
  CHECK(r.examples_after(4) == 40);

  CHECK_THROWS_AS(TrainingPlan::make(10, 2, 4, 0, "", 0, 0, 0), UsageError);
  try {
    TrainingPlan::make(10, 2, 4, 0, "", 0, 0, 0);
  } catch (const UsageError& e) {
    CHECK_MESSAGE(std::string(e.what()).find("train.epochs") != std::string::npos, e.what());
  }
}

TEST_CASE("plan: examples_after and steps_to_reach are consistent") {
  struct Shape {
    int64_t rows;
    int world, batch;
  };
  for (const Shape& sh : {Shape{10, 2, 4}, Shape{9, 1, 8}, Shape{100, 3, 7}, Shape{1, 4, 1}, Shape{33, 5, 32},
                          Shape{64, 2, 64}, Shape{7, 1, 3}}) {
    CAPTURE(sh.rows);
    CAPTURE(sh.world);
    CAPTURE(sh.batch);
    const TrainingPlan p = TrainingPlan::make(sh.rows, sh.world, sh.batch, 5, "", 0, 0, 0);
    int64_t prev = -1;
    for (int64_t s = 0; s <= 4 * p.steps_per_pass + 3; ++s) {
      CAPTURE(s);
      const int64_t e = p.examples_after(s);
      CHECK(e > prev);  // every step sees at least one example
      CHECK(e - (s == 0 ? 0 : p.examples_after(s - 1)) <= p.global_batch);
      CHECK(p.steps_to_reach(e) == s);
      prev = e;
    }
    // steps_to_reach(e) is the first step count whose examples reach e.
    for (int64_t e = 0; e <= 3 * p.pass_examples + 1; ++e) {
      CAPTURE(e);
      const int64_t s = p.steps_to_reach(e);
      CHECK(p.examples_after(s) >= e);
      if (s > 0) CHECK(p.examples_after(s - 1) < e);
    }
  }
}

TEST_CASE("plan: train.examples as a count or as passes' worth") {
  const TrainingPlan a = TrainingPlan::make(10, 2, 4, 3, "1000", 0, 0, 0);
  CHECK(a.total_examples == 1000);
  CHECK(a.total_steps == 150);  // 50 passes of 3 steps
  CHECK(a.examples_after(a.total_steps) == 1000);

  const TrainingPlan b = TrainingPlan::make(10, 2, 4, 3, "2.5x", 0, 0, 0);
  CHECK(b.total_examples == 50);
  CHECK(b.total_steps == 8);  // 2 passes + 10 examples: 2 more steps of 8
  CHECK(b.examples_after(7) < 50);
  CHECK(b.examples_after(8) >= 50);

  const TrainingPlan c = TrainingPlan::make(10, 2, 4, 3, "1001", 0, 0, 0);
  CHECK(c.total_examples == 1001);
  CHECK(c.total_steps == 151);

  const TrainingPlan r = TrainingPlan::make(10, 2, 4, 3, "2.53x", 0, 0, 0);  // 50.6 rounds to 51
  CHECK(r.total_examples == 51);
  CHECK(r.total_steps == 8);  // 2 passes (40) + 2 steps of 8 >= 51
  CHECK(TrainingPlan::make(10, 2, 4, 3, "0.33x", 0, 0, 0).total_examples == 7);  // 6.6

  const TrainingPlan d = TrainingPlan::make(10, 2, 4, 99, "3x", 0, 0, 0);  // examples override epochs
  CHECK(d.total_examples == 60);
  CHECK(d.total_steps == 9);
  // Epochs are ignored when examples are given, even if invalid.
  CHECK_NOTHROW(TrainingPlan::make(10, 2, 4, 0, "100", 0, 0, 0));
}

TEST_CASE("plan: malformed train.examples is a UsageError naming the key") {
  for (const char* bad : {"abc", "-5", "1.5", "0x", "x", "-2x", "12abc", "2.5xx", "nan", "infx", "1e300"})
    check_rejects(bad, "train.examples");
  // 0.01 passes of 20 examples rounds to no example at all.
  check_rejects("0.01x", "train.examples");
}

TEST_CASE("plan: train.evals places exactly that many evaluation points, the last step included") {
  const TrainingPlan p = TrainingPlan::make(100, 1, 8, 2, "", 4, 0, 0);
  REQUIRE(p.total_steps == 26);
  const auto ev = eval_steps(p);
  CHECK(ev.size() == 4);
  CHECK(ev.back() == p.total_steps);
  CHECK(p.virtual_epochs() == 4);
  // Boundaries at 50, 100, 150, 200 examples: steps 7 (56), 13 (100), 20 (156), 26.
  CHECK(ev == std::vector<int64_t>{7, 13, 20, 26});

  // A short batch that crosses two boundaries at once: 3 rows, batch 2, 5
  // examples in 3 steps (2, 1, 2 examples), 3 evaluations -> every step.
  CHECK(eval_steps(TrainingPlan::make(3, 1, 2, 1, "5", 3, 0, 0)) == std::vector<int64_t>{1, 2, 3});

  // Over many shapes: exactly `evals` points, up to one per step, each at or
  // after its target whenever virtual epochs span at least a step.
  for (int64_t rows : {7, 10, 33, 100}) {
    for (int world : {1, 2, 3, 5}) {
      for (int batch : {1, 3, 4, 16}) {
        for (const char* examples : {"", "777", "2.5x"}) {
          const TrainingPlan base = TrainingPlan::make(rows, world, batch, 3, examples, 0, 0, 0);
          for (int64_t evals = 1; evals <= std::min<int64_t>(base.total_steps, 40); ++evals) {
            const TrainingPlan q = TrainingPlan::make(rows, world, batch, 3, examples, evals, 0, 0);
            const auto e = eval_steps(q);
            CAPTURE(rows);
            CAPTURE(world);
            CAPTURE(batch);
            CAPTURE(examples);
            CAPTURE(evals);
            CHECK(int64_t(e.size()) == evals);
            CHECK(q.is_eval_step(q.total_steps));
            CHECK(q.total_steps == base.total_steps);
            if (2 * evals <= base.total_steps) {
              for (int64_t k = 1; k <= evals; ++k)
                CHECK(q.examples_after(e[std::size_t(k - 1)]) >= (k * q.total_examples + evals - 1) / evals);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("plan: evaluation points stay at the same examples when world size or batch change") {
  // 1200 training rows in all, 3 passes, 4 evaluations: targets 900, 1800, 2700, 3600.
  struct Shape {
    int world, batch;
  };
  const int64_t rows = 1200, evals = 4;
  std::vector<std::vector<int64_t>> seen;
  for (const Shape& sh : {Shape{1, 8}, Shape{2, 4}, Shape{4, 8}, Shape{3, 16}, Shape{5, 3}}) {
    CAPTURE(sh.world);
    CAPTURE(sh.batch);
    for (const char* examples : {"", "3600", "3x"}) {
      CAPTURE(examples);
      const TrainingPlan p = TrainingPlan::make(rows / sh.world, sh.world, sh.batch, 3, examples, evals, 0, 0);
      REQUIRE(p.total_examples == 3600);
      const auto ev = eval_steps(p);
      REQUIRE(int64_t(ev.size()) == evals);
      std::vector<int64_t> at;
      for (int64_t k = 1; k <= evals; ++k) {
        const int64_t target = k * p.total_examples / evals;
        const int64_t got = p.examples_after(ev[k - 1]);
        CAPTURE(k);
        CHECK(got >= target);
        CHECK(got - target < p.global_batch);
        at.push_back(got);
      }
      seen.push_back(at);
    }
  }
  // Pairwise: any two shapes evaluate within one (largest) global batch of each other.
  for (const auto& a : seen)
    for (const auto& b : seen)
      for (std::size_t k = 0; k < a.size(); ++k) CHECK(std::abs(a[k] - b[k]) < 48);
}

TEST_CASE("plan: evals beyond total_steps is a UsageError") {
  const TrainingPlan p = TrainingPlan::make(10, 2, 4, 3, "", 9, 0, 0);  // exactly one per step
  CHECK(eval_steps(p).size() == 9);
  check_rejects("", "train.evals", 10);
  CHECK_THROWS_AS(TrainingPlan::make(10, 2, 4, 3, "2.5x", 9, 0, 0), UsageError);  // 8 steps
  CHECK_NOTHROW(TrainingPlan::make(10, 2, 4, 3, "2.5x", 8, 0, 0));
  // A plan long enough for any count still takes at most kMaxEvals points
  // (2^31 - 1 of them asked for 17 GB).
  CHECK_THROWS_WITH_AS(TrainingPlan::make(10, 2, 4, 2147483647, "", 2147483647, 0, 0),
                       doctest::Contains("train.evals: 2147483647 evaluation points: at most 1000000"), UsageError);
  CHECK_NOTHROW(TrainingPlan::make(10, 2, 4, 2000000, "", TrainingPlan::kMaxEvals, 0, 0));
}

TEST_CASE("plan: eval.every_steps overrides virtual epochs; train.max_steps caps the run") {
  const TrainingPlan p = TrainingPlan::make(100, 1, 8, 2, "", 4, 5, 0);
  REQUIRE(p.total_steps == 26);
  CHECK(eval_steps(p) == std::vector<int64_t>{5, 10, 15, 20, 25, 26});
  CHECK(p.virtual_epochs() == 6);

  const TrainingPlan every = TrainingPlan::make(10, 2, 4, 3, "", 0, 2, 0);
  CHECK(eval_steps(every) == std::vector<int64_t>{2, 4, 6, 8, 9});

  const TrainingPlan capped = TrainingPlan::make(10, 2, 4, 3, "", 0, 0, 7);
  CHECK(capped.total_steps == 7);
  CHECK(capped.total_examples == 48);  // 2 passes + 1 step of 8
  CHECK(eval_steps(capped) == std::vector<int64_t>{3, 6, 7});

  const TrainingPlan loose = TrainingPlan::make(10, 2, 4, 3, "", 0, 0, 100);  // cap above the run
  CHECK(loose.total_steps == 9);
  CHECK(loose.total_examples == 60);

  // Virtual epochs are spread over the capped run.
  const TrainingPlan cv = TrainingPlan::make(100, 1, 8, 10, "", 2, 0, 20);
  CHECK(cv.total_steps == 20);
  CHECK(cv.total_examples == 156);  // 13 steps (100) + 7 * 8
  const auto ev = eval_steps(cv);
  REQUIRE(ev.size() == 2);
  CHECK(cv.examples_after(ev[0]) >= 78);
  CHECK(cv.examples_after(ev[0] - 1) < 78);
  CHECK(ev[1] == 20);
  // The cap can make evals not fit.
  CHECK_THROWS_AS(TrainingPlan::make(100, 1, 8, 10, "", 21, 0, 20), UsageError);
}
