// Atomic writes: the target appears complete or not at all, no temporary is
// left behind (not even after a signal), an unwritable target is an error
// naming the path, and only regular files are ever replaced; check_output's
// refusals of outputs that are inputs or special files.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

// ---- only regular files are replaced ------------------------------------------

namespace fs = std::filesystem;

namespace {

// The file type at `path`, links not followed.
fs::file_type type_at(const std::string& path) { return fs::symlink_status(path).type(); }
}  // namespace

TEST_CASE("AtomicFile refuses to replace a symbolic link, FIFO or directory, and leaves it as it was") {
  test::TempDir dir;
  write_file_atomic(dir.file("target.txt"), "kept");
  fs::create_symlink("target.txt", dir.file("link"));
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0644) == 0);
  fs::create_directory(dir.file("folder"));
  fs::create_symlink("/dev/null", dir.file("null"));
  for (const char* name : {"link", "fifo", "folder", "null"}) {
    CAPTURE(name);
    const fs::file_type before = type_at(dir.file(name));
    CHECK_THROWS_WITH_AS(write_file_atomic(dir.file(name), "new"), doctest::Contains(dir.file(name).c_str()), RuntimeError);
    CHECK_THROWS_AS(AtomicFile{dir.file(name)}, RuntimeError);
    CHECK(type_at(dir.file(name)) == before);
    CHECK_FALSE(fs::exists(dir.file(name) + ".tmp"));
  }
  CHECK(slurp(dir.file("target.txt")) == "kept");
  CHECK(fs::is_character_file("/dev/null"));
}

TEST_CASE("a temporary name that is a symbolic link is refused; a stale one that is a hard link is unlinked") {
  test::TempDir dir;
  write_file_atomic(dir.file("victim"), "victim");
  fs::create_symlink("victim", dir.file("a.tmp"));
  CHECK_THROWS_WITH_AS(write_file_atomic(dir.file("a"), "new"), doctest::Contains("a.tmp"), RuntimeError);
  CHECK(slurp(dir.file("victim")) == "victim");
  CHECK(type_at(dir.file("a.tmp")) == fs::file_type::symlink);
  // A hard link left by an interrupted write: writing through it would
  // change the other file; the new content goes to a new file instead.
  fs::create_hard_link(dir.file("victim"), dir.file("b.tmp"));
  write_file_atomic(dir.file("b"), "new");
  CHECK(slurp(dir.file("b")) == "new");
  CHECK(slurp(dir.file("victim")) == "victim");
  CHECK_FALSE(fs::exists(dir.file("b.tmp")));
}

TEST_CASE("a temporary made by the caller as a hard link is committed as it is (best.h5)") {
  test::TempDir dir;
  write_file_atomic(dir.file("best-step10.h5"), "model");
  write_file_atomic(dir.file("best.h5"), "older model");
  fs::create_hard_link(dir.file("best-step10.h5"), dir.file("best.h5.tmp"));
  AtomicFile out(dir.file("best.h5"));
  out.commit();  // without tmp_path(): the temporary is the caller's
  CHECK(slurp(dir.file("best.h5")) == "model");
  CHECK(fs::equivalent(dir.file("best.h5"), dir.file("best-step10.h5")));
}

TEST_CASE("append_line_durable refuses a FIFO (no hang) and a symbolic link") {
  test::TempDir dir;
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(append_line_durable(dir.file("fifo"), "x"), doctest::Contains("FIFO"), RuntimeError);
  write_file_atomic(dir.file("real"), "a\n");
  fs::create_symlink("real", dir.file("link"));
  CHECK_THROWS_WITH_AS(append_line_durable(dir.file("link"), "x"), doctest::Contains("symbolic link"), RuntimeError);
  CHECK(slurp(dir.file("real")) == "a\n");
}

// ---- check_output ----------------------------------------------------------------

TEST_CASE("check_output: an output that is an input, by any name, is refused") {
  test::TempDir dir;
  const std::string in = dir.file("in.h5");
  write_file_atomic(in, "input");
  fs::create_directory(dir.file("sub"));
  fs::create_hard_link(in, dir.file("hard.h5"));
  fs::create_symlink(in, dir.file("soft.h5"));
  const auto refused = [&](const std::string& out, const std::string& needle) {
    CAPTURE(out);
    CHECK_THROWS_WITH_AS(check_output(out, {dir.file("other"), in}, "cmd: --output"),
                         doctest::Contains(needle.c_str()), UsageError);
  };
  refused(in, "cmd: --output: '" + in + "' is an input");
  refused(dir.file("sub/../in.h5"), "is the input '" + in + "'");
  refused(dir.file("hard.h5"), "is the input '" + in + "'");
  refused(dir.file("soft.h5"), "is a symbolic link");
  // An input reached through a symbolic link is the file it leads to.
  CHECK_THROWS_AS(check_output(in, {dir.file("soft.h5")}, "cmd"), UsageError);
  // The temporary written first is an input.
  write_file_atomic(dir.file("p.h5.tmp"), "input too");
  CHECK_THROWS_WITH_AS(check_output(dir.file("p.h5"), {dir.file("p.h5.tmp")}, "cmd"), doctest::Contains("p.h5.tmp"),
                       UsageError);
  // Two outputs not written yet, spelt differently.
  CHECK(same_file_or_path(dir.file("new.png"), dir.file("sub/../new.png")));
  CHECK_FALSE(same_file_or_path(dir.file("new.png"), dir.file("new2.png")));
  CHECK_FALSE(same_file_or_path(in, dir.file("new.png")));
  // Fine: a new file, or replacing an old output that is no input.
  check_output(dir.file("new.h5"), {in}, "cmd");
  write_file_atomic(dir.file("old.h5"), "old output");
  check_output(dir.file("old.h5"), {in}, "cmd");
  CHECK(slurp(in) == "input");
}

