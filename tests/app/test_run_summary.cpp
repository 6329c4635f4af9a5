// load_run: what plot and report read from a run directory, and the errors
// for directories that are missing, not runs, or hold broken records.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "ringtrain/app/run_summary.hpp"
#include "ringtrain/util/error.hpp"
#include "run_dir_fixture.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

TEST_CASE("load_run: config, evaluations, events, best.h5 and test metrics") {
  TempDir tmp;
  FakeRun{}.write(tmp.file("a"));
  const RunSummary r = load_run(tmp.file("a"));
  CHECK(r.config.at("train.batch_per_rank") == "64");
  CHECK(r.config.at("task") == "classification");
  CHECK(r.evals.size() == 4);
  CHECK(r.events.size() == 6);  // start, 4 checkpoints, end
  REQUIRE(r.has_best);
  CHECK(std::get<int64_t>(r.best.at("examples_seen")) == 2000);
  CHECK(r.test.at("test_accuracy") == doctest::Approx(0.8));
  CHECK(r.monitor() == "val_loss");
  CHECK(r.mode() == "min");
  CHECK(r.pass_examples() == 2000);
  REQUIRE(r.last_event("end") != nullptr);
  CHECK((*r.last_event("end"))["reason"] == "completed");
  CHECK(r.eval_columns().front() == "step");
}

TEST_CASE("load_run: a torn last line is skipped, a broken middle line is an error") {
  TempDir tmp;
  const std::string dir = tmp.file("a");
  FakeRun{}.write(dir);
  std::ofstream(dir + "/metrics.jsonl", std::ios::app) << "{\"step\": 9, \"exam";
  CHECK(load_run(dir).evals.size() == 4);
  std::ofstream(dir + "/metrics.jsonl", std::ios::app) << "\n{\"step\": 10, \"examples_seen\": 5000}\n";
  CHECK_THROWS_WITH_AS(load_run(dir), doctest::Contains("metrics.jsonl: line 5 is not a JSON object"), UsageError);
}

TEST_CASE("load_run: missing directories and non-runs are usage errors naming the path") {
  TempDir tmp;
  CHECK_THROWS_WITH_AS(load_run(tmp.file("nope")), doctest::Contains("nope' not found"), UsageError);
  CHECK_THROWS_WITH_AS(load_run(tmp.path()), doctest::Contains("not a ringtrain run directory (no config.ini)"),
                       UsageError);
  FakeRun{}.write(tmp.file("a"));
  std::ofstream(tmp.file("a/best.h5")) << "not hdf5";
  CHECK_THROWS_WITH_AS(load_run(tmp.file("a")), doctest::Contains("best.h5"), UsageError);
  FakeRun{}.write(tmp.file("b"));
  std::ofstream(tmp.file("b/metrics.jsonl")) << "{\"step\": 1}\n{\"step\": 2}\n";
  CHECK_THROWS_WITH_AS(load_run(tmp.file("b")), doctest::Contains("without step or examples_seen"), UsageError);
}

