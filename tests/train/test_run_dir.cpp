// The run directory's lock and what a run directory holds (train/run_dir.hpp).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "ringtrain/train/run_dir.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;
using namespace ringtrain::test;

namespace {
void run_dir_touch(const std::string& path, const std::string& text = "x") { std::ofstream(path) << text; }
}  // namespace

TEST_CASE("run dir lock: one holder at a time, named; released with the holder") {
  TempDir tmp;
  const std::string dir = tmp.file("a/b");  // parents created
  std::string warning;
  auto first = std::make_unique<RunDirLock>(dir, &warning);
  CHECK(warning.empty());
  std::ifstream in(dir + "/run.lock");
  std::string holder;
  std::getline(in, holder);
  CHECK(holder.rfind("pid " + std::to_string(::getpid()) + " on ", 0) == 0);
  CHECK_THROWS_WITH_AS(RunDirLock(dir, nullptr), doctest::Contains("in use by another ringtrain job (pid"), UsageError);
  first.reset();
  CHECK_NOTHROW(RunDirLock(dir, nullptr));
}

TEST_CASE("run dir lock: a symlink, a FIFO or a file where the directory belongs is refused") {
  TempDir tmp;
  run_dir_touch(tmp.file("victim"), "precious");
  std::filesystem::create_directories(tmp.file("l"));
  std::filesystem::create_symlink(tmp.file("victim"), tmp.file("l/run.lock"));
  CHECK_THROWS_WITH_AS(RunDirLock(tmp.file("l"), nullptr), doctest::Contains("symlink"), UsageError);
  std::ifstream victim(tmp.file("victim"));
  std::string text;
  std::getline(victim, text);
  CHECK(text == "precious");
  std::filesystem::create_directories(tmp.file("f"));
  REQUIRE(::mkfifo(tmp.file("f/run.lock").c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(RunDirLock(tmp.file("f"), nullptr), doctest::Contains("not a regular file"), UsageError);
  run_dir_touch(tmp.file("plain"));
  CHECK_THROWS_WITH_AS(RunDirLock(tmp.file("plain"), nullptr), doctest::Contains("cannot create run directory"),
                       UsageError);
}

TEST_CASE("run dir lock: a run.lock that is a hard link or not a lock file is refused, left as it was") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.file("h"));
  run_dir_touch(tmp.file("data.h5"), "precious");
  std::filesystem::create_hard_link(tmp.file("data.h5"), tmp.file("h/run.lock"));
  CHECK_THROWS_WITH_AS(RunDirLock(tmp.file("h"), nullptr), doctest::Contains("hard link"), UsageError);
  std::filesystem::create_directories(tmp.file("n"));
  run_dir_touch(tmp.file("n/run.lock"), "my notes, not a lock");
  CHECK_THROWS_WITH_AS(RunDirLock(tmp.file("n"), nullptr), doctest::Contains("not a lock file of ringtrain's"),
                       UsageError);
  for (const char* f : {"data.h5", "n/run.lock"}) {
    std::ifstream in(tmp.file(f));
    std::string text;
    std::getline(in, text);
    CHECK(text == (f[0] == 'd' ? "precious" : "my notes, not a lock"));
  }
  // An empty one (a job killed as it started) and an old lock are taken over.
  std::filesystem::create_directories(tmp.file("e"));
  run_dir_touch(tmp.file("e/run.lock"), "");
  CHECK_NOTHROW(RunDirLock(tmp.file("e"), nullptr));
  CHECK_NOTHROW(RunDirLock(tmp.file("e"), nullptr));
}

TEST_CASE("run dir contents: a log that is a hard link (a cp -al copy) is refused") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.file("orig"));
  std::filesystem::create_directories(tmp.file("copy"));
  run_dir_touch(tmp.file("orig/metrics.jsonl"), "{\"step\":1}\n");
  std::filesystem::create_hard_link(tmp.file("orig/metrics.jsonl"), tmp.file("copy/metrics.jsonl"));
  CHECK_THROWS_WITH_AS(inspect_run_dir(tmp.file("copy")), doctest::Contains("has other names (a hard link)"),
                       UsageError);
}

TEST_CASE("run dir contents: ringtrain's names only; what is worth keeping") {
  TempDir tmp;
  const std::string d = tmp.path();
  CHECK(inspect_run_dir(tmp.file("absent")).empty());
  run_dir_touch(d + "/notes.txt");
  run_dir_touch(d + "/run.lock");
  CHECK(inspect_run_dir(d).empty());  // the user's files and the lock are no run
  run_dir_touch(d + "/config.ini", "# ringtrain effective configuration: every key, as used\n");
  run_dir_touch(d + "/events.jsonl", "{\"event\":\"start\",\"examples_seen\":0}\n");
  run_dir_touch(d + "/best.h5.tmp");
  RunDirContents c = inspect_run_dir(d);
  CHECK(c.list() == "best.h5.tmp, config.ini, events.jsonl");
  CHECK(c.only_unfinished_launch);
  run_dir_touch(d + "/events.jsonl", "{\"event\":\"checkpoint\",\"examples_seen\":64}\n");
  CHECK_FALSE(inspect_run_dir(d).only_unfinished_launch);  // a checkpoint was written once
  run_dir_touch(d + "/events.jsonl", "");
  run_dir_touch(d + "/config.ini", "[model]\nhidden = 8\n");  // not one ringtrain wrote
  CHECK_FALSE(inspect_run_dir(d).only_unfinished_launch);
  std::filesystem::remove(d + "/config.ini");
  run_dir_touch(d + "/best-step12.h5");
  c = inspect_run_dir(d);
  CHECK(c.list(2) == "best-step12.h5, best.h5.tmp, ...");
  CHECK_FALSE(c.only_unfinished_launch);
  std::filesystem::create_directories(tmp.file("elsewhere"));
  std::filesystem::create_symlink(tmp.file("elsewhere"), d + "/checkpoints");
  CHECK_THROWS_WITH_AS(inspect_run_dir(d), doctest::Contains("checkpoints is a symlink"), UsageError);
}
