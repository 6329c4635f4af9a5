// RunLog's events.jsonl: records in order with their time, and what a resume
// keeps of them (train/run_log.hpp).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/train/run_log.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;
using Json = nlohmann::ordered_json;

namespace {

std::vector<std::string> event_names(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in(dir + "/events.jsonl");
  for (std::string line; std::getline(in, line);) {
    const Json j = Json::parse(line);
    out.push_back(j["event"].get<std::string>() + "@" + std::to_string(j["examples_seen"].get<int64_t>()));
  }
  return out;
}

std::string run_log_read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void run_log_write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("run log: events in order; a resume keeps every launch's start and end, cuts later checkpoints") {
  TempDir tmp;
  const std::string dir = tmp.file("run");
  const std::string ini = std::string(RunLog::kConfigMarker) + "\ntask = classification\n";
  RunLog log(true, dir, false);
  log.open(false, "");
  log.begin(ini, "", false);
  const auto at = [](int64_t examples) { return Json{{"step", examples / 10}, {"examples_seen", examples}}; };
  log.event("start", at(0));
  log.event("checkpoint", at(100));
  log.event("checkpoint", at(200));
  Json end = at(300);
  end["reason"] = "diverged";
  log.event("end", end);
  std::ifstream first(dir + "/events.jsonl");
  std::string line;
  REQUIRE(std::getline(first, line));
  const Json j = Json::parse(line);
  CHECK(j.begin().key() == "event");                 // "event" and "time" come first
  CHECK(j["time"].get<std::string>().size() == 20);  // 2026-12-01T05:08:22Z
  // Resumed from the checkpoint at 100 examples: the diverged launch stays on record.
  log.truncate_metrics(100);
  CHECK(event_names(dir) == std::vector<std::string>{"start@0", "checkpoint@100", "end@300"});
  log.truncate_metrics(-1);  // a fresh start
  CHECK(event_names(dir).empty());
  // A fresh run in the same folder is refused (it holds config.ini and
  // events.jsonl), and a second job while this one holds the lock.
  log.event("start", at(0));
  RunLog again(true, dir, false);
  CHECK_THROWS_WITH_AS(again.open(true, ""), doctest::Contains("in use by another ringtrain job (pid"), UsageError);
}

TEST_CASE("run log: --resume auto over a launch that never checkpointed starts over; a fresh run is refused") {
  TempDir tmp;
  const std::string dir = tmp.file("run");
  const std::string ini = std::string(RunLog::kConfigMarker) + "\ntask = classification\n";
  {
    RunLog log(true, dir, false);
    log.open(false, "");
    log.begin(ini, "", false);
    log.event("start", Json{{"step", 0}, {"examples_seen", 0}});
  }  // the job ended: its lock with it
  {
    RunLog fresh(true, dir, false);
    CHECK_THROWS_WITH_AS(fresh.open(false, ""), doctest::Contains("already holds a run (config.ini, events.jsonl)"),
                         UsageError);
  }  // a refused job still held the lock until it ended
  RunLog resumed(true, dir, false);
  resumed.open(true, "");
  CHECK(resumed.contents().only_unfinished_launch);
  resumed.begin(ini, "", /*fresh=*/true);
  CHECK(event_names(dir).empty());
  CHECK(run_log_read(dir + "/config.ini") == ini);
}

TEST_CASE("run log: --config naming the run's own config.ini") {
  TempDir tmp;
  const std::string dir = tmp.file("run");
  const std::string ini = std::string(RunLog::kConfigMarker) + "\ntask = classification\n";
  std::filesystem::create_directories(dir);
  run_log_write(dir + "/config.ini", "# mine\n[model]\nhidden = 8\n");
  for (bool resuming : {false, true}) {
    RunLog log(true, dir, false);
    CHECK_THROWS_WITH_AS(log.open(resuming, dir + "/config.ini"), doctest::Contains("--config: "), UsageError);
  }
  CHECK(run_log_read(dir + "/config.ini") == "# mine\n[model]\nhidden = 8\n");
  // The copy ringtrain wrote, given back when resuming: read, never rewritten.
  run_log_write(dir + "/config.ini", ini);
  RunLog log(true, dir, false);
  log.open(true, dir + "/./config.ini");
  log.begin(ini + "resume = auto\n", dir + "/./config.ini", false);
  CHECK(run_log_read(dir + "/config.ini") == ini);
}
