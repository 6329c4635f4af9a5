// `ringtrain report`: the figures per run against what the run directory
// holds (best.h5 read back independently), throughput and wall time from the
// end records, why a run stopped, and the config keys that differ.
#include <doctest/doctest.h>

#include "ringtrain/app/report.hpp"
#include "ringtrain/io/model_file.hpp"
#include "run_dir_fixture.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
using Json = nlohmann::ordered_json;

TEST_CASE("report: two runs with different batch sizes") {
  TempDir tmp;
  const Json r = report_json(batch_pair(tmp.path()));
  REQUIRE(r["runs"].size() == 2);
  const Json& ra = r["runs"][0];
  const Json& rb = r["runs"][1];
  CHECK(ra["label"] == "a");
  CHECK(rb["label"] == "b");
  CHECK(ra["world_size"] == 2);
  CHECK(ra["global_batch"] == 128);
  CHECK(rb["global_batch"] == 256);
  CHECK(rb["effective_lr"].get<double>() == doctest::Approx(0.1));
  CHECK(ra["examples_seen"] == 4000);
  CHECK(ra["wall_s"].get<double>() == doctest::Approx(2.5));
  CHECK(ra["samples_per_s"].get<double>() == doctest::Approx(2000.0));
  CHECK(ra["stop_reason"] == "completed");
  CHECK(rb["stop_reason"] == "early_stop");
  // Every metric best.h5 holds, with the same values.
  for (const char* run : {"a", "b"}) {
    const SavedModel best = read_model_file(tmp.file(std::string(run) + "/best.h5"));
    const Json& got = r["runs"][run[0] == 'a' ? 0 : 1]["best"];
    CHECK(got.size() == best.metrics.size());
    for (const auto& [k, v] : best.metrics) {
      INFO(run, " best ", k);
      REQUIRE(got.contains(k));
      if (const auto* i = std::get_if<int64_t>(&v))
        CHECK(got[k].get<int64_t>() == *i);
      else if (const auto* d = std::get_if<double>(&v))
        CHECK(got[k].get<double>() == *d);
      else
        CHECK(got[k].get<std::string>() == std::get<std::string>(v));
    }
  }
  CHECK(ra["final"]["val_loss"].get<double>() == doctest::Approx(FakeRun::val_loss(3)));
  CHECK(ra["test"]["test_accuracy"].get<double>() == doctest::Approx(0.8));
  // Only the key that was changed differs (run.dir is each run's name).
  REQUIRE(r["config_differences"].size() == 1);
  CHECK(r["config_differences"]["train.batch_per_rank"] == Json{{"a", "64"}, {"b", "128"}});
}

TEST_CASE("report: a killed launch, a resumed run, a key set in one run only") {
  TempDir tmp;
  FakeRun killed;
  killed.end_reason = "";
  killed.extra_config["optim.momentum"] = "0.9";
  killed.write(tmp.file("killed"));
  FakeRun resumed;
  resumed.end_reason = "preempted";
  resumed.write(tmp.file("resumed"));
  std::ofstream(tmp.file("resumed/events.jsonl"), std::ios::app)
      << R"({"event":"start","step":31,"examples_seen":4000,"world_size":2,"global_batch":128,"effective_lr":0.05})"
      << "\n"
      << R"({"event":"end","reason":"completed","step":40,"examples_seen":5000,"wall_s":1.5,"train_s":1.0,"trained_examples":1000})"
      << "\n";
  const Json r = report_json({load_run(tmp.file("killed")), load_run(tmp.file("resumed"))});
  CHECK(r["runs"][0]["stop_reason"] == "unfinished (killed, crashed, or still running)");
  CHECK(r["runs"][0]["unfinished_launches"] == 1);
  CHECK(r["runs"][0]["wall_s"].is_null());
  CHECK(r["runs"][1]["stop_reason"] == "completed");
  CHECK(r["runs"][1]["launches"] == 2);
  CHECK(r["runs"][1]["wall_s"].get<double>() == doctest::Approx(4.0));
  CHECK(r["runs"][1]["samples_per_s"].get<double>() == doctest::Approx(5000.0 / 3.0));
  CHECK(r["runs"][1]["examples_seen"] == 5000);
  CHECK(r["config_differences"] == Json{{"optim.momentum", {{"killed", "0.9"}, {"resumed", "(unset)"}}}});
}