TEST_CASE("check_output: special files, missing folders, read-only files and empty names are refused") {
  test::TempDir dir;
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0644) == 0);
  REQUIRE(::mkfifo(dir.file("t.h5.tmp").c_str(), 0644) == 0);
  fs::create_directory(dir.file("folder"));
  fs::create_symlink("/dev/null", dir.file("null"));
  write_file_atomic(dir.file("ro.h5"), "read-only");
  fs::permissions(dir.file("ro.h5"), fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  const auto refused = [&](const std::string& out, const std::string& needle) {
    CAPTURE(out);
    CHECK_THROWS_WITH_AS(check_output(out, {}, "cmd"), doctest::Contains(needle.c_str()), UsageError);
  };
  refused(dir.file("fifo"), "is a FIFO");
  refused(dir.file("folder"), "is a directory");
  refused(dir.file("null"), "is a symbolic link");
  refused("/dev/null", "is a character device");
  refused(dir.file("none/x.h5"), "folder '" + dir.file("none") + "' does not exist");
  refused(dir.file("ro.h5"), "is read-only");
  refused(dir.file("t.h5"), "t.h5.tmp");
  refused("", "empty");
  CHECK(fs::is_fifo(dir.file("fifo")));
  CHECK(fs::is_symlink(dir.file("null")));
}

TEST_CASE("check_output: the files of a run directory are train's alone; curves.png and other names are fine") {
  test::TempDir dir;
  const std::string run = dir.file("run");
  fs::create_directories(run + "/checkpoints");
  const auto refused = [&](const std::string& out) {
    CAPTURE(out);
    CHECK_THROWS_WITH_AS(check_output(out, {}, "cmd"), doctest::Contains("one of the files of the ringtrain run"),
                         UsageError);
  };
  // Before a run.lock is there the folder is no run directory.
  CHECK_NOTHROW(check_output(run + "/best.h5", {}, "cmd"));
  write_file_atomic(run + "/run.lock", "pid 1 on host\n");
  for (const char* name : {"run.lock", "best.h5", "best-step30.h5", "metrics.jsonl", "events.jsonl", "config.ini",
                           "manifest.json", "final.h5.tmp", "checkpoints/ckpt-5.h5", "checkpoints/other.h5",
                           "./checkpoints/../best.h5"})
    refused(run + "/" + name);
  CHECK_NOTHROW(check_output(run + "/curves.png", {}, "cmd"));
  CHECK_NOTHROW(check_output(run + "/predictions.h5", {}, "cmd"));
  // A copy of a run directory without its run.lock: known by its config.ini.
  const std::string copy = dir.file("copy");
  fs::create_directories(copy);
  write_file_atomic(copy + "/config.ini", "# ringtrain effective configuration\n");
  refused(copy + "/best.h5");
  CHECK(is_run_dir_name("best-step7.h5.tmp"));
  CHECK_FALSE(is_run_dir_name("run.lock"));
  CHECK_FALSE(is_run_dir_name("best-step.h5"));
}

// ---- temporaries removed on a signal ----------------------------------------------

TEST_CASE("a signal ends the process as it would have, after removing the live temporaries") {
  for (int signo : {SIGTERM, SIGINT}) {
    CAPTURE(signo);
    test::TempDir dir;
    const std::string out = dir.file("out.h5");
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // no doctest macros here: the child must only die
      try {
        remove_temporaries_on_signals();
        AtomicFile f(out);
        std::ofstream(f.tmp_path()) << "half-writ";
        ::raise(signo);
      } catch (...) {
      }
      ::_exit(99);  // not reached
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == signo);
    CHECK_FALSE(fs::exists(out + ".tmp"));
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("a committed or destroyed AtomicFile is no longer removed on a signal") {
  test::TempDir dir;
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      remove_temporaries_on_signals();
      write_file_atomic(dir.file("done"), "kept");
      // Its own temporary name, reused by hand afterwards, belongs to nobody.
      std::ofstream(dir.file("done.tmp")) << "not ringtrain's";
      ::raise(SIGTERM);
    } catch (...) {
    }
    ::_exit(99);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(slurp(dir.file("done")) == "kept");
  CHECK(fs::exists(dir.file("done.tmp")));
}
