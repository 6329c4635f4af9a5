// LrSchedule (optim/lr_schedule.hpp): linear scaling with the global batch,
// linear warm-up, none/step/cosine decay, validation and parse_decay.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "ringtrain/optim/lr_schedule.hpp"
#include "ringtrain/util/error.hpp"

using namespace ringtrain;

namespace {
LrSchedule make(Decay decay, int64_t warmup) {
  LrSchedule s;
  s.base_lr = 0.1;
  s.global_batch = 1024;  // 4x the reference batch: peak 0.4
  s.ref_batch = 256;
  s.warmup_steps = warmup;
  s.decay = decay;
  return s;
}
}  // namespace

TEST_CASE("lr_schedule: peak scales linearly with the global batch") {
  LrSchedule s = make(Decay::kNone, 0);
  CHECK(s.peak() == doctest::Approx(0.4));
  s.global_batch = 64;
  CHECK(s.peak() == doctest::Approx(0.025));
  s.ref_batch = 64;
  CHECK(s.peak() == doctest::Approx(0.1));
}

TEST_CASE("lr_schedule: linear warm-up from base_lr to peak, then constant") {
  const LrSchedule s = make(Decay::kNone, 100);
  CHECK(s.at(0) == doctest::Approx(0.1));
  CHECK(s.at(25) == doctest::Approx(0.175));
  CHECK(s.at(50) == doctest::Approx(0.25));
  CHECK(s.at(99) == doctest::Approx(0.1 + 0.3 * 0.99));
  CHECK(s.at(100) == doctest::Approx(0.4));
  CHECK(s.at(100000) == doctest::Approx(0.4));
  double prev = 0.0;
  for (int64_t t = 0; t <= 100; ++t) {
    CHECK(s.at(t) > prev);
    prev = s.at(t);
  }
  CHECK(make(Decay::kNone, 0).at(0) == doctest::Approx(0.4));  // no warm-up: peak at once
}

TEST_CASE("lr_schedule: step decay multiplies by gamma every period, counted from step 0") {
  LrSchedule s = make(Decay::kStep, 10);
  s.decay_every_steps = 20;
  s.decay_gamma = 0.5;
  CHECK(s.at(5) == doctest::Approx(0.25));  // still warming up
  CHECK(s.at(10) == doctest::Approx(0.4));
  CHECK(s.at(19) == doctest::Approx(0.4));
  CHECK(s.at(20) == doctest::Approx(0.2));  // as in Goyal et al.: epochs 30/60/80, not 30 after warm-up
  CHECK(s.at(39) == doctest::Approx(0.2));
  CHECK(s.at(40) == doctest::Approx(0.1));
  CHECK(s.at(60) == doctest::Approx(0.05));
}

TEST_CASE("lr_schedule: a warm-up never starts above its target") {
  LrSchedule s = make(Decay::kNone, 10);
  s.global_batch = 128;  // peak 0.05 < base 0.1
  for (int64_t t : {0, 5, 10, 100}) CHECK(s.at(t) == doctest::Approx(0.05));
}

TEST_CASE("lr_schedule: cosine decay from peak to peak*min_factor at total_steps") {
  LrSchedule s = make(Decay::kCosine, 10);
  s.total_steps = 110;
  s.min_factor = 0.1;
  const double peak = 0.4, floor = 0.04;
  CHECK(s.at(10) == doctest::Approx(peak));
  CHECK(s.at(11) < peak);
  CHECK(s.at(11) > 0.999 * peak);
  CHECK(s.at(60) == doctest::Approx(floor + (peak - floor) * 0.5));
  CHECK(s.at(35) == doctest::Approx(floor + (peak - floor) * 0.5 * (1 + std::cos(M_PI / 4))));
  CHECK(s.at(110) == doctest::Approx(floor));
  CHECK(s.at(500) == doctest::Approx(floor));  // stays at the floor afterwards
  double prev = s.at(10);
  for (int64_t t = 11; t <= 110; ++t) {
    CHECK(s.at(t) <= prev);
    prev = s.at(t);
  }
  s.min_factor = 0.0;
  CHECK(s.at(110) == doctest::Approx(0.0));
}

TEST_CASE("lr_schedule: validate rejects bad settings with UsageError naming the key") {
  CHECK_NOTHROW(make(Decay::kCosine, 10).validate());
  auto rejects = [](LrSchedule s, const std::string& key) {
    CHECK_THROWS_AS(s.validate(), UsageError);
    try {
      s.validate();
    } catch (const UsageError& e) {
      CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
    }
  };
  LrSchedule s = make(Decay::kNone, 0);
  s.base_lr = 0.0;
  rejects(s, "optim.lr");
  s.base_lr = -0.1;
  rejects(s, "optim.lr");
  s.base_lr = std::numeric_limits<double>::quiet_NaN();
  rejects(s, "optim.lr");
  s.base_lr = std::numeric_limits<double>::infinity();
  rejects(s, "optim.lr");

  s = make(Decay::kNone, 0);
  s.ref_batch = 0;
  rejects(s, "optim.ref_batch");
  s = make(Decay::kNone, -1);
  rejects(s, "optim.warmup");
  s = make(Decay::kStep, 0);
  s.decay_every_steps = 0;
  rejects(s, "optim.decay");
  s = make(Decay::kStep, 0);
  s.decay_gamma = 0.0;
  rejects(s, "optim.decay_gamma");
  s.decay_gamma = 1.5;
  rejects(s, "optim.decay_gamma");
  s = make(Decay::kCosine, 0);
  s.min_factor = -0.1;
  rejects(s, "optim.min_lr_factor");
  s.min_factor = 1.1;
  rejects(s, "optim.min_lr_factor");
}

TEST_CASE("lr_schedule: parse_decay and decay_name round-trip") {
  for (Decay d : {Decay::kNone, Decay::kStep, Decay::kCosine}) CHECK(parse_decay(decay_name(d)) == d);
  CHECK(std::string(decay_name(Decay::kCosine)) == "cosine");
  CHECK(parse_decay("step") == Decay::kStep);
  CHECK_THROWS_AS(parse_decay("linear"), UsageError);
  CHECK_THROWS_AS(parse_decay("Cosine"), UsageError);
  CHECK_THROWS_AS(parse_decay(""), UsageError);
}
