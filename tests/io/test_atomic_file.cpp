// Atomic writes: the target appears complete or not at all, no temporary is
// left behind, and an unwritable target is an error naming the path.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ringtrain/io/atomic_file.hpp"
#include "ringtrain/util/error.hpp"
#include "test_helpers.hpp"

using namespace ringtrain;

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("write_file_atomic replaces the file and leaves no temporary") {
  test::TempDir dir;
  const std::string path = dir.file("config.ini");
  write_file_atomic(path, "a = 1\n");
  write_file_atomic(path, "a = 2\n");
  CHECK(slurp(path) == "a = 2\n");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("an abandoned AtomicFile removes its temporary and keeps the old file") {
  test::TempDir dir;
  const std::string path = dir.file("best.h5");
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    std::ofstream(f.tmp_path()) << "half-writ";
  }  // no commit()
  CHECK(slurp(path) == "old");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("append_line_durable appends lines; unwritable paths are errors naming them") {
  test::TempDir dir;
  append_line_durable(dir.file("m.jsonl"), "{\"a\":1}");
  append_line_durable(dir.file("m.jsonl"), "{\"a\":2}");
  CHECK(slurp(dir.file("m.jsonl")) == "{\"a\":1}\n{\"a\":2}\n");
  CHECK_THROWS_WITH_AS(write_file_atomic(dir.file("no/such/dir/x"), "x"), doctest::Contains("no/such/dir"), Error);
}
