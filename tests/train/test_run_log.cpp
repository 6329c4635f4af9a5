// RunLog's events.jsonl: records in order with their time, and what a resume
// keeps of them (train/run_log.hpp).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringtrain/train/run_log.hpp"
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

}  // namespace

TEST_CASE("run log: events in order; a resume keeps every launch's start and end, cuts later checkpoints") {
  TempDir tmp;
  const std::string dir = tmp.file("run");
  RunLog log(true, dir, false);
  log.start("task = classification\n");
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
  // A new run in the same folder (nothing evaluated there yet) starts a new record.
  log.event("start", at(0));
  RunLog again(true, dir, false);
  again.start("task = classification\n");
  CHECK(event_names(dir).empty());
}