TEST_CASE("load_run: an event field missing or of the wrong type is a usage error naming it") {
  TempDir tmp;
  const std::string dir = tmp.file("a");
  FakeRun{}.write(dir);
  const auto events = [&](const std::string& line) {
    std::ofstream(dir + "/events.jsonl") << line << "\n";
    return dir;
  };
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "end", "step": 1, "examples_seen": 64, "reason": 5})")),
                       doctest::Contains("events.jsonl: \"reason\" is not a string"), UsageError);
  CHECK_THROWS_WITH_AS(
      load_run(events(R"({"event": "end", "step": 1, "examples_seen": 64, "reason": "completed", "wall_s": "long"})")),
      doctest::Contains("\"wall_s\" is not a number"), UsageError);
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "checkpoint", "step": 1, "examples_seen": 1.5})")),
                       doctest::Contains("\"examples_seen\" is not an integer"), UsageError);
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "end", "step": 1, "examples_seen": 64})")),
                       doctest::Contains("a \"end\" record without \"reason\""), UsageError);
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "start", "examples_seen": 0})")),
                       doctest::Contains("a \"start\" record without \"step\""), UsageError);
  CHECK(load_run(events(R"({"event": "a later kind", "x": [1]})")).events.size() == 1);  // unknown kinds pass
  // train.accumulate's micro-batches per step; absent in runs from before it.
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "start", "step": 0, "examples_seen": 0, "accumulate": "2"})")),
                       doctest::Contains("\"accumulate\" is not an integer"), UsageError);
  CHECK(load_run(events(R"({"event": "start", "step": 0, "examples_seen": 0, "accumulate": 2})")).events.size() == 1);
  // Counts out of range (report printed "world size -1").
  CHECK_THROWS_WITH_AS(load_run(events(R"({"event": "start", "step": 0, "examples_seen": 0, "world_size": -1})")),
                       doctest::Contains("\"world_size\" is not a positive count"), UsageError);
  CHECK_THROWS_WITH_AS(
      load_run(events(R"({"event": "checkpoint", "step": -9223372036854775808, "examples_seen": 0})")),
      doctest::Contains("\"step\" is negative"), UsageError);
  CHECK_THROWS_WITH_AS(
      load_run(events(R"({"event": "end", "step": 1, "examples_seen": 64, "reason": "completed", "trained_examples": -5})")),
      doctest::Contains("\"trained_examples\" is negative"), UsageError);
  // A long record is shown cut short in the message.
  const std::string pad(100000, 'x');
  try {
    load_run(events(R"({"event": "end", "step": 1, "examples_seen": 64, "pad": ")" + pad + "\"}"));
    FAIL("no error");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()).size() < 400);
  }
}

TEST_CASE("load_run: metric names that are not plain names are left out of the columns") {
  TempDir tmp;
  const std::string dir = tmp.file("a");
  FakeRun{}.write(dir);
  std::ofstream(dir + "/metrics.jsonl", std::ios::app)
      << R"({"step": 99, "examples_seen": 9000, "val_x\nEOD\nsystem 'touch /tmp/pwned'": 1.0, "val_ok-1.5+": 2.0})"
      << "\n";
  const std::vector<std::string> cols = load_run(dir).eval_columns();
  CHECK(std::find(cols.begin(), cols.end(), "val_ok-1.5+") != cols.end());
  for (const std::string& c : cols) CHECK(c.find('\n') == std::string::npos);
  CHECK(is_plain_name("val_macro_f1"));
  CHECK_FALSE(is_plain_name("a b"));
  CHECK_FALSE(is_plain_name("x'"));
  CHECK_FALSE(is_plain_name(""));
}

TEST_CASE("load_run: a run without events.jsonl (older versions) still has its monitor and pass size") {
  TempDir tmp;
  const std::string dir = tmp.file("old");
  FakeRun run;
  run.extra_config["eval.monitor"] = "val_accuracy";
  run.write(dir);
  std::filesystem::remove(dir + "/events.jsonl");
  const RunSummary r = load_run(dir);
  CHECK(r.events.empty());
  CHECK(r.monitor() == "val_loss");  // best.h5 says what it was chosen by
  CHECK(r.pass_examples() == 2000);  // examples_seen / epoch of the evaluations
  std::filesystem::remove(dir + "/best.h5");
  CHECK(load_run(dir).monitor() == "val_accuracy");  // the configuration
  CHECK(load_run(dir).mode() == "max");
}

TEST_CASE("run_labels: last path component, whole path when two runs share it") {
  TempDir tmp;
  FakeRun{}.write(tmp.file("x/run"));
  FakeRun{}.write(tmp.file("y/run"));
  FakeRun{}.write(tmp.file("z"));
  const std::vector<RunSummary> runs = {load_run(tmp.file("x/run/")), load_run(tmp.file("y/run")),
                                        load_run(tmp.file("z"))};
  const std::vector<std::string> labels = run_labels(runs);
  CHECK(labels[0] == tmp.file("x/run/"));
  CHECK(labels[1] == tmp.file("y/run"));
  CHECK(labels[2] == "z");
}
